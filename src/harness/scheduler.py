"""Independent runs as concurrent subprocesses on one GPU (or a few CPU cores) within a wall-clock
budget: what `python -m src.reproduce` and `python -m src.sweep` share.

A run rewrites its metrics.json and checkpoint after every epoch, so the scheduler shows one line
per epoch by reading that file, can stop runs when the budget runs out (the next call continues
them from their checkpoints) and skips runs whose finished results already exist.
"""
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..train import config_from_args
from .checkpoint import changed_images, json_in, load, whole
from .config import fingerprint, resolve
from .errors import DataNotFound, UserError
from .executor import SHARED_DEVICE
from .machine import all_cores
from .cli import signals_deferred
from .run import RUN_FILES, another_runs, split_counts

ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE = 10  # seconds a stopped run gets to save and say where it stopped, before it is killed
POLL = 0.5


def read_json(path):
    """The JSON object in path; None where there is none (no file, not one, or damaged: src.sweep and
    src.reproduce check their result files before any run starts, src/harness/batch.py)."""
    try:
        value = json_in(path) if Path(path).is_file() else None  # a pipe would block
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def finished(metrics_path):
    return (read_json(metrics_path) or {}).get("finished") is True


def _numbers(*values):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def portable(path):
    """A path as the commands and logs show it: relative to the repository root where it is
    near it (../shared/cifar10-jpeg), else absolute, so committed logs name no home folder."""
    try:
        path = Path(path).resolve()
    except (OSError, RuntimeError):  # a loop of links: batch.check_results refuses it, before any run (probe 20)
        path = Path(os.path.abspath(path))
    relative = os.path.relpath(path, ROOT)
    return relative if not relative.startswith(os.path.join("..", "..")) else str(path)


@dataclass(eq=False)
class Job:
    name: str                     # how progress lines name it: its folder below the output root
    module: str                   # run as `python -m MODULE ARGS` from the repository root
    args: tuple
    folder: Path                  # its metrics.json (or bench.json) and log
    log: str = "train.log"
    done: Callable = None         # () -> bool, its finished result exists; default: metrics.json says so
    stale: Callable = None        # () -> why the run its folder holds is not its own to skip or continue
    resume: tuple = ("--resume",)  # what continues a partial run
    replace: tuple = ("--overwrite",)  # what replaces it (--force)
    cpu_bound: bool = False       # feeds the GPU from DataLoader workers: one such job at a time
    alone: bool = False           # a timing: starts when nothing runs, and nothing starts beside it
    result: str = "metrics.json"  # the file in folder that the tables read
    batch: int = 0                # its batch and training images (None: the whole split), checked up front
    images: int = None
    writes: tuple = ()            # other files it writes whole (an executed notebook, figures), checked up front

    def is_done(self):
        return self.done() if self.done else finished(self.folder / "metrics.json")

    def epochs(self):
        """(epochs done, epochs wanted, test accuracy) from its metrics.json; None before the first."""
        m = read_json(self.folder / "metrics.json") or {}
        now = m.get("epochs_done"), (m.get("config") if isinstance(m.get("config"), dict) else {}).get("epochs"), \
            m.get("final_test_acc")
        return now if _numbers(*now) else None

    def args_now(self, force):
        held = any((self.folder / name).exists() for name in RUN_FILES)
        return (*self.args, *(self.replace if force else self.resume)) if held else self.args


def train_job(name, folder, flags, cpu_bound=False):
    """`python -m src.train FLAGS --out FOLDER`, its log beside its metrics; its flags are checked now,
    before any run starts, and a finished run in FOLDER counts as done only if these flags made it."""
    args = (*map(str, flags), "--out", portable(folder))
    with _quiet_exit(f"{name}: "):
        cfg = resolve(config_from_args(args))
    wanted, images, folder = fingerprint(cfg), images_in(cfg.data, cfg.download), Path(folder)
    # a stopped run is not done, so done() never loads its checkpoint; stale() does, once, before any run
    return Job(name, "src.train", args, folder, cpu_bound=cpu_bound, batch=cfg.batch_size, images=cfg.train_subset,
               done=lambda: finished(folder / "metrics.json") and held_run(folder, images, wanted)[0],
               stale=lambda: held_run(folder, images, wanted)[1])


def images_in(data, download=False):
    """The counts and listings of the splits data holds now (None where it holds none to list)."""
    try:
        return split_counts(data, download)
    except (DataNotFound, UserError):  # src.sweep and src.reproduce refuse such data before any run
        return None


def held_run(folder, images, wanted=None):
    """(done, why not) for the run in folder, as a run on these images (a path's data can change) of these
    flags (a fingerprint; None: any) would find it: (True, None) for its finished run with its weights whole;
    (False, None) for nothing yet or its stopped run, to continue from a whole checkpoint; else (False, why
    it can be neither skipped nor continued), in words."""
    metrics = read_json(folder / "metrics.json")
    if metrics is None:  # not started, or stopped before its first epoch ended (a damaged file is refused before)
        return False, weights_gone(folder, "checkpoint.pt", missing=None)
    try:
        made = wanted is None or fingerprint(metrics.get("config")) == wanted
    except (AttributeError, TypeError, ValueError):  # a damaged config
        made = False
    finished = metrics.get("finished") is True
    why = "other flags made it" if not made else "other data made it" if images and changed_images(
        metrics.get("data"), images) else weights_gone(folder, "model.pt" if finished else "checkpoint.pt")
    if not (finished or why) and (folder / "checkpoint.pt").exists():  # its run would refuse it, once others ran
        try:
            foreign = another_runs(load(folder / "checkpoint.pt"), metrics)
        except (AttributeError, TypeError, ValueError) as err:  # unreadable (a UserError), or a damaged config
            return False, getattr(err, "what", f"its metrics.json's config is damaged ({err})")
        why = "its checkpoint.pt was not saved by the run its metrics.json records" if foreign else None
    return finished and not why, why


