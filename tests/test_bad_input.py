"""Bad input, tried as a hostile new user would: every case ends in one line and a non-zero exit
(argparse's usage errors: exit 2), prints no traceback, and loses nothing that was there.

Most cases call the CLI's main() in-process on the tiny class-folder copy (160 train, 40 test
PNGs); Ctrl-C is a real SIGINT to a real process.
"""
import json
import signal
import subprocess
import time
import urllib.error

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from helpers import cli_error, start_cli, tiny_args, write_class_folders
from src import data
from src.config import Config
from src.errors import DataNotFound
from src.models import create_model
from src.run import run
from src.train import main
from src.trainers import Trainer, train_one_cycle

pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else None


@pytest.fixture(scope="module")
def finished_run(tiny_cifar, tmp_path_factory):
    """A finished 1-epoch run: what a careless command must not destroy."""
    out = tmp_path_factory.mktemp("finished") / "run"
    main(tiny_args(tiny_cifar, out, epochs=1))
    assert json.loads((out / "metrics.json").read_text())["finished"]
    return out


# (extra arguments, what the one line must say); {data} and {out} are filled in per case.
HOSTILE = [
    (["--grad-clip", "-1"], "--grad-clip -1.0: expected a finite number >= 0"),
    (["--wd", "-1"], "--wd -1.0: expected a finite number >= 0"),
    (["--ema", "1.0"], "--ema 1.0: expected a finite number in [0, 1)"),
    (["--label-smoothing", "1.5"], "--label-smoothing 1.5: expected a finite number in [0, 1)"),
    (["--lr-max", "0"], "--lr-max 0.0: expected a finite number > 0"),
    (["--lr-max", "nan"], "--lr-max nan: expected a finite number > 0"),
    (["--lr-max", "inf"], "--lr-max inf: expected a finite number > 0"),
    (["--warmup", "0.9"], "--warmup 0.9: expected a finite number in (0, 0.8)"),
    (["--beta2", "1"], "--beta2 1.0: expected a finite number in [0, 1)"),
    (["--dropout", "0.1"], "--model convmixer_256_8: convmixer_256_8 has no hyper-parameter dropout"),
    (["--heads", "4"], "convmixer_256_8 has no hyper-parameter heads"),
    (["--model", "vit_seed", "--patch-size", "5"], "image_size 32 is not divisible by patch_size 5"),
    (["--randaugment", "2", "100"], "--randaugment 2 100: each value must be an integer in [0, 30]"),
    (["--randaugment", "0", "9"], "--randaugment 0 9: each value must be an integer in [1, 14]"),
    (["--randaugment", "2", "9", "--loader", "gpu"], "--randaugment runs in the reference loader only"),
    (["--epochs", "0"], "--epochs 0: expected an integer >= 1"),
    (["--epochs", "-2"], "--epochs -2: expected an integer >= 1"),
    (["--batch-size", "0"], "--batch-size 0: expected an integer >= 1"),
    (["--batch-size", "1000"], "--batch-size 1000: larger than the 160 training images"),
    (["--batch-size", "64", "--train-subset", "32"], "--batch-size 64: larger than the 32 training images"),
    (["--test-subset", "0"], "--test-subset 0: expected an integer >= 1"),
    (["--workers", "-1"], "--workers -1: expected an integer >= 0"),
    (["--seed", "-5"], "--seed -5: expected an integer >= 0"),
    (["--device", "tpu"], "--device 'tpu': expected cpu, cuda, cuda:N or auto"),
    (["--resume", "--overwrite"], "--resume and --overwrite contradict each other"),
    (["--data", "{data}/nowhere"], "{data}/nowhere does not exist: point --data (CIFAR10_DIR in the notebooks) at "
                                   "a copy, or pass --download"),
    (["--out", "{finished}"], "{finished} already holds a run (metrics.json, checkpoint.pt, model.pt): pass "
                              "--resume to continue it, --overwrite to replace it, or another --out"),
    (["--out", "{finished}", "--resume", "--epochs", "2"], "was made with another configuration"),
    (["--lr-max", "1e3", "--epochs", "1"], "loss became"),
    (["--trainer", "wrapper", "--lr-max", "2e3", "--epochs", "1"], "loss became"),
]
if not torch.cuda.is_available():
    HOSTILE.append((["--device", "cuda"], "--device cuda: no CUDA GPU is available here; use --device cpu"))


