import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny tensors: intra-op threads only contend for the shared cores (35x slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
