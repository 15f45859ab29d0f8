"""One training run, as the command line and the notebooks both start it: `run(Config(...))`.

It resolves and checks the config before reading any data, refuses to replace a run it was not
asked to replace, trains, and writes into cfg.out: checkpoint.pt and metrics.json after every
epoch (metrics.json says `"finished": false` until the last), model.pt at the end.
"""
import fcntl
import json
import math
import os
import random
import shutil
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .. import data
from . import checkpoint as ckpt
from .cli import RUN_FILES
from .config import fingerprint, model_overrides
from .errors import DataNotFound, UserError
from .machine import commit, hardware
from ..models import create_model, hyper_parameters, label, variant
from ..trainers import TRAINERS, History, Step
from ..trainers.engine import is_main_process

METRICS_KEYS = {"finished": bool, "epochs_done": int, "final_test_acc": (int, float), "config": dict, "model": dict,
                "history": dict}  # what a run's metrics.json holds, at least
FIX_METRICS = (("--resume", "delete it to resume from checkpoint.pt"), *ckpt.REMAKE)  # a metrics.json unread
NOT_A_RUN = (("--overwrite", "pass --overwrite to replace it"), ("--out", "give another --out"))  # nor a checkpoint
LOCK = ".lock"  # held while a process writes the run; gone when none does
TEST_BATCH_FACTOR = 4  # the test pass keeps no activations for backward: bigger batches, fewer steps


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loaders(cfg):
    """The reference albumentations DataLoaders, or the whole dataset on the device (`gpu`)."""
    distributed = dist.is_initialized()
    test_batch = TEST_BATCH_FACTOR * cfg.batch_size
    if cfg.loader == "reference":
        return data.loaders(cfg.data, cfg.batch_size, cfg.workers, cfg.train_subset, cfg.test_subset,
                            cfg.download, cfg.device, cfg.randaugment, distributed, test_batch)
    from ..gpu_loader import GPULoader
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    train = data.cifar10(cfg.data, True, download=cfg.download, subset=cfg.train_subset)
    test = data.cifar10(cfg.data, False, download=cfg.download, subset=cfg.test_subset)
    common = dict(device=cfg.device, rank=rank, world_size=world, channels_last=cfg.channels_last)
    return (GPULoader(train, cfg.batch_size, train=True, **common),
            GPULoader(test, test_batch, train=False, **common))


