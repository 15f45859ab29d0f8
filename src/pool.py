"""Independent runs as concurrent subprocesses on one GPU (or a few CPU cores) within a wall-clock budget,
followed through the metrics.json each rewrites every epoch: the next call resumes what the budget stopped."""
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from . import io

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE = 10  # seconds a stopped run gets to save and say where it stopped, before it is killed


@dataclass(eq=False)
class Job:
    name: str               # how progress lines name it: its folder below the output root
    args: tuple             # run as `python -m MODULE ARGS` from the repository root
    folder: Path            # its results and its log, MODULE's last name + .log
    done: Callable          # () -> its finished result is there, made as this job would make it
    stale: Callable         # () -> why the result in its folder is not its own to skip or continue, or None
    module: str = "src.train"
    alone: bool = False      # a timing: starts when nothing runs, nothing starts beside it, never resumed

    @property
    def log(self):
        return self.folder / f"{self.module.rpartition('.')[2]}.log"


def run_jobs(jobs, limit, deadline, force, on_finish):
    """{job name: outcome in words} of the jobs not done, run `limit` at once until the deadline (time.monotonic)."""
    finished = [] if force else [job for job in jobs if job.done()]
    for job in finished:
        say(job, "already finished: skipped (--force redoes it)")
    outcomes, running = {job.name: "finished before" for job in finished}, {}
    pending = [job for job in jobs if job not in finished]
    try:
        while (pending or running) and time.monotonic() < deadline:
            for job in startable(pending, running, limit):
                pending.remove(job)
                running[job] = [start(job, force, limit), epochs(job)]
            for job, (proc, seen) in list(running.items()):
                ended = proc.poll() is not None  # before its epochs are read: its last epoch is said
                running[job][1] = epochs(job, seen)
                if ended:
                    del running[job]
                    lines = job.log.read_text(errors="replace").strip().splitlines()
                    outcomes[job.name] = "finished" if proc.returncode == 0 and job.done() else \
                        f"failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'} (log: {job.log})"
                    say(job, outcomes[job.name])
                    on_finish()
            time.sleep(0.5)
    finally:
        stop([proc for proc, _ in running.values()])
    for job, (_, seen) in running.items():  # a run may have ended as the budget did
        now = epochs(job, seen)
        stopped = "stopped" + (f" after {now[0]} of {now[1]} epochs" if now[0] and not job.stale() else "")
        outcomes[job.name] = "finished" if job.done() else stopped
        say(job, outcomes[job.name])
    return {**outcomes, **{job.name: "not started" for job in pending}}


def say(job, text):
    print(f"{time.strftime('%H:%M:%S')} [{job.name}] {text}", flush=True)


def epochs(job, seen=None):
    """(epochs done, epochs wanted, each epoch's test accuracy) from its metrics.json; each epoch since `seen` said."""
    m, now = io.read(job.folder / "metrics.json") or {}, (0, 0, [])
    with contextlib.suppress(KeyError, TypeError):
        now = m["epochs_done"], m["config"]["epochs"], m["history"]["test_acc"]
    for epoch in range(seen[0] if seen[0] <= now[0] else 0, now[0]) if seen else ():  # fewer: a run redone
        say(job, f"epoch {epoch + 1}/{now[1]}: test accuracy {100 * now[2][epoch]:.2f}%")
    return now


def startable(pending, running, limit):
    """The next jobs in order, at most `limit` running; a job `alone` waits for the others and holds the GPU alone."""
    if any(job.alone for job in running):
        return []
    chosen = []
    for job in pending[:max(0, limit - len(running))]:
        if job.alone:
            return chosen or ([] if running else [job])
        chosen.append(job)
    return chosen


def start(job, force, limit):
    """The job in a session of its own (a notebook's kernel too), so that stopping it stops all it started."""
    held = (job.folder / "metrics.json").exists() or (job.folder / "checkpoint.pt").exists()
    args = (*job.args, "--overwrite" if force else "--resume") if held and not job.alone else job.args
    shown = shlex.join(["python", "-m", job.module, *args])
    job.folder.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    env = {"OMP_NUM_THREADS": str(cores if job.alone else max(1, cores // limit)), **os.environ,
           "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "SHARED_DEVICE": "0" if job.alone or limit == 1 else "1"}
    say(job, f"started: {shown}")  # first: a pipe's reader gone (| head) stops the call before a run it cannot stop
    with open(job.log, "a") as log:  # --force too: the run it replaces keeps its log
        print(f"$ {shown}", file=log, flush=True)
        return subprocess.Popen([sys.executable, "-m", job.module, *args], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def stop(procs):
    """Ctrl-C to each run's session, to save and say where it stopped; all it started (a kernel too) killed later."""
    family = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            family += psutil.Process(proc.pid).children(recursive=True)
            os.killpg(proc.pid, signal.SIGINT)
    end = time.monotonic() + STOP_GRACE
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, end - time.monotonic()))
        proc.kill()  # nothing if it has ended
        proc.wait()
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
