"""Fixtures: a tiny class-folder CIFAR-10 copy, the real data's path, one quick reproduction
(helpers live in helpers.py)."""
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import PATIENCE, REPO_ROOT, write_class_folders
from src.notebook import MODES, NOTEBOOKS


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    """A small CIFAR-10 class-folder copy (train: 16 PNGs per class, test: 4); its root path."""
    return write_class_folders(tmp_path_factory.mktemp("tiny_cifar"))


@pytest.fixture(scope="session")
def quick_cifar(tmp_path_factory):
    """A class-folder copy just large enough for --quick and the notebooks' quick mode (its training and
    test images, rounded up to whole classes)."""
    quick = MODES["quick"]
    return write_class_folders(tmp_path_factory.mktemp("quick_cifar"),
                               {"train": -(-quick["train_subset"] // 10), "test": -(-quick["test_subset"] // 10)})


@pytest.fixture(scope="session")
def cifar10_dir():
    """The real CIFAR-10 data from $CIFAR10_DIR: skipped when the variable is unset, a failure when
    it names a folder that does not exist."""
    value = os.environ.get("CIFAR10_DIR")
    if not value:
        pytest.skip("CIFAR10_DIR not set")
    path = Path(value).expanduser()
    if not path.is_dir():
        pytest.fail(f"CIFAR10_DIR is set to {value!r}, but that folder does not exist "
                    f"(expected CIFAR-10 data there: train/<class>/ folders or cifar-10-batches-py)",
                    pytrace=False)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Two threads on two shared cores spin against each other (10x slower); one is plenty here."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def checkout_state():
    """git's view (ignored files too) and the mtime of every tracked file, in the notebooks' folders
    and at the top level, where results land: what a --quick run must not change. The code (src/,
    tests/) is left out, as someone may edit it meanwhile."""
    def git(*args):
        return subprocess.run(["git", *args, "--", *NOTEBOOKS, ":(glob)*"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout
    tracked = [name for name in git("ls-files", "-z").split("\0") if (REPO_ROOT / name).is_file()]
    return git("status", "--porcelain", "--ignored", "--untracked-files=all"), {
        name: (REPO_ROOT / name).stat().st_mtime_ns for name in tracked}


@pytest.fixture(scope="session")
def quick_reproduction(cifar10_dir, tmp_path_factory):
    """Two calls of `python -m src.reproduce --quick --device cpu` on the same --out: the first runs
    every step (bench, the three notebooks in quick mode, the recipe runs), the second should find
    everything finished. test_reproduce.py and test_notebooks.py read what they wrote."""
    out = tmp_path_factory.mktemp("reproduce") / "out"
    command = [sys.executable, "-m", "src.reproduce", "--quick", "--device", "cpu", "--data", str(cifar10_dir),
               "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MPLBACKEND": "Agg"}

    def call():
        return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=PATIENCE)

    before = checkout_state()
    first = call()
    after = checkout_state()
    written = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}
    return SimpleNamespace(out=out, first=first, second=call(), before=before, after=after, written=written)
