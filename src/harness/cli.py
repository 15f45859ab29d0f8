"""The contract every command keeps (`python -m src.train`, `src.evaluate`, `src.bench`,
`src.notebook`, `src.reproduce`, `src.sweep`): a failure the user can mend ends in one line
`error: ...` naming the flag or file and what to do, exit 1; bad usage exits 2 (argparse); Ctrl-C
exits 130 and SIGTERM 143, each with one line saying where things stand. Values are checked before
any work starts, so a refused command has done nothing."""
import argparse
import errno
import importlib
import json
import math
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import torch

from .checkpoint import write_text
from .errors import DataNotFound, Diverged, OneLine, UserError

RUN_FILES = ("metrics.json", "checkpoint.pt", "model.pt")  # what a run writes (src/harness/run.py)

FAILURES = (UserError, DataNotFound, Diverged, OSError, torch.OutOfMemoryError)


class _Stop:
    signal = None  # the Ctrl-C or SIGTERM that is stopping the command, once one came


def _stop(signum, frame):
    """The first Ctrl-C or SIGTERM stops the command; any later one is ignored, so that it cannot cut
    the stopping short (src.sweep's runs left running on their own), and the exit code says the first."""
    _Stop.signal = _Stop.signal or signum
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


class _QuietRace:
    """sys.unraisablehook for a second signal that came with the first (SIGTERM and Ctrl-C at once): its
    handler is already set to ignore it, which Python reports as an error nobody can catch. It is ignored,
    as it should be; anything else goes to the hook before."""

    def __init__(self, then):
        self.then = then

    def __call__(self, unraisable):
        if not (isinstance(unraisable.exc_value, OSError) and str(unraisable.exc_value).endswith(
                "ignored due to race condition")):
            self.then(unraisable)


@contextmanager
def signals_deferred():
    """Ctrl-C or SIGTERM waits until the block ends, then acts as it would have: for steps that must not
    be cut in two (workers being forked, a run started but not yet recorded). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came = []
    handlers = {s: signal.signal(s, lambda signum, frame: came.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    for signum in came[:1]:
        if callable(handlers[signum]):
            handlers[signum](signum, None)
        elif handlers[signum] == signal.SIG_DFL:
            signal.raise_signal(signum)


def stop_requested():
    """True once Ctrl-C or SIGTERM came: where Python swallows the KeyboardInterrupt (a finaliser
    running at that moment), the engine still stops at its next batch."""
    return _Stop.signal is not None


@contextmanager
def one_line(interrupted=lambda: "interrupted", parser=None):
    """Run a command's work: its failures become `error: ...` and exit 1, their advice the phrases of
    the flags `parser` (the command's) has; Ctrl-C (or SIGTERM) the line `interrupted()` returns and
    exit 128 + the signal."""
    flags = None if parser is None else set(parser._option_string_actions)
    if sys.stdout is None:  # Python's stand-in for a closed stdout (>&-): every print would vanish, silently
        sys.exit("error: stdout is closed, so the command's output would be lost: send it to a file or pipe")
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")  # a path's undecodable bytes, a name in a strict encoding
    _Stop.signal = None
    if not isinstance(sys.unraisablehook, _QuietRace):  # kept to the end: the race can come while Python shuts down
        sys.unraisablehook = _QuietRace(sys.unraisablehook)
    before = signal.signal(signal.SIGINT, _stop), signal.signal(signal.SIGTERM, _stop)  # replaces src/__init__'s
    try:
        yield
    except KeyboardInterrupt:
        _say_interrupted(interrupted)
    except FAILURES as err:
        if isinstance(err, OSError) and err.filename is None and err.errno in (errno.EPIPE, errno.ENOSPC):
            # a print to /dev/full, or to a pipe closed early (head); files go through atomic_write, which names them
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's shutdown flushes it again
            err = UserError(f"stdout cannot be written ({err.strerror}): what the command wrote to files is kept; "
                            f"send its output to a file or pipe that takes all of it")
        sys.exit(f"error: {describe(err, flags)}")
    except RuntimeError as err:
        if stop_requested():  # a DataLoader worker that the same signal stopped first
            _say_interrupted(interrupted)
        if "can't allocate memory" not in str(err):
            raise
        sys.exit(f"error: {describe(err, flags)}")
    finally:  # done: a command's work is over, so a late Ctrl-C changes nothing (Python's shutdown would die
        # of it, silently); a caller's handlers come back (a test calling main(), say)
        command = getattr(sys.modules.get("src"), "_interrupted_while_starting", None)
        for signum, handler in zip((signal.SIGINT, signal.SIGTERM), before):
            signal.signal(signum, signal.SIG_IGN if command is not None and handler is command else handler)


def _say_interrupted(interrupted):
    """Says where the command stopped and exits; a second Ctrl-C or SIGTERM meanwhile, or while Python
    shuts down, changes nothing (Python keeps ignored signals ignored to the end)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"\n{interrupted()}", file=sys.stderr, flush=True)
    sys.exit(128 + (_Stop.signal or signal.SIGINT))


