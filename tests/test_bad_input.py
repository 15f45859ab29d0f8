"""Bad input, tried as a hostile new user would: every case ends in one line and a non-zero exit
(argparse's usage errors: exit 2), prints no traceback, and loses nothing that was there.

Most cases call the CLI's main() in-process on the tiny class-folder copy (160 train, 40 test
PNGs); Ctrl-C is a real SIGINT to a real process.
"""
import importlib
import io
import json
import math
import os
import struct
import zipfile
import zlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
import torch
from torch.utils.data import DataLoader

from helpers import (PATIENCE, REPO_ROOT, TINY_BENCH, cli_command, cli_env, cli_error, config_kwargs, flags_named,
                     start_cli, tiny_args, wait_until, write_class_folders)
from src import data, notebook
from src.harness.config import Config
from src.harness.errors import DataNotFound, UserError
from src.harness.scheduler import train_job
from src.models import create_model
from src.harness.run import run
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


@pytest.fixture(scope="module")
def damaged_cifar(tiny_cifar, tmp_path_factory):
    """tiny_cifar's images, one of them cut short: found only when the images are decoded."""
    root = tmp_path_factory.mktemp("damaged") / "data"
    shutil.copytree(tiny_cifar, root)
    image = root / "train" / "dog" / "0003.png"
    image.write_bytes(image.read_bytes()[:-40])
    return root


# (extra arguments, what the one line must say); {data}, {finished} and {damaged} are filled in per case.
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
    (["--dropout", "0.1"], "--dropout 0.1: --model convmixer_256_8 has no dropout (its sizes: dim, depth, "
                           "kernel_size, patch_size); drop --dropout"),
    (["--heads", "4"], "--heads 4: --model convmixer_256_8 has no heads (its sizes: dim, depth, kernel_size, "
                       "patch_size); drop --heads"),
    (["--depth", "1000000000"], "--depth 1000000000: expected an integer in [1, 1000]"),  # it built for hours
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
    (["--loader", "gpu", "--workers", "3"], "--workers 3: the gpu loader has no DataLoader workers; drop --workers, "
                                            "or use --loader reference"),
    (["--download"], "--download: --data {data} holds class folders (train/<class>/, test/<class>/), which are read "
                     "as they are; drop --download"),
    (["--train-subset", "161"], "--train-subset 161: more than the 160 images of the train split in {data}; give "
                                "at most 160, or leave it out"),
    (["--test-subset", "41"], "--test-subset 41: more than the 40 images of the test split in {data}; give at most 40"),
    (["--resume"], "no run to resume there (none of metrics.json, checkpoint.pt, model.pt); give the run's folder, or "
                   "drop --resume to start one"),
    (["--seed", "-5"], "--seed -5: expected an integer in [0, 4294967295]"),
    (["--seed", str(2**32)], "--seed 4294967296: expected an integer in [0, 4294967295]"),
    (["--patch-size", "40"], "--model convmixer_256_8: these sizes cannot take a 32x32 image"),
    (["--dim", "300000"], "gradients and optimizer state need"),
    (["--device", "tpu"], "--device 'tpu': expected cpu, cuda, cuda:N or auto"),
    (["--device", "cpu:7"], "--device cpu:7: a CPU has no index; use --device cpu"),
    (["--precision", "fp16"], "--precision fp16: mixed precision runs on CUDA only"),
    (["--out", ""], "--out '': give a folder"),
    (["--data", " "], "--data ' ': give a folder"),
    (["--kernel-size", "100000"], "need"),  # one line, no torch warning before it
    (["--out", "{data}/train/run"], "--out {data}/train/run: inside --data {data}"),
    (["--data", "./data", "--no-download"], "CIFAR-10 data folder data does not exist"),  # no download (probe 8)
    (["--out", "/tmp/" + "a" * 300], "--out /tmp/" + "a" * 300 + ": File name too long; give another path"),
    (["--data", "{odd}/loop"], "--data {odd}/loop: Too many levels of symbolic links; give another path"),
    (["--out", "{odd}/no-checkpoint", "--resume"], "holds a run (metrics.json) but no checkpoint.pt to continue from"),
    (["--out", "{odd}/weights-only", "--resume"], "holds a run (model.pt) but no checkpoint.pt to continue from"),
    (["--out", "{odd}/metrics-pipe", "--resume"],
     "metrics-pipe/metrics.json is not a regular file: delete it to resume from checkpoint.pt, or pass --overwrite"),
    (["--out", "{odd}/not-metrics", "--resume"], "not-metrics/metrics.json is not a run's metrics.json (it lacks "
                                                 "epochs_done, final_test_acc, config"),
    (["--out", "{odd}/epochs-huge", "--resume", "--epochs", "1"],
     "epochs-huge/metrics.json is not a run's metrics.json (epochs_done 1000000000000000000000000000000 of 1 epochs)"),
    (["--out", "{odd}/data-number", "--resume"], "data-number/metrics.json is not a run's metrics.json (its config is "
                                                 "damaged: expected str, bytes or os.PathLike object, not int)"),
    (["--resume", "--overwrite"], "--resume and --overwrite contradict each other"),
    *((["--out", "{odd}/users-metrics", *resume], "users-metrics/metrics.json is not a run's metrics.json (it lacks "
       "finished, epochs_done, final_test_acc, config, model, history): pass --overwrite to replace it, or give "
       "another --out") for resume in ([], ["--resume"])),  # advised --resume, then to resume from no checkpoint
    (["--data", "{data}/nowhere"], "{data}/nowhere does not exist: point --data (CIFAR10_DIR in the notebooks) at "
                                   "a copy, or pass --download"),
    (["--out", "{finished}"], "{finished} already holds a run (metrics.json, checkpoint.pt, model.pt): pass "
                              "--resume to continue it, --overwrite to replace it, or another --out"),
    (["--out", "{finished}", "--resume", "--epochs", "2"], "was made with another configuration"),
    (["--out", "{finished}", "--overwrite", "--data", "{damaged}"], "0003.png is damaged"),  # the old run stays
    (["--out", "{finished}", "--resume", "--epochs", "1", "--data", "{damaged}"],
     "was made with another configuration (key: (then, now)): {{'data'"),
    (["--out", "{odd}/cut", "--resume"], "cut/metrics.json is not readable JSON"),
    (["--out", "{odd}/ckpt-other-run", "--resume", "--epochs", "1"], "ckpt-other-run/checkpoint.pt was not saved by "
     "the run its metrics.json records (another configuration): pass --overwrite to train the run again, or give "
     "another --out"),  # each of the two advised the other's --seed, endlessly (probe 16)
    (["--out", "{odd}/deep", "--resume"], "deep/metrics.json is not readable JSON"),
    (["--out", "{odd}/config-text", "--resume", "--epochs", "1"], "the run in {odd}/config-text records dim as '16', "
     "which no flag gives (an edited file?): pass --overwrite, or give another --out"),
    (["--out", "{odd}/no-weights", "--resume", "--epochs", "1"],
     "the finished run in {odd}/no-weights has no model.pt"),
    (["--out", "{odd}/cut-weights", "--resume", "--epochs", "1"],
     "cut-weights/model.pt is not a whole saved model or checkpoint (cut short): pass --overwrite to train the run "
     "again"),
    (["--lr-max", "1e3", "--epochs", "1"], "loss became"),
    *((["--out", "{odd}/" + name, "--resume", "--epochs", "1"], f"{name}/checkpoint.pt is not a checkpoint this run "
       f"can continue from ({why}): pass --overwrite to train the run again") for name, why in (
        ("ckpt-int", "it holds int, not a checkpoint"), ("ckpt-epoch-text", "epoch 'x', not one of the run's 1 epochs"),
        ("ckpt-epoch-99", "epoch 99, not one of the run's 1 epochs"),
        ("ckpt-optimizer", "loaded state dict has a different number of parameter groups"),
        ("ckpt-rng", "Expected a CPUGeneratorImplState of size 5056 but found the input RNG state size to be 3"),
        ("ckpt-history-nan", "its history holds values that are not finite numbers"),  # (probe 6)
        ("ckpt-moment-shape", "its optimizer's exp_avg does not fit the weights, or is not finite"),
        ("ckpt-moment-nan", "its optimizer's exp_avg_sq does not fit the weights, or is not finite"),
        ("ckpt-step-negative", "its optimizer's step does not fit the weights, or is not finite"),
        ("ckpt-wd-nan", "its optimizer's weight_decay is nan, this run's 0.01"),
        ("ckpt-lr", "its optimizer's learning rate [-5.0] is not its schedule's [0.0]"),  # used for a step (probe 12)
        ("ckpt-betas", "its optimizer's betas is (0.9, 2.0), this run's (0.9, 0.999)"),
        ("ckpt-schedule-step", "its schedule is at step 3, its history at step 10"),  # a traceback mid-epoch (probe 7)
        ("ckpt-schedule-lr", "its learning-rate schedule's base_lrs is not this run's"))),
    *((["--out", "{odd}/" + name, *how, "--epochs", "1"], f"{name}/checkpoint.pt is not a regular file (a folder or "
       f"pipe?): remove it, or give another --out") for name in ("ckpt-folder", "ckpt-pipe")
      for how in (["--resume"], ["--overwrite"])),  # before the data is read (probe 6)
    *((["--out", "{odd}/" + name, "--resume", "--epochs", "1"], f"{name}/{file} is damaged: a checksum of its contents "
       f"fails (a byte changed on the disk or in a copy): pass --overwrite to train the run again")
      for name, file in (("flipped-ckpt", "checkpoint.pt"), ("flipped-weights", "model.pt"))),  # read whole (probe 19)
    (["--out", "{odd}/ckpt-nan", "--resume", "--epochs", "1"], "ckpt-nan/checkpoint.pt holds weights that are not "
     "finite (stem.0.weight, stem.0.bias, stem.2.weight and 17 more): pass --overwrite to train the run again"),
    (["--out", "{odd}/stopped", "--resume", "--epochs", "1", "--seed", "5"],
     "another configuration (key: (then, now)): {{'seed': (0, 5)}}: continue it as it was made (--seed 0), or pass "
     "--overwrite"),
    (["--out", "{odd}/stopped", "--resume", "--epochs", "1", "--test-subset", "20"],
     "{{'test_subset': (None, 20)}}: continue it as it was made (without --test-subset), or"),
    (["--out", "{odd}/stopped", "--resume", "--epochs", "1", "--tta-flip"],
     "{{'tta_flip': (False, True)}}: continue it as it was made (--no-tta-flip), or"),
    (["--trainer", "wrapper", "--lr-max", "2e3", "--epochs", "1"], "loss became"),
    (["--out", "{odd}/lock-folder", "--epochs", "1"],
     "--out {odd}/lock-folder: cannot write {odd}/lock-folder/.lock (Is a directory)"),
]
if not torch.cuda.is_available():
    HOSTILE.append((["--device", "cuda"], "--device cuda: no CUDA GPU is available here; use --device cpu"))


@pytest.mark.filterwarnings("error::UserWarning")  # a warning printed before the line breaks "one line" too
@pytest.mark.parametrize("extra, expected", HOSTILE, ids=[" ".join(e) for e, _ in HOSTILE])
def test_hostile_command_line_ends_in_one_line(extra, expected, tiny_cifar, finished_run, damaged_cifar, odd_runs,
                                               tmp_path, capsys):
    fill = dict(data=tiny_cifar, finished=finished_run, damaged=damaged_cifar, odd=odd_runs)
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
    with pytest.raises(ValueError, match="is damaged") as err:
        data.cifar10(small_copy)
    assert str(bad) in str(err.value)
    assert str(bad) in cli_error(tiny_args(small_copy, tmp_path / "out", "--batch-size", "4"))

    good = small_copy / "train" / "cat" / "0000.png"
    good.write_bytes(good.read_bytes()[:60])  # truncated
    with pytest.raises(ValueError, match="0000.png"):
        data.cifar10(small_copy)


