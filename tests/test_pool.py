"""The pool (src/pool.py, src/batch.py) through `src.sweep`: the budget stops the runs and the same command
continues them from their checkpoints, finished runs are skipped, a result other flags or other data made
(or whose weights are gone) is refused before any run unless --force, which redoes it; --seeds 0 1 runs
seed 1 in VARIANT-seed-1 and the table shows the mean ± sd over n=2. The runs are real src.train processes
(tiny ones, on the tiny data); the sweep itself runs in this process, a tiny sweep put in SWEEPS."""
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from helpers import PATIENCE, TINY, start_cli
from src import pool, sweep
from src.batch import portable
from src.io import read
from src.pool import STOP_GRACE
from src.run import hold

FLAGS = (*TINY[2:-2], "--workers", "0")  # TINY less --model and --device, which the sweep gives
# The runs start within 4-12 s on two busy cores and take 0.06-0.3 s an epoch: the budget leaves them 13 s.
EPOCHS, BUDGET = 30, 13 + STOP_GRACE


@contextlib.contextmanager
def mid_way_at(seconds):
    """Pause each src.train run (SIGSTOP) once it has saved an epoch, and let them all go on when `seconds`
    have passed, as the budget runs out: however fast or busy this machine, the budget finds them mid-way."""
    end, done = time.monotonic() + seconds, threading.Event()

    def watch():
        paused = []
        while time.monotonic() < end and not done.is_set():
            for proc in psutil.Process().children():
                with contextlib.suppress(psutil.Error, ValueError):
                    argv = proc.cmdline()
                    out = Path(argv[argv.index("--out") + 1])
                    if proc not in paused and (read(out / "metrics.json") or {}).get("epochs_done", 0) >= 1:
                        proc.suspend()
                        paused.append(proc)
            time.sleep(0.01)
        for proc in paused:
            with contextlib.suppress(psutil.Error):
                proc.resume()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


@pytest.fixture(scope="module")
def tiny_sweep(tiny_cifar, tmp_path_factory):
    """call(*argv, flags=..., budget=...) -> (exit code, printed) of `src.sweep --sweep tiny --seeds 0 1`."""
    root = tmp_path_factory.mktemp("sweep")
    data, out = shutil.copytree(tiny_cifar, root / "data"), root / "out"

    def call(*argv, flags=(), budget=600, seeds=("0", "1")):
        patch.setitem(sweep.SWEEPS, "tiny", ("convmixer_256_8", (("a", (*FLAGS, "--epochs", str(EPOCHS), *flags)),)))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            try:
                sweep.main(["--sweep", "tiny", "--data", str(data), "--device", "cpu", "--out", str(out),
                            "--budget", str(budget), "--seeds", *seeds, *argv])
                code = 0
            except SystemExit as exc:
                code = exc.code
        return code, printed.getvalue()

    with pytest.MonkeyPatch.context() as patch:
        with mid_way_at(BUDGET - STOP_GRACE):
            first = call(budget=BUDGET)
        second = call()
        yield call, out, data, first, second


def commands(folder):
    return [line for line in (folder / "train.log").read_text().splitlines() if line.startswith("$ python -m ")]


def test_the_budget_stops_the_runs_and_the_same_command_continues_them(tiny_sweep):
    _, out, _, (code, printed), (again, printed_again) = tiny_sweep
    assert code == ("error: 2 of 2 runs did not finish within --budget (tiny/a, tiny/a-seed-1): rerun the same "
                    "command to continue them (stopped runs resume from their checkpoints, or start again without one)")
    assert re.search(rf"\[tiny/a\] epoch \d+/{EPOCHS}: test accuracy", printed), printed
    assert again == 0, printed_again
    stopped_after = int(re.search(r"\[tiny/a\] stopped after (\d+) of", printed)[1])
    said = [int(n) for n in re.findall(rf"\[tiny/a\] epoch (\d+)/{EPOCHS}: test accuracy", printed_again)]
    assert said == list(range(stopped_after + 1, EPOCHS + 1)), printed_again  # each epoch once, however short
    for folder in (out / "a", out / "a-seed-1"):
        m = json.loads((folder / "metrics.json").read_text())
        assert m["finished"] and m["epochs_done"] == EPOCHS and (folder / "model.pt").exists()
        first, then = commands(folder)
        assert then == f"{first} --resume"


