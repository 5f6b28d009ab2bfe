"""Suite-wide fixtures."""

import sys

import pytest


@pytest.fixture(autouse=True)
def _two_torch_threads():
    """At most two torch threads in tests that use torch (timings predictable on small CI machines).

    Torch is never imported here: a test module that needs it has imported it before its tests run, and the
    core tests stay torch-free."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(min(old, 2))
    yield
    torch.set_num_threads(old)