@pytest.mark.parametrize("extra, expected", HOSTILE, ids=[" ".join(e) for e, _ in HOSTILE])
def test_hostile_command_line_ends_in_one_line(extra, expected, tiny_cifar, finished_run, tmp_path, capsys):
    fill = dict(data=tiny_cifar, finished=finished_run)
    kept = snapshot(finished_run)
    out = tmp_path / "out"
    argv = tiny_args(tiny_cifar, out) + [e.format(**fill) for e in extra]  # the last value of a flag wins
    message = cli_error(argv)
    assert expected.format(**fill) in message, message
    assert "Traceback" not in capsys.readouterr().err
    assert snapshot(finished_run) == kept, "a refused command changed an existing run"
    assert not out.exists() or "loss became" in message, "a refused run left a folder behind"
    if "loss became" in message:  # a diverged run keeps no weights, and its metrics are strict JSON
        assert not (out / "model.pt").exists()


@pytest.mark.parametrize("option, value", [("--model", "resnet"), ("--trainer", "sgd"), ("--epochs", "two"),
                                           ("--lr-max", "fast")])
def test_unparsable_values_are_usage_errors(option, value, tiny_cifar, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(tiny_args(tiny_cifar, tmp_path / "out") + [option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and value in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value, message", [
    ("model", "resnet", "--model 'resnet': expected one of convmixer_256_8, vit_seed"),
    ("trainer", "sgd", "--trainer 'sgd': expected one of onecycle, wrapper"),
    ("epochs", 2.5, "--epochs 2.5: expected an integer >= 1"),
    ("batch_size", -8, "--batch-size -8: expected an integer >= 1"),
    ("ema", True, "--ema True: expected a finite number in [0, 1)"),
])
def test_python_config_is_checked_like_the_command_line(field, value, message, tiny_cifar, tmp_path):
    with pytest.raises(ValueError) as err:
        run(Config(data=str(tiny_cifar), out=str(tmp_path / "out"), device="cpu", **{field: value}))
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("epochs", [0, -3])
def test_trainers_reject_non_positive_epochs(epochs):
    model = create_model("convmixer_256_8", dim=16, depth=1, patch_size=4)
    loader = DataLoader(data.CIFAR10Array(np.zeros((4, 32, 32, 3)), [0, 1, 2, 3], data.test_transforms()))
    with pytest.raises(ValueError, match=f"epochs must be a positive integer, got {epochs}"):
        Trainer(model, torch.optim.AdamW(model.parameters())).fit(loader, loader, epochs)
    with pytest.raises(ValueError, match=f"epochs must be a positive integer, got {epochs}"):
        train_one_cycle(model, loader, loader, epochs)


def test_resume_of_a_finished_run_says_so(tiny_cifar, finished_run, capsys):
    kept = snapshot(finished_run)
    main(tiny_args(tiny_cifar, finished_run, "--resume", epochs=1))
    assert f"the run in {finished_run} is already finished (1 of 1 epochs" in capsys.readouterr().out
    assert snapshot(finished_run) == kept


def test_overwrite_replaces_a_run_and_says_so(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    main(tiny_args(tiny_cifar, out, epochs=1))
    before = snapshot(out)
    main(tiny_args(tiny_cifar, out, "--overwrite", "--seed", "1", epochs=1))
    assert f"replacing the run in {out} (--overwrite)" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finished"] and metrics["config"]["seed"] == 1 and snapshot(out) != before


# --- the data ---------------------------------------------------------------------------------------


def test_folder_without_the_class_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    message = cli_error(tiny_args(tmp_path / "empty", tmp_path / "out"))
    assert "train" in message and "<class>" in message and str(tmp_path / "empty") in message

    wrong = tmp_path / "wrong"
    write_class_folders(wrong, {"train": 1, "test": 1})
    (wrong / "train" / "airplane").rename(wrong / "train" / "plane")
    with pytest.raises(ValueError, match="exactly the 10 CIFAR-10 class folders") as err:
        data.cifar10(wrong)
    assert "'plane'" in str(err.value) and "'airplane'" in str(err.value)
    assert "exactly the 10 CIFAR-10 class folders" in cli_error(tiny_args(wrong, tmp_path / "out"))


@pytest.fixture
def small_copy(tmp_path):
    return write_class_folders(tmp_path / "data", {"train": 2, "test": 1})


def test_corrupt_image_names_the_file(small_copy, tmp_path):
    bad = small_copy / "train" / "cat" / "0001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not image data")
    with pytest.raises(ValueError, match="cannot read image") as err:
        data.cifar10(small_copy)
    assert str(bad) in str(err.value)
    assert str(bad) in cli_error(tiny_args(small_copy, tmp_path / "out", "--batch-size", "4"))

    good = small_copy / "train" / "cat" / "0000.png"
    good.write_bytes(good.read_bytes()[:60])  # truncated
    with pytest.raises(ValueError, match="0000.png"):
        data.cifar10(small_copy)


def test_image_of_the_wrong_size_names_the_file(small_copy, tmp_path):
    small = small_copy / "test" / "ship" / "0000.png"
    cv2.imwrite(str(small), np.zeros((28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match="28x28, expected 32x32") as err:
        data.cifar10(small_copy, train=False)
    assert str(small) in str(err.value)
    assert str(small) in cli_error(tiny_args(small_copy, tmp_path / "out", "--batch-size", "4"))


def test_empty_class_folder(small_copy, tmp_path):
    folder = small_copy / "train" / "frog"
    for p in folder.iterdir():
        p.unlink()
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="holds no .jpg/.jpeg/.png image") as err:
        data.cifar10(small_copy)
    assert str(folder) in str(err.value)
    assert str(folder) in cli_error(tiny_args(small_copy, tmp_path / "out", "--batch-size", "4"))


def test_corrupt_or_partial_torchvision_folder(tmp_path):
    batches = tmp_path / "tv" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "data_batch_1").write_bytes(b"not a pickle")
    message = cli_error(tiny_args(tmp_path / "tv", tmp_path / "out"))
    assert f"{batches} is incomplete or corrupt" in message and "--download" in message


def test_offline_download_says_what_to_set_and_leaves_no_empty_folder(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    def offline(self):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(CIFAR10, "download", offline)
    target = tmp_path / "data"
    message = cli_error(tiny_args(target, tmp_path / "out", "--download"))
    assert f"could not download CIFAR-10 into {target}" in message and "name resolution" in message
    assert "--data" in message and "CIFAR10_DIR" in message
    assert not target.exists() and not (tmp_path / "out").exists()
    with pytest.raises(DataNotFound) as err:  # a notebook shows the same one line, not a traceback
        data.cifar10(target, download=True, subset=8)
    assert err.value._render_traceback_() == [f"error: {err.value}"]


# --- files: the output folder, checkpoints, a full disk ------------------------------------------------


def test_output_folder_that_cannot_be_written(tiny_cifar, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file, not a folder")
    out = blocker / "run"
    message = cli_error(tiny_args(tiny_cifar, out))
    assert f"cannot write to output folder {out}" in message


def test_checkpoint_without_optimizer_state(tiny_cifar, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    model = create_model("convmixer_256_8", dim=16, depth=1, patch_size=4)
    torch.save({"epoch": 0, "model": model.state_dict()}, out / "checkpoint.pt")
    message = cli_error(tiny_args(tiny_cifar, out, "--resume"))
    assert f"checkpoint {out / 'checkpoint.pt'} lacks config, ema, history, optimizer" in message
    assert (out / "checkpoint.pt").exists()


def test_malicious_checkpoint_is_refused_naming_the_blocked_global(tiny_cifar, tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return os.system, ("echo pwned > " + str(tmp_path / "pwned"),)

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"epoch": 0, "model": Evil()}, out / "checkpoint.pt")
    message = cli_error(tiny_args(tiny_cifar, out, "--resume"))
    assert "refused by the weights-only loader" in message and "posix.system" in message
    assert "weights_only=False" not in message and "weights_only" not in message.split("(")[0]
    assert not (tmp_path / "pwned").exists()


def test_disk_full_while_saving_a_checkpoint(tiny_cifar, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    message = cli_error(tiny_args(tiny_cifar, tmp_path / "out"))
    assert message == "error: [Errno 28] No space left on device"


def test_ctrl_c_says_how_to_continue(tiny_cifar, tmp_path):
    out = tmp_path / "run"
    victim = start_cli(*tiny_args(tiny_cifar, out, epochs=50), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "metrics.json").exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=60)
    assert victim.returncode == 130, err.decode()
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err.decode()
    assert lines[0].startswith("interrupted after epoch ") and lines[0].endswith("of 50; continue with --resume")
    assert (out / "checkpoint.pt").exists()