def test_seed_1_runs_beside_seed_0_and_the_table_shows_their_mean_and_spread(tiny_sweep):
    _, out, _, _, (_, printed) = tiny_sweep
    seeds = {f: json.loads((out / f / "metrics.json").read_text())["config"]["seed"] for f in ("a", "a-seed-1")}
    assert seeds == {"a": 0, "a-seed-1": 1}
    table = (out / "table.md").read_text()
    assert re.search(r"\| \[a\]\(a\) · \[seed 1\]\(a-seed-1\) \|", table), table
    assert re.search(r"\| \d+\.\d\d ± \d+\.\d\d% \(n=2\) \|", table) and table in printed


def test_finished_runs_are_skipped(tiny_sweep):
    call, out, *_ = tiny_sweep
    code, printed = call()
    assert code == 0 and printed.count("already finished: skipped") == 2 and "started" not in printed


def _other_data(out, data):
    shutil.copy(data / "train/cat/0000.png", data / "train/cat/extra.png")
    return lambda: (data / "train/cat/extra.png").unlink()


def _data_elsewhere(out, data):
    shutil.copytree(data, data.with_name("elsewhere"))
    return lambda: shutil.rmtree(data.with_name("elsewhere"))


def _metrics_damaged(out, data):
    kept = (out / "a" / "metrics.json").read_text()
    (out / "a" / "metrics.json").write_text(kept[:100])
    return lambda: (out / "a" / "metrics.json").write_text(kept)


def _weights_gone(out, data):
    (out / "a" / "model.pt").rename(out / "a" / "kept.pt")
    return lambda: (out / "a" / "kept.pt").rename(out / "a" / "model.pt")


@pytest.mark.parametrize("flags, change, why", [
    (("--lr-max", "0.02"), None, "other flags made it"),
    ((), _other_data, "other data made it"),
    ((), _data_elsewhere, "other data made it"),
    ((), _weights_gone, "its model.pt is gone or damaged"),
], ids=["other-flags", "other-data", "data-elsewhere", "weights-gone"])
def test_a_result_that_is_not_the_runs_own_is_refused_before_any_run(tiny_sweep, flags, change, why):
    call, out, data, *_ = tiny_sweep
    undo = change(out, data) if change else None
    elsewhere = ("--data", str(data.with_name("elsewhere"))) if change is _data_elsewhere else ()
    try:
        code, printed = call(*elsewhere, flags=flags)
    finally:
        undo and undo()
    named = ["a"] if change is _weights_gone else ["a", "a-seed-1"]  # every folder in the way, in one line
    assert code == "error: " + "; ".join(f"{out / n} holds a run that is not tiny/{n}'s to skip or continue ({why})"
                                         for n in named) + (f": delete the folder{'s' * (len(named) > 1)} to redo "
                                                            f"{'them' if len(named) > 1 else 'it'} (--force redoes "
                                                            f"every run of this call)")
    assert "started" not in printed


@pytest.mark.parametrize("force", [(), ("--force",)])
def test_a_damaged_result_is_named_before_any_run_with_advice_that_works_with_force_too(tiny_sweep, force):
    call, out, data, *_ = tiny_sweep
    undo = _metrics_damaged(out, data)
    try:
        code, printed = call(*force)
    finally:
        undo()
    assert code.startswith(f"error: {out / 'a' / 'metrics.json'} is not readable JSON (") and code.endswith(
        "): delete it: the sweep or reproduction that wrote it writes it again") and "started" not in printed


def test_the_runs_flags_and_the_datas_size_are_checked_before_any_run(tiny_sweep):
    call, _, data, *_ = tiny_sweep
    code, printed = call(flags=("--hole-p", "2"))
    assert code.startswith("error: tiny/a: --hole-p 2.0: expected") and "started" not in printed
    code, printed = call(flags=("--train-subset", "161"))
    assert code == f"error: tiny/a: {data} holds 160 train images, fewer than the 161 this run uses: give a fuller copy"
    code, printed = call(flags=("--batch-size", "161"))  # its runs' sizes are the sweep's: the advice is the copy
    assert code == f"error: tiny/a: {data} holds 160 training images, fewer than a batch of 161: give a fuller copy"
    assert "started" not in printed


def test_a_seed_given_twice_runs_once_and_a_killed_writes_leftovers_go(tiny_sweep):
    call, out, *_ = tiny_sweep
    (out / "table.mdab12cd34.tmp").write_text("a killed write's")
    code, printed = call(seeds=("0", "0", "1"))
    assert code == 0 and printed.count("already finished: skipped") == 2, printed
    assert not (out / "table.mdab12cd34.tmp").exists()