def _zero_the_middle(image):
    """A JPEG whose markers are whole but whose data is not: libjpeg warns and decodes grey."""
    rng = np.random.default_rng(0)
    encoded = bytearray(cv2.imencode(".jpg", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))[1].tobytes())
    encoded[len(encoded) // 2:len(encoded) // 2 + 200] = bytes(200)
    image.with_suffix(".jpg").write_bytes(bytes(encoded))
    image.unlink()


def _huge_header(image):
    """A whole PNG whose header claims 100000x100000 pixels: OpenCV refuses it with an exception."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                      + chunk(b"IEND", b""))


@pytest.mark.parametrize("damage, message", [
    (lambda image: os.mkfifo(image.with_name("9999.jpg")), "9999.jpg is not a regular file"),
    (lambda image: image.with_name("9999.png").mkdir(), "9999.png: a folder inside a class folder"),
    (lambda image: image.with_name("9999.png").symlink_to("nowhere.png"), "9999.png is not a regular file"),
    (lambda image: image.rename(image.with_suffix(".bmp")), "0000.bmp: only JPEG (.jpg, .jpeg, .jpe, .jfif) and PNG"),
    (_zero_the_middle, "0000.jpg is damaged (its decoder says: Corrupt JPEG data"),
    (_huge_header, "cannot read image"),
    (lambda image: image.rename(image.with_suffix(".heic")), "0000.heic: only JPEG (.jpg, .jpeg, .jpe, .jfif) and PNG"),
    (lambda image: (image.parent / "more").mkdir(), "cat/more: a folder inside a class folder"),
], ids=["fifo", "folder", "broken link", "bmp", "corrupt middle", "huge header", "heic", "sub-folder"])
def test_odd_files_in_a_class_folder_are_named_in_one_line(damage, message, small_copy, tmp_path, capfd):
    damage(small_copy / "train" / "cat" / "0000.png")
    error = cli_error(tiny_args(small_copy, tmp_path / "out", "--batch-size", "4"))
    assert message in error and str(small_copy / "train" / "cat") in error
    assert capfd.readouterr().err == ""  # no decoder warning before the line


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
    with pytest.raises(ValueError, match="holds no JPEG or PNG image") as err:
        data.cifar10(small_copy)
    assert str(folder) in str(err.value)
    assert cli_error(tiny_args(small_copy, tmp_path / "out", "--batch-size", "4")).endswith(
        f"{folder} holds no JPEG or PNG image: point --data at a whole copy")  # no advice (probe 15)


def test_hidden_folders_beside_the_class_folders_are_not_data(small_copy):
    """Jupyter leaves .ipynb_checkpoints in any folder it browses; it was refused as an 11th class (probe 6)."""
    before = data.split_size(small_copy)
    (small_copy / "train" / ".ipynb_checkpoints").mkdir()
    (small_copy / "train" / ".ipynb_checkpoints" / "0000.jpg").write_bytes(b"")
    assert data.split_size(small_copy) == before
    assert len(data.cifar10(small_copy)) == before


def test_an_image_name_that_is_not_utf8_is_read(small_copy):
    """File names are bytes; the listing a resumed run compares took only UTF-8 ones (probe 7: a traceback)."""
    before = data.split_listing(small_copy)
    image = next((small_copy / "train" / "cat").iterdir())
    os.rename(bytes(image), bytes(image.parent) + b"/\xff.jpg")
    after = data.split_listing(small_copy)
    assert after[0] == before[0] and after[1] != before[1]


def test_a_full_disk_that_refuses_even_the_temporary_file_is_one_line(tmp_path, monkeypatch):
    from src.harness.checkpoint import write_text
    monkeypatch.setattr(tempfile, "mkstemp", _disk_full)  # (probe 7: it named the .tmp file, with no advice)
    with pytest.raises(UserError) as err:
        write_text(tmp_path / "table.md", "| a |")
    assert str(err.value) == (f"cannot write {tmp_path / 'table.md'}: No space left on device (nothing was written); "
                              f"free some space or choose another --out")


def test_corrupt_or_partial_torchvision_folder(tmp_path):
    batches = tmp_path / "tv" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "data_batch_1").write_bytes(b"not a pickle")
    message = cli_error(tiny_args(tmp_path / "tv", tmp_path / "out"))
    assert f"{batches} is incomplete or corrupt" in message and "--download" in message
    assert "download=True" not in message  # torchvision's advice, for its Python API (probe 10)


def test_offline_download_says_what_to_set_and_leaves_no_empty_folder(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    def offline(self):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(CIFAR10, "download", offline)
    target = tmp_path / "new" / "data"
    message = cli_error(tiny_args(target, tmp_path / "out", "--download"))
    assert f"could not download CIFAR-10 into {target}" in message and "name resolution" in message
    assert "--data" in message and "CIFAR10_DIR" in message
    assert not (tmp_path / "new").exists() and not (tmp_path / "out").exists()
    with pytest.raises(DataNotFound) as err:  # a notebook shows the same one line, not a traceback
        data.cifar10(target, download=True, subset=8)
    assert err.value._render_traceback_() == [f"error: {err.value}"]


# --- files: the output folder, checkpoints, a full disk ------------------------------------------------


def test_output_folder_that_cannot_be_written(tiny_cifar, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file, not a folder")
    out = blocker / "run"
    message = cli_error(tiny_args(tiny_cifar, out))
    assert f"--out {out}: cannot write this folder" in message


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


def _disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")


def _zip_writer_fails(*args, **kwargs):
    """What torch's zip writer raises when the disk fills under it: a RuntimeError from the OSError."""
    try:
        raise OSError(28, "No space left on device")
    except OSError as err:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0") from err


@pytest.mark.parametrize("full", [_disk_full, _zip_writer_fails], ids=["OSError", "torch's RuntimeError"])
def test_disk_full_while_saving_a_checkpoint(full, tiny_cifar, tmp_path, monkeypatch):

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "out"
    message = cli_error(tiny_args(tiny_cifar, out))
    assert message == (f"error: cannot write {out / 'checkpoint.pt'}: No space left on device (nothing was "
                       f"written); free some space or choose another --out")
    assert not list(out.glob("*.tmp"))


def test_a_write_onto_a_folder_advises_removing_it_not_freeing_space(tmp_path):
    from src.harness.checkpoint import write_text
    (tmp_path / "table.md").mkdir()
    with pytest.raises(UserError) as err:
        write_text(tmp_path / "table.md", "| a |")
    assert str(err.value) == (f"cannot write {tmp_path / 'table.md'}: Is a directory (nothing was written); remove the "
                              f"folder there, or choose another --out")
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


@pytest.mark.parametrize("target", ["report", "readme"])
def test_disk_full_while_writing_a_report_names_it(target, quick_cifar, tmp_path, monkeypatch):
    """Reports, tables, READMEs and notebooks are written like the run's files (probe 6: a notebook
    on a full disk ended in '[Errno 28] No space left on device', naming no file)."""
    from src import reproduce
    readme = tmp_path / "README.md"
    shutil.copy(reproduce.ROOT / "README.md", readme)
    before = readme.read_bytes()
    monkeypatch.setattr(os, "fsync", _disk_full)
    argv, path, flag = {"report": (["--quick", "--device", "cpu", "--data", quick_cifar, "--only", "recipes",
                                    "--out", tmp_path / "out"], tmp_path / "out" / "report.md", "--out"),
                        "readme": (["--write-readme", "--readme", readme], readme, "--readme")}[target]
    message = cli_error(argv, "src.reproduce")
    kept = "the previous one is kept" if target == "readme" else "nothing was written"
    assert message == f"error: cannot write {path}: No space left on device ({kept}); free some space or choose " \
                      f"another {flag}"
    assert readme.read_bytes() == before and not list(tmp_path.rglob("*.tmp"))


def test_ctrl_c_while_waiting_for_the_other_ranks_stops_the_run(tiny_cifar, tmp_path):
    """torch's rendezvous blocks in C++: the signal waited for it, up to 30 minutes (probe 12)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**cli_env(), "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}  # rank 1 never comes
    victim = subprocess.Popen(cli_command(*tiny_args(tiny_cifar, tmp_path / "run")), cwd=REPO_ROOT, env=env,
                              stderr=subprocess.PIPE, text=True)
    waiting = psutil.Process(victim.pid)
    wait_until(lambda: any(c.laddr.port == port and c.status == psutil.CONN_LISTEN
                           for c in waiting.net_connections()), victim)
    victim.send_signal(signal.SIGINT)
    err = victim.communicate(timeout=PATIENCE)[1]
    assert victim.returncode == 130 and err.strip() == ("interrupted before the first epoch ended: nothing of this run "
                                                        "was saved; rerun the same command to start it"), err


@pytest.mark.parametrize("stops, codes", [
    ((signal.SIGINT,), {130}), ((signal.SIGTERM,), {143}),
    # both at once: Python runs pending handlers in signal order, so either comes first; the second one found its
    # handler set to ignore it, and Python printed that race as a traceback (probe 14)
    ((signal.SIGTERM, signal.SIGINT), {130, 143})])
def test_ctrl_c_or_sigterm_says_how_to_continue(stops, codes, tiny_cifar, tmp_path):
    out = tmp_path / "run"
    victim = start_cli(*tiny_args(tiny_cifar, out, epochs=50), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until((out / "metrics.json").exists, victim)
    for stop in stops:
        victim.send_signal(stop)
    _, err = victim.communicate(timeout=PATIENCE)
    assert victim.returncode in codes, err.decode()
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err.decode()
    assert lines[0].startswith("interrupted after epoch ") and lines[0].endswith("of 50; continue with --resume")
    assert (out / "checkpoint.pt").exists()


SLOW = ("--dim", "256", "--depth", "8", "--patch-size", "1")  # a first epoch of many seconds: stopped before its end


def test_stopped_before_anything_was_saved_says_so_and_a_resume_meanwhile_waits(tiny_cifar, tmp_path):
    out = tmp_path / "run"
    victim = start_cli(*tiny_args(tiny_cifar, out, *SLOW), stderr=subprocess.PIPE)
    wait_until((out / ".lock").exists, victim)
    message = cli_error(tiny_args(tiny_cifar, out, "--resume", *SLOW))  # the folder holds no run yet
    assert message == (f"error: --out {out}: another process is starting a run there right now, its first epoch not "
                       f"saved yet; wait for it to end, or choose another --out")
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=PATIENCE)
    assert victim.returncode == 143 and err.decode().strip() == (
        "interrupted before the first epoch ended: nothing of this run was saved; rerun the same command to start it")
    assert not out.exists()


def test_overwrite_stopped_before_its_first_epoch_says_what_became_of_the_old_run(tiny_cifar, finished_run,
                                                                                   tmp_path):
    from src.harness.checkpoint import stamps
    from src.harness.cli import RUN_FILES
    from src.train import _interrupted
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    cfg, before = Config(**config_kwargs(tiny_cifar, out), overwrite=True), {"files": stamps(out, RUN_FILES)}
    assert _interrupted(cfg, time.time(), before) == (  # stopped while it read the data: the old run is there
        f"interrupted before the first epoch ended: nothing of this run was saved, and the run {out} held is kept as "
        f"it was; rerun the same command to start it")
    victim = start_cli(*tiny_args(tiny_cifar, out, "--overwrite", *SLOW), stderr=subprocess.PIPE)
    wait_until(lambda: not (out / "metrics.json").exists(), victim)
    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=PATIENCE)
    assert victim.returncode == 130 and err.decode().strip() == (
        f"interrupted before the first epoch ended: nothing of this run was saved, and the run {out} held was "
        f"removed; rerun the same command to start it")


def test_resume_on_data_that_changed_since_the_run_started_is_refused(tiny_cifar, tmp_path):
    root, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_cifar, root)
    main(tiny_args(root, out, epochs=1))
    (out / "model.pt").unlink()  # stopped after its last checkpoint
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**metrics, "finished": False}))
    for image in sorted((root / "train" / "cat").iterdir()):  # 16 more training images: 11 batches, not 10
        shutil.copy(image, image.with_name("new-" + image.name))
    message = cli_error(tiny_args(root, out, "--resume", epochs=1))
    assert message == (f"error: --data {root} holds other images than when the run in {out} started (train images "
                       f"160 then, 176 now; train split images 160 then, 176 now; train images renamed, added, "
                       f"removed or moved between classes): restore them, or pass --overwrite to train the run again")
    (out / "metrics.json").unlink()  # the checkpoint alone says so too, before the data is read (probe 7)
    assert cli_error(tiny_args(root, out, "--resume", epochs=1)) == (
        f"error: --data {root.resolve()} holds other images than when {out / 'checkpoint.pt'} was saved (train images "
        f"160 then, 176 now; train split images 160 then, 176 now; train images renamed, added, removed or moved "
        f"between classes): restore them, or pass --overwrite to train the run again")
    for image in sorted((root / "train" / "cat").glob("new-*")):  # the images back, one moved to another class
        image.unlink()
    moved = next((root / "train" / "cat").iterdir())
    moved.rename(root / "train" / "dog" / moved.name.replace(".", "-cat."))
    assert "train images renamed, added, removed or moved between classes): restore them" in cli_error(
        tiny_args(root, out, "--resume", epochs=1))


@pytest.mark.parametrize("change", ["grown split under a subset", "image moved to another class"])
def test_resume_sees_a_change_that_keeps_the_images_it_uses(change, tiny_cifar, tmp_path):
    """A subset is drawn from the whole split, and a label comes from the class folder: either
    change gives the resumed epochs other images than the first ones, though the counts stay."""
    root, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_cifar, root)
    subset = ("--train-subset", "128")
    main(tiny_args(root, out, *subset, epochs=1))
    (out / "model.pt").unlink()
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**metrics, "finished": False}))
    cats = sorted((root / "train" / "cat").iterdir())
    if change == "grown split under a subset":
        shutil.copy(cats[0], cats[0].with_name("new-" + cats[0].name))
        said = "train split images 160 then, 161 now; train images renamed, added, removed or moved between classes"
    else:
        shutil.move(cats[0], root / "train" / "dog" / ("was-cat-" + cats[0].name))
        said = "train images renamed, added, removed or moved between classes"
    assert cli_error(tiny_args(root, out, *subset, "--resume", epochs=1)) == (
        f"error: --data {root} holds other images than when the run in {out} started ({said}): restore them, or "
        f"pass --overwrite to train the run again")


_FORKING = []  # set while the test below wants its fork hook to fire (a hook cannot be unregistered)


def _interrupt_the_fork():
    if _FORKING:
        _FORKING.append("forked")
        signal.raise_signal(signal.SIGINT)  # its Python handler runs before the hook returns


def test_ctrl_c_while_workers_are_forked_is_raised_not_swallowed(tiny_cifar, capfd):
    """A KeyboardInterrupt raised inside a fork hook (logging's) is printed as "Exception ignored"
    and lost (probe 5, src.bench); the loader keeps the signal until its workers are forked."""
    from src import data
    loader, _ = data.loaders(tiny_cifar, batch_size=16, workers=2)
    os.register_at_fork(after_in_parent=_interrupt_the_fork)
    _FORKING.append("armed")
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever earlier tests left
    try:
        with pytest.raises(KeyboardInterrupt):
            iter(loader)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    finally:
        signal.signal(signal.SIGINT, before)
        forks = _FORKING[1:]
        _FORKING.clear()
    assert forks, "no worker was forked"
    assert "Exception ignored" not in capfd.readouterr().err


@pytest.mark.parametrize("module, stops_in", [("src.evaluate", "learned_figures"), ("src.bench", "bench")])
def test_ctrl_c_in_evaluate_or_bench_says_what_was_written(module, stops_in, tiny_cifar, finished_run, tmp_path,
                                                           monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    command = importlib.import_module(module)
    monkeypatch.setattr(command, stops_in, interrupted)
    json_path, figures = tmp_path / "result.json", tmp_path / "figures"
    argv = {"src.evaluate": [finished_run / "model.pt", "--figures", figures],
            "src.bench": ["--device", "cpu", "--dim", "16", "--depth", "1", "--batch-size", "16"]}[module]
    with pytest.raises(SystemExit) as exit_:
        command.main([str(a) for a in (*argv, "--data", tiny_cifar, "--json", json_path)])
    said = capsys.readouterr().err.strip()
    assert exit_.value.code == 130 and said == {
        "src.evaluate": f"interrupted: {json_path} and perhaps some figures in {figures} written",
        "src.bench": "interrupted before every path was timed: nothing written or shown"}[module]
    assert json_path.exists() == (module == "src.evaluate")


def test_a_wrapper_run_stopped_after_its_last_checkpoint_resumes(tiny_cifar, tmp_path):
    """OneCycleLR steps once past its end: the last checkpoint's learning rate is below 0, and the
    checkpoint check refused it as damaged (probe 7)."""
    out = tmp_path / "run"
    main(tiny_args(tiny_cifar, out, "--trainer", "wrapper", epochs=1))
    (out / "model.pt").unlink()  # killed between the last checkpoint and the weights
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**metrics, "finished": False}))
    main(tiny_args(tiny_cifar, out, "--trainer", "wrapper", "--resume", epochs=1))
    assert (out / "model.pt").is_file() and json.loads((out / "metrics.json").read_text())["finished"]


def test_a_stopped_run_whose_checkpoint_is_another_runs_is_refused_before_any_run(odd_runs):
    """src.sweep and src.reproduce asked only that a stopped run's checkpoint be whole: its own src.train refused
    it, once the other runs had trained (probe 20)."""
    from src.harness.scheduler import held_run
    assert held_run(odd_runs / "ckpt-other-run", None) == (
        False, "its checkpoint.pt was not saved by the run its metrics.json records")
    assert held_run(odd_runs / "stopped", None) == (False, None)  # its own: continued


@pytest.mark.parametrize("spec", ["{", "{}"])
def test_a_damaged_python3_kernelspec_is_passed_over(tmp_path, monkeypatch, spec):
    """Not JSON, or no argv: a traceback before any notebook ran (probe 20); the command's own kernelspec runs."""
    from src.harness.executor import kernel_manager
    (tmp_path / "kernels" / "python3").mkdir(parents=True)
    (tmp_path / "kernels" / "python3" / "kernel.json").write_text(spec)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with kernel_manager() as manager:
        assert manager.kernel_name == "this-python"


def test_a_run_on_cpu_0_continues(odd_runs, tiny_cifar, tmp_path):
    """cpu:0 names the CPU: torch.load could not map a checkpoint onto "cpu:0", so a run stopped there was called
    unreadable, and --overwrite advised (probe 19)."""
    out = tmp_path / "run"
    shutil.copytree(odd_runs / "stopped", out)
    main(tiny_args(tiny_cifar, out, "--device", "cpu:0", "--resume", epochs=1))
    assert (out / "model.pt").is_file() and json.loads((out / "metrics.json").read_text())["finished"]


def test_a_refused_run_leaves_no_folder_it_made(damaged_cifar, tmp_path):
    """Its parents neither (probe 8: --out NEW/a/b left NEW/a behind)."""
    assert "0003.png is damaged" in cli_error(tiny_args(damaged_cifar, tmp_path / "new" / "a" / "b"))
    assert not (tmp_path / "new").exists()


def test_a_patch_as_large_as_the_image_is_accepted(tiny_cifar, tmp_path):
    """A 1x1 map: the up-front check's one image met BatchNorm's 'more than 1 value' (probe 8); a batch trains."""
    main(tiny_args(tiny_cifar, tmp_path / "run", "--patch-size", "32", epochs=1))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["finished"]


def test_only_the_commands_own_leftovers_are_removed(tmp_path):
    from src.harness.checkpoint import remove_leftovers
    mine = ["metrics.json notes.tmp", "model.pt.my-copy.tmp", "model.pt.mybackup.tmp"]  # 8 characters, not mkstemp's
    for name in ("model.ptk3j2x9ab.tmp", *mine):
        (tmp_path / name).write_text("x")
    remove_leftovers(tmp_path, ("model.pt", "metrics.json"))  # a user's notes stayed only by luck (probes 8, 14)
    assert sorted(p.name for p in tmp_path.iterdir()) == mine


def test_a_refused_run_clears_no_leftovers(finished_run, tiny_cifar, tmp_path):
    """Leftovers are cleared by the run that takes the folder, not by one it refuses (probe 14)."""
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "model.ptk3j2x9ab.tmp").write_text("a killed write's")
    assert "already holds a run" in cli_error(tiny_args(tiny_cifar, out, epochs=1))
    assert (out / "model.ptk3j2x9ab.tmp").exists()


def test_a_file_name_of_255_bytes_is_written_and_its_leftovers_cleared(tmp_path):
    """Its temporary name (NAME, 8 characters, .tmp) was too long: refused after the work (probe 11)."""
    from src.harness.checkpoint import remove_leftovers, write_text
    name = "j" * 250 + ".json"
    write_text(tmp_path / name, "{}")
    assert [p.name for p in tmp_path.iterdir()] == [name]
    leftover = tmp_path / (name[:243] + "k3j2x9ab.tmp")  # what a kill during that write leaves
    leftover.write_text("{")
    remove_leftovers(tmp_path, (name,))
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_matplotlib_backend_that_does_not_exist_is_one_line(finished_run, tiny_cifar):
    done = subprocess.run(cli_command(finished_run / "model.pt", "--data", tiny_cifar, "--device", "cpu",
                                      module="src.evaluate"), cwd=REPO_ROOT, env={**cli_env(), "MPLBACKEND": "bogus"},
                          capture_output=True, text=True, timeout=PATIENCE)  # matplotlib's traceback (probe 11)
    assert done.returncode == 1 and done.stderr == ("error: MPLBACKEND='bogus' is not a backend matplotlib knows: "
                                                    "unset it, or set MPLBACKEND=Agg\n"), done.stderr


def test_a_command_whose_stdout_cannot_be_written_says_so(finished_run, tiny_cifar):
    with open("/dev/full", "w") as full:  # a full disk where stdout goes
        done = subprocess.run(cli_command(finished_run / "model.pt", "--data", tiny_cifar, "--device", "cpu",
                                          module="src.evaluate"), cwd=REPO_ROOT, env=cli_env(), stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=PATIENCE)  # "[Errno 28]" alone (probe 12)
    assert done.returncode == 1 and done.stderr == ("error: stdout cannot be written (No space left on device): what "
                                                    "the command wrote to files is kept; send its output to a file or "
                                                    "pipe that takes all of it\n"), done.stderr


def test_a_name_stdout_cannot_encode_is_printed_escaped(finished_run, tiny_cifar, tmp_path, monkeypatch):
    """A run folder named with a byte that is not UTF-8, and a stdout that encodes strictly (PYTHONIOENCODING, a
    locale other than C.UTF-8): the line naming it ended in UnicodeEncodeError's traceback (probe 14)."""
    out = tmp_path / os.fsdecode(b"run\xff")
    shutil.copytree(finished_run, out)
    strict = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # errors="strict", as PYTHONIOENCODING=utf-8 makes it
    monkeypatch.setattr(sys, "stdout", strict)
    main(tiny_args(tiny_cifar, out, "--resume", epochs=1))
    strict.flush()
    assert b"run\\udcff is already finished" in strict.buffer.getvalue()


def test_a_closed_stdout_is_refused_before_any_work(tiny_cifar, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)  # what Python makes of `>&-`: src.evaluate's result vanished (probe 13)
    assert cli_error(tiny_args(tiny_cifar, tmp_path / "run")) == ("error: stdout is closed, so the command's output "
                                                                  "would be lost: send it to a file or pipe")
    assert not (tmp_path / "run").exists()


def test_two_runs_of_a_sweep_in_one_folder_are_refused(tiny_cifar, tmp_path):
    """A link made two variants one folder: with --force one replaced the other, both reported (probe 12)."""
    from src.harness.batch import check_results
    flags = [a for a in tiny_args(tiny_cifar, tmp_path, epochs=1) if a not in ("--out", str(tmp_path))]
    (tmp_path / "a").mkdir()
    os.symlink("a", tmp_path / "b")
    jobs = [train_job("a", tmp_path / "a", flags), train_job("b", tmp_path / "b", [*flags, "--lr-max", "0.02"])]
    with pytest.raises(UserError, match=f"{tmp_path / 'b'} and {tmp_path / 'a'} are one folder \\(a link\\?\\)"):
        check_results(jobs, force=True)


def test_hidden_files_in_a_class_folder_are_not_data(tiny_cifar, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(tiny_cifar, copy)
    (copy / "train" / "cat" / "._0000.png").write_bytes(b"macOS metadata")  # read as a damaged image (probe 11)
    assert data.split_listing(copy) == data.split_listing(tiny_cifar)


def test_the_first_of_two_signals_sets_the_exit_code():
    """Ctrl-C, then SIGTERM while the command stops: 130, as for Ctrl-C alone (probe 6 saw 143)."""
    from src.harness import cli
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    cli._Stop.signal = None
    try:
        with pytest.raises(KeyboardInterrupt):
            cli._stop(signal.SIGINT, None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN  # the second cannot cut the stopping short
        assert cli._Stop.signal == signal.SIGINT
    finally:
        cli._Stop.signal = None
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def test_a_command_that_did_its_work_ignores_a_late_ctrl_c(monkeypatch):
    """A signal while Python shuts down killed a finished run's process silently, exit 143 (probe 7)."""
    import src
    from src.harness.cli import one_line

    def starting(signum, frame):  # src/__init__'s handler while `python -m src.COMMAND` starts
        raise AssertionError("not while the command runs")
    monkeypatch.setattr(src, "_interrupted_while_starting", starting, raising=False)
    before = signal.signal(signal.SIGINT, starting), signal.signal(signal.SIGTERM, starting)
    try:
        with one_line():
            pass
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def test_bench_divergence_speaks_of_no_checkpoint(tiny_cifar):
    """src.bench writes none: the divergence line's 'the last checkpoint is from the epoch before' is train's."""
    message = cli_error(["--data", tiny_cifar, "--device", "cpu", "--dim", "16", "--depth", "1", "--batch-size", "16",
                         "--lr-max", "1e3"], "src.bench")
    assert "loss became" in message and message.endswith("training stopped (lower the learning rate?)")


def test_ctrl_c_while_the_command_starts_is_one_line(tiny_cifar, tmp_path):
    """Caught while torch is being imported (its library is mapped, its Python part not yet run)."""
    victim = start_cli(*tiny_args(tiny_cifar, tmp_path / "run"), stderr=subprocess.PIPE)
    wait_until(lambda: "libtorch" in Path(f"/proc/{victim.pid}/maps").read_text(), victim)
    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=PATIENCE)
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert victim.returncode == 130 and len(lines) == 1 and lines[0].startswith("interrupted"), err.decode()
    assert not (tmp_path / "run").exists()


def test_sweep_interrupted_twice_stops_its_runs_and_exits_130(quick_cifar, tmp_path):
    sweep = start_cli("--sweep", "convmixer-recipes", "--quick", "--device", "cpu", "--data", quick_cifar, "--out",
                      tmp_path, "--jobs", "1", module="src.sweep", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert b"started:" in sweep.stdout.readline()
    sweep.send_signal(signal.SIGINT)
    time.sleep(0.01)
    sweep.send_signal(signal.SIGTERM)  # a second signal while the runs stop: it left them running (probe 6)
    out, err = sweep.communicate(timeout=PATIENCE)
    assert sweep.returncode == 130, err.decode()
    runs = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert not psutil.wait_procs(runs, timeout=5)[1], "a run outlived the sweep"  # killed ones are gone in ms
    assert "Traceback" not in err.decode() and err.decode().strip().splitlines()[-1].startswith(
        "interrupted: rerun the same command to continue")
    assert b"interrupted: stopping the runs" in out


@pytest.mark.parametrize("module, what", [("src.sweep", ["--sweep", "convmixer-recipes", "--only", "baseline"]),
                                          ("src.reproduce", ["--only", "recipes"])])
def test_a_second_sweep_or_reproduction_into_one_out_is_refused(module, what, quick_cifar, tmp_path):
    """It would report the first one's epochs as its own and write into its logs (probe 5)."""
    from src.harness.run import held
    out = tmp_path / "out"
    with held(out):  # the first one, still running
        message = cli_error([*what, "--quick", "--device", "cpu", "--data", quick_cifar, "--out", out], module)
    assert message == (f"error: {out} is being written by another run right now: wait for it to end, or choose "
                       f"another --out")
    assert not list(out.iterdir())  # nothing started


def test_two_runs_into_one_folder_the_second_is_refused(tiny_cifar, tmp_path):
    """A real race: the second process starts while the first holds the folder; even --overwrite
    waits its turn."""
    out = tmp_path / "run"
    first = start_cli(*tiny_args(tiny_cifar, out, epochs=1000), stderr=subprocess.PIPE)
    wait_until((out / "metrics.json").exists, first)
    second = start_cli(*tiny_args(tiny_cifar, out, "--overwrite", epochs=2), stderr=subprocess.PIPE)
    _, second_err = second.communicate(timeout=PATIENCE)
    first.send_signal(signal.SIGINT)
    _, first_err = first.communicate(timeout=PATIENCE)
    assert first.returncode == 130, first_err.decode()
    assert second.returncode == 1 and second_err.decode().strip() == (
        f"error: {out} is being written by another run right now: wait for it to end, or choose another --out")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["epochs"] == 1000 and metrics["epochs_done"] <= ckpt_epochs(out)  # checkpoint first
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json"]  # the lock is gone too


def ckpt_epochs(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] + 1


KILLED_WHILE_WRITING = """
import os, signal, sys, torch
from src.harness import checkpoint
def dies_halfway(obj, f, *args, **kwargs):
    f.write(b"PK\x03\x04 half of the weights")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = dies_halfway
checkpoint.save(sys.argv[1], {"w": torch.zeros(3)})
"""


@pytest.mark.parametrize("before", [None, "previous"])
def test_a_kill_while_the_weights_are_written_leaves_the_previous_file_or_none(before, tiny_cifar, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    weights = out / "model.pt"
    if before:
        torch.save({"w": torch.ones(3)}, weights)
    victim = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, str(weights)], cwd=REPO_ROOT,
                            env=cli_env(), timeout=PATIENCE)
    assert victim.returncode == -signal.SIGKILL
    if before:
        assert torch.equal(torch.load(weights, weights_only=True)["w"], torch.ones(3))
    else:
        assert not weights.exists()
    leftovers = list(out.glob("model.pt*.tmp"))
    assert len(leftovers) == 1
    run(Config(**config_kwargs(tiny_cifar, out, epochs=1), overwrite=True))  # the next start clears them
    assert not list(out.glob("*.tmp")) and (out / "model.pt").exists()


def test_a_jpeg_cut_short_is_refused_by_name_without_a_decoder_warning(tmp_path, capfd):
    root = write_class_folders(tmp_path / "data", {"train": 1, "test": 1})
    for image in root.rglob("*.png"):
        ok, encoded = cv2.imencode(".jpg", cv2.imread(str(image)))
        image.with_suffix(".jpg").write_bytes(encoded.tobytes())
        image.unlink()
    cut = root / "train" / "cat" / "0000.jpg"
    cut.write_bytes(cut.read_bytes()[:300])
    with pytest.raises(ValueError) as err:
        data.cifar10(root)
    assert str(err.value) == f"image {cut} is damaged (cut short, or not a JPEG/PNG file): replace or remove it"
    assert capfd.readouterr().err == ""
    (root / "test" / "cat" / "0000.jpg").rename(root / "test" / "cat" / "0000.jfif")
    assert len(data.cifar10(root, train=False)) == 10  # whole JPEGs read as before, whatever their JPEG suffix


# --- every other command: the same contract -------------------------------------------------------


def test_a_full_disk_while_drawing_figures_leaves_no_partial_file(finished_run, tiny_cifar, tmp_path, monkeypatch):
    import matplotlib.figure

    def full(fig, target, **kwargs):  # a PNG cut short by a full disk (E04)
        (open(target, "wb") if isinstance(target, (str, Path)) else target).write(b"\x89PNG")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    figures = tmp_path / "figures"
    message = cli_error([finished_run / "model.pt", "--data", tiny_cifar, "--figures", figures], "src.evaluate")
    assert message == (f"error: cannot write {figures / 'depthwise_kernels.png'}: No space left on device (nothing "
                       f"was written); free some space or choose another --figures")
    assert not figures.exists()


def flip_a_tensor_byte(path):
    """Change one byte in the middle of the largest tensor torch.save stored in path (uncompressed)."""
    with zipfile.ZipFile(path) as saved:
        entry = max((i for i in saved.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(entry.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", f.read(4))
        f.seek(entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x10]))


@pytest.fixture(scope="module")
def odd_runs(finished_run, tmp_path_factory):
    """Folders beside a real run's metrics.json whose model.pt is not that run's weights, or whose
    metrics.json is cut short."""
    root = tmp_path_factory.mktemp("odd")
    weights = {"other-model": create_model("convmixer_256_8", dim=24, depth=1, patch_size=4).state_dict(),
               "other-classes": create_model("convmixer_256_8", 100, dim=16, depth=1, patch_size=4).state_dict()}
    for name, state in weights.items():
        (root / name).mkdir()
        shutil.copy(finished_run / "metrics.json", root / name)
        torch.save(state, root / name / "model.pt")
    (root / "cut").mkdir()
    shutil.copy(finished_run / "model.pt", root / "cut")
    (root / "cut" / "metrics.json").write_text((finished_run / "metrics.json").read_text()[:100])
    for name in ("no-weights", "cut-weights", "half-weights"):  # finished runs whose model.pt is gone or cut short
        shutil.copytree(finished_run, root / name)
    (root / "no-weights" / "model.pt").unlink()
    shutil.copytree(finished_run, root / "no-checkpoint")  # a run killed after its metrics, then pruned
    (root / "no-checkpoint" / "checkpoint.pt").unlink()
    (root / "no-checkpoint" / "model.pt").unlink()
    metrics = json.loads((finished_run / "metrics.json").read_text())
    (root / "no-checkpoint" / "metrics.json").write_text(json.dumps({**metrics, "finished": False}))
    saved = torch.load(finished_run / "checkpoint.pt", weights_only=True)  # stopped runs, their checkpoints damaged
    bad_rng = {**saved["rng"], "torch": torch.zeros(3, dtype=torch.uint8)}

    def optimizer(state=None, **group):  # saved's, one moment of its first weight or its first group's settings
        first = {**saved["optimizer"]["state"][0], **(state or {})}
        groups = [{**saved["optimizer"]["param_groups"][0], **group}, *saved["optimizer"]["param_groups"][1:]]
        return {**saved, "optimizer": {"state": {**saved["optimizer"]["state"], 0: first}, "param_groups": groups}}
    moments = saved["optimizer"]["state"][0]
    for name, state in {"stopped": saved, "ckpt-int": 5, "ckpt-epoch-text": {**saved, "epoch": "x"},
                        "ckpt-epoch-99": {**saved, "epoch": 99}, "ckpt-rng": {**saved, "rng": bad_rng},
                        "ckpt-other-run": {**saved, "config": {**saved["config"], "seed": 5}},  # another run's
                        "ckpt-optimizer": {**saved, "optimizer": {"state": {}, "param_groups": []}},
                        "ckpt-history-nan": {**saved, "history": {**saved["history"], "train_loss": [math.nan]}},
                        "ckpt-moment-shape": optimizer({"exp_avg": torch.zeros(1)}),
                        "ckpt-moment-nan": optimizer({"exp_avg_sq": torch.full_like(moments["exp_avg_sq"], math.nan)}),
                        "ckpt-step-negative": optimizer({"step": torch.tensor(-3.0)}),
                        "ckpt-wd-nan": optimizer(weight_decay=math.nan), "ckpt-betas": optimizer(betas=(0.9, 2.0)),
                        "ckpt-lr": optimizer(lr=-5.0),
                        "ckpt-schedule-step": {**saved, "scheduler": {**saved["scheduler"], "last_epoch": 3}},
                        "ckpt-schedule-lr": {**saved, "scheduler": {**saved["scheduler"], "base_lrs": [5.0]}},
                        "ckpt-nan": {**saved, "model": {k: torch.full_like(v, math.nan) if v.is_floating_point() else v
                                                        for k, v in saved["model"].items()}}}.items():
        shutil.copytree(finished_run, root / name, ignore=shutil.ignore_patterns("model.pt"))
        (root / name / "metrics.json").write_text(json.dumps({**metrics, "finished": False}))
        torch.save(state, root / name / "checkpoint.pt")
    for name in ("ckpt-folder", "ckpt-pipe"):  # a stopped run whose checkpoint.pt is not a file (probe 6)
        shutil.copytree(root / "stopped", root / name, ignore=shutil.ignore_patterns("checkpoint.pt"))
    (root / "ckpt-folder" / "checkpoint.pt").mkdir()
    os.mkfifo(root / "ckpt-pipe" / "checkpoint.pt")
    shutil.copytree(finished_run, root / "weights-folder", ignore=shutil.ignore_patterns("model.pt"))
    (root / "weights-folder" / "model.pt").mkdir()
    for target in ("nb-folder/ConvMixer_experimentation_2/ConvMixer_experimentation_2.ipynb",  # (probe 6)
                   "nb-png/ConvMixer_experimentation_2/curves.png", "fig-folder/patch_filters.png"):
        (root / target).mkdir(parents=True)
    shutil.copytree(finished_run, root / "weights-only")  # metrics and checkpoint gone: the weights must stay
    (root / "weights-only" / "metrics.json").unlink()
    (root / "weights-only" / "checkpoint.pt").unlink()
    shutil.copytree(finished_run, root / "metrics-pipe")
    (root / "metrics-pipe" / "metrics.json").unlink()
    os.mkfifo(root / "metrics-pipe" / "metrics.json")
    shutil.copytree(finished_run, root / "int-weights")
    torch.save(5, root / "int-weights" / "model.pt")
    weights = torch.load(finished_run / "model.pt")
    for name, state in {"sparse-weights": {k: v.to_sparse() for k, v in weights.items()},  # a traceback (probe 6)
                        "int-tensors": {k: v.long() for k, v in weights.items()},  # evaluated at 10% (probe 6)
                        "nested-weights": {"model": weights}}.items():  # said "describes another model" too
        shutil.copytree(finished_run, root / name)
        torch.save(state, root / name / "model.pt")
    shutil.copytree(finished_run, root / "text-accuracy")
    (root / "text-accuracy" / "metrics.json").write_text(json.dumps({**metrics, "final_test_acc": "0.5"}))
    for name, edit in {"acc-nan": {"final_test_acc": math.nan}, "acc-big": {"final_test_acc": 3.5},  # (probe 6)
                       "acc-bool": {"final_test_acc": True}, "epochs-huge": {"epochs_done": 10**30}}.items():  # 7
        shutil.copytree(finished_run, root / name)
        (root / name / "metrics.json").write_text(json.dumps({**metrics, **edit}))
    shutil.copytree(root / "stopped", root / "config-text")  # its advice named the flag already given (probe 17)
    stopped = json.loads((root / "stopped" / "metrics.json").read_text())
    (root / "config-text" / "metrics.json").write_text(json.dumps({**stopped, "config": {**stopped["config"],
                                                                                       "dim": "16"}}))
    shutil.copytree(finished_run, root / "data-number")  # (probe 6)
    (root / "data-number" / "metrics.json").write_text(json.dumps({**metrics, "config": {**metrics["config"],
                                                                                         "data": 5}}))
    shutil.copytree(finished_run, root / "not-metrics")
    (root / "not-metrics" / "metrics.json").write_text('{"finished": true}')
    shutil.copytree(root / "stopped", root / "flipped-ckpt")  # one byte of a tensor changed: only its checksum
    shutil.copytree(finished_run, root / "flipped-weights")  # says so; torch reads it as it is (probe 19)
    for saved in (root / "flipped-ckpt" / "checkpoint.pt", root / "flipped-weights" / "model.pt"):
        flip_a_tensor_byte(saved)
    (root / "rp-nb" / "ConvMixer_experimentation_1" / "ConvMixer_experimentation_1.ipynb").mkdir(parents=True)
    (root / "rp-png" / "ViT_with_convolution").mkdir(parents=True)
    os.mkfifo(root / "rp-png" / "ViT_with_convolution" / "curves.png")
    (root / "rp-report").mkdir()
    os.mkfifo(root / "rp-report" / "report.md")
    (root / "users-metrics").mkdir()  # a user's own file, no run beside it (probe 18)
    (root / "users-metrics" / "metrics.json").write_text('{"a": 1}')
    shutil.copytree(finished_run, root / "nan-weights")  # a diverged run's weights
    weights = torch.load(root / "nan-weights" / "model.pt")
    torch.save({k: v.float().fill_(math.nan) if v.is_floating_point() else v for k, v in weights.items()},
               root / "nan-weights" / "model.pt")
    for name, size in {"huge-dim": {"dim": 2_000_000}, "huge-depth": {"depth": 10**9},
                       "huge-kernel": {"kernel_size": 10**12}}.items():  # a torch traceback (probe 7)
        shutil.copytree(finished_run, root / name)  # sizes that fill any memory (E11), or take hours to build
        model = {**metrics["model"], "hyper_parameters": {**metrics["model"]["hyper_parameters"], **size}}
        (root / name / "metrics.json").write_text(json.dumps({**metrics, "model": model}))
    damaged = {"list": "[1]", "config-list": '{"finished": true, "config": [1]}', "other": '{"x": 1}',
               "text-acc": json.dumps({**metrics, "final_test_acc": "0.5"}),
               "nan-acc": json.dumps({**metrics, "final_test_acc": float("nan")}),  # JSON's NaN
               "negative-acc": json.dumps({**metrics, "final_test_acc": -0.5}),  # "-50.00%" in table.md (probe 7)
               "negative-epochs": json.dumps({**metrics, "epochs_done": -1}),  # skipped as finished (probe 18)
               "bool-epochs": json.dumps({**metrics, "epochs_done": True}),
               "epochs-past": json.dumps({**metrics, "finished": False, "epochs_done": 99}),  # refused mid-sweep
               "finished-short": json.dumps({**metrics, "config": {**metrics["config"],
                                                                 "epochs": metrics["epochs_done"] + 1}})}
    for name, text in damaged.items():  # a sweep's damaged variant (S10j-m)
        (root / f"sweep-{name}" / "baseline").mkdir(parents=True)
        (root / f"sweep-{name}" / "baseline" / "metrics.json").write_text(text)
    (root / "rp" / "ConvMixer_experimentation_2" / "bench").mkdir(parents=True)  # a damaged bench.json (RP25)
    (root / "rp" / "ConvMixer_experimentation_2" / "bench" / "bench.json").write_text("[1]")
    (root / "rp" / "ViT_with_convolution" / "recipes" / "improved").mkdir(parents=True)  # and a recipe's (RP24)
    (root / "rp" / "ViT_with_convolution" / "recipes" / "improved" / "metrics.json").write_text("[1]")
    whole = (finished_run / "model.pt").read_bytes()
    (root / "cut-weights" / "model.pt").write_bytes(whole[:500])
    (root / "half-weights" / "model.pt").write_bytes(whole[:len(whole) // 2])  # torch.load: "[Errno 22] Invalid ..."
    (root / "a-file").write_text("not a folder")
    os.symlink(root / "a-file", root / "json-link")  # --json replaced the link, /dev/stdout as root (probe 16)
    (root / "sweep-table" / "table.md").mkdir(parents=True)  # found after the runs (probe 6)
    (root / "nb-metrics" / "ConvMixer_experimentation_2" / "run-quick" / "metrics.json").mkdir(parents=True)
    (root / "nb-users" / "ConvMixer_experimentation_2" / "run-quick").mkdir(parents=True)  # advised --resume (probe 18)
    (root / "nb-users" / "ConvMixer_experimentation_2" / "run-quick" / "metrics.json").write_text('{"a": 1}')
    shutil.copytree(finished_run, root / "sweep-stale" / "improved")  # made with other flags (probe 6)
    (root / "sweep-log" / "baseline" / "train.log").mkdir(parents=True)  # "[Errno 21]" (probe 8)
    for log in (root / "sweep-log-link" / "baseline", root / "rp-log-link" / "ConvMixer_experimentation_2" / "recipes"
                / "improved"):  # appended to through the link: a data image once (probe 14)
        log.mkdir(parents=True)
        os.symlink(root / "a-file", log / "train.log")
    (root / "nb-run-file" / "ConvMixer_experimentation_2").mkdir(parents=True)
    (root / "nb-run-file" / "ConvMixer_experimentation_2" / "run-quick").write_text("not a folder")  # in the kernel
    for loop in (root / "sweep-loop" / "improved", root / "rp-loop" / "ViT_with_convolution" / "run-quick",
                 root / "rp-bench-loop" / "ConvMixer_experimentation_2" / "bench" / "bench.json"):
        loop.parent.mkdir(parents=True)  # a run's folder or result that is a link to itself: a traceback (probe 20)
        os.symlink(loop.name, loop)
    (root / "sweep-file").mkdir()
    (root / "sweep-file" / "baseline").write_text("not a folder")  # a bare "[Errno 17] File exists" (probe 6)
    os.symlink("loop", root / "loop")  # a link to itself: the OS cannot look up anything through it
    (root / "empty").mkdir()
    (root / "sweep" / "baseline").mkdir(parents=True)
    (root / "sweep" / "baseline" / "metrics.json").write_text("{}")
    deep = "[" * 100_000 + "]" * 100_000  # nested past Python's recursion limit: a traceback (probe 15)
    shutil.copytree(finished_run, root / "deep")
    (root / "deep" / "metrics.json").write_text(deep)
    (root / "sweep-deep" / "baseline").mkdir(parents=True)
    (root / "sweep-deep" / "baseline" / "metrics.json").write_text(deep)
    shutil.copytree(finished_run, root / "notebooks" / "ConvMixer_experimentation_2" / "run-cpu")
    (root / "lock-folder" / ".lock").mkdir(parents=True)  # "cannot write this folder", naming none (probe 10)
    (root / "tv-corrupt" / "cifar-10-batches-py").mkdir(parents=True)  # found after the runs started (probe 10)
    (root / "tv-corrupt" / "cifar-10-batches-py" / "data_batch_1").write_bytes(os.urandom(1000))
    return root


TINY_QUICK = ("--quick", "--device", "cpu", "--data", "{data}")
# (module, arguments, environment, exit code, what the one line must say); 2 is argparse's usage error.
TOO_LONG = "/tmp/" + "a" * 300  # a name longer than the file system's 255 bytes
COMMANDS = [
    *((module, argv, {}, 2, f"argument {flag}: {path}: {why}; give another path")
      for path, why in ((TOO_LONG, "File name too long"), ("{odd}/loop", "Too many levels of symbolic links"))
      for module, flag, argv in (
          ("src.evaluate", "weights", [path, "--data", "{data}"]),
          ("src.evaluate", "--data", ["{finished}/model.pt", "--data", path]),
          ("src.evaluate", "--figures", ["{finished}/model.pt", "--data", "{data}", "--figures", path]),
          ("src.bench", "--json", ["--data", "{data}", "--json", path]),
          ("src.notebook", "--out", ["ConvMixer_experimentation_2", "--mode", "quick", "--data", "{quick}", "--out",
                                     path]),
          ("src.sweep", "--out", ["--sweep", "vit-steps", "--quick", "--data", "{quick}", "--out", path]),
          ("src.reproduce", "--data", ["--quick", "--data", path, "--out", "{odd}/never"]))),
    ("src.notebook", ["ViT_with_convolution", "--mode", "quick"], {"CIFAR10_DIR": "{odd}/loop"}, 1,
     "CIFAR10_DIR {odd}/loop: Too many levels of symbolic links; give another path"),
    ("src.evaluate", ["{finished}/checkpoint.pt", "--data", "{data}", "--device", "cpu"], {}, 1,
     "checkpoint.pt is a training checkpoint, not weights: give the run's model.pt"),
    ("src.evaluate", ["{odd}/other-model/model.pt", "--data", "{data}", "--device", "cpu"], {}, 1,
     "model.pt does not fit this model (another model or configuration?): shape mismatch"),
    ("src.evaluate", ["{odd}/other-classes/model.pt", "--data", "{data}", "--device", "cpu"], {}, 1,
     "head.2.weight: file (100, 16) vs model (10, 16)"),
    *(("src.evaluate", [f"{{odd}}/{run}/model.pt", "--data", "{data}", "--device", "cpu"], {}, 1,
       f"{run}/metrics.json is not readable JSON") for run in ("cut", "deep")),
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}", "--device", "tpu"], {}, 1,
     "--device 'tpu': expected cpu, cuda, cuda:N or auto"),
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}/nowhere", "--json", "{odd}/nowhere/e.json"], {}, 1,
     "--json {odd}/nowhere/e.json: the folder {odd}/nowhere does not exist"),  # found before the data
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}", "--json", "{odd}"], {}, 1,
     "--json {odd}: is a folder; give a file name"),
    ("src.evaluate", ["{odd}/missing.pt", "--data", "{data}"], {}, 1, "no weights at {odd}/missing.pt"),
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}/nowhere"], {}, 1,
     "CIFAR-10 data folder {data}/nowhere does not exist: point --data (CIFAR10_DIR in the notebooks) at a copy"),
    ("src.evaluate", ["{odd}/metrics-pipe/model.pt", "--data", "{data}"], {}, 1,
     "metrics-pipe/metrics.json is not a regular file: rerun or finish the training that writes it"),
    *(("src.evaluate", [f"{{odd}}/{cut}/model.pt", "--data", "{data}"], {}, 1,
       f"{cut}/model.pt is not a whole saved model or checkpoint (cut short): rerun or finish the training that "
       f"writes it") for cut in ("cut-weights", "half-weights")),
    ("src.evaluate", ["{odd}/nan-weights/model.pt", "--data", "{data}"], {}, 1,
     "nan-weights/model.pt holds weights that are not finite (stem.0.weight, stem.0.bias, stem.2.weight and 17 more): "
     "rerun or finish the training that writes it"),
    ("src.evaluate", ["{odd}/text-accuracy/model.pt", "--data", "{data}"], {}, 1,
     "text-accuracy/metrics.json is not a run's metrics.json (it lacks final_test_acc)"),
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}", "--json", ""], {}, 1, "--json '': give a file name"),
    *((module, [*head, "--data", "{data}", "--json", "{odd}/nowhere/"], {}, 1, "--json '{odd}/nowhere/': give a file "
       "name") for module, head in (("src.evaluate", ["{finished}/model.pt"]), ("src.bench", list(TINY_BENCH)))),
    *((module, [*head, "--data", "{data}", "--json", "{odd}/json-link"], {}, 1, "--json {odd}/json-link: a link (to "
       "{odd}/a-file), which writing would replace; give the file's own path")
      for module, head in (("src.evaluate", ["{finished}/model.pt"]), ("src.bench", list(TINY_BENCH)))),
    # a trailing slash: Path drops it, and a file named like the folder was written (probe 14)
    ("src.evaluate", ["{finished}/model.pt", "--data", ""], {}, 2, "--data '': give a folder"),  # not "in ." (probe 6)
    ("src.evaluate", ["", "--data", "{data}"], {}, 2, "'': give the model.pt to evaluate"),
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}", "--json", "{finished}/model.pt"], {}, 1,
     "--json {finished}/model.pt: would replace a run's file or this command's input"),  # the weights stay
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}", "--json", "{odd}/cut/metrics.json"], {}, 1,
     "--json {odd}/cut/metrics.json: would replace a run's file"),
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}", "--json", "{data}/test/cat/0000.png"], {}, 1,
     "would replace a run's file or this command's input"),
    *((module, [*args, "--data", "{data}", "--compile"], {"CXX": "no-such-compiler"}, 1, "--compile: torch.compile "
       "builds CPU kernels with a C++ compiler, and there is no no-such-compiler here (CXX): install one, or drop "
       "--compile") for module, args in (("src.train", ["--device", "cpu", "--out", "{odd}/compile"]),
                                         ("src.bench", TINY_BENCH))),  # inductor's traceback, mid-epoch (probe 20)
    ("src.sweep", ["--sweep", "vit-steps", *TINY_QUICK[:-1], "{quick}", "--out", "{odd}/sweep-loop"], {}, 1,
     "sweep-loop/improved: Too many levels of symbolic links; give another path"),  # the path as portable() has it
    *(("src.reproduce", [*TINY_QUICK[:-1], "{quick}", "--only", only, "--out", f"{{odd}}/{out}"], {}, 1,
       f"{{odd}}/{out}/{target}: Too many levels of symbolic links; remove it, or give another --out")
      for out, only, target in (("rp-loop", "notebooks", "ViT_with_convolution/run-quick"),
                                ("rp-bench-loop", "bench", "ConvMixer_experimentation_2/bench/bench.json"))),
    ("src.evaluate", ["{odd}/flipped-weights/model.pt", "--data", "{data}"], {}, 1,
     "flipped-weights/model.pt is damaged: a checksum of its contents fails"),  # evaluated as whole (probe 19)
    ("src.evaluate", ["{odd}/int-weights/model.pt", "--data", "{data}"], {}, 1,
     "int-weights/model.pt holds no weights (a dict of dense tensors): is it a model.pt written by a run?"),
    *(("src.evaluate", ["{odd}/" + name + "/model.pt", "--data", "{data}"], {}, 1, f"{name}/model.pt holds no weights "
       f"(a dict of dense tensors): is it a model.pt written by a run?")
      for name in ("sparse-weights", "nested-weights")),
    ("src.evaluate", ["{finished}/model.pt", "--data", "{odd}/empty", "--figures", "{odd}/figures"], {}, 1,
     "no CIFAR-10 split 'test'"),  # and no figures folder is left behind (below)
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}", "--json", "/dev/full"], {}, 1,
     "--json /dev/full: not a regular file"),
    ("src.evaluate", ["{odd}/huge-dim/model.pt", "--data", "{data}"], {}, 1,
     "huge-dim/metrics.json describes another model than these weights"),  # nothing allocated (E11)
    ("src.evaluate", ["{odd}/weights-folder/model.pt", "--data", "{data}"], {}, 1,
     "weights-folder/model.pt is a folder, not weights: give the model.pt a run wrote"),
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}", "--figures", "{odd}/fig-folder"], {}, 1,
     "{odd}/fig-folder/patch_filters.png: not a regular file (a folder?), where this command writes one; remove it, "
     "or give another --figures"),  # before any work (probe 6)
    *(("src.notebook", ["ConvMixer_experimentation_2", "--mode", "quick", "--data", "{quick}", "--out",
                        "{odd}/" + case], {}, 1, f"{{odd}}/{case}/ConvMixer_experimentation_2/{name}: not a regular "
                                                 f"file (a folder?), where this command writes one; remove it, or "
                                                 f"give another --out")
      for case, name in (("nb-folder", "ConvMixer_experimentation_2.ipynb"), ("nb-png", "curves.png"))),
    *(("src.evaluate", ["{odd}/" + name + "/model.pt", "--data", "{data}"], {}, 1, f"{name}/metrics.json is not a "
       f"run's metrics.json (final_test_acc {value} is no accuracy)") for name, value in (("acc-nan", "nan"),
                                                                                          ("acc-big", "3.5"),
                                                                                          ("acc-bool", "True"))),
    ("src.evaluate", ["{odd}/epochs-huge/model.pt", "--data", "{data}"], {}, 1, "epochs-huge/metrics.json is not a "
     "run's metrics.json (epochs_done 1000000000000000000000000000000 of 1 epochs)"),
    ("src.evaluate", ["{odd}/int-tensors/model.pt", "--data", "{data}"], {}, 1,
     "int-tensors/model.pt does not fit this model (another model or configuration?): type mismatch "
     "blocks.0.0.fn.0.bias: file torch.int64 vs model torch.float32"),
    ("src.evaluate", ["{odd}/huge-kernel/model.pt", "--data", "{data}"], {}, 1,
     "huge-kernel/metrics.json does not name a model of this project (Storage size calculation overflowed"),
    ("src.notebook", ["ConvMixer_experimentation_2", "--mode", "quick", "--data", "{quick}", "--out",
                      "{odd}/nb-metrics"], {}, 1, "{odd}/nb-metrics/ConvMixer_experimentation_2/run-quick/metrics.json "
                                                  "is not a regular file (a folder or pipe?): remove it, or give "
                                                  "another --out"),  # not --resume/--overwrite, in the kernel (probe 7)
    ("src.notebook", ["ConvMixer_experimentation_2", "--mode", "quick", "--data", "{quick}", "--out", "{odd}/nb-users"],
     {}, 1, "run-quick/metrics.json is not a run's metrics.json (it lacks finished, epochs_done, final_test_acc, "
            "config, model, history): pass --overwrite to replace it, or give another --out"),
    ("src.notebook", ["ConvMixer_experimentation_2", "--mode", "quick"], {"NOTEBOOK_DEVICE": "tpu"}, 1,
     "NOTEBOOK_DEVICE 'tpu': expected cpu, cuda, cuda:N or auto"),  # not --device, which was not given (probe 8)
    ("src.notebook", ["ConvMixer_experimentation_2", "--mode", "quick"], {"CIFAR10_DIR": ""}, 1,
     "CIFAR10_DIR '': give a folder"),  # not "--data ''" (probe 7)
    ("src.evaluate", ["{finished}", "--data", "{data}"], {}, 1,
     "{finished} is a folder, not weights: give the model.pt a run wrote"),  # "no metrics.json beside" (probe 7)
    ("src.evaluate", ["{odd}/huge-depth/model.pt", "--data", "{data}"], {}, 1,
     "huge-depth/metrics.json does not name a model of this project (depth 1000000000, expected an integer in "
     "[1, 1000]): is it a run's metrics.json?"),  # not built for hours
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}", "--json", "{odd}/same", "--figures", "{odd}/same"],
     {}, 1, "--figures {odd}/same: the path --json writes its file to"),  # before any work (E30)
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}", "--json", "{odd}/empty/patch_filters.png",
                      "--figures", "{odd}/empty"], {}, 1, "--json {odd}/empty/patch_filters.png: --figures may draw "
                                                          "patch_filters.png there; give --json another name"),
    ("src.bench", ["--conv-vs-linear", "--model", "vit_seed", "--recipe", "improved"], {}, 2,
     "--conv-vs-linear times a random batch: --recipe would do nothing"),  # (B19)
    *(("src.sweep", ["--sweep", "convmixer-recipes", "--only", "baseline", *TINY_QUICK[:-1], "{quick}", "--out",
                     f"{{odd}}/sweep-{name}"], {}, 1, f"sweep-{name}/baseline/metrics.json is not a run's metrics.json")
      for name in ("list", "config-list", "other", "text-acc", "nan-acc", "negative-acc", "negative-epochs",
                   "bool-epochs", "epochs-past", "finished-short")),  # before any run (S10j-m, probe 18)
    ("src.sweep", ["--sweep", "vit-steps", *TINY_QUICK[:-1], "{quick}", "--out", "{odd}/a-file/sweep"], {}, 1,
     "--out {odd}/a-file/sweep: {odd}/a-file is not a folder this command can write into"),
    ("src.reproduce", ["--check-readme", "--readme", "{data}/test/cat/0000.png"], {}, 1,
     "{data}/test/cat/0000.png has no results block"),  # an image, not text: no UnicodeDecodeError
    ("src.notebook", ["ViT_with_convolution", "--mode", "full", "--data", "{data}", "--out", "{odd}/nb-full"], {}, 1,
     "--mode full trains on batches of 512; {data} holds 160 training images"),  # before a kernel starts
    ("src.reproduce", [*TINY_QUICK[:-1], "{quick}", "--only", "bench", "--out", "{odd}/rp"], {}, 1,
     "bench/bench.json is not a bench.json of src.bench"),  # (RP25)
    *(("src.reproduce", [*TINY_QUICK[:-1], "{quick}", "--only", only, "--force", "--out", f"{{odd}}/rp-{case}"], {},
       1, f"rp-{case}/{target}: not a regular file (a folder?), where this command writes one; remove it, or give "
       f"another --out") for case, only, target in (
          ("nb", "notebooks", "ConvMixer_experimentation_1/ConvMixer_experimentation_1.ipynb"),  # found by its run,
          ("png", "notebooks,bench", "ViT_with_convolution/curves.png"),  # once the others had run
          ("report", "bench", "report.md"))),  # a pipe there was replaced (probe 19)
    ("src.reproduce", [*TINY_QUICK[:-1], "{quick}", "--only", "recipes", "--out", "{odd}/rp"], {}, 1,
     "improved/metrics.json is not a run's metrics.json (TypeError: list indices must be integers or slices, not str): "
     "delete its folder, or pass --force to redo its run"),  # advice that works (RP24: --force, below)
    *((module, [*head, "--device", "cpu", "--data", "{data}", "--out", "{odd}/full"], {}, 1,
       "--data {data} holds 160 training images, fewer than a batch of 512")  # before any run starts (S16, RP28)
      for module, head in (("src.reproduce", ["--only", "recipes"]), ("src.sweep", ["--sweep", "vit-steps"]))),
    ("src.bench", [*TINY_BENCH, "--data", "{data}", "--out", "{odd}/x"], {}, 2, "unrecognized arguments: --out"),
    ("src.bench", [*TINY_BENCH, "--data", "{data}", "--loader", "gpu"], {}, 2, "unrecognized arguments: --loader"),
    ("src.bench", [*TINY_BENCH, "--data", "{data}", "--randaugment", "2", "9"], {}, 2,
     "unrecognized arguments: --randaugment 2 9"),  # the fast path has no RandAugment
    ("src.bench", ["--conv-vs-linear", "--model", "vit_seed", "--data", "{data}", "--tta-flip"], {}, 2,
     "--conv-vs-linear times a random batch: --data, --tta-flip would do nothing"),
    ("src.bench", [*TINY_BENCH, "--data", "{data}", "--json", "{odd}/cut/metrics.json"], {}, 1,
     "would replace a run's file"),
    ("src.bench", [*TINY_BENCH, "--data", "{data}", "--repeats", "0"], {}, 2,
     "argument --repeats: expected an integer >= 1, got '0'"),
    ("src.bench", [*TINY_BENCH, "--data", "{data}", "--train-subset", "8"], {}, 1,
     "--batch-size 16: larger than the 8 training images"),
    ("src.bench", [*TINY_BENCH, "--data", "{data}", "--json", "{odd}/a-file/b.json"], {}, 1,
     "--json {odd}/a-file/b.json: {odd}/a-file is a file, not a folder; give another path"),  # (probe 7)
    ("src.bench", [*TINY_BENCH, "--data", "{data}", "--seed", "-1"], {}, 1, "--seed -1: expected an integer in"),
    ("src.notebook", ["ConvMixer_experimentation_1", "--data", "{data}"], {"NOTEBOOK_MODE": "bogus"}, 2,
     "NOTEBOOK_MODE=bogus: expected one of full, cpu, quick"),
    ("src.notebook", ["ConvMixer_experimentation_1", "--data", "{data}", "--device", "tpu"], {}, 1,
     "--device 'tpu': expected cpu, cuda, cuda:N or auto"),
    ("src.notebook", ["ConvMixer_experimentation_1", "--mode", "cpu", "--data", "{data}/nowhere"], {}, 1,
     "CIFAR-10 data folder {data}/nowhere does not exist: point --data (CIFAR10_DIR in the notebooks) at a copy"),
    ("src.notebook", ["ConvMixer_experimentation_1", "--mode", "cpu", "--data", "{odd}/empty"], {}, 1,
     "no CIFAR-10 split 'train' in {odd}/empty (expected class folders {odd}/empty/train/<class>/ or torchvision's "
     "{odd}/empty/cifar-10-batches-py): point --data at another copy"),
    ("src.notebook", ["ViT_with_convolution", "--mode", "quick", "--data", "{quick}", "--out", "{odd}/a-file/nb"], {},
     1,
     "--out {odd}/a-file/nb/ViT_with_convolution: {odd}/a-file is not a folder this command can write into"),
    ("src.evaluate", ["{finished}/model.pt", "--data", "{odd}/a-file"], {}, 1,
     "CIFAR-10 data folder {odd}/a-file is not a folder: point --data"),  # not "pass --download"
    ("src.notebook", ["ViT_with_convolution", "--mode", "cpu", "--out", "{odd}/a-file"], {}, 2,
     "--out '{odd}/a-file': give a folder"),
    ("src.notebook", ["ConvMixer_experimentation_2", "--mode", "cpu", "--out", ""], {}, 2, "--out '': give a folder"),
    ("src.notebook", ["ConvMixer_experimentation_1", "--mode", "cpu", "--data", ""], {}, 1, "--data '': give a folder"),
    ("src.notebook", ["ConvMixer_experimentation_2", "--mode", "cpu", "--data", "{data}", "--out", "{notebooks}"], {},
     1, "run-cpu already holds a run (metrics.json, checkpoint.pt, model.pt): pass --resume"),
    ("src.notebook", ["ConvMixer_experimentation_2", "--mode", "quick", "--data", "{data}", "--out", "{data}/out"], {},
     2, "--out {data}/out: the notebook would write {data}/out/ConvMixer_experimentation_2, inside --data {data}; "
        "give a folder outside the data"),  # before a kernel starts
    ("src.notebook", ["ViT_with_convolution", "--mode", "cpu", "--data", "{data}", "--out", "{odd}/nb"], {}, 1,
     "--mode cpu uses 2,000 training images; {data} holds 160: point --data at a larger copy"),  # no kernel started
    ("src.notebook", ["ViT_with_convolution", "--mode", "cpu", "--data", "{data}", "--out", "{odd}/nb", "--resume"],
     {}, 1, "--resume: {odd}/nb/ViT_with_convolution/run-cpu holds no run to continue (none of metrics.json, "
     "checkpoint.pt, model.pt); drop --resume to start one"),  # before a kernel starts
    ("src.reproduce", ["--check-readme", "--write-readme"], {}, 2,
     "--write-readme: not allowed with argument --check-readme"),
    ("src.reproduce", ["--write-readme", "--readme", "/dev/full"], {}, 1, "--readme /dev/full: not a regular file"),
    ("src.reproduce", [*TINY_QUICK, "--out", ""], {}, 2, "--out '': give a folder"),
    ("src.reproduce", [*TINY_QUICK, "--device", ""], {}, 1, "--device '': expected cpu, cuda, cuda:N or auto"),
    ("src.reproduce", [*TINY_QUICK, "--out", "{data}/train/out"], {}, 2, "inside --data"),
    ("src.reproduce", [*TINY_QUICK, "--out", "{odd}/rp", "--readme", "{odd}/README.md"], {}, 2,
     "--readme: with --out the report goes to OUT/report.md"),
    ("src.sweep", ["--sweep", "vit-stability", *TINY_QUICK, "--out", " "], {}, 2, "--out ' ': give a folder"),
    ("src.evaluate", ["{finished}/model.pt", "--data", "{data}", "--figures", "{data}/test/cat"], {}, 1,
     "--figures {data}/test/cat: inside this command's input"),
    ("src.reproduce", ["--check-readme", "--quick", "--budget", "99"], {}, 2,
     "--check-readme runs nothing: --budget, --quick would do nothing"),
    *(("src.sweep", ["--sweep", "convmixer-recipes", "--only", "baseline", "--quick", "--device", "cpu", "--data",
                     "{quick}", "--out", f"{{odd}}/{out}"], {}, 1,
       f"{out}/baseline/metrics.json is not a run's metrics.json") for out in ("sweep", "sweep-deep")),
    # a variant's damaged file, in its table
    *((module, [*head, "--quick", "--device", "cpu", "--data", "{data}"], {}, 2,
       "--quick uses 256 training images; --data {data} holds 160: give a larger copy")  # before any run starts
      for module, head in (("src.reproduce", []), ("src.sweep", ["--sweep", "vit-steps"]))),
    ("src.reproduce", ["--quick", "--device", "cpu", "--data", "{odd}/empty"], {}, 1,
     "no CIFAR-10 split 'train' in {odd}/empty"),  # checked before any run starts
    ("src.sweep", ["--sweep", "convmixer-recipes", "--only", "", *TINY_QUICK], {}, 2,
     "--only : the variants of convmixer-recipes are"),
    *((module, [*head, *TINY_QUICK, *extra], {}, code, message)
      for module, head in (("src.reproduce", []), ("src.sweep", ["--sweep", "convmixer-recipes"]))
      for extra, code, message in (
          (["--budget", "0"], 2, "argument --budget: expected a finite number > 0, got '0'"),
          (["--budget", "-5"], 2, "argument --budget: expected a finite number > 0, got '-5'"),
          (["--budget", "nan"], 2, "argument --budget: expected a finite number > 0, got 'nan'"),
          (["--budget", "5"], 2, "--budget 5: give more than the 10 s that stopping the runs takes"),
          (["--jobs", "0"], 2, "argument --jobs: expected an integer >= 1, got '0'"),
          (["--jobs", "-2"], 2, "argument --jobs: expected an integer >= 1, got '-2'"),
          (["--device", "bogus"], 1, "--device 'bogus': expected cpu, cuda, cuda:N or auto"),
          (["--out", "{odd}/a-file"], 2, "--out '{odd}/a-file': give a folder"))),
    ("src.sweep", ["--sweep", "convmixer-recipes", "--only", "baseline", *TINY_QUICK[:-1], "{quick}", "--out",
                   "{odd}/sweep-log"], {}, 1, "{odd}/sweep-log/baseline/train.log: not a regular file (a folder?), "
                                              "where this command writes one; remove it, or give another --out"),
    *((module, [*what, *TINY_QUICK[:-1], "{quick}", "--out", "{odd}/" + out], {}, 1,
       "{odd}/" + f"{log}: a link, where this command appends to a file of its own (it would write into "
       "{odd}/a-file); remove it, or give another --out")
      for module, what, out, log in (
          ("src.sweep", ["--sweep", "convmixer-recipes", "--only", "baseline"], "sweep-log-link",
           "sweep-log-link/baseline/train.log"),
          ("src.reproduce", ["--only", "recipes", "--force"], "rp-log-link",
           "rp-log-link/ConvMixer_experimentation_2/recipes/improved/train.log"))),
    ("src.notebook", ["ConvMixer_experimentation_2", "--mode", "quick", "--data", "{quick}", "--out",
                      "{odd}/nb-run-file"], {}, 1, "{odd}/nb-run-file/ConvMixer_experimentation_2/run-quick is not a "
                                                   "folder, where the notebook's run goes: remove it, or give another "
                                                   "--out"),
    ("src.sweep", ["--sweep", "convmixer-recipes", "--only", "baseline", *TINY_QUICK[:-1], "{quick}", "--out",
                   "{odd}/sweep-file"], {}, 1, "{odd}/sweep-file/baseline is not a folder, where "
                                               "convmixer-recipes/baseline writes its run: remove it, or give another "
                                               "--out"),
    ("src.sweep", ["--sweep", "convmixer-recipes", "--only", "improved", *TINY_QUICK[:-1], "{quick}", "--out",
                   "{odd}/sweep-stale"], {}, 1, "{odd}/sweep-stale/improved holds a run that is not "
                                                "convmixer-recipes/improved's to skip or continue (other flags made "
                                                "it): pass --force to redo it, or delete its folder"),
    ("src.sweep", ["--sweep", "convmixer-recipes", "--only", "baseline", *TINY_QUICK[:-1], "{quick}", "--out",
                   "{odd}/sweep-table"], {}, 1,
     "{odd}/sweep-table/table.md: not a regular file (a folder?), where this command writes one; remove it, or give "
     "another --out"),
    ("src.bench", ["--conv-vs-linear", "--model", "vit_seed", "--device", "cpu", "--batch-size", str(10**20)], {}, 1,
     f"--batch-size {10**20}: its random images alone need"),  # a torch traceback (probe 12)
    ("src.reproduce", ["--quick", "--device", "cpu", "--data", "{quick}", "--readme", "{odd}/x.md"], {}, 2,
     "--readme: with --quick the report goes to OUT/report.md, not to a README"),  # ran, ignoring it (probe 11)
    ("src.train", ["--data", "{data}", "--out", "{odd}/never", "--device", "cpu"], {"WORLD_SIZE": "2"}, 1,
     "WORLD_SIZE=2 asks for distributed training, but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set: launch it "
     "with torchrun, which sets them, or unset WORLD_SIZE"),  # torch's traceback (probe 10)
    ("src.train", ["--data", "{data}", "--out", "{odd}/never", "--device", "cpu"],
     {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "nohost.invalid", "MASTER_PORT": "29579"}, 1,
     "MASTER_ADDR=nohost.invalid cannot be resolved: check the master address torchrun was given, or unset "
     "WORLD_SIZE to train in one process ("),  # torch retried it for half an hour (probe 15)
    *((module, [*argv, "--device", "cpu", "--data", "{odd}/tv-corrupt", "--out", "{odd}/never"], {}, 1,
       "{odd}/tv-corrupt/cifar-10-batches-py is incomplete or corrupt (data_batch_1 is missing or not CIFAR-10's): "
       "point --data at a good copy") for module, argv in (  # found once the runs had started (probe 10)
          ("src.sweep", ["--sweep", "vit-steps"]), ("src.reproduce", []))),
    ("src.notebook", ["ConvMixer_experimentation_2", "--mode", "quick", "--data",
                      "{odd}/in/ConvMixer_experimentation_2", "--out", "{odd}/in"], {}, 2,
     "--out {odd}/in: the notebook would write {odd}/in/ConvMixer_experimentation_2, inside --data"),  # (probe 10)
]


