"""Helpers the tests import: a tiny class-folder CIFAR-10 copy, the training CLI in a subprocess."""
import contextlib
import functools
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
# The smallest useful model and run: a ConvMixer-16/1 with 4x4 patches, no workers, on CPU.
TINY_BENCH = ("--model", "convmixer_256_8", "--dim", "16", "--depth", "1", "--patch-size", "4",
              "--batch-size", "16", "--device", "cpu")
TINY_MODEL = (*TINY_BENCH, "--workers", "0")  # src.bench takes no --workers: it times its own


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


def cli_command(*args, module="src.train"):
    return [sys.executable, "-m", module, *map(str, args)]


def cli_env():
    env = dict(os.environ)
    env.pop("WORLD_SIZE", None)  # never start DistributedDataParallel from a test
    # One thread: on a machine shared with other jobs, two spinning threads run 10x slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


# Subprocesses get this long: a 2-core machine busy with other work runs them many times slower than alone.
PATIENCE = 900


def run_cli(*args, timeout=PATIENCE, module="src.train"):
    """`python -m MODULE ARGS` in a subprocess from the repository root; the CompletedProcess
    (text stdout and stderr captured)."""
    return subprocess.run(cli_command(*args, module=module), cwd=REPO_ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout)


def start_cli(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, module="src.train"):
    """The same command, started and not waited for (a Popen)."""
    return subprocess.Popen(cli_command(*args, module=module), cwd=REPO_ROOT, env=cli_env(), stdout=stdout,
                            stderr=stderr)


def wait_until(ready, proc, pause=0.005):
    """Poll ready() while proc runs, for PATIENCE seconds at most."""
    deadline = time.monotonic() + PATIENCE
    while proc.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(pause)


def tiny_args(data_root, out, *extra, epochs=3):
    """Command-line arguments of a tiny CPU run on data_root into out."""
    return [*TINY_MODEL, "--epochs", str(epochs), "--data", str(data_root), "--out", str(out), *map(str, extra)]


def config_kwargs(data_root, out, epochs=3):
    """The tiny run of tiny_args as Config(**...) keywords, for tests that call run() directly."""
    return dict(model="convmixer_256_8", dim=16, depth=1, patch_size=4, batch_size=16, workers=0, device="cpu",
                epochs=epochs, data=str(data_root), out=str(out))


@functools.cache
def command_flags(module="src.train"):
    """The flags MODULE's command line takes, as its usage line lists them."""
    import importlib

    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), contextlib.suppress(SystemExit):
        importlib.import_module(module).main(["--help"])
    return set(re.findall(r"--[a-z][a-z0-9-]*", shown.getvalue().split("\n\n")[0]))


def flags_named(message):
    """The flags a message names (a path's dashes are not flags)."""
    return set(re.findall(r"(?<![\w/.-])--[a-z][a-z0-9-]*", message))


def cli_error(argv, module="src.train"):
    """MODULE's main(argv) must exit with one line `error: ...` (what the command prints), naming no flag
    that MODULE lacks; returns it."""
    import importlib

    import pytest
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(module).main([str(a) for a in argv])
    message = exc.value.code
    assert isinstance(message, str) and message.startswith("error: "), message
    assert "\n" not in message, message
    foreign = flags_named(message) - command_flags(module)
    assert not foreign, f"{message} (names {', '.join(sorted(foreign))}, which {module} lacks)"
    return message
