"""Checkpoint/resume, safe and atomic checkpoints, the divergence guard and seeds.

Everything runs on the tiny class-folder dataset of conftest.py (160 train, 40 test PNGs) with a
ConvMixer-16/1 (4x4 patches), on CPU with one thread: a few seconds of training in all.
"""
import json
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from helpers import PATIENCE, cli_error, start_cli, tiny_args, wait_until
from src.harness import checkpoint as ckpt
from src.harness.config import Config
from src.harness.errors import Diverged, UserError
from src.models import create_model
from src.harness.run import run
from src.trainers.engine import Engine

pytestmark = pytest.mark.usefixtures("one_thread")

EPOCHS = 3
TINY = dict(model="convmixer_256_8", dim=16, depth=1, patch_size=4, batch_size=16, workers=0, device="cpu")
CHECKPOINT_KEYS = {"epoch", "config", "model", "optimizer", "scaler", "scheduler", "ema", "history", "rng"}


def tiny_config(data_root, out, **kw):
    return Config(**{**TINY, "epochs": EPOCHS, "data": str(data_root), "out": str(out), **kw})


def without_time(history):
    return {k: v for k, v in history.items() if k != "epoch_time"}


def assert_same_run(out_a, out_b):
    """Same history (but for wall-clock times) and bit-identical final weights."""
    a, b = (json.loads((Path(o) / "metrics.json").read_text()) for o in (out_a, out_b))
    assert without_time(a["history"]) == without_time(b["history"])
    assert a["final_test_acc"] == b["final_test_acc"]
    assert_same_weights(torch.load(Path(out_a) / "model.pt", weights_only=True),
                        torch.load(Path(out_b) / "model.pt", weights_only=True))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def stored_epoch(path):
    try:
        return ckpt.load(path)["epoch"]
    except (FileNotFoundError, ValueError):
        return None


# --- checkpoints: contents, resume after a real kill ---------------------------------------------


def test_checkpoint_every_epoch_holds_the_whole_state(tiny_cifar, tmp_path, monkeypatch):
    saved = []
    real_save = ckpt.save
    def counted(path, state):
        saved.append(state["epoch"] if Path(path).name == "checkpoint.pt" else Path(path).name)
        real_save(path, state)
    monkeypatch.setattr(ckpt, "save", counted)
    _, history = run(tiny_config(tiny_cifar, tmp_path))
    assert saved == [*range(EPOCHS), "model.pt"]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state) == CHECKPOINT_KEYS
    assert state["epoch"] == EPOCHS - 1
    assert state["history"]["test_acc"] == history.test_acc and state["scheduler"]["last_epoch"] == EPOCHS * 10
    assert state["optimizer"]["state"], "optimizer moments are missing"
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert not list(tmp_path.glob("*.tmp"))
    assert_same_weights(state["model"], torch.load(tmp_path / "model.pt", weights_only=True))


