"""Fixtures: a tiny class-folder CIFAR-10 copy, the real data's path (helpers live in helpers.py)."""
import os
from pathlib import Path

import pytest

from helpers import write_class_folders


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    """A small CIFAR-10 class-folder copy (train: 16 PNGs per class, test: 4); its root path."""
    return write_class_folders(tmp_path_factory.mktemp("tiny_cifar"))


@pytest.fixture(scope="session")
def cifar10_dir():
    """The real CIFAR-10 data from $CIFAR10_DIR: skipped when the variable is unset, a failure when it
    names a folder that does not exist."""
    value = os.environ.get("CIFAR10_DIR")
    if not value:
        pytest.skip("CIFAR10_DIR not set")
    if not Path(value).is_dir():
        pytest.fail(f"CIFAR10_DIR is set to {value!r}, but that folder does not exist", pytrace=False)
    return Path(value)


@pytest.fixture(scope="module")
def one_thread():
    """Two threads on two shared cores spin against each other (10x slower); one is plenty here."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def quick_cifar(tmp_path_factory):
    """A class-folder copy just large enough for --quick and the notebooks' quick mode (256 / 64 images)."""
    return write_class_folders(tmp_path_factory.mktemp("quick_cifar"), {"train": 26, "test": 7})
