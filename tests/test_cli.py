"""What every command shares (src/cli.py): a failure the user can mend is one line `error: ...` and exit 1,
bad usage exit 2, Ctrl-C 130 and SIGTERM 143 with one line saying where things stand. The shared check is
tested once; then one wiring row per command."""
import errno
import importlib
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from helpers import PATIENCE, TINY, cli_error, start_cli, tiny_args
from src.cli import command, command_line, config_from_args
from src.config import Config
from src.io import UserError
from src.run import hold

COMMANDS = ("src.train", "src.evaluate", "src.bench", "src.notebook", "src.sweep", "src.reproduce")


@pytest.mark.parametrize("raised, line", [
    (UserError("--x 3: expected\n   a number"), "error: --x 3: expected a number"),
    (OSError(errno.EACCES, "Permission denied", "/some/file"),
     "error: /some/file: Permission denied: check that path, or give another"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"), "error: out of memory: the model or batch "
     "does not fit on this device; use a smaller --batch-size, --dim or --depth"),
])
def test_a_mendable_failure_ends_in_one_line_and_exit_1(raised, line):
    with pytest.raises(SystemExit) as exc:
        with command():
            raise raised
    assert exc.value.code == line


def test_a_bug_is_not_dressed_up_as_a_users_error():
    with pytest.raises(ZeroDivisionError):
        with command():
            1 / 0


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_stop_signal_exits_128_plus_it_with_the_line_saying_where_things_stand(signum, code, capsys):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exc:
        with command(lambda: "interrupted after step 3: the same command continues"):
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler interrupts this
    assert exc.value.code == code
    assert capsys.readouterr().err.strip().splitlines() == ["interrupted after step 3: the same command continues"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.fixture
def held(tmp_path):
    """A folder another command holds (a second lock on it, as another process would take it)."""
    folder = tmp_path / "held" / "ConvMixer_experimentation_2"  # src.notebook holds OUT/NAME
    lock = hold(folder)
    yield folder
    lock.release()


def _wiring(module, tmp, data, held, quick_data):
    """argv of a failure the user can mend, and the start of its line, for each command."""
    return {
        "src.train": (tiny_args(tmp / "nowhere", tmp / "run"), f"error: no CIFAR-10 in {tmp / 'nowhere'}"),
        "src.evaluate": ([tmp / "none.pt", "--data", data], f"error: no weights at {tmp / 'none.pt'}"),
        "src.bench": ([*TINY, "--data", data, "--json", tmp / "no" / "b.json"], "error: --json"),
        "src.notebook": (["ConvMixer_experimentation_2", "--mode", "quick", "--data", quick_data, "--out",
                          tmp / "held"],
                         f"error: {held} is being written by another process"),
        "src.sweep": (["--sweep", "vit-candidates", "--data", data, "--out", held], f"error: {held} is being written "
                      f"by another process"),
        "src.reproduce": (["--quick", "--data", data, "--out", held], f"error: {held} is being written by another "
                          f"process"),
    }[module]


@pytest.mark.parametrize("module", COMMANDS)
def test_each_command_ends_a_mendable_failure_in_one_line(module, tmp_path, tiny_cifar, quick_cifar, held):
    argv, start = _wiring(module, tmp_path, tiny_cifar, held, quick_cifar)
    assert cli_error(argv, module).startswith(start)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_a_command_starts_ends_in_one_line(signum, tmp_path):
    proc = start_cli("--help", stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    status = Path(f"/proc/{proc.pid}/status")
    caught = lambda: int(re.search(r"SigCgt:\s*(\w+)", status.read_text())[1], 16)  # noqa: E731 (a bit per signal)
    while proc.poll() is None and not caught() >> signal.SIGHUP - 1 & 1:
        time.sleep(0.005)  # until src/__init__ catches SIGHUP, its last, seconds before torch and the rest are imported
    proc.send_signal(signum)
    assert proc.wait(PATIENCE) == 128 + signum
    assert proc.stderr.read().decode().strip().splitlines()[-1] == "interrupted while starting: nothing was done"


@pytest.mark.parametrize("module", COMMANDS)
def test_each_command_exits_2_on_bad_usage(module, capsys):
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(module).main(["--no-such-flag"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"python -m {module}: error: ")


@pytest.mark.parametrize("module, argv, said", [
    ("src.sweep", ["--sweep", "vit-candidates", "--jobs", "0"], "--jobs: give at least 1"),
    ("src.sweep", ["--sweep", "vit-candidates", "--budget", "nan"], "--budget nan: give more than"),
    ("src.reproduce", ["--check-readme", "--write-readme"], "not allowed with argument"),
    ("src.reproduce", ["--check-readme", "--out", "elsewhere"], "--check-readme and --write-readme take no other flag"),
])
def test_values_that_could_do_nothing_are_usage_errors(module, argv, said, tiny_cifar, capsys):
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(module).main([*argv, "--data", str(tiny_cifar)])
    assert exc.value.code == 2 and said in capsys.readouterr().err


def test_the_notebook_checks_its_data_before_a_kernel_starts(tiny_cifar, tmp_path):
    line = cli_error(["ConvMixer_experimentation_2", "--mode", "quick", "--data", tiny_cifar, "--out", tmp_path],
                     "src.notebook")
    assert line == (f"error: {tiny_cifar} holds 160 train images, fewer than the 256 this run uses: give a fuller "
                    f"copy, or another --mode")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("flags, said", [
    (("--train-subset", "161"), "{data} holds 160 train images, fewer than the 161 this run uses: give a fuller copy, "
                                "or at most 160 with --train-subset"),
    (("--batch-size", "161"), "{data} holds 160 training images, fewer than a batch of 161: give a fuller copy, or at "
                              "most 160 with --batch-size"),
    (("--train-subset", "20", "--batch-size", "32"), "--train-subset keeps 20 training images, fewer than a batch of "
                                                     "32: raise it, or at most 20 with --batch-size")])  # not the copy
def test_a_copy_or_subset_too_small_for_a_run_names_the_flag_that_takes_fewer(tiny_cifar, tmp_path, flags, said):
    line = cli_error(tiny_args(tiny_cifar, tmp_path / "run", *flags), "src.train")
    assert line == "error: " + said.format(data=tiny_cifar) and not (tmp_path / "run").exists()


def test_an_empty_data_is_refused_before_the_kernel_not_read_as_none(tmp_path):
    line = cli_error(["ConvMixer_experimentation_1", "--mode", "quick", "--data", "", "--out", tmp_path],
                     "src.notebook")
    assert line.startswith("error: --data : no CIFAR-10 there") and not any(tmp_path.iterdir())


def test_a_quick_call_without_out_names_the_folder_that_continues_it(quick_cifar):
    line = cli_error(["--sweep", "convmixer-authors", "--quick", "--only", "authors", "--data", quick_cifar, "--device",
                      "cpu", "--budget", "10.1"], "src.sweep")  # ends before any run starts: the folder is new
    found = re.search(r"did not finish within --budget \(convmixer-authors/authors\): rerun the same command with "
                      r"--out (\S+) to continue them", line)
    assert found and Path(found[1]).is_dir(), line


def test_a_notebook_names_its_settings_not_the_flags():  # IPython shows _render_traceback_ instead of a traceback
    line = UserError("no CIFAR-10 in x: point --data at a copy (src.train --download fetches one), or lower --lr-max")
    assert line._render_traceback_() == ["error: no CIFAR-10 in x: point data_dir at a copy (data_dir = None fetches "
                                         "one), or lower lr_max"]


def test_a_tilde_the_shell_left_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_from_args(["--data=~/c", "--out=~/r"]) == Config(data=str(tmp_path / "c"), out=str(tmp_path / "r"))


def test_a_file_where_the_run_folder_goes_is_named(tiny_cifar, tmp_path):
    (tmp_path / "run").write_text("a user's file")
    line = cli_error(tiny_args(tiny_cifar, tmp_path / "run"))
    assert line == f"error: {tmp_path / 'run'} is a file, where a folder goes: give --out a folder, or move the file"
    assert (tmp_path / "run").read_text() == "a user's file"


def test_a_word_that_is_no_number_is_a_usage_error_naming_it(capsys):
    with pytest.raises(SystemExit) as exc:
        config_from_args(["--epochs", "two"])
    assert exc.value.code == 2 and "argument --epochs: invalid int value: 'two'" in capsys.readouterr().err


def test_every_value_is_checked_before_any_work(tmp_path):
    """The bad value is named, not the missing data it would have read first; no folder is made."""
    line = cli_error(tiny_args(tmp_path / "nowhere", tmp_path / "run", "--hole-p", "2"))
    assert line.startswith("error: --hole-p 2.0: expected a number in [0, 1]") and not (tmp_path / "run").exists()


@pytest.mark.parametrize("cfg", [
    Config(model="convmixer_256_8", trainer="wrapper", lr_max=0.01, dim=256, epochs=2, batch_size=64,
           train_subset=2000, data="../shared/cifar10-jpeg", overwrite=True, out="run-cpu"),
    Config(model="vit_seed", recipe="improved", download=True, out="runs/vit", decay_norms=False, tta_flip=False,
           ema=0.99, randaugment=(2, 10), channels_last=True, compile=False, dropout=0.0, precision="bf16"),
], ids=["mixer", "vit-options"])
def test_the_echoed_command_line_is_the_same_config(cfg):
    args = shlex.split(command_line(cfg))
    assert args[:3] == ["python", "-m", "src.train"] and config_from_args(args[3:]) == cfg
