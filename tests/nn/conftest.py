"""tests/nn need torch; without it the whole folder is skipped so the core suite still runs."""

import importlib.util

if importlib.util.find_spec("torch") is None:  # pragma: no cover - depends on the environment
    collect_ignore_glob = ["test_*.py"]
