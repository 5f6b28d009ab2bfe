"""tests/nn need torch; without it the whole folder is skipped so the core suite still runs."""

import importlib.util

import pytest

if importlib.util.find_spec("torch") is None:  # pragma: no cover - depends on the environment
    collect_ignore_glob = ["test_*.py"]
else:
    torch = pytest.importorskip("torch")

    @pytest.fixture(autouse=True)
    def _two_threads():
        """Keep timings predictable on small CI machines."""
        old = torch.get_num_threads()
        torch.set_num_threads(min(old, 2))
        yield
        torch.set_num_threads(old)