def weights_gone(folder, name="model.pt", missing="gone"):
    """Why folder/name (a run's torch.save file) cannot be loaded, found without loading it; None if it can
    (or, with missing=None, if there is none)."""
    path = Path(folder) / name
    if not (path.exists() or path.is_symlink()):
        return missing and f"its {name} is {missing}"
    return None if whole(path) else f"its {name} is cut short or damaged"


@contextmanager
def _quiet_exit(prefix):
    """A job's flags that src.train would refuse: the same one line, before anything runs."""
    try:
        yield
    except SystemExit as err:  # argparse
        raise UserError(f"{prefix}bad flags ({err.code})") from None
    except UserError as err:
        raise UserError(f"{prefix}{err}") from None


def run_jobs(jobs, limit, deadline, force=False, on_finish=None):
    """Run the jobs that are not done, at most `limit` at once, until time.monotonic() reaches
    deadline; then stop those still running. Returns {job name: outcome}, the outcome a phrase."""
    outcomes, pending, running = {}, [], {}
    for job in jobs:
        if not force and job.is_done():
            _say(job, "already finished: skipped (--force redoes it)")
            outcomes[job.name] = "finished before"
        else:
            pending.append(job)
    try:
        while (pending or running) and time.monotonic() < deadline:
            for job in _startable(pending, running, limit):
                pending.remove(job)
                with signals_deferred():  # a run started is a run recorded, so that a Ctrl-C stops it too
                    running[job] = _start(job, force, limit)
            for job, (proc, seen) in list(running.items()):
                running[job][1] = _progress(job, seen)
                if proc.poll() is not None:
                    del running[job]
                    outcomes[job.name] = _outcome(job, proc.returncode)
                    _say(job, outcomes[job.name])
                    if on_finish:
                        on_finish(job)
            time.sleep(POLL)
    except KeyboardInterrupt:
        print(f"interrupted: stopping the runs (each saves and says where it stopped; at most {STOP_GRACE} s)",
              flush=True)
        raise
    finally:
        _stop([proc for proc, _ in running.values()])
    for job in running:
        progress = job.epochs()
        outcomes[job.name] = "stopped" + (f" after {progress[0]} of {progress[1]} epochs" if progress else "")
    outcomes.update({job.name: "not started" for job in pending})
    return outcomes


def _say(job, text):
    print(f"{time.strftime('%H:%M:%S')} [{job.name}] {text}", flush=True)


def _startable(pending, running, limit):
    """The next jobs in order, within the limits."""
    if any(job.alone for job in running):
        return []
    chosen, cpu_busy = [], any(job.cpu_bound for job in running)
    for job in pending:
        if len(running) + len(chosen) >= limit:
            break
        if job.alone:
            return chosen or ([] if running else [job])
        if job.cpu_bound and cpu_busy:
            continue
        cpu_busy = cpu_busy or job.cpu_bound
        chosen.append(job)
    return chosen


def _start(job, force, limit):
    args = job.args_now(force)
    shown = shlex.join(["python", "-m", job.module, *args])
    job.folder.mkdir(parents=True, exist_ok=True)
    threads = all_cores() if job.alone else max(1, all_cores() // limit)  # more: they spin against each other
    env = {"OMP_NUM_THREADS": str(threads), **os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    env.pop("WORLD_SIZE", None)  # one process per run, never DistributedDataParallel
    if limit > 1 and not job.alone:
        env[SHARED_DEVICE] = "1"
    with open(job.folder / job.log, "a") as log:  # --force too: the run it replaces keeps its log until then
        log.write(f"$ {shown}\n")
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", job.module, *args], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    _say(job, f"started: {shown}")
    return [proc, job.epochs()]


def _progress(job, seen):
    now = job.epochs()
    if now and now != seen:
        _say(job, f"epoch {now[0]}/{now[1]}: test accuracy {100 * now[2]:.2f}%")
    return now


def _outcome(job, returncode):
    if returncode == 0 and job.is_done():
        return "finished"
    lines = (job.folder / job.log).read_text(errors="replace").strip().splitlines()
    said = _own_words(lines[-1]) if lines else "no output"
    return f"failed (exit {returncode}): {said} (log: {job.folder / job.log})"


REMEDY = re.compile(r"[:;] (?:pass|give|use|point|delete|drop|rerun|wait|choose|free|continue|create|set|install"
                    r"|restore|remove) .*$")


def _own_words(line):
    """A run's one line as src.sweep and src.reproduce show it: without its advice (its flags are not theirs),
    its options named without dashes; another command writing the same folder is theirs to mend."""
    said = re.sub(r"(?<![\w/.-])--([a-z][a-z0-9-]*)", r"\1", REMEDY.sub("", line.removeprefix("error: ")))
    if "already holds a run" in line or "another process" in line or "another run right now" in line:
        said += ("; is another src.sweep or src.reproduce writing the same --out? wait for it to end, or give "
                 "another --out")
    elif "--overwrite" in line:  # what replaces a run there: --force
        said += " (--force replaces that run)"
    return said


def _stop(procs):
    """SIGINT to each run and all it started (a notebook's kernel runs in a session of its own);
    whatever still runs after STOP_GRACE is killed."""
    family = []
    for proc in procs:
        try:
            parent = psutil.Process(proc.pid)
            family += [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    for member in family:
        try:
            member.send_signal(signal.SIGINT)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=STOP_GRACE)
    for member in alive:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    for proc in procs:
        proc.wait()