def test_a_run_folder_another_process_writes_is_refused_before_any_run(tiny_sweep):
    call, out, *_ = tiny_sweep
    lock = hold(out / "a-seed-1")  # a second terminal's src.train into one of the sweep's folders
    try:
        code, printed = call()
    finally:
        lock.release()
    assert code == (f"error: {out / 'a-seed-1'} is being written by another process right now: wait for it to end, "
                    f"or give another --out") and "started" not in printed


def test_after_a_force_call_whose_run_failed_the_advice_works(tiny_sweep, tmp_path):
    call, out, data, *_ = tiny_sweep
    shutil.copytree(out / "a", tmp_path / "out" / "a", ignore=shutil.ignore_patterns(".lock"))  # a finished run
    damaged = shutil.copytree(data, tmp_path / "data") / "train" / "cat" / "0000.png"
    kept = damaged.read_bytes()
    damaged.write_bytes(b"not an image")  # the new run fails before replacing the old, which other data made
    again = ("--out", str(tmp_path / "out"), "--data", str(tmp_path / "data"))
    code, printed = call("--force", *again, flags=("--epochs", "1"), seeds=("0",))
    assert code.endswith(f"mend what its log says, then delete {tmp_path / 'out' / 'a'}, then rerun the same command "
                         f"without --force (finished runs are skipped)"), code
    damaged.write_bytes(kept)
    shutil.rmtree(tmp_path / "out" / "a")
    assert call(*again, flags=("--epochs", "1"), seeds=("0",))[0] == 0


def test_a_reader_gone_from_the_pipe_stops_the_call_before_a_run_it_could_not_stop(quick_cifar, tmp_path):
    proc = start_cli("--sweep", "convmixer-authors", "--quick", "--device", "cpu", "--data", quick_cifar, "--out",
                     tmp_path, module="src.sweep", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader gone before the first line, as `| head -0` does
    assert proc.wait(PATIENCE) == 128 + signal.SIGPIPE
    assert proc.stderr.read().decode().strip().splitlines()[-1].startswith("interrupted: rerun the same command")
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]


def test_a_call_from_another_folder_reads_the_data_as_its_runs_do(tiny_sweep, cifar10_dir, tmp_path, monkeypatch):
    call, *_ = tiny_sweep
    monkeypatch.chdir(tmp_path)  # the runs start in the repository, and get --data relative to it if near it
    code, printed = call("--data", os.path.relpath(cifar10_dir), "--out", "out", seeds=("0",),
                         flags=("--epochs", "1", "--train-subset", "64", "--test-subset", "32"))
    assert code == 0, printed
    assert json.loads((tmp_path / "out" / "a" / "metrics.json").read_text())["config"]["data"] == portable(cifar10_dir)


def test_an_out_inside_the_data_is_refused_before_anything_is_written_there(tiny_sweep, tmp_path):
    call, _, data, *_ = tiny_sweep
    data = shutil.copytree(data, tmp_path / "data")
    assert call("--data", str(data), "--out", str(data / "train" / "out"))[0] == 2 and not (data / "train/out").exists()


def test_force_redoes_it(tiny_sweep):
    call, out, *_ = tiny_sweep
    code, printed = call("--force", flags=("--lr-max", "0.02", "--epochs", "1"), seeds=("0",))
    assert code == 0, printed
    assert commands(out / "a")[-1].endswith("--overwrite")
    assert json.loads((out / "a" / "metrics.json").read_text())["config"]["lr_max"] == 0.02


def test_the_epoch_a_run_saved_as_the_budget_ended_is_said_before_it_finished(tmp_path, monkeypatch, capsys):
    saved, now = '{"epochs_done": 1, "config": {"epochs": 1}, "history": {"test_acc": [0.5]}}', [0.0]
    def sleep(seconds):  # while the pool waits, the run saves its last epoch and its weights, and the budget ends
        (tmp_path / "metrics.json").write_text(saved)
        (tmp_path / "model.pt").touch()
        now.append(seconds)
    monkeypatch.setattr(pool, "time", SimpleNamespace(monotonic=lambda: sum(now), sleep=sleep, strftime=time.strftime))
    monkeypatch.setattr(pool, "start", lambda *_: subprocess.Popen(["sleep", "60"], start_new_session=True))
    job = pool.Job("a", (), tmp_path, done=(tmp_path / "model.pt").exists, stale=lambda: None)
    assert pool.run_jobs([job], 1, 0.5, False, on_finish=None) == {"a": "finished"}
    assert [line[9:] for line in capsys.readouterr().out.splitlines()] == ["[a] epoch 1/1: test accuracy 50.00%",
                                                                           "[a] finished"]