def test_cli_run_killed_then_resumed_equals_uninterrupted_run(tiny_cifar, tmp_path):
    """SIGKILL a real `python -m src.train` after its first checkpoint, resume it with --resume:
    same history and bit-identical weights as a run that was never stopped (made in-process
    while the resumed one runs). Five epochs: the kill lands well before the end."""
    epochs = 5
    full, killed = tmp_path / "full", tmp_path / "killed"
    args = tiny_args(tiny_cifar, killed, "--seed", 7, epochs=epochs)
    victim = start_cli(*args)
    checkpoint = killed / "checkpoint.pt"
    wait_until(lambda: stored_epoch(checkpoint) is not None, victim)
    victim.kill()
    assert victim.wait() == -signal.SIGKILL, f"the run ended (status {victim.returncode}) before the kill"
    k = stored_epoch(checkpoint)
    assert k is not None and k < epochs - 1 and not (killed / "model.pt").exists(), \
        f"not killed mid-run (checkpoint epoch {k})"

    resumed = start_cli(*args, "--resume", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run(tiny_config(tiny_cifar, full, seed=7, epochs=epochs))
    out, err = resumed.communicate(timeout=PATIENCE)
    assert resumed.returncode == 0, err.decode()
    printed = [line.split("|")[0].strip() for line in out.decode().splitlines() if "Epoch:" in line]
    assert printed == [f"[ConvMixer] Epoch: {e}" for e in range(k + 1, epochs)]
    assert_same_run(full, killed)
    history = json.loads((killed / "metrics.json").read_text())["history"]
    assert len(history["test_acc"]) == epochs and len(history["batch_lr"]) == epochs * 10


class Killed(BaseException):
    """Stands for SIGKILL in-process: nothing catches it."""


@pytest.mark.parametrize("trainer", ["wrapper", "onecycle"])
def test_run_stopped_mid_epoch_resumes_to_the_same_result(trainer, tiny_cifar, tmp_path, monkeypatch):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    run(tiny_config(tiny_cifar, full, trainer=trainer, seed=3))

    real_train_epoch = Engine.train_epoch

    def dies_in_epoch_1(self, loader, epoch, history, on_batch=None, wrap=None):
        if epoch == 1:
            def die(i, *_):
                if i == 4:  # after five optimizer steps of epoch 1: weights and moments have moved
                    raise Killed
            on_batch = die
        return real_train_epoch(self, loader, epoch, history, on_batch, wrap)

    monkeypatch.setattr(Engine, "train_epoch", dies_in_epoch_1)
    with pytest.raises(Killed):
        run(tiny_config(tiny_cifar, stopped, trainer=trainer, seed=3))
    assert ckpt.load(stopped / "checkpoint.pt")["epoch"] == 0
    monkeypatch.setattr(Engine, "train_epoch", real_train_epoch)
    _, history = run(tiny_config(tiny_cifar, stopped, trainer=trainer, seed=3, resume=True))
    assert len(history.test_acc) == EPOCHS
    assert_same_run(full, stopped)


# --- safe loading ---------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a checkpoint loaded onto a CUDA device")
def test_generator_states_are_restored_from_a_checkpoint_loaded_onto_the_gpu(tmp_path):
    """A resumed CUDA run loads its checkpoint onto the GPU, and the generators take only CPU states: every
    --resume on an H200 failed with "RNG state must be a torch.ByteTensor" until set_rng_state moved them."""
    torch.manual_seed(1)
    torch.save({"rng": ckpt.rng_state()}, tmp_path / "checkpoint.pt")
    expected = torch.rand(3), torch.rand(3, device="cuda")
    ckpt.set_rng_state(ckpt.load(tmp_path / "checkpoint.pt", "cuda")["rng"])
    assert torch.equal(torch.rand(3), expected[0]) and torch.equal(torch.rand(3, device="cuda"), expected[1])


def test_resume_with_another_model_configuration_names_the_difference(tiny_cifar, tmp_path):
    run(tiny_config(tiny_cifar, tmp_path, epochs=1))
    with pytest.raises(ValueError, match="another configuration") as err:
        run(tiny_config(tiny_cifar, tmp_path, epochs=1, dim=24, resume=True))
    assert "'dim': (16, 24)" in str(err.value)
    message = cli_error(tiny_args(tiny_cifar, tmp_path, "--resume", "--dim", "24", epochs=1))  # last --dim wins
    # the run finished: what it was made with is read from its metrics.json
    assert "'dim': (16, 24)" in message and str(tmp_path / "metrics.json") in message


def test_resume_with_another_trainer_or_schedule_names_the_difference(tiny_cifar, tmp_path):
    run(tiny_config(tiny_cifar, tmp_path, epochs=1))
    with pytest.raises(ValueError, match=r"'trainer': \('onecycle', 'wrapper'\)"):
        run(tiny_config(tiny_cifar, tmp_path, epochs=1, trainer="wrapper", resume=True))
    with pytest.raises(ValueError, match=r"'epochs': \(1, 2\)"):
        run(tiny_config(tiny_cifar, tmp_path, epochs=2, resume=True))


def test_load_weights_of_another_model_names_missing_and_unexpected_keys():
    mixer = create_model("convmixer_256_8", dim=16, depth=1, patch_size=4)
    vit = create_model("vit_seed", dim=16, depth=1, heads=2, dim_head=8, mlp_dim=16)
    with pytest.raises(ValueError, match="another model or configuration") as err:
        ckpt.load_weights(mixer, vit.state_dict())
    assert "missing blocks.0.0.fn.0.bias" in str(err.value) and "unexpected cls_token" in str(err.value)
    with pytest.raises(ValueError, match=r"shape mismatch \S+: file \(24[^)]*\) vs model \(16"):
        ckpt.load_weights(mixer, create_model("convmixer_256_8", dim=24, depth=1, patch_size=4).state_dict())


class Custom:
    def __init__(self):
        self.x = 1


def _leave_mark(path):
    Path(path).write_text("code ran")
    return 0


class Exploit:
    """Unpickling this calls _leave_mark: what a malicious checkpoint would do."""

    def __init__(self, mark):
        self.mark = mark

    def __reduce__(self):
        return _leave_mark, (str(self.mark),)


def test_checkpoint_holding_a_pickled_object_is_refused_without_running_code(tmp_path):
    plain = tmp_path / "custom.pt"
    torch.save({"epoch": 0, "model": {}, "extra": Custom()}, plain)
    with pytest.raises(ValueError, match="not a readable checkpoint") as err:
        ckpt.load(plain)
    assert str(plain) in str(err.value) and "Custom" in str(err.value) and "\n" not in str(err.value)

    mark, evil = tmp_path / "mark.txt", tmp_path / "evil.pt"
    torch.save({"epoch": 0, "model": Exploit(mark)}, evil)
    assert not mark.exists()
    with pytest.raises(ValueError, match="_leave_mark"):
        ckpt.load(evil)
    assert not mark.exists(), "loading the checkpoint ran pickled code"

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        ckpt.load(garbage)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.load(tmp_path / "missing.pt")


# --- atomic write ---------------------------------------------------------------------------------


def _crash_midway(obj, f, *args, **kwargs):
    f.write(b"PK\x03\x04 half a checkpoint")
    f.flush()
    raise OSError("disk full (simulated)")


def test_crash_during_save_keeps_the_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save(path, {"epoch": 0, "w": torch.arange(5.0)})
    monkeypatch.setattr(torch, "save", _crash_midway)
    with pytest.raises(UserError, match=f"cannot write {path}: disk full .*the previous one is kept"):
        ckpt.save(path, {"epoch": 1, "w": torch.zeros(5)})
    monkeypatch.undo()
    state = ckpt.load(path)
    assert state["epoch"] == 0 and torch.equal(state["w"], torch.arange(5.0))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_crash_while_a_run_saves_keeps_the_last_good_checkpoint(tiny_cifar, tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def second_save_crashes(obj, f, *args, **kwargs):
        calls.append(1)
        return (_crash_midway if len(calls) == 2 else real_save)(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", second_save_crashes)
    with pytest.raises(UserError, match="checkpoint.pt: disk full"):
        run(tiny_config(tiny_cifar, tmp_path, epochs=2))
    monkeypatch.undo()
    assert ckpt.load(tmp_path / "checkpoint.pt")["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.json"]  # no temp files
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["finished"] is False and metrics["epochs_done"] == 1  # what the checkpoint holds


# --- divergence ------------------------------------------------------------------------------


@pytest.mark.parametrize("trainer", ["wrapper", "onecycle"])
def test_nan_loss_stops_at_once_and_keeps_the_last_good_checkpoint(trainer, tiny_cifar, tmp_path, monkeypatch):
    real_train_epoch, steps = Engine.train_epoch, []
    counting = register_optimizer_step_post_hook(lambda *_: steps.append(1))

    def nan_from_epoch_1(self, loader, epoch, *args, **kwargs):
        if epoch >= 1 and not hasattr(self, "_nan_hook"):
            self._nan_hook = self.model.register_forward_hook(lambda m, i, out: out * float("nan"))
        return real_train_epoch(self, loader, epoch, *args, **kwargs)

    monkeypatch.setattr(Engine, "train_epoch", nan_from_epoch_1)
    try:
        with pytest.raises(Diverged) as err:
            run(tiny_config(tiny_cifar, tmp_path, trainer=trainer))
    finally:
        counting.remove()
    message = str(err.value)
    assert "epoch 1" in message and "batch 0" in message and "learning rate" in message, message
    assert len(steps) == 10, "no optimizer step may follow the non-finite loss"
    state = ckpt.load(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 0 and len(state["history"]["test_acc"]) == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert not (tmp_path / "model.pt").exists()


# --- seeds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers, epochs", [(0, EPOCHS), (2, 2)])
def test_same_seed_same_run_bit_for_bit(workers, epochs, tiny_cifar, tmp_path):
    """workers=2: each worker's albumentations pipeline is reseeded from torch's RNG, every epoch."""
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        run(tiny_config(tiny_cifar, out, seed=11, workers=workers, epochs=epochs))
    assert_same_run(*runs)
    if workers == 0:
        other = tmp_path / "other-seed"
        run(tiny_config(tiny_cifar, other, seed=12, epochs=1))
        first, changed = (json.loads((o / "metrics.json").read_text())["history"] for o in (runs[0], other))
        assert first["train_loss"][0] != changed["train_loss"][0], "--seed has no effect"


