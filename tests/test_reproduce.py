"""src.reproduce: --seeds plans every seed of each setting once, a notebook run made on
other data is refused before any run, and the README's results block is what the committed files give."""
import argparse
import json
import os

import pytest

from helpers import cli_error
from src.pool import ROOT
from src.reproduce import STEPS, main, plan


def test_three_seeds_plan_every_seed_of_each_setting_once(tiny_cifar, monkeypatch):
    monkeypatch.setattr("src.batch.image_counts", lambda cfg, lister: {})  # full-size runs on tiny data: named only
    args = argparse.Namespace(data=str(tiny_cifar), seeds=[0, 1, 2], quick=False, device=None)
    names = [job.name for job in plan(args, ROOT, "full", STEPS)]
    # per seed: 4 recipe runs (the baselines' seed 0 is the notebooks'), then the 3 notebooks and the bench once
    assert len(names) == 3 * 4 + 2 * 2 + 3 + 1 == len(set(names))
    assert {"ConvMixer_experimentation_2/recipes/improved-seed-2", "ViT_with_convolution/recipes/baseline-seed-1",
            "ConvMixer_experimentation_2/run-full"} <= set(names) and names[-1] == "ConvMixer_experimentation_2/bench"
    assert "ViT_with_convolution/recipes/baseline" not in names


@pytest.mark.parametrize("made_on, why", [("/elsewhere", "other data made it"),
                                           ("relative", "its model.pt is gone or damaged")])
def test_a_notebook_run_made_on_other_data_or_without_weights_is_refused_before_any_run(tiny_cifar, tmp_path,
                                                                                       made_on, why):
    run = tmp_path / "ConvMixer_experimentation_1" / "run-quick"
    run.mkdir(parents=True)
    data = os.path.relpath(tiny_cifar, ROOT) if made_on == "relative" else made_on  # as the notebook records it
    (run / "metrics.json").write_text(json.dumps({"finished": True, "config": {"data": data}}))
    line = cli_error(["--quick", "--only", "notebooks", "--data", tiny_cifar, "--device", "cpu", "--out", tmp_path],
                     "src.reproduce")
    assert line.startswith(f"error: {run} holds a run that is not ConvMixer_experimentation_1/run-quick's to skip or "
                           f"continue ({why})")
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json"]


def test_the_readme_results_are_what_the_committed_files_give(capsys, monkeypatch):
    assert main(["--check-readme"]) is None, capsys.readouterr().out[-3000:]  # exit 0
    monkeypatch.setattr("src.report.report", lambda base: "a block that differs\n")
    assert cli_error(["--check-readme"], "src.reproduce").startswith(
        f"error: {ROOT / 'README.md'}: its results block differs from the result files")


def test_a_bench_of_other_sizes_is_refused_not_reported(tiny_cifar, tmp_path):
    from src.batch import portable
    bench = tmp_path / "ConvMixer_experimentation_2" / "bench"
    bench.mkdir(parents=True)
    quick = dict(data=portable(tiny_cifar), dim=32, depth=2, batch_size=16, train_subset=256, test_subset=64)
    (bench / "bench.json").write_text(json.dumps({"config": quick}))  # what --quick's bench writes
    line = cli_error(["--only", "bench", "--data", tiny_cifar, "--device", "cpu", "--out", tmp_path], "src.reproduce")
    assert line.startswith(f"error: {bench} holds a run that is not ConvMixer_experimentation_2/bench's to skip or "
                           f"continue (other flags or data made it)")
