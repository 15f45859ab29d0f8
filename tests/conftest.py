"""Shared fixtures: a tiny class-folder CIFAR-10 copy, a CLI runner, and the real data's path."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
# The smallest useful model and run: a ConvMixer-16/1 with 4x4 patches, 3 epochs, no workers.
TINY_MODEL = ("--model", "convmixer", "--dim", "16", "--depth", "1", "--patch-size", "4",
              "--batch-size", "16", "--workers", "0")


def write_class_folders(root, per_class=None, seed=0):
    """root/train/<class>/*.png and root/test/<class>/*.png: 32x32 RGB, each class its own base
    colour plus noise (learnable in a few epochs). per_class: {"train": n, "test": m}."""
    per_class = per_class or {"train": 16, "test": 4}
    rng = np.random.default_rng(seed)
    bases = rng.integers(30, 226, (len(CLASSES), 3))
    root = Path(root)
    for split, n in per_class.items():
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                noise = rng.integers(-30, 31, (32, 32, 3))
                image = np.clip(bases[label] + noise, 0, 255).astype(np.uint8)
                assert cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return root


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    """A small CIFAR-10 class-folder copy (train: 16 PNGs per class, test: 4); its root path."""
    return write_class_folders(tmp_path_factory.mktemp("tiny_cifar"))


def cli_command(*args):
    return [sys.executable, "-m", "src.train", *map(str, args)]


def cli_env():
    env = dict(os.environ)
    env.pop("WORLD_SIZE", None)  # never start DistributedDataParallel from a test
    # One thread: on a machine shared with other jobs, two spinning threads run 10x slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_cli(*args, timeout=120):
    """`python -m src.train ARGS` in a subprocess from the repository root; the CompletedProcess
    (text stdout and stderr captured)."""
    return subprocess.run(cli_command(*args), cwd=REPO_ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout)


def start_cli(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
    """The same command, started and not waited for (a Popen)."""
    return subprocess.Popen(cli_command(*args), cwd=REPO_ROOT, env=cli_env(), stdout=stdout, stderr=stderr)


@pytest.fixture(scope="session")
def cli():
    """run_cli: run the training CLI in a subprocess (`cli("--epochs", 3, ...)`)."""
    return run_cli


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