@pytest.mark.filterwarnings("error::UserWarning")  # a warning printed before the line breaks "one line" too
@pytest.mark.parametrize("module, argv, env, code, expected", COMMANDS,
                         ids=[f"{c[0]} {' '.join(c[1])} {c[2]}" for c in COMMANDS])
def test_every_command_ends_a_failure_in_one_line(module, argv, env, code, expected, tiny_cifar, quick_cifar,
                                                  finished_run, odd_runs, monkeypatch, capsys):
    fill = dict(data=tiny_cifar, quick=quick_cifar, finished=finished_run, odd=odd_runs,
                notebooks=odd_runs / "notebooks")
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(**fill))
    kept = snapshot(finished_run)
    argv = [a.format(**fill) for a in argv]
    if code == 2:
        with pytest.raises(SystemExit) as exc:
            importlib.import_module(module).main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and expected.format(**fill) in err.splitlines()[-1], err
    else:
        message = cli_error(argv, module)
        assert expected.format(**fill) in message, message
        assert "Traceback" not in capsys.readouterr().err
    assert snapshot(finished_run) == kept and not (odd_runs / "figures").exists() and not (odd_runs / "full").exists()


def test_force_redoes_a_damaged_result_instead_of_reading_it(quick_cifar, tmp_path):
    bench = tmp_path / "ConvMixer_experimentation_2" / "bench" / "bench.json"  # (RP24, RP27)
    bench.parent.mkdir(parents=True)
    bench.write_text('{"seconds": {}}')
    from src import reproduce
    with pytest.raises(SystemExit) as exc:
        reproduce.main(["--quick", "--device", "cpu", "--data", str(quick_cifar), "--only", "bench", "--force",
                        "--out", str(tmp_path)])
    assert exc.value.code == 0 and json.loads(bench.read_text())["seconds"]["fast"] > 0


