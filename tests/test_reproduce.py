"""src.reproduce: `--quick --device cpu` runs every step end to end under --out (report written,
checkout untouched), a second call skips what finished, the README's results block is checked
against the committed files, and runs stopped at the budget keep what finished and continue."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import PATIENCE

from src.notebook import NOTEBOOKS
from src.reproduce import NOTEBOOK_OF, RECIPE_RUNS, main
from src.harness.batch import summary
from src.harness.report import targets
from src.harness.scheduler import run_jobs, train_job

REPO_ROOT = Path(__file__).resolve().parent.parent
README_BLOCK = re.compile(r"<!-- results:begin -->.*<!-- results:end -->", re.DOTALL)


def reproduce(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "src.reproduce", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=PATIENCE)


def metrics(folder):
    return json.loads((Path(folder) / "metrics.json").read_text())


def test_quick_runs_every_step_and_writes_the_report(quick_reproduction):
    quick = quick_reproduction
    assert quick.first.returncode == 0, quick.first.stdout + quick.first.stderr
    out, printed = quick.out, quick.first.stdout
    bench = out / "ConvMixer_experimentation_2" / "bench"
    assert json.loads((bench / "bench.json").read_text())["seconds"]["fast"] > 0
    assert (bench / "bench.log").read_text().startswith("$ python -m src.bench ")
    runs = [out / name / "run-quick" for name in NOTEBOOKS]
    runs += [out / NOTEBOOK_OF[model] / "recipes" / run for model, run, _ in RECIPE_RUNS]
    for folder in runs:
        m = metrics(folder)
        assert m["finished"] and m["epochs_done"] == m["config"]["epochs"], folder
        log = next(folder.glob("*.log")).read_text()
        assert log.startswith("$ python -m src."), folder
    for name in NOTEBOOKS:  # run side by side: the intro says so beside the seconds per epoch
        intro = (out / name / f"{name}.ipynb").read_text()
        assert "(`quick` mode)" in intro and "sharing the machine with the reproduction's other runs" in intro
    assert re.search(r"\[ConvMixer_experimentation_2/recipes/improved\] epoch 2/2: test accuracy \d+\.\d\d%", printed)
    report = (out / "report.md").read_text()
    assert "Quick check" in report
    for folder in [*runs, bench]:
        assert f"]({folder.relative_to(out)}/" in report, f"{folder} is not in the report"
    for model, run, _ in RECIPE_RUNS:
        assert f"{100 * metrics(out / NOTEBOOK_OF[model] / 'recipes' / run)['final_test_acc']:.2f}%" in report


def test_quick_leaves_the_checkout_untouched(quick_reproduction):
    quick = quick_reproduction
    status_before, mtimes_before = quick.before
    status_after, mtimes_after = quick.after
    assert status_after == status_before
    assert [name for name in mtimes_before if mtimes_after.get(name) != mtimes_before[name]] == []


def test_a_second_call_skips_the_finished_runs(quick_reproduction):
    quick = quick_reproduction
    assert quick.second.returncode == 0, quick.second.stdout + quick.second.stderr
    assert quick.second.stdout.count("already finished: skipped") == 1 + len(NOTEBOOKS) + len(RECIPE_RUNS)
    assert "started" not in quick.second.stdout
    rewritten = [path for path, mtime in quick.written.items()
                 if path.name != "report.md" and path.stat().st_mtime_ns != mtime]
    assert rewritten == []


def test_results_made_on_other_data_are_not_skipped(quick_reproduction, cifar10_dir, tiny_cifar):
    """The bench and the notebooks were skipped as finished whatever --data said, and the report
    showed the other data's results as this call's (probe 8); recipe runs were already refused."""
    from argparse import Namespace
    from src.harness.scheduler import portable
    from src.reproduce import plan
    for data, same in ((cifar10_dir, True), (tiny_cifar, False)):
        args = Namespace(quick=True, data=portable(data), given_data=str(data), device="cpu")
        jobs = [job for planned in plan(args, quick_reproduction.out, "quick").values() for job in planned]
        assert [job.is_done() for job in jobs] == [same] * len(jobs)
        assert [job.stale() for job in jobs] == [None] * len(jobs) if same else \
            [job.stale() for job in jobs] == ["other data made it"] * 4 + ["other flags made it"] * 3


def test_check_readme_passes_on_the_committed_files():
    with pytest.raises(SystemExit) as exit_:
        main(["--check-readme"])
    assert exit_.value.code == 0


def test_check_readme_fails_when_one_number_differs(tmp_path, capsys):
    text = (REPO_ROOT / "README.md").read_text()
    block = README_BLOCK.search(text).group(0)
    number = re.search(r"(\d+)\.(\d\d)%", block)
    changed = f"{number.group(1)}.{(int(number.group(2)) + 1) % 100:02d}%"
    readme = tmp_path / "README.md"
    readme.write_text(text.replace(block, block.replace(number.group(0), changed, 1)))
    with pytest.raises(SystemExit) as exit_:
        main(["--check-readme", "--readme", str(readme)])
    assert exit_.value.code == 1
    diff = capsys.readouterr().out
    assert changed in diff and number.group(0) in diff


def test_runs_stopped_at_the_budget_keep_what_finished_and_continue(tiny_cifar, tmp_path):
    def tiny(name, epochs):
        return train_job(name, tmp_path / name, (
            "--model", "convmixer_256_8", "--dim", "16", "--depth", "1", "--patch-size", "4", "--batch-size", "16",
            "--workers", "0", "--device", "cpu", "--epochs", epochs, "--data", tiny_cifar))
    jobs = [tiny("short", 1), tiny("long", 100000)]
    ended = []
    outcomes = run_jobs(jobs, 2, time.monotonic() + 15, on_finish=ended.append)  # room for a loaded machine
    assert outcomes["short"] == "finished" and ended == jobs[:1]
    assert outcomes["long"].startswith("stopped after")
    with pytest.raises(SystemExit) as exit_:
        summary(outcomes)
    assert exit_.value.code.startswith("error: 1 of 2 runs did not finish within --budget (long): rerun the same")
    with pytest.raises(SystemExit) as exit_:
        summary(outcomes, force=True)  # rerun with --force, it would redo every run anew (probe 8)
    assert "(long): rerun the same command without --force to continue them" in exit_.value.code
    with pytest.raises(SystemExit) as exit_:
        summary({"a": "finished", "b": "failed (exit 1): error: no data (log: b/train.log)", "c": "stopped"})
    assert exit_.value.code == ("error: 1 of 3 runs failed: b; the first failed (exit 1): error: no data "
                                "(log: b/train.log): mend what its log says, then rerun the same command (finished "
                                "runs are skipped)")
    short, long = metrics(tmp_path / "short"), metrics(tmp_path / "long")
    assert short["finished"] and (tmp_path / "short" / "model.pt").exists()
    assert not long["finished"] and (tmp_path / "long" / "checkpoint.pt").exists()

    outcomes = run_jobs(jobs, 2, time.monotonic() + 7)
    assert outcomes["short"] == "finished before"
    assert metrics(tmp_path / "short") == short
    again = metrics(tmp_path / "long")
    assert again["epochs_done"] > long["epochs_done"]
    assert again["history"]["test_acc"][:long["epochs_done"]] == long["history"]["test_acc"]
    commands = [line for line in (tmp_path / "long" / "train.log").read_text().splitlines() if line.startswith("$ ")]
    assert len(commands) == 2 and commands[1].endswith("--resume") and "--resume" not in commands[0]


def _target_rows(base):
    lines = targets(base)
    return {line.split(" | ")[0].lstrip("| "): line.split(" | ")[2:] for line in lines if line.startswith("| ")}


def test_the_targets_table_marks_each_target_from_the_committed_files(tmp_path):
    empty = _target_rows(tmp_path)
    assert empty["ConvMixer-256/8: test accuracy"] == ["no run yet", "— |"]
    for folder in ("run-full", "recipes/improved", "recipes/baseline-reference-loader", "bench"):
        folder = f"ConvMixer_experimentation_2/{folder}"
        (tmp_path / folder).mkdir(parents=True)
        for name in ("metrics.json", "bench.json"):
            if (REPO_ROOT / folder / name).exists():
                (tmp_path / folder / name).write_text((REPO_ROOT / folder / name).read_text())
    improved = tmp_path / "ConvMixer_experimentation_2/recipes/improved/metrics.json"
    m = json.loads(improved.read_text())
    improved.write_text(json.dumps({**m, "final_test_acc": 0.9123}))
    stopped = tmp_path / "ConvMixer_experimentation_2/sweeps/s/better-but-stopped/metrics.json"
    stopped.parent.mkdir(parents=True)
    stopped.write_text(json.dumps({**m, "final_test_acc": 0.95, "finished": False}))
    bench = tmp_path / "ConvMixer_experimentation_2/bench/bench.json"
    b = json.loads(bench.read_text())
    bench.write_text(json.dumps({**b, "seconds": {**b["seconds"], "fast": 1.6}, "speedup": {"vs_2_workers": 4.2,
                                                                                        "vs_all_cores": 1.9}}))
    rows = _target_rows(tmp_path)
    assert rows["ConvMixer-256/8: test accuracy"][0].startswith("91.23%, [ConvMixer_experimentation_2/recipes/improved")
    assert rows["ConvMixer-256/8: test accuracy"][1] == "yes |"
    assert rows["ConvViT-512/6: test accuracy"] == ["no run yet", "— |"]
    assert rows["one ConvMixer-256/8 epoch, fast path"][0].startswith("1.60 s") and \
        rows["one ConvMixer-256/8 epoch, fast path"][1] == "no |"
    assert rows["its speed-up over the reference loader, 2 workers"][1] == "yes |"
    assert rows["its speed-up over the reference loader, every core"][1] == "no |"
    gap = rows["fast loader's accuracy against the reference loader's (ConvMixer, baseline)"]
    assert gap[0].startswith("+0.14 points") and gap[1] == "yes |"
