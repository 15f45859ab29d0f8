"""Train a model from the command line (the notebooks call the same `src.harness.run.run`):

    python -m src.train --model convmixer_256_8 --trainer onecycle --epochs 25 --data ../shared/cifar10-jpeg

writes OUT/metrics.json (config, data, hardware, history; after every epoch), OUT/checkpoint.pt
(continue a killed run with --resume) and, at the end, OUT/model.pt (the final weights).
Under `torchrun --nproc_per_node N` it trains with DistributedDataParallel. Every failure a user
can cause ends in one line on stderr and a non-zero exit.
"""
import argparse
import os
import socket
import threading
import time
from pathlib import Path

import torch.distributed as dist

from .harness.config import OPTIONS, Config, resolve
from .harness.checkpoint import fate, json_in, stamps
from .harness.cli import RUN_FILES, one_line
from .harness.errors import UserError

LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # torchrun's, for env://
GROUPS = {"experiment": "experiment", "model": "model (default: the --model variant's sizes)",
          "optimisation": "optimisation (default: the recipe's value, else the one shown)", "running": "running"}


def parser(skip=()):
    """The options' flags, but those in skip (src.bench takes the rest)."""
    p = argparse.ArgumentParser(prog="python -m src.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {name: p.add_argument_group(title) for name, title in GROUPS.items()}
    for o in (o for o in OPTIONS if o.name not in skip):
        kind = o.type or type(o.default)
        shown = "" if o.default in (None, False) else f" (default: {o.default:g})" \
            if isinstance(o.default, float) else f" (default: {o.default})"
        kw = dict(dest=o.name, default=o.unset, help=o.help + ("" if o.group == "model" else shown))
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw.update(type=_parse(kind), nargs=o.nargs)
            if isinstance(o.allowed, tuple) and not o.nargs:
                kw["choices"] = o.allowed
        groups[o.group].add_argument(o.flag, **kw)
    return p


def _parse(kind):
    def parse(text):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


def config_from_args(argv=None):
    return config_from_parsed(vars(parser().parse_args(argv)))


def config_from_parsed(args):
    """The Config of parsed arguments (src.bench parses a few more of its own)."""
    return Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})


def main(argv=None):
    p = parser()
    cfg, started, before = config_from_parsed(vars(p.parse_args(argv))), time.time(), {}
    with one_line(lambda: _interrupted(cfg, started, before), p):
        try:
            cfg = resolve(cfg)  # every option checked before any data is read or process group started
            before.update(files=stamps(cfg.out, RUN_FILES))  # what --out held before this run touched it
            if "WORLD_SIZE" in os.environ:
                _join_process_group(cfg)
            from .harness.run import run
            run(cfg)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()


def _join_process_group(cfg):
    """As torchrun starts this process (it sets the variables env:// reads); else one line, not torch's traceback."""
    env = os.environ
    missing = [name for name in LAUNCH_VARIABLES if not env.get(name, "").strip()]
    ranks = [env.get(name, "") for name in ("RANK", "WORLD_SIZE")]
    if missing or not all(r.isdigit() for r in ranks) or not int(ranks[0]) < int(ranks[1]):
        raise UserError(f"WORLD_SIZE={env['WORLD_SIZE']} asks for distributed training, but "
                        f"{', '.join(missing) + ' not set' if missing else f'RANK={ranks[0]} is not a rank of it'}: "
                        f"launch it with torchrun, which sets them, or unset WORLD_SIZE")
    try:  # torch would retry an address that cannot be resolved for half an hour, a warning each second
        socket.getaddrinfo(env["MASTER_ADDR"], None)
    except (OSError, UnicodeError) as err:
        why = getattr(err, "strerror", None) or err
        raise UserError(f"MASTER_ADDR={env['MASTER_ADDR']} cannot be resolved: check the master address torchrun was "
                        f"given, or unset WORLD_SIZE to train in one process ({why})")
    failed = []

    def join():
        try:
            dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
        except BaseException as err:
            failed.append(err)

    waiting = threading.Thread(target=join, daemon=True)  # the rendezvous blocks in C++, deaf to Ctrl-C and SIGTERM
    waiting.start()
    while waiting.is_alive():  # while the other ranks come: here they stop the command, as anywhere else
        waiting.join(0.1)
    if failed and isinstance(failed[0], (ValueError, RuntimeError)):
        raise UserError(f"torch.distributed could not start ({str(failed[0]).splitlines()[0]}): check the master "
                        f"address and port torchrun was given, or unset WORLD_SIZE to train in one process")
    if failed:
        raise failed[0]


def _interrupted(cfg, started, before):
    """The line a Ctrl-C or SIGTERM ends with: --resume is advised only where a checkpoint of this run
    exists; else nothing of it was saved, and it says whether the run --out held before is kept."""
    now = stamps(cfg.out, RUN_FILES)
    then = before.get("files", now)  # not taken yet: nothing was written
    if "checkpoint.pt" in now and (cfg.resume or now["checkpoint.pt"] != then.get("checkpoint.pt")):
        where = _progress(cfg, started)
        where = "as its first epoch was saved" if where.startswith("before") else where
        return f"interrupted {where}; continue with --resume"
    return (f"interrupted before the first epoch ended: nothing of this run was saved{fate(cfg.out, then, now)}; "
            f"rerun the same command to start it")


def _progress(cfg, started):
    """'after epoch k' from the run's metrics.json, which is rewritten after every epoch; a file from
    before this command started is another run's, unless this one resumes it."""
    try:
        path = Path(cfg.out) / "metrics.json"
        if not path.is_file() or (not cfg.resume and path.stat().st_mtime < started):
            raise ValueError("not this run's")
        metrics = json_in(path)
        return f"after epoch {metrics['epochs_done'] - 1} of {metrics['config']['epochs']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "before the first epoch ended"

if __name__ == "__main__":
    main()
