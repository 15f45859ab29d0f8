"""`python -m src.evaluate` on a tiny run's model.pt: the run's accuracy again, per class and with the
confusion matrix, as JSON and figures; weights that are not this run's model.pt are refused in one line."""
import json
import shutil
import signal

import numpy as np
import pytest

from helpers import cli_error, head_1, tiny_args
from src import io
from src.evaluate import main as evaluate
from src.models import create_model
from src.run import hold
from src.train import main as train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tiny_cifar, tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("evaluate") / "run"
    train(tiny_args(tiny_cifar, folder, epochs=2))
    return folder


def test_evaluate_gives_the_runs_accuracy_per_class_and_its_figures(run, tiny_cifar, tmp_path, capsys):
    evaluate([str(run / "model.pt"), "--data", str(tiny_cifar), "--device", "cpu", "--json", str(tmp_path / "e.json"),
              "--figures", str(tmp_path / "figures")])
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["accuracy"] == json.loads((run / "metrics.json").read_text())["final_test_acc"]  # counted alike
    matrix = np.array(result["confusion_matrix"])
    assert matrix.sum() == result["test_images"] == 40 and np.trace(matrix) / 40 == pytest.approx(result["accuracy"])
    assert len(result["per_class"]) == 10 and 0 <= result["accuracy_six_views"] <= 1
    assert f"accuracy {100 * result['accuracy']:.2f}%" in printed and "confusion matrix" in printed
    assert "the run recorded " in printed and " on its 40 test images (with its own test-time settings)" in printed
    drawn = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert drawn == ["depthwise_kernels.png", "patch_filters.png"]  # what a ConvMixer learned
    assert all((tmp_path / "figures" / name).read_bytes()[:4] == b"\x89PNG" for name in drawn)


def _other_models_weights(folder):
    io.save(folder / "model.pt", create_model("convmixer_256_8", dim=8, depth=1, patch_size=4).state_dict())
    return [folder / "model.pt"], "does not fit the model its metrics.json names (size mismatch for stem.0.weight: "


def _a_checkpoint(folder):
    return [folder / "checkpoint.pt"], "is a checkpoint, not weights: give the run's model.pt (--resume writes it)"


def _json_over_the_runs_metrics(folder):
    return [folder / "model.pt", "--json", folder / "metrics.json"], "would replace a run's file"


def _json_a_folder(folder):
    return [folder / "model.pt", "--json", folder], f"--json {folder}: a folder; give a file name"


def _json_empty(folder):
    return [folder / "model.pt", "--json", ""], "--json .: a folder; give a file name"


def _metrics_naming_no_model(folder):
    io.write_json(folder / "metrics.json", {})
    return [folder / "model.pt"], "names no model of this project ('model'): delete it: the run's command with --resume"


def _figures_a_file(folder):
    return [folder / "model.pt", "--figures", folder / "metrics.json"], "metrics.json: a file, or inside --data"


def _not_weights(folder):
    return [folder / "metrics.json"], f"no weights at {folder / 'metrics.json'}: give a finished run's model.pt"


def _a_folder(folder):
    return [folder], f"no weights at {folder}: a folder; give the model.pt in it"


def _a_stopped_runs(folder):
    (folder / "model.pt").unlink()
    return [folder / "model.pt"], "model.pt: its run is not finished: its command with --resume finishes it"


def _a_stopped_runs_folder(folder):
    (folder / "model.pt").unlink()
    return [folder], f"no weights at {folder}: its run is not finished: its command with --resume finishes it"


def _a_run_training_there(folder):
    (folder / "model.pt").unlink()
    _a_run_training_there.lock = hold(folder)  # as a run in another terminal holds it, until the test ends
    return [folder / "model.pt"], f"error: {folder} is being written by another process right now: wait for it to end"


def _no_metrics(folder):
    (folder / "metrics.json").unlink()
    return [folder / "model.pt"], "rebuilt from its run's; the run's command with --resume writes it again"


@pytest.mark.parametrize("case", [_other_models_weights, _a_checkpoint, _json_over_the_runs_metrics, _json_a_folder,
                                  _json_empty, _figures_a_file, _not_weights, _no_metrics, _metrics_naming_no_model,
                                  _a_folder, _a_stopped_runs, _a_stopped_runs_folder, _a_run_training_there])
def test_what_is_not_this_runs_model_is_refused_in_one_line(run, tiny_cifar, tmp_path, case):
    folder = shutil.copytree(run, tmp_path / "run")
    argv, said = case(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    line = cli_error([*argv, "--data", tiny_cifar, "--device", "cpu"], "src.evaluate")
    assert said in line and (case is not _other_models_weights or line.endswith(": give a model.pt beside its own "
                                                                                "run's metrics.json"))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before or case is _other_models_weights


@pytest.mark.parametrize("flag, inside, advice", [("--json", "test/cat/new.json", "give a path outside it"),
                                                  ("--figures", "test/cat", "give another folder")])
def test_no_result_goes_into_the_data(run, tiny_cifar, flag, inside, advice):
    before = sorted(p.name for p in (tiny_cifar / "test" / "cat").iterdir())
    line = cli_error([run / "model.pt", "--data", tiny_cifar, "--device", "cpu", flag, tiny_cifar / inside],
                     "src.evaluate")
    assert line.startswith(f"error: {flag} {tiny_cifar / inside}: ") and line.endswith(advice)
    assert sorted(p.name for p in (tiny_cifar / "test" / "cat").iterdir()) == before


def test_a_stop_says_which_results_it_left_written(run, tiny_cifar, tmp_path, monkeypatch, capsys):
    def ctrl_c(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr("src.analysis.save_figures", ctrl_c)  # stopped while drawing, the JSON written
    with pytest.raises(SystemExit) as exc:
        evaluate([str(run / "model.pt"), "--data", str(tiny_cifar), "--device", "cpu", "--json",
                  str(tmp_path / "e.json"), "--figures", str(tmp_path / "figures")])
    assert exc.value.code == 130 and json.loads((tmp_path / "e.json").read_text())["test_images"] == 40
    assert capsys.readouterr().err.strip().splitlines()[-1] == (f"interrupted before the evaluation ended: "
                                                               f"{tmp_path / 'e.json'} and the figures drawn so far in "
                                                               f"{tmp_path / 'figures'} written")


def test_a_reader_gone_after_the_first_line_leaves_the_json_written(run, tiny_cifar, tmp_path):
    code, said = head_1(run / "model.pt", "--data", tiny_cifar, "--device", "cpu", "--json", tmp_path / "e.json",
                        module="src.evaluate")
    assert code == 128 + signal.SIGPIPE and json.loads((tmp_path / "e.json").read_text())["test_images"] == 40
    assert said == [f"interrupted before the evaluation ended: {tmp_path / 'e.json'} written"]


def test_a_recorded_accuracy_of_zero_is_shown_too(run, tiny_cifar, tmp_path, capsys):
    folder = shutil.copytree(run, tmp_path / "run")
    io.write_json(folder / "metrics.json", {**json.loads((folder / "metrics.json").read_text()), "final_test_acc": 0.0})
    evaluate([str(folder / "model.pt"), "--data", str(tiny_cifar), "--device", "cpu"])
    assert "the run recorded 0.00% on its 40 test images" in capsys.readouterr().out