def run(cfg):
    """Train as configured; returns (model, history). Rank 0 writes the run's files."""
    cfg = cfg.resolved()
    if dist.is_initialized() and cfg.device.startswith("cuda"):  # under torchrun: this rank's GPU
        cfg = replace(cfg, device=f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    with RunFolder(cfg) as folder:
        if folder.finished:
            return folder.finished
        seed_everything(cfg.seed)
        model = create_model(cfg.model, **model_overrides(cfg))
        train_loader, test_loader = make_loaders(cfg)
        history = TRAINERS[cfg.trainer](model, train_loader, test_loader, **trainer_settings(cfg),
                                        **folder.files(model))
        folder.finish(model, history)
    return model, history


def split_counts(root, download=False):
    """{"train_split_images": n, "train_listing": digest, "test_...": ...}: the splits of root as a run
    records them, counted without decoding an image (a subset is drawn from the whole split, so a resumed
    run checks the split too)."""
    counts = {}
    for split in ("train", "test"):
        counts[f"{split}_split_images"], counts[f"{split}_listing"] = data.split_listing(root, split == "train",
                                                                                         download)
    return counts


def image_counts(cfg):
    """The images the run will use ({"train_images": n, ...}) and split_counts; refuses a subset larger
    than its split, and a batch larger than the training images."""
    splits, counts = split_counts(cfg.data, cfg.download), {}
    for split, subset in (("train", cfg.train_subset), ("test", cfg.test_subset)):
        total = splits[f"{split}_split_images"]
        if subset is not None and subset > total:
            raise UserError(f"--{split}-subset {subset}: more than the {total} images of the {split} split in "
                            f"{cfg.data}; give at most {total}, or leave it out to use them all")
        counts.update({f"{split}_images": subset or total, f"{split}_split_images": total,
                       f"{split}_listing": splits[f"{split}_listing"]})
    if cfg.batch_size > counts["train_images"]:
        raise UserError(f"--batch-size {cfg.batch_size}: larger than the {counts['train_images']} training images, "
                        f"so an epoch would have no full batch")
    return counts


def trainer_settings(cfg):
    """What the trainer takes from the config, besides the model, the loaders and the run's files."""
    name = {"name": variant(cfg.model).title} if cfg.trainer == "onecycle" else {}  # its epoch line's prefix
    return dict(epochs=cfg.epochs, lr_max=cfg.lr_max, weight_decay=cfg.wd, warmup=cfg.warmup,
                decay_norms=cfg.decay_norms, beta2=cfg.beta2, step=Step.of(cfg), device=cfg.device, **name)


class RunFolder:
    """cfg.out (a resolved config's) while a run writes it: held by this process alone (a lock the
    kernel drops when the process dies), never replaced silently, replaced with --overwrite only once
    the new run has its data and model, every file replaced atomically. `finished` holds (model,
    history) when --resume finds the run already finished. Only rank 0 touches the folder."""

    def __init__(self, cfg):
        self.cfg, self.out, self.sizes = cfg, Path(cfg.out), image_counts(cfg)
        self.identity = {**fingerprint(cfg), ckpt.IMAGES: self.sizes}  # what a checkpoint of this run records
        self.main, self.finished, self.replaced, self.about = is_main_process(), None, [], None
        self._lock = self._created = None

    def __enter__(self):
        refusal = None
        if self.main:
            self._created = next((p for p in reversed((self.out, *self.out.parents)) if not p.exists()), None)
            try:
                self._lock = _hold(self.out)
                self.finished = self._claim()
                ckpt.remove_leftovers(self.out, RUN_FILES)  # once the folder is this run's: a refused run clears none
            except (UserError, DataNotFound) as err:
                refusal = err
            except BaseException:
                self.__exit__()
                raise
        if dist.is_initialized():  # the other ranks do as rank 0 found, before any work: refuse, or skip
            verdict = [(refusal.what, refusal.advice) if refusal else None, self.finished is not None]
            dist.broadcast_object_list(verdict, src=0)
            if not self.main:
                refusal = verdict[0] and UserError(*verdict[0])
                self.finished = (None, None) if verdict[1] else None  # rank 0 holds the finished run's model
        if refusal:
            self.__exit__()
            raise refusal
        return self

    def __exit__(self, *exc):
        if self._lock is not None:
            _release(self.out, self._lock)
            self._lock = None
            made = self._created
            if made and made.is_dir() and not any(p.is_file() for p in made.rglob("*")):
                shutil.rmtree(made)  # a run that failed before writing anything leaves no folder, nor its parents
        return False

    def _claim(self):
        cfg, out = self.cfg, self.out
        held = [name for name in RUN_FILES if (out / name).exists()]
        odd = next((out / name for name in held if (out / name).is_dir() or  # --overwrite cannot remove a folder
                    not (out / name).is_file() and name != "metrics.json"), None)  # which has its own line
        if odd:
            raise UserError(f"{odd} is not a regular file (a folder or pipe?): remove it, or give another --out")
        metrics = held_metrics(out, held) if not cfg.overwrite else None
        if metrics and metrics["finished"] and cfg.resume:
            return self._finished_run(metrics)
        if held and not (cfg.resume or cfg.overwrite):
            raise UserError(f"{out} already holds a run ({', '.join(held)}): pass --resume to continue it, "
                            f"--overwrite to replace it, or another --out")
        if cfg.resume and held and "checkpoint.pt" not in held:  # starting afresh would replace what it holds
            raise UserError(f"{out} holds a run ({', '.join(held)}) but no checkpoint.pt to continue from: pass "
                            f"--overwrite to train it again, or another --out")
        if metrics:
            ckpt.check_config(f"the run in {out}", fingerprint(metrics["config"]), fingerprint(cfg))
            changed = ckpt.changed_images(metrics.get("data"), self.sizes)
            if changed:
                raise UserError(f"--data {cfg.data} holds other images than when the run in {out} started "
                                f"({'; '.join(changed)}): restore them, or pass --overwrite to train the run again")
        if cfg.resume and "checkpoint.pt" in held:  # a damaged one is named before the data is read
            state = ckpt.load(out / "checkpoint.pt")
            if metrics and another_runs(state, metrics):
                raise UserError(f"{out / 'checkpoint.pt'} was not saved by the run its metrics.json records (another "
                                f"configuration): pass --overwrite to train the run again, or give another --out")
            ckpt.check_state(out / "checkpoint.pt", state, self.identity, cfg.epochs)
        if metrics:
            then = metrics["config"].get("workers")
            if cfg.loader == "reference" and then != cfg.workers:
                print(f"note: the run started with --workers {then}, it continues with {cfg.workers}: each worker "
                      f"draws its own augmentations, so the rest of the run will not repeat the uninterrupted one "
                      f"bit for bit (it does with the same --workers)", flush=True)
        self.replaced = held if cfg.overwrite else []
        return None

    def _finished_run(self, metrics):
        cfg, out = self.cfg, self.out
        ckpt.check_config(f"the finished run {out / 'metrics.json'}", fingerprint(metrics["config"]), fingerprint(cfg))
        weights = out / "model.pt"
        if not weights.is_file():
            raise UserError(f"the finished run in {out} has no model.pt (deleted?): pass --overwrite to train it again")
        model = create_model(cfg.model, **model_overrides(cfg))
        ckpt.load_weights(model, ckpt.load(weights), str(weights))
        print(f"the run in {out} is already finished ({metrics['epochs_done']} of {cfg.epochs} epochs, test "
              f"accuracy {100 * metrics['final_test_acc']:.2f}%): nothing to resume", flush=True)
        return model, History.from_dict(metrics["history"])

    def files(self, model):
        """The trainer's arguments that write the run (a checkpoint and metrics.json after every
        epoch), once it has its data and model: with --overwrite, the old run goes now."""
        if self.main:
            self._start(model)
        return dict(checkpoint=self.out / "checkpoint.pt", resume=self.cfg.resume, config=self.identity,
                    on_epoch=lambda epoch, history: self.write_metrics(history))

    def _start(self, model):
        if self.replaced:
            print(f"replacing the run in {self.out} (--overwrite)", flush=True)
            for name in ("model.pt", "checkpoint.pt", "metrics.json"):  # the one that says "a run" last
                (self.out / name).unlink(missing_ok=True)
        cfg, sizes_given = self.cfg, model_overrides(self.cfg)
        self.about = {"model": {"name": cfg.model, "label": label(cfg.model, **sizes_given),
                                "hyper_parameters": hyper_parameters(cfg.model, **sizes_given),
                                "parameters": sum(p.numel() for p in model.parameters())},
                      "data": {"path": cfg.data, "source": data.source(cfg.data), **self.sizes},
                      "hardware": hardware(cfg.device),
                      "world_size": dist.get_world_size() if dist.is_initialized() else 1,
                      "torch": torch.__version__, "commit": commit(), "config": asdict(cfg)}

    def write_metrics(self, history, finished=False):
        steady = history.epoch_time[1:] or history.epoch_time  # the first epoch carries compilation and warm-up
        metrics = {"finished": finished, "epochs_done": len(history.test_acc),
                   "final_test_acc": history.test_acc[-1], "final_train_acc": history.train_acc[-1],
                   "seconds_per_epoch": sum(steady) / len(steady), "first_epoch_seconds": history.epoch_time[0],
                   **self.about, "history": history.to_dict()}
        text = json.dumps(metrics, indent=1, allow_nan=False)  # strict JSON: a NaN is a bug, not a value
        ckpt.atomic_write(self.out / "metrics.json", lambda f: f.write(text.encode()))

    def finish(self, model, history):
        """model.pt, then metrics.json saying "finished": a run is finished only with its weights whole."""
        if not self.main:
            return
        ckpt.save(self.out / "model.pt", model.state_dict())
        self.write_metrics(history, finished=True)
        if self.cfg.compile and len(history.epoch_time) > 1:
            steady = history.epoch_time[1:]
            print(f"torch.compile: the first epoch took {history.epoch_time[0]:.1f} s (compiling), the others "
                  f"{sum(steady) / len(steady):.2f} s on average", flush=True)


def another_runs(state, metrics):
    """A checkpoint saved by another run than the one metrics.json records (another configuration): it
    cannot continue that run, and its settings and the metrics' would advise each other endlessly."""
    saved = state.get("config") if isinstance(state, dict) else None
    return isinstance(saved, dict) and fingerprint(saved) != fingerprint(metrics["config"])


def held_metrics(folder, held):
    """The metrics.json among the run files folder holds (None if none), read before --resume is advised: one
    that is no run's is named as such, and resuming from checkpoint.pt is advised only where there is one."""
    if "metrics.json" in held:
        return read_metrics(folder / "metrics.json", FIX_METRICS if "checkpoint.pt" in held else NOT_A_RUN)
    return None


def read_metrics(path, advice=FIX_METRICS):
    """A run's metrics.json; one line naming the file when it is not one."""
    if not Path(path).is_file():  # a pipe would block the read for good
        raise UserError(f"{path} is not a regular file", advice)
    try:
        metrics = ckpt.json_in(path)
    except ValueError as err:
        raise UserError(f"{path} is not readable JSON, cut short or edited ({err})", advice) from None
    missing = [key for key, kind in METRICS_KEYS.items()
               if not isinstance(metrics, dict) or not isinstance(metrics.get(key), kind)]
    if missing:
        raise UserError(f"{path} is not a run's metrics.json (it lacks {', '.join(missing)})", advice)
    accuracy, done, epochs = metrics["final_test_acc"], metrics["epochs_done"], metrics["config"].get("epochs")
    if isinstance(accuracy, bool) or not (math.isfinite(accuracy) and 0 <= accuracy <= 1):  # NaN parses as a float
        raise UserError(f"{path} is not a run's metrics.json (final_test_acc {accuracy!r} is no accuracy)", advice)
    wrong = ckpt.epochs_problem(done, epochs, metrics["finished"])
    if wrong:
        raise UserError(f"{path} is not a run's metrics.json ({wrong})", advice)
    try:
        fingerprint(metrics["config"])
    except (TypeError, ValueError, OSError) as err:
        raise UserError(f"{path} is not a run's metrics.json (its config is damaged: {err})", advice) from None
    return metrics


@contextmanager
def held(out):
    """The folder out, held by this process alone while the block runs (src.sweep's, src.reproduce's)."""
    fd = _hold(Path(out))
    try:
        yield
    finally:
        _release(Path(out), fd)


def _hold(out):
    """Create out if needed and lock out/LOCK; one line if another process holds it. A lock file
    removed and recreated under us (by a holder that just ended) is locked anew."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UserError(f"{out} is being written by another run right now: wait for it to end, or choose "
                                f"another --out") from None
            if os.path.exists(out / LOCK) and os.stat(out / LOCK).st_ino == os.fstat(fd).st_ino:
                return fd
            os.close(fd)
    except OSError as err:
        what = "this folder" if err.filename in (None, str(out)) else err.filename
        raise UserError(f"--out {out}: cannot write {what} ({err.strerror or err}); give another --out") from None


def _release(out, fd):
    (out / LOCK).unlink(missing_ok=True)  # before unlocking: a process waiting on it will see it gone
    os.close(fd)