def test_quick_keeps_the_options_a_variant_sets():
    from argparse import Namespace
    from src.reproduce import train_flags
    from src.sweep import SWEEPS
    flags = dict(SWEEPS["vit-steps"].variants)["improved-batch-256"]
    words = train_flags("vit_seed", flags, Namespace(quick=True, data="d", device=None))
    assert words[words.index("--batch-size") + 1] == "256" and words.count("--batch-size") == 1  # (S02)


def test_a_failed_run_is_reported_without_its_own_flags():
    from src.harness.scheduler import _own_words
    said = _own_words("error: /o/improved already holds a run (metrics.json, checkpoint.pt): pass --resume to "
                      "continue it, --overwrite to replace it, or another --out")  # two sweeps on one --out (S19)
    assert flags_named(said) == {"--out"} and "another src.sweep or src.reproduce writing the same --out" in said


def test_a_failed_run_is_reported_in_the_schedulers_words():
    """What src.train advises (restore, --overwrite, continue it as made) is not src.sweep's to do (probe 6)."""
    from src.harness.scheduler import _own_words
    changed = _own_words("error: --data /d holds other images than when the run in /o/x started (train images 300 "
                         "then, 302 now): restore them, or pass --overwrite to train the run again")
    assert changed == ("data /d holds other images than when the run in /o/x started (train images 300 then, 302 "
                       "now) (--force replaces that run)")
    other = _own_words("error: the finished run /o/x/metrics.json was made with another configuration (key: (then, "
                       "now)): {'ema': (0.0, 0.99)}: continue it as it was made (--ema 0.0), or pass --overwrite, or "
                       "give another --out")
    assert other.endswith("{'ema': (0.0, 0.99)} (--force replaces that run)") and "continue" not in other


