"""src.sweep: a quick sweep of two variants writes each variant's metrics and log, and one table
sorted by final test accuracy that marks the underfit runs by its stated rule."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import PATIENCE
from src.sweep import SWEEPS, UNDERFIT_MARGIN

REPO_ROOT = Path(__file__).resolve().parent.parent
# | [variant](variant/metrics.json) | flags | test acc | train acc | underfit? | ...
ROW = re.compile(r"^\| \[([\w.-]+)\]\([\w.-]+/metrics\.json\) \| [^|]+ \| (\d+\.\d\d)% \| (\d+\.\d\d)% \| (yes|no) \|",
                 re.MULTILINE)


def test_every_sweep_names_its_variants_once_and_runs_its_control():
    for sweep in SWEEPS.values():
        names = [name for name, _ in sweep.variants]
        assert len(set(names)) == len(names) and sweep.control in names


def test_quick_sweep_writes_a_table_sorted_by_test_accuracy(quick_cifar, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "src.sweep", "--sweep", "convmixer-recipes", "--quick", "--device",
                           "cpu", "--data", str(quick_cifar), "--only", "baseline,authors", "--out", str(tmp_path)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False, timeout=PATIENCE)
    assert done.returncode == 0, done.stdout + done.stderr
    table = (tmp_path / "table.md").read_text()
    assert table in done.stdout
    rows = ROW.findall(table)
    assert sorted(name for name, *_ in rows) == ["authors", "baseline"]
    accuracies = [float(test) for _, test, _, _ in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    for name, test, train, underfit in rows:
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert metrics["finished"] and f"{100 * metrics['final_test_acc']:.2f}" == test
        assert (underfit == "yes") == (metrics["final_train_acc"] < metrics["final_test_acc"] + UNDERFIT_MARGIN)
        assert (tmp_path / name / "train.log").read_text().startswith("$ python -m src.train ")
    assert "--randaugment 2 12" in table
