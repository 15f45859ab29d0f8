"""The command line src.reproduce and src.sweep share: their options, checked before any run starts,
and how they end (one line on stderr for what did not finish)."""
import os
import sys
import tempfile
import time
from pathlib import Path

from ..data import split_size
from .cli import check_targets, number, os_problem, usable_path, within, writable_folder
from .errors import UserError
from .machine import check_device
from .report import damage
from .scheduler import STOP_GRACE, portable

def rerun(force):
    """How to continue: the same command again, but without --force, which would redo every run anew."""
    return "rerun the same command without --force" if force else "rerun the same command"


def interrupted(force):
    return (f"interrupted: {rerun(force)} to continue (finished runs are skipped, stopped ones resume from their "
            f"checkpoints)")


def add_arguments(parser, budget):
    """The options src.reproduce and src.sweep share."""
    parser.add_argument("--data", default=os.environ.get("CIFAR10_DIR"), type=usable_path,
                        help="CIFAR-10: class folders or torchvision's folder (default: $CIFAR10_DIR)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N for every run (default: each run's auto, a GPU if any)")
    parser.add_argument("--jobs", type=number(int, 1), help="runs at once (default: 6 on a GPU, 2 on CPU)")
    parser.add_argument("--budget", type=number(float, 0, strict=True), default=budget,
                        help=f"wall-clock seconds for the whole call (default: {budget:g}); runs still going "
                             f"{STOP_GRACE} s before its end are stopped, and the same command continues them")
    parser.add_argument("--force", action="store_true", help="redo runs whose finished results exist")
    parser.add_argument("--quick", action="store_true", help="tiny settings, every step in seconds (CI, a CPU)")


def settle(args, parser, default_out):
    """Check the shared options and fill in their defaults: args.out (default_out; with --quick a new
    temporary folder) and args.deadline, when the runs still going are stopped."""
    if not args.data:
        parser.error("no data: pass --data PATH or set CIFAR10_DIR")
    if not Path(args.data).is_dir():
        parser.error(f"--data {args.data}: no such folder")
    sizes = split_size(args.data, True), split_size(args.data, False)  # class folders or torchvision's, before any run
    args.data, args.given_data = portable(args.data), args.data  # the messages name it as the user gave it
    if args.device is not None:
        args.device = check_device(args.device)  # once here, not in every run it would start
    if args.budget <= STOP_GRACE:
        parser.error(f"--budget {args.budget:g}: give more than the {STOP_GRACE} s that stopping the runs takes")
    if args.out is not None and (not args.out.strip() or Path(args.out).exists() and not Path(args.out).is_dir()):
        parser.error(f"--out {args.out!r}: give a folder")
    if args.out is not None and within(Path(args.out), Path(args.given_data)):
        parser.error(f"--out {args.out}: inside --data {args.given_data}; give a folder outside the data")
    if args.out is not None:
        writable_folder(args.out, "--out")
    if args.jobs is None:
        import torch
        args.jobs = 6 if args.device != "cpu" and torch.cuda.is_available() else 2
    if args.quick:
        from ..notebook import lacks  # --quick runs the notebooks' quick mode's images
        short = lacks("quick", sizes)
        if short:
            parser.error(f"--quick {short[0]}; --data {args.given_data} {short[1]}: give a larger copy")
    args.deadline = time.monotonic() + args.budget - STOP_GRACE
    args.out = Path(args.out).resolve() if args.out else Path(tempfile.mkdtemp(prefix="quick-")) if args.quick \
        else default_out
    return args


def check_results(jobs, force):
    """Before any run starts: the result file (metrics.json, bench.json) of each job, which the table or
    report reads, must be whole; --force redoes their runs instead. Returns the files the report leaves out
    while they are still damaged (those --force redoes)."""
    for path in (path for job in jobs for path in (job.folder, job.folder / job.result)):
        if why := os_problem(path):  # a loop of links (probe 20)
            raise UserError(f"{path}: {why}; remove it, or give another --out")
    files = frozenset(job.folder / job.result for job in jobs)
    for path in () if force else sorted(files):
        err = (path.exists() or path.is_symlink()) and damage(path)
        if err:
            raise UserError(f"{err.what}: delete its folder, or pass --force to redo its run")
    seen = {}
    for job in jobs:
        same = seen.setdefault(job.folder.resolve(), job)
        if same is not job:  # one run would replace the other, and the report show it twice
            raise UserError(f"{job.folder} and {same.folder} are one folder (a link?), where {job.name} and "
                            f"{same.name} each write their run: remove the link, or give another --out")
        if job.folder.exists() and not job.folder.is_dir():
            raise UserError(f"{job.folder} is not a folder, where {job.name} writes its run: remove it, or give "
                            f"another --out")
    check_targets([job.folder / job.log for job in jobs], "--out", appended=True)
    check_targets([path for job in jobs for path in job.writes], "--out")  # else found by a run, once others ran
    for job in () if force else jobs:  # its run would refuse to continue it, after the others started
        why = job.stale and job.stale()
        if why:
            raise UserError(f"{job.folder} holds a run that is not {job.name}'s to skip or continue ({why}): pass "
                            f"--force to redo it, or delete its folder")
    return files if force else frozenset()


def check_batches(jobs, data, force):
    """Before any run starts: each run that will start has a full batch per epoch."""
    have = split_size(data, True)
    for job in jobs:
        if job.batch > min(job.images or have, have) and (force or not job.is_done()):
            raise UserError(f"--data {data} holds {have:,} training images, fewer than a batch of {job.batch} that "
                            f"{job.name} trains on (an epoch would have no full batch): point --data at a larger "
                            f"copy, or pass --quick")


def summary(outcomes, force=False):
    """Exit as the runs ended: 0 when every one finished; else one line on stderr naming the runs that
    failed (their logs say why) or, when none failed, those the budget stopped."""
    failed = {name: what for name, what in outcomes.items() if what.startswith("failed")}
    left = [name for name, what in outcomes.items() if not what.startswith(("finished", "failed"))]
    if failed:
        name, what = next(iter(failed.items()))
        sys.exit(f"error: {len(failed)} of {len(outcomes)} runs failed: {', '.join(failed)}; the first {what}: "
                 f"mend what its log says, then {rerun(force)} (finished runs are skipped)")
    if left:
        sys.exit(f"error: {len(left)} of {len(outcomes)} runs did not finish within --budget ({', '.join(left)}): "
                 f"{rerun(force)} to continue them (finished runs are skipped, stopped ones resume from their "
                 f"checkpoints)")
    sys.exit(0)