def test_a_notebook_clears_what_a_killed_kernel_was_writing(quick_cifar, tmp_path, monkeypatch):
    """Ctrl-C kills the kernel mid-write: its figure's temporary file stayed for good (probe 6)."""
    from src import notebook
    folder = tmp_path / "ConvMixer_experimentation_2"
    folder.mkdir()
    (folder / "curves.pngk3j2x9ab.tmp").write_bytes(b"half a PNG")
    seen = []
    monkeypatch.setattr(notebook, "execute",
                        lambda *args, **kwargs: seen.append(sorted(p.name for p in folder.iterdir())))
    notebook.main(["ConvMixer_experimentation_2", "--mode", "quick", "--data", str(quick_cifar), "--out",
                   str(tmp_path), "--device", "cpu"])
    assert seen == [[".lock"]]  # held while the kernel runs, the leftover gone
    assert not list(folder.iterdir())


def test_a_notebook_ignores_a_notebook_out_left_in_the_shell(monkeypatch):
    """The kernel wrote where NOTEBOOK_OUT said while the command's checks looked in the repository;
    --overwrite then replaced a run there silently (probe 7)."""
    from src.harness import executor
    seen = []

    def stop(client, env):
        seen.append(env)
        raise KeyboardInterrupt  # before any cell runs
    monkeypatch.setenv("NOTEBOOK_OUT", "/tmp/left-in-the-shell")
    monkeypatch.setattr(executor, "_execute", stop)
    with pytest.raises(KeyboardInterrupt):
        executor.execute("ConvMixer_experimentation_2", "cpu", flags={"--out", "--overwrite"})
    assert "NOTEBOOK_OUT" not in seen[0] and seen[0]["ADVICE_FLAGS"] == "--out,--overwrite"


