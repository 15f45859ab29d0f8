"""What src.sweep and src.reproduce share: their options, their runs (each checked before any starts), how they
end: a result other flags or data made is refused, not skipped or continued."""
import os
import re
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

from . import data, io
from .cli import command, config_from_args
from .config import device_of, fingerprint, resolve
from .io import FEWER, UserError
from .pool import ROOT, STOP_GRACE, Job, run_jobs
from .run import hold, image_counts

CALL = 570  # seconds of one call on a lent GPU (10 minutes, less its start and the packing of results)
NOTEBOOK_OF = {"convmixer_256_8": "ConvMixer_experimentation_2", "vit_seed": "ViT_with_convolution"}
IMPROVED = ("--recipe", "improved")
LISTED = cache(data.split_listing)  # each data folder listed once per call, not once per run (60,000 files: ~1 s)
# --quick: every run tiny (the notebooks' quick images, two epochs, small models): seconds on a CPU.
QUICK = ("--batch-size", "16", "--train-subset", "256", "--test-subset", "64", "--workers", "0")
QUICK_MODEL = {"convmixer_256_8": ("--dim", "32", "--depth", "2"),
               "vit_seed": ("--dim", "64", "--depth", "1", "--heads", "2", "--dim-head", "32", "--mlp-dim", "64")}


def train_flags(model, flags, args):
    """A 25-epoch one-cycle run of model with flags; with --quick, its tiny version (flags' own values kept)."""
    tiny = (*QUICK, *QUICK_MODEL[model])
    quick = [word for pair in zip(tiny[::2], tiny[1::2]) if pair[0] not in flags for word in pair] if args.quick else []
    return ("--model", model, "--trainer", "onecycle", "--epochs", "2" if args.quick else "25", *flags,
            "--data", args.data, "--device", args.device, *quick)


def portable(path):
    """A path relative to the repository where it is near: committed logs name no home folder."""
    relative = os.path.relpath(Path(path).resolve(), ROOT)
    return relative if not relative.startswith(os.path.join("..", "..")) else str(Path(path).resolve())


def train_job(name, folder, flags):
    args = (*map(str, flags), "--out", portable(folder))
    return job(name, folder, lambda: config_from_args(args), args)


def job(name, folder, settings, args, module="src.train", result="metrics.json", alone=False, shown=lambda made: True):
    """settings() checked with its data before any run starts: a result is its own if made alike on the same images."""
    try:
        cfg = resolve(settings())
        have = image_counts(cfg, LISTED)  # a copy too small for the run, refused before any starts
    except (UserError, SystemExit) as err:  # its runs' sizes are fixed: a fuller copy is the remedy
        raise UserError(f"{name}: {re.sub(FEWER, '', str(err))}") from None
    folder, wanted = Path(folder), fingerprint(cfg)

    def stale():
        made = io.read(folder / result)
        if made is None:  # none, or a damaged one, which the tables name (src.report) before any run starts
            return None
        then = fingerprint(made.get("config", {}))
        if then != wanted:
            return "other data made it" if {**then, "data": wanted["data"]} == wanted else "other flags made it"
        if any(made.get("data", {}).get(k, v) != v for k, v in have.items() if k.endswith("listing")):
            return "other data made it"
        weights = folder / ("model.pt" if made.get("finished") else "checkpoint.pt")
        return None if result != "metrics.json" or io.whole(weights) else f"its {weights.name} is gone or damaged"

    def done():
        made = io.read(folder / result)
        finished = made is not None and made.get("finished", True) is True  # bench.json: no "finished"
        return finished and stale() is None and shown(made)

    return Job(name, tuple(map(str, args)), folder, done, stale, module, alone)


def seeded(folder, seeds):
    """(seed, folder) of each seed's run: seed 0 in folder, seed s in folder-seed-s."""
    return [(seed, folder if seed == 0 else folder.with_name(f"{folder.name}-seed-{seed}")) for seed in seeds]


