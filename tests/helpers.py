"""Helpers the tests import: a tiny class-folder CIFAR-10 copy, the commands in a subprocess."""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The smallest useful run: a ConvMixer-16/1 with 4x4 patches, batch 16, no workers, on the CPU.
TINY = ("--model", "convmixer_256_8", "--dim", "16", "--depth", "1", "--patch-size", "4", "--batch-size", "16",
        "--device", "cpu")
PATIENCE = 600  # seconds a subprocess gets: a busy 2-core machine runs them many times slower than alone


def write_class_folders(root, per_class=None, seed=0):
    """root/train/<class>/*.png and root/test/<class>/*.png: 32x32 RGB, each class its own base colour
    plus noise (learnable in a few epochs). per_class: {"train": n, "test": m}."""
    per_class = per_class or {"train": 16, "test": 4}
    rng = np.random.default_rng(seed)
    bases = rng.integers(30, 226, (len(CLASSES), 3))
    for split, n in per_class.items():
        for label, name in enumerate(CLASSES):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image = np.clip(bases[label] + rng.integers(-30, 31, (32, 32, 3)), 0, 255).astype(np.uint8)
                assert cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return Path(root)


def tiny_args(data, out, *extra, epochs=2):
    """Arguments of a tiny CPU training run on data into out."""
    return [*TINY, "--workers", "0", "--epochs", str(epochs), "--data", str(data), "--out", str(out), *map(str, extra)]


def env():
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def start_cli(*args, module="src.train", **popen):
    """The same command, started and not waited for."""
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=REPO_ROOT, env=env(), **popen)


def head_1(*args, module="src.train"):
    """The command piped to `head -1`: its first line read, then the reader gone; (exit code, stderr's lines)."""
    proc = start_cli(*args, module=module, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    return proc.wait(PATIENCE), proc.stderr.read().decode().strip().splitlines()


def cli_error(argv, module="src.train"):
    """MODULE's main(argv) in this process must end in exactly one line `error: ...`, exit 1; returns it."""
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(module).main([str(a) for a in argv])
    message = exc.value.code
    assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message, message
    return message
