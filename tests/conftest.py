import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TRITON_INTERPRET", "0" if torch.cuda.is_available() else "1")

HAS_GPU = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if HAS_GPU else "cpu")


class HeldKills(list):
    """The (pid, group) of every SIGKILL held back; ``release()`` sends them for real."""

    def __init__(self, real_send, restore):
        super().__init__()
        self._real_send, self._restore = real_send, restore

    def release(self) -> None:
        import signal

        self._restore()
        while self:
            pid, group = self.pop()
            self._real_send(pid, signal.SIGKILL, group)


@pytest.fixture
def held_sigkills(monkeypatch):
    """SIGKILLs sent through runner.procs are held back, as when the GPU driver takes long to
    tear a killed process's context down; released at the latest when the test ends."""
    import signal

    from runner import procs

    real_send = procs._send
    held = HeldKills(real_send, lambda: monkeypatch.setattr(procs, "_send", real_send))

    def send_all_but_the_kill(pid, sig, group=False):
        if sig == signal.SIGKILL:
            held.append((pid, group))
            return True
        return real_send(pid, sig, group)

    monkeypatch.setattr(procs, "_send", send_all_but_the_kill)
    yield held
    held.release()
