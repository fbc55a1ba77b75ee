"""Suite-wide fixtures."""

import os
from collections.abc import Iterator
from pathlib import Path

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


class ShellPayload:
    """Pickles as a call of ``touch MARKER``: what a crafted pickle, checkpoint or feature file holds.

    A test that loads one asserts MARKER was not created (the payload did not run).
    """

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="session")
def shell_payload() -> type[ShellPayload]:
    return ShellPayload
