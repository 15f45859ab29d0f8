"""What every command shares, so each ends the same way: flags from the declarations, one line per failure."""
import argparse
import contextlib
import os
import shlex
import signal
import sys
from pathlib import Path

import torch

from .config import BY_NAME, OPTIONS, Config
from .io import UserError
from .run import RUN_FILES


@contextlib.contextmanager
def command(interrupted=lambda: "interrupted"):
    """A mendable failure: `error: ...`, exit 1; Ctrl-C, SIGTERM, SIGHUP: interrupted()'s line, exit 128 + signal."""
    came, signals = [], (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def stop(signum, frame):
        came.append(signum)
        for other in signals:  # a second one must not cut the stopping short
            signal.signal(other, signal.SIG_IGN)
        raise KeyboardInterrupt

    before = [signal.signal(signum, stop) for signum in signals]
    try:
        yield
    except (KeyboardInterrupt, BrokenPipeError) as err:  # a pipe's reader gone (`| head`) stops it as SIGPIPE would
        if isinstance(err, BrokenPipeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else Python's last flush fails again
        with contextlib.suppress(BrokenPipeError):  # stderr may be that pipe too
            print(f"\n{interrupted()}", file=sys.stderr, flush=True)
        sys.exit(128 + (came[0] if came else signal.SIGPIPE if isinstance(err, BrokenPipeError) else signal.SIGINT))
    except UserError as err:
        sys.exit(f"error: {' '.join(str(err).split())}")
    except OSError as err:  # a folder that cannot be made or read
        sys.exit(f"error: {err.filename or ''}{': ' if err.filename else ''}{err.strerror or err}: check that path, "
                 f"or give another")
    except RuntimeError as err:  # torch.OutOfMemoryError is one, and a CPU's allocation failure says so
        if not isinstance(err, torch.OutOfMemoryError) and "can't allocate memory" not in str(err):
            raise
        sys.exit("error: out of memory: the model or batch does not fit on this device; use a smaller "
                 "--batch-size, --dim or --depth")
    finally:  # the caller's handlers come back; src/__init__'s start-up one would say nothing was done: ignored
        for signum, handler in zip(signals, before):
            starting = getattr(handler, "__name__", "") == "_interrupted_while_starting"
            signal.signal(signum, signal.SIG_IGN if starting else handler)


def result_file(flag, path, inputs=()):
    """A command's result file, checked before any work: never a run's own file, nor an input or inside one."""
    path, where = Path(path), Path(path).resolve()
    if path.is_dir():
        raise UserError(f"{flag} {path}: a folder; give a file name")
    if not where.parent.is_dir() or not os.access(where.parent, os.W_OK):
        raise UserError(f"{flag} {path}: its folder does not exist or cannot be written; give another path")
    if (inside := [i for i in inputs if Path(i).resolve() in (where, *where.parents)]) or path.name in RUN_FILES:
        raise UserError(f"{flag} {path}: " + (f"inside {inside[0]}, this command's input; give a path outside it"
                                              if inside else "would replace a run's file; give another name"))
    return path


def parser(prog="python -m src.train", description=None, skip=()):
    """The options' flags (but those in skip), grouped as OPTIONS groups them."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {name: p.add_argument_group(name) for name in ("experiment", "model", "optimisation", "running")}
    for o in (o for o in OPTIONS if o.name not in skip):
        kind = o.type or type(o.default)
        shown = "" if o.default in (None, False) or o.group == "model" else f" (default: {o.default})"
        kw = dict(dest=o.name, default=o.unset, help=o.help + shown)
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw.update(type=kind, nargs=o.nargs, metavar=o.name.upper() if o.nargs else None,
                      choices=o.allowed if isinstance(o.allowed, tuple) and not o.nargs else None)
        groups[o.group].add_argument(o.flag, **kw)
    return p


def config_from_args(argv=None, p=None):
    args = vars((p or parser()).parse_args(argv))
    return Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items() if k in BY_NAME})


def command_line(cfg, always=("model", "trainer", "recipe", "epochs")):
    """`python -m src.train ...` that config_from_args turns into cfg: the values given, and `always`."""
    words = []
    for o in OPTIONS:
        value = getattr(cfg, o.name)
        if value == o.unset and o.name not in always:
            continue
        if isinstance(value, bool):
            words.append(o.flag if value else "--no-" + o.flag[2:])
        else:
            words += [o.flag, *map(str, value if isinstance(value, (tuple, list)) else (value,))]
    return shlex.join(["python", "-m", "src.train", *words])
