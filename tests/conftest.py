"""Suite-wide fixtures."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """One torch thread: the tests use tiny tensors, and on a shared 2-core machine spinning
    intra-op threads make them 10-100x slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