def test_a_notebook_kernel_advises_only_src_notebooks_flags(monkeypatch):
    """In a kernel src.notebook runs, 'continue it as it was made (--trainer onecycle)' named a flag
    src.notebook lacks (probe 7); the same error in Jupyter, or src.train, keeps it."""
    from src.harness.checkpoint import check_config
    with pytest.raises(UserError) as err:
        check_config("the run in o", {"trainer": "onecycle"}, {"trainer": "wrapper"})
    what = "the run in o was made with another configuration (key: (then, now)): {'trainer': ('onecycle', 'wrapper')}"
    assert str(err.value) == f"{what}: continue it as it was made (--trainer onecycle), or pass --overwrite, or give " \
                             f"another --out"
    monkeypatch.setenv("ADVICE_FLAGS", "--data,--out,--overwrite,--resume")
    assert str(err.value) == f"{what}: pass --overwrite, or give another --out"


def test_a_cut_short_notebook_is_not_a_finished_one(tmp_path):
    """src.reproduce skipped a notebook cut short by a full disk as finished, and never mended it (probe 6)."""
    from src.reproduce import _notebook_done
    metrics, notebook = tmp_path / "metrics.json", tmp_path / "N.ipynb"
    metrics.write_text(json.dumps({"finished": True, "final_test_acc": 0.5}))
    whole = json.dumps({"cells": [{"source": ["a run (`quick` mode) ", "of **50.00%**"]}, {"source": "x" * 5000}]})
    notebook.write_text(whole)
    assert _notebook_done(notebook, metrics, "quick")
    notebook.write_text(whole[:4096])
    assert not _notebook_done(notebook, metrics, "quick")