def add_arguments(p):
    p.add_argument("--data", default=os.environ.get("CIFAR10_DIR"), type=os.path.expanduser,  # --data=~/x too
                   help="CIFAR-10: class folders or torchvision's folder (default: $CIFAR10_DIR)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="run each setting with each of these seeds")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N for every run; auto: a GPU if any")
    p.add_argument("--jobs", type=int, help="runs at once (default: 6 on a GPU, 2 on a CPU)")
    p.add_argument("--budget", type=float, default=CALL, help=f"wall-clock seconds for the whole call (default: "
                   f"{CALL}), stopping its runs {STOP_GRACE} s before; the same command continues them")
    p.add_argument("--force", action="store_true", help="redo runs whose finished results exist")
    p.add_argument("--quick", action="store_true", help="tiny settings, every step in seconds (CI, a CPU)")
    p.add_argument("--out", type=os.path.expanduser, help="where the runs go (with --quick: a new temporary folder)")


def run_all(args, p, default_out, jobs_in, write):
    """Run the jobs (jobs_in(out)), write(out) after each ends and once more; end as the runs ended."""
    if not args.data or not any((Path(args.data) / name).is_dir() for name in ("train", "cifar-10-batches-py")):
        p.error(f"--data {args.data}: give a CIFAR-10 copy: class folders or torchvision's (or set CIFAR10_DIR)")
    if not args.budget > STOP_GRACE:
        p.error(f"--budget {args.budget:g}: give more than the {STOP_GRACE} s that stopping the runs takes")
    if args.jobs is not None and args.jobs < 1 or min(args.seeds) < 0:
        p.error("--jobs: give at least 1; --seeds: give seeds of 0 or more")
    args.seeds = sorted(set(args.seeds))
    out = Path(args.out or (tempfile.mkdtemp(prefix="quick-") if args.quick else default_out)).resolve()
    if Path(args.data).resolve() in (out, *out.parents):  # refused before the folder and its lock go into the data
        p.error(f"--out {out}: inside --data {args.data}; give a folder outside the data")
    LISTED.cache_clear()  # the data as it is at this call
    args.data, jobs, began = portable(args.data), [], time.time()
    os.chdir(ROOT)  # where every run starts: a relative --data, given or recorded, means the same here as there

    def again():  # after --force, the runs it did not get to redo still hold results older than this call
        held = [str(job.folder) for job in jobs for name in ("metrics.json", "bench.json") if args.force and
                (job.folder / name).is_file() and (job.folder / name).stat().st_mtime < began]
        return (f"delete {', '.join(held)}, then " if held else "") + "rerun the same command" + \
            (f" with --out {out}" if args.quick and not args.out else "") + (" without --force" if args.force else "")
    with command(lambda: f"interrupted: {again()} to continue (finished runs are skipped, stopped ones resume "
                         f"from their checkpoints, or start again without one)"):
        deadline = time.monotonic() + args.budget - STOP_GRACE
        args.device = device_of(args.device)
        args.jobs = args.jobs or (2 if args.device == "cpu" else 6)
        lock = hold(out)  # a second sweep or reproduction into it would report this one's runs as its own
        io.remove_leftovers(out)
        jobs += jobs_in(out)
        for job in [job for job in jobs if (job.folder / ".lock").exists()]:  # before any run: no other process's
            hold(job.folder).release()
        refused = [f"{job.folder} holds a run that is not {job.name}'s to skip or continue ({why})" for job in jobs
                   if (why := not args.force and job.stale())]  # all of them, in one line
        if refused:
            raise UserError(f"{'; '.join(refused)}: delete the folder{'s' * (len(refused) > 1)} to redo "
                            f"{'them' if len(refused) > 1 else 'it'} (--force redoes every run of this call)")
        write(out)  # a damaged result file, or a README without its markers, is named now, not after the runs
        outcomes = run_jobs(jobs, args.jobs, deadline, args.force, lambda: write(out))
        sys.stdout.write(write(out))
        lock.release()
    failed = [name for name, what in outcomes.items() if what.startswith("failed")]
    left = [name for name, what in outcomes.items() if not what.startswith(("finished", "failed"))]
    if failed:
        sys.exit(f"error: {len(failed)} of {len(outcomes)} runs failed: {', '.join(failed)}; the first "
                 f"{outcomes[failed[0]]}: mend what its log says, then {again()} (finished runs are skipped)")
    if left:
        sys.exit(f"error: {len(left)} of {len(outcomes)} runs did not finish within --budget ({', '.join(left)}): "
                 f"{again()} to continue them (stopped runs resume from their checkpoints, or start again without one)")

