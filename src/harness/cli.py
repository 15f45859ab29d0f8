"""The contract every command keeps (`python -m src.train`, `src.evaluate`, `src.bench`,
`src.notebook`, `src.reproduce`, `src.sweep`): a failure the user can mend ends in one line
`error: ...` naming the flag or file and what to do, exit 1; bad usage exits 2 (argparse); Ctrl-C
exits 130 and SIGTERM 143, each with one line saying where things stand. Values are checked before
any work starts, so a refused command has done nothing."""
import argparse
import math
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import DataNotFound, Diverged, UserError

FAILURES = (UserError, DataNotFound, Diverged, OSError, torch.OutOfMemoryError)


class _Stop:
    signal = signal.SIGINT


def _terminated(signum, frame):
    """SIGTERM does what Ctrl-C does: the command stops where it is and says so."""
    _Stop.signal = signum
    raise KeyboardInterrupt


@contextmanager
def one_line(interrupted=lambda: "interrupted"):
    """Run a command's work: its failures become `error: ...` and exit 1, Ctrl-C (or SIGTERM) the
    line `interrupted()` returns and exit 128 + the signal."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # undoes src/__init__'s start-up handler
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while saying so changes nothing
        print(f"\n{interrupted()}", file=sys.stderr, flush=True)
        sys.exit(128 + _Stop.signal)
    except FAILURES as err:
        sys.exit(f"error: {describe(err)}")
    except RuntimeError as err:
        if "can't allocate memory" not in str(err):
            raise
        sys.exit(f"error: {describe(err)}")


def describe(err):
    """One line for a failure; running out of memory says what to shrink."""
    if isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err):
        return ("out of memory: the model or batch does not fit on this device; use a smaller --batch-size, "
                "--dim or --depth")
    text = " ".join(str(err).split())
    return text or type(err).__name__


def writable_file(path, flag):
    """Check, before any work, that a result file can be written at path; returns it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: the folder {folder} does not exist; create it or give another path")
    try:
        existed = path.exists()
        with open(path, "a"):
            pass
        if not existed:
            path.unlink()
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot be written ({err.strerror or err}); give another path") from None
    return path


def writable_folder(path, flag):
    """Check, before any work, that files can be written into the folder path (made if missing)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        writable_file(path / ".write-test", flag)
    except (OSError, UserError) as err:
        reason = err.strerror if isinstance(err, OSError) else "cannot be written"
        raise UserError(f"{flag} {path}: {reason or err}; give another folder") from None
    return path


def number(kind, low, strict=False):
    """An argparse type: a finite number >= low (> low if strict), so a bad value is a usage error
    (exit 2) before any work starts."""
    what = "an integer" if kind is int else "a finite number"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {what} {'>' if strict else '>='} {low:g}, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse
