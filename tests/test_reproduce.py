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


@pytest.mark.parametrize("recorded, why", [
    (dict(finished=True, config={"data": "/elsewhere"}), "other data made it"),
    (dict(finished=True, data={"train_listing": "0123456789abcdef"}), "other data made it"),  # images added since
    (dict(finished=True), "its model.pt is gone or damaged"),
    (dict(finished=False), "its checkpoint.pt is gone or damaged"),  # stopped: src.notebook --resume would fail
], ids=["data-elsewhere", "other-images", "weights-gone", "checkpoint-gone"])
def test_a_notebook_run_that_cannot_be_skipped_or_continued_is_refused_before_any_run(tiny_cifar, tmp_path,
                                                                                       recorded, why):
    run = tmp_path / "ConvMixer_experimentation_1" / "run-quick"
    run.mkdir(parents=True)
    recorded = {"config": {"data": os.path.relpath(tiny_cifar, ROOT)}, **recorded}  # as the notebook records it
    (run / "metrics.json").write_text(json.dumps(recorded))
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


@pytest.mark.parametrize("made", [dict(dim=64), dict(data={"test_listing": "0123456789abcdef"})],
                         ids=["other-sizes", "other-images"])
def test_a_bench_of_other_sizes_or_images_is_refused_not_reported(tiny_cifar, tmp_path, made):
    from src.batch import portable
    bench = tmp_path / "ConvMixer_experimentation_2" / "bench"
    bench.mkdir(parents=True)
    quick = dict(data=portable(tiny_cifar), dim=32, depth=2, batch_size=16, train_subset=256, test_subset=64)
    recorded = {"config": {**quick, **made}} if "dim" in made else {"config": quick, **made}  # what --quick's writes
    (bench / "bench.json").write_text(json.dumps(recorded))
    line = cli_error(["--quick", "--only", "bench", "--data", tiny_cifar, "--device", "cpu", "--out", tmp_path],
                     "src.reproduce")
    assert line.startswith(f"error: {bench} holds a run that is not ConvMixer_experimentation_2/bench's to skip or "
                           f"continue (other flags or data made it)")


def test_a_result_is_made_on_the_data_given_when_its_folder_and_images_are_the_same(tiny_cifar, tmp_path):
    from src.data import split_listing
    from src.reproduce import made_on
    listed = {f"{split}_listing": split_listing(tiny_cifar, split == "train")[1] for split in ("train", "test")}
    for recorded, made in [({}, True), (listed, True), ({**listed, "test_listing": "0123456789abcdef"}, False)]:
        (tmp_path / "metrics.json").write_text(json.dumps({"config": {"data": str(tiny_cifar)}, "data": recorded}))
        assert made_on(tmp_path / "metrics.json", os.path.relpath(tiny_cifar, ROOT)) is made, recorded