def describe(err, flags=None):
    """One line for a failure, advising only `flags` (None: any); running out of memory says what to
    shrink."""
    if isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err):
        shrink = [flag for flag in ("--batch-size", "--dim", "--depth") if flags is None or flag in flags]
        fix = f"use a smaller {', '.join(shrink[:-1])} or {shrink[-1]}" if len(shrink) > 1 else \
            f"use a smaller {shrink[0]}" if shrink else "free some of the device's memory"
        return f"out of memory: the model or batch does not fit on this device; {fix}"
    text = " ".join((err.says(flags) if isinstance(err, OneLine) else str(err)).split())
    return text or type(err).__name__


def writable_file(path, flag, inputs=()):
    """Check, before any work, that a result file can be written at path without replacing a run's
    files or the command's inputs (files, or folders such as the data); returns it as a Path."""
    # a trailing slash names a folder: Path would drop it, and a file of the folder's name be written
    if not str(path).strip() or str(path).endswith(os.sep):
        raise UserError(f"{flag} {str(path)!r}: give a file name")
    path = Path(path)
    if path.is_symlink():  # the file is replaced whole, so the link would be (/dev/stdout, as root)
        raise UserError(f"{flag} {path}: a link (to {os.readlink(path)}), which writing would replace; give the "
                        f"file's own path")
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name")
    if path.name in RUN_FILES or any(within(path, Path(other)) for other in inputs):
        raise UserError(f"{flag} {path}: would replace a run's file or this command's input; give another name")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {path}: {folder} is a file, not a folder; give another path")
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: the folder {folder} does not exist; create it or give another path")
    if path.exists() and not path.is_file():
        raise UserError(f"{flag} {path}: not a regular file; give a file name")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{flag} {path}: the folder {folder} cannot be written; give another path")
    return path


def check_targets(paths, flag, appended=False):
    """Before any work: none of the files a command will write is something else (a folder, a pipe),
    which would be found only once the work is done; nor, where it appends to them (logs), a link, through
    which it would write into another file (an image of the data, say)."""
    paths = [Path(p) for p in paths]
    linked = next((p for p in paths if appended and p.is_symlink()), None)
    if linked:
        raise UserError(f"{linked}: a link, where this command appends to a file of its own (it would write into "
                        f"{os.readlink(linked)}); remove it, or give another {flag}")
    odd = next((p for p in paths if p.exists() and not p.is_file()), None)
    if odd:
        raise UserError(f"{odd}: not a regular file (a folder?), where this command writes one; remove it, or give "
                        f"another {flag}")


def os_problem(path):
    """Why the operating system cannot look path up (a name too long, a loop of links, a NUL byte), or
    None; whether it must exist is each command's own check."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        return err.strerror or str(err)
    except ValueError as err:
        return str(err)
    return None


def usable_path(text):
    """An argparse type for a path flag: one the operating system can look up (usage error, exit 2)."""
    problem = os_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: {problem}; give another path")
    return text


def check_matplotlib():
    """matplotlib refuses an MPLBACKEND it does not know when it is imported, with a traceback."""
    try:
        importlib.import_module("matplotlib.pyplot")
    except ValueError:
        raise UserError(f"MPLBACKEND={os.environ.get('MPLBACKEND')!r} is not a backend matplotlib knows: unset it, or "
                        f"set MPLBACKEND=Agg") from None


def within(path, other):
    """path is other, or lies inside it (links resolved)."""
    path, other = path.resolve(), other.resolve()
    return path == other or other in path.parents


def write_json(path, value, flag="--json"):
    """A result file, written whole or not at all (a full disk is one line naming it)."""
    write_text(path, json.dumps(value, indent=1), flag)


def writable_folder(path, flag, inputs=()):
    """Check, before any work, that files can be written into the folder path, or that it can be made
    (it is made only when something is written into it), outside the command's inputs."""
    if not str(path).strip():
        raise UserError(f"{flag} {str(path)!r}: give a folder")
    path = Path(path)
    if any(within(path, Path(other)) for other in inputs):
        raise UserError(f"{flag} {path}: inside this command's input; give a folder outside it")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError(f"{flag} {path}: {existing} is not a folder this command can write into; give another")
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
