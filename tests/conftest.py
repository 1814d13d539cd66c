import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Tests run under pytest-xdist with one worker per core: one thread each.
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(1)
    yield


@pytest.fixture
def grad_scaler_scales(monkeypatch) -> list[float]:
    """The loss scale after every ``GradScaler.update`` (one per float16 training step)."""
    import torch

    scales: list[float] = []
    update = torch.amp.GradScaler.update

    def spy(self, new_scale=None):
        update(self, new_scale)
        scales.append(self.get_scale())

    monkeypatch.setattr(torch.amp.GradScaler, "update", spy)
    return scales