def test_a_notebook_run_without_whole_weights_is_refused_up_front(tiny_cifar, finished_run, tmp_path):
    """src.reproduce skipped it as finished (probe 10)."""
    from argparse import Namespace
    from src.reproduce import notebook_job
    run_folder = tmp_path / "ConvMixer_experimentation_2" / "run-quick"
    shutil.copytree(finished_run, run_folder, ignore=shutil.ignore_patterns("model.pt"))
    args = Namespace(quick=True, data=str(tiny_cifar), given_data=str(tiny_cifar), device="cpu")
    job = notebook_job("ConvMixer_experimentation_2", args, tmp_path, "quick")
    assert not job.is_done() and job.stale() == "its model.pt is gone"


def test_a_scheduled_run_made_on_data_that_changed_since_is_not_done(tiny_cifar, tmp_path):
    """Same --data path, other images: src.sweep skipped the variant and showed the old table (probe 9)."""
    data, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_cifar, data)
    main(tiny_args(data, out, epochs=1))
    flags = [a for a in tiny_args(data, out, epochs=1) if a not in ("--out", str(out))]
    assert train_job("same", out, flags).is_done()
    next((data / "train" / "cat").iterdir()).unlink()
    job = train_job("same", out, flags)
    assert not job.is_done() and job.stale() == "other data made it"


