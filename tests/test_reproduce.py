"""src.reproduce: --seeds plans every seed of each setting once, a notebook run made on
other data is refused before any run, and the README's results block is what the committed files give."""
import argparse
import json
from dataclasses import asdict

import pytest

from helpers import cli_error
from src.batch import QUICK, QUICK_MODEL, portable
from src.cli import config_from_args
from src.config import resolve
from src.io import save
from src.notebook import run_config
from src.pool import ROOT
from src.reproduce import STEPS, main, notebook_job, plan
from src.run import image_counts


def test_three_seeds_plan_every_seed_of_each_setting_once(tiny_cifar, monkeypatch):
    monkeypatch.setattr("src.batch.image_counts", lambda cfg, lister: {})  # full-size runs on tiny data: named only
    args = argparse.Namespace(data=str(tiny_cifar), seeds=[0, 1, 2], quick=False, device="cpu")
    names = [job.name for job in plan(args, ROOT, "full", STEPS)]
    # per seed: 4 recipe runs (the baselines' seed 0 is the notebooks'), then the 3 notebooks and the bench once
    assert len(names) == 3 * 4 + 2 * 2 + 3 + 1 == len(set(names))
    assert {"ConvMixer_experimentation_2/recipes/improved-seed-2", "ViT_with_convolution/recipes/baseline-seed-1",
            "ConvMixer_experimentation_2/run-full"} <= set(names) and names[-1] == "ConvMixer_experimentation_2/bench"
    assert "ViT_with_convolution/recipes/baseline" not in names


def _notebook_run(quick_cifar, out, **recorded):
    """A finished quick run of ConvMixer_experimentation_1 in out, as src.notebook writes it, `recorded` on top."""
    cfg = resolve(run_config("ConvMixer_experimentation_1", "quick", portable(quick_cifar), out.parent, device="cpu"))
    run = out / "run-quick"
    run.mkdir(parents=True)
    made = {"finished": True, "final_test_acc": 0.1234, "config": asdict(cfg), "data": image_counts(cfg)}
    for key, value in recorded.items():
        made[key] = {**made[key], **value} if isinstance(value, dict) else value
    (run / "metrics.json").write_text(json.dumps(made))
    (out / "ConvMixer_experimentation_1.ipynb").write_text(json.dumps({"cells": ["... **12.34%** ..."]}))
    return run


@pytest.mark.parametrize("recorded, why", [
    (dict(config={"data": "/elsewhere"}), "other data made it"),
    (dict(data={"train_listing": "0123456789abcdef"}), "other data made it"),  # images added since
    (dict(config={"epochs": 3}), "other flags made it"),
    ({}, "its model.pt is gone or damaged"),
    (dict(finished=False), "its checkpoint.pt is gone or damaged"),  # stopped: src.notebook --resume would fail
], ids=["data-elsewhere", "other-images", "other-flags", "weights-gone", "checkpoint-gone"])
def test_a_notebook_run_that_cannot_be_skipped_or_continued_is_refused_before_any_run(quick_cifar, tmp_path,
                                                                                       recorded, why):
    run = _notebook_run(quick_cifar, tmp_path / "ConvMixer_experimentation_1", **recorded)
    line = cli_error(["--quick", "--only", "notebooks", "--data", quick_cifar, "--device", "cpu", "--out", tmp_path],
                     "src.reproduce")
    assert line.startswith(f"error: {run} holds a run that is not ConvMixer_experimentation_1/run-quick's to skip or "
                           f"continue ({why})")
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json"]


def test_a_notebook_run_is_done_with_its_weights_and_its_notebook_whole(quick_cifar, tmp_path):
    run = _notebook_run(quick_cifar, tmp_path / "ConvMixer_experimentation_1")
    save(run / "model.pt", {})
    args = argparse.Namespace(data=portable(quick_cifar), device="cpu")
    job = notebook_job("ConvMixer_experimentation_1", args, tmp_path, "quick")
    assert job.stale() is None and job.done()
    notebook = tmp_path / "ConvMixer_experimentation_1" / "ConvMixer_experimentation_1.ipynb"
    notebook.write_text(notebook.read_text()[:20])  # cut short: run again, which writes it whole
    assert job.stale() is None and not job.done()


def test_the_readme_results_are_what_the_committed_files_give(capsys, monkeypatch):
    assert main(["--check-readme"]) is None, capsys.readouterr().out[-3000:]  # exit 0
    monkeypatch.setattr("src.report.report", lambda base: "a block that differs\n")
    assert cli_error(["--check-readme"], "src.reproduce").startswith(
        f"error: {ROOT / 'README.md'}: its results block differs from the result files")


@pytest.mark.parametrize("made, why", [(dict(config={"dim": 64}), "other flags made it"),
                                       (dict(data={"test_listing": "0123456789abcdef"}), "other data made it")],
                         ids=["other-sizes", "other-images"])
def test_a_bench_of_other_sizes_or_images_is_refused_not_reported(quick_cifar, tmp_path, made, why):
    bench = tmp_path / "ConvMixer_experimentation_2" / "bench"
    bench.mkdir(parents=True)
    cfg = resolve(config_from_args(["--data", portable(quick_cifar), *QUICK_MODEL["convmixer_256_8"], *QUICK[:6]]))
    recorded = {"config": asdict(cfg), "data": image_counts(cfg)}  # what --quick's bench writes, then `made`
    (bench / "bench.json").write_text(json.dumps({k: {**v, **made.get(k, {})} for k, v in recorded.items()}))
    line = cli_error(["--quick", "--only", "bench", "--data", quick_cifar, "--device", "cpu", "--out", tmp_path],
                     "src.reproduce")
    assert line.startswith(f"error: {bench} holds a run that is not ConvMixer_experimentation_2/bench's to skip or "
                           f"continue ({why})")


def test_a_copy_too_small_for_the_notebooks_or_the_bench_is_refused_before_any_run(tiny_cifar, tmp_path):
    line = cli_error(["--quick", "--only", "notebooks,bench", "--data", tiny_cifar, "--device", "cpu", "--out",
                      tmp_path], "src.reproduce")  # their sizes are fixed: a fuller copy is the remedy
    assert line == (f"error: ViT_with_convolution/run-quick: {portable(tiny_cifar)} holds 160 train images, fewer than "
                    f"the 256 this run uses: give a fuller copy")
    assert not any(p.is_dir() for p in tmp_path.iterdir())