def test_a_scheduled_run_counts_as_done_only_if_its_flags_made_it(tiny_cifar, finished_run):
    flags = [a for a in tiny_args(tiny_cifar, finished_run, epochs=1) if a != "--out" and a != str(finished_run)]
    assert train_job("same", finished_run, flags).is_done()
    assert not train_job("other", finished_run, [*flags, "--lr-max", "0.02"]).is_done()
    assert not train_job("other data", finished_run, [*flags, "--data", str(finished_run / "data")]).is_done()
    assert train_job("other", finished_run, [*flags, "--lr-max", "0.02"]).stale() == "other flags made it"
    without_weights = finished_run.parent / "without-weights"
    shutil.copytree(finished_run, without_weights, ignore=shutil.ignore_patterns("model.pt"))
    job = train_job("same", without_weights, flags)
    assert not job.is_done() and job.stale() == "its model.pt is gone"  # refused before any run starts (probe 7)
    cut = finished_run.parent / "cut-weights"
    shutil.copytree(finished_run, cut)
    (cut / "model.pt").write_bytes((finished_run / "model.pt").read_bytes()[:-100])  # skipped as done (probe 10)
    job = train_job("same", cut, flags)
    assert not job.is_done() and job.stale() == "its model.pt is cut short or damaged"
    stopped = finished_run.parent / "stopped-cut"  # a stopped run that cannot continue: found after others started
    shutil.copytree(finished_run, stopped, ignore=shutil.ignore_patterns("model.pt"))
    metrics = json.loads((stopped / "metrics.json").read_text())
    (stopped / "metrics.json").write_text(json.dumps({**metrics, "finished": False}))
    assert train_job("same", stopped, flags).stale() is None  # its checkpoint continues it
    (stopped / "checkpoint.pt").write_bytes((finished_run / "checkpoint.pt").read_bytes()[:1000])
    assert train_job("same", stopped, flags).stale() == "its checkpoint.pt is cut short or damaged"
    assert train_job("other", stopped, [*flags, "--lr-max", "0.02"]).stale() == "other flags made it"
    with pytest.raises(UserError, match="bad: --epochs 0: expected an integer >= 1"):
        train_job("bad", finished_run, [*flags, "--epochs", "0"])  # refused before any run starts


def test_a_refused_resume_stops_a_notebook_in_its_settings_cell(quick_cifar, finished_run, tmp_path, monkeypatch):
    """Before the cells that write figures into the notebook's folder (a rendered run's files)."""
    shutil.copytree(finished_run, tmp_path / "run-quick")  # another model's finished run
    kept = snapshot(tmp_path / "run-quick")
    for name, value in (("NOTEBOOK_OUT", tmp_path), ("NOTEBOOK_RESUME", "1"), ("CIFAR10_DIR", quick_cifar),
                        ("NOTEBOOK_DEVICE", "cpu")):
        monkeypatch.setenv(name, str(value))
    with pytest.raises(UserError, match="the finished run .* was made with another configuration"):
        notebook.experiment("ConvMixer_experimentation_1", "convmixer_256_8", "wrapper", "baseline", mode="quick")
    assert snapshot(tmp_path / "run-quick") == kept and [p.name for p in tmp_path.iterdir()] == ["run-quick"]


def test_a_notebook_resumed_on_other_data_is_refused_before_its_kernel_starts(quick_cifar, finished_run, tmp_path,
                                                                               monkeypatch):
    """It was refused in the kernel's settings cell, seconds after the kernel started (probe 10); so was another
    model's run, checked against what that run recorded instead of what the notebook asks for (probe 11)."""
    run_folder = tmp_path / "ConvMixer_experimentation_1" / "run-quick"
    shutil.copytree(finished_run, run_folder)  # made on other data, with other sizes
    kept, calls = snapshot(run_folder), []
    monkeypatch.setattr(notebook, "execute", lambda *args, **kwargs: calls.append(args))
    message = cli_error(["ConvMixer_experimentation_1", "--mode", "quick", "--device", "cpu", "--data", quick_cifar,
                         "--out", tmp_path, "--resume"], "src.notebook")
    assert calls == [] and snapshot(run_folder) == kept
    assert message.startswith("error: the finished run ") and "was made with another configuration" in message


def test_an_image_name_that_links_to_itself_is_named(tiny_cifar, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(tiny_cifar, copy)
    os.symlink("zz.jpg", copy / "test" / "cat" / "zz.jpg")  # a bare "[Errno 40]", no advice (probe 10)
    with pytest.raises(UserError, match=r"cat/zz.jpg is not a regular file \(a folder, pipe or broken link\?\): "
                                        r"remove it"):
        data.split_size(copy, False)


def test_quick_notebook_without_out_writes_to_a_new_temporary_folder(quick_cifar, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(notebook, "execute", lambda *args, **kwargs: calls.append(args) or "done")
    notebook.main(["ConvMixer_experimentation_1", "--mode", "quick", "--data", str(quick_cifar)])
    out = Path(calls[0][3])
    assert out.is_dir() and REPO_ROOT not in out.parents
    assert [p.relative_to(out) for p in out.rglob("*")] == [Path("ConvMixer_experimentation_1")]  # new: only the
    # notebook's folder, which it held (its lock gone now)


def test_the_interrupt_line_never_reports_the_run_being_replaced(tiny_cifar, finished_run, tmp_path):
    from src.train import _progress
    cfg = Config(**config_kwargs(tiny_cifar, finished_run, epochs=1), overwrite=True)
    assert _progress(cfg, time.time()) == "before the first epoch ended"  # the old run's metrics.json
    assert _progress(replace(cfg, overwrite=False, resume=True), time.time()) == "after epoch 0 of 1"


def test_a_notebook_stopped_by_sigterm_says_so_in_one_line(quick_cifar, tmp_path):
    victim = start_cli("ConvMixer_experimentation_1", "--mode", "quick", "--device", "cpu", "--data", quick_cifar,
                       "--out", tmp_path, module="src.notebook", stderr=subprocess.PIPE)
    wait_until((tmp_path / "ConvMixer_experimentation_1" / "run-quick" / ".lock").exists, victim, pause=0.05)
    kernel = psutil.Process(victim.pid).children(recursive=True)  # training in the kernel now
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=PATIENCE)
    lines = [line for line in err.decode().splitlines() if line.strip()]
    saved = (tmp_path / "ConvMixer_experimentation_1" / "run-quick" / "checkpoint.pt").exists()
    assert victim.returncode == 143 and lines == ["interrupted: ConvMixer_experimentation_1 was not saved; " + (
        "--resume continues its run" if saved else  # --resume is advised only where there is a run to continue
        "nothing of its run was saved either: rerun the same command to start it")], err.decode()
    assert kernel and not psutil.wait_procs(kernel, timeout=PATIENCE)[1], "the kernel outlived the command"
