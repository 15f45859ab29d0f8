"""A run and its folder, shared by the command line and the notebooks, so both get the same guarantees."""
import platform
import random
import re
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout

from . import data, io
from .config import fingerprint, model_overrides, resolve
from .gpu_loader import GPULoader
from .io import UserError
from .models import create_model, hyper_parameters, label, variant
from .trainers import TRAINERS, Step

RUN_FILES = ("metrics.json", "checkpoint.pt", "model.pt")
FINISHED = "its run is finished (model.pt), and needs none: nothing to continue"


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg):
    return create_model(cfg.model, **model_overrides(cfg))


def image_counts(cfg, lister=data.split_listing):
    """The splits' counts and listings (part of what a resume must keep), read without decoding an image."""
    counts = {}
    for split, subset in (("train", cfg.train_subset), ("test", cfg.test_subset)):
        total, listing = lister(cfg.data, split == "train", cfg.download)
        if subset is not None and subset > total:
            raise UserError(f"{cfg.data} holds {total} {split} images, fewer than the {subset} this run uses: give "
                            f"a fuller copy, or at most {total} with --{split}-subset")
        counts.update({f"{split}_images": subset or total, f"{split}_split_images": total, f"{split}_listing": listing})
    if cfg.batch_size > (n := counts["train_images"]):
        where, remedy = (("--train-subset keeps", "raise it") if cfg.train_subset
                         else (f"{cfg.data} holds", "give a fuller copy"))
        raise UserError(f"{where} {n} training images, fewer than a batch of {cfg.batch_size}: {remedy}, "
                        f"or at most {n} with --batch-size")
    return counts


def datasets(cfg):
    """The run's training and test images, decoded once (CIFAR10Arrays)."""
    return tuple(data.cifar10(cfg.data, split, download=cfg.download, subset=subset)
                 for split, subset in ((True, cfg.train_subset), (False, cfg.test_subset)))


def make_loaders(cfg, train=None, test=None):
    """The reference albumentations DataLoaders, or the whole dataset on the device (`gpu`), over the run's images."""
    if train is None:
        train, test = datasets(cfg)
    augment = dict(pad=cfg.pad, hole_p=cfg.hole_p, randaugment=cfg.randaugment)
    test_batch = cfg.test_batch_size or 4 * cfg.batch_size  # no activations kept for backward: fewer, larger steps
    if cfg.loader == "reference":
        return data.loaders(train, test, cfg.batch_size, cfg.workers, **augment, test_batch_size=test_batch,
                            pin_memory=cfg.device.startswith("cuda"))
    common = dict(device=cfg.device, channels_last=cfg.channels_last)
    return GPULoader(train, cfg.batch_size, True, **augment, **common), GPULoader(test, test_batch, False, **common)


def run(cfg, folder=None):
    """Train as configured into cfg.out (or `folder`, a RunFolder of it); returns (model, history)."""
    cfg = resolve(cfg)
    with folder or RunFolder(cfg) as folder:
        seed_everything(cfg.seed)
        model = build_model(cfg)
        images, state, parameters = folder.identity["images"], folder.state, sum(p.numel() for p in model.parameters())
        if state is None or state["epoch"] + 1 < cfg.epochs:  # said before the data is read (minutes on a CPU)
            print(f"training {label(cfg.model, **model_overrides(cfg))} ({parameters:,} parameters), {cfg.trainer} "
                  f"trainer, {cfg.recipe} recipe, seed {cfg.seed}: {cfg.epochs} epochs on {images['train_images']:,} "
                  f"training images, tested on {images['test_images']:,} ({cfg.data}); "
                  f"{cfg.device}, {cfg.precision}, {cfg.loader} loader; writing {cfg.out}", flush=True)
        train_loader, test_loader = make_loaders(cfg)
        name = {"name": variant(cfg.model).title} if cfg.trainer == "onecycle" else {}  # its epoch line's prefix
        history = TRAINERS[cfg.trainer](model, train_loader, test_loader, cfg.epochs, lr_max=cfg.lr_max,
                                        weight_decay=cfg.wd, warmup=cfg.warmup, decay_norms=cfg.decay_norms,
                                        beta2=cfg.beta2, step=Step.of(cfg), device=cfg.device, **name,
                                        **folder.files(model))
        folder.finish(model, history)
    return model, history


class RunFolder:
    """cfg.out (resolved) while a run writes it: metrics.json and checkpoint.pt every epoch, model.pt last."""

    def __init__(self, cfg):
        self.cfg, self.out = cfg, Path(cfg.out)
        self.saved = self.replaced = self.state = self.about = self._lock = self._made = None

    def __enter__(self):
        cfg, out = self.cfg, self.out
        self.identity = {**fingerprint(cfg), "images": image_counts(cfg)}
        self._made = next((p for p in reversed((out, *out.parents)) if not p.exists()), None)
        try:
            self._lock = hold(out)
            held = [name for name in RUN_FILES if (out / name).exists()]  # refused unless --resume or --overwrite
            if held and not (cfg.resume or cfg.overwrite):
                raise UserError(f"{out} already holds a run ({', '.join(held)}): pass --resume to continue it, "
                                f"--overwrite to replace it, or give another --out")
            if cfg.resume and "checkpoint.pt" not in held:  # a damaged model.pt: the run is trained again
                raise UserError(f"--resume: {out} holds no checkpoint.pt to continue from; " + (
                    FINISHED if io.whole(out / "model.pt") else "pass --overwrite to train it again" if held else
                    "drop --resume to start a run"))
            if cfg.resume:
                self.state = io.load(out / "checkpoint.pt", cfg.device,
                                     FINISHED if io.whole(out / "model.pt") else "pass --overwrite to train it again")
                if not isinstance(self.state, dict) or "config" not in self.state:
                    raise UserError(f"{out / 'checkpoint.pt'} is not a training checkpoint (a model.pt's weights?): "
                                    f"pass --overwrite to train the run again")
                then = self.state["config"]
                changed = sorted(k for k in {*then, *self.identity} if then.get(k) != self.identity.get(k))
                if changed:
                    said = "; ".join(f"{k}: {then.get(k)!r} then, {self.identity.get(k)!r} now" for k in changed)
                    raise UserError(f"the run in {out} was made with other settings or data ({said}): resume it "
                                    f"as it was made, or pass --overwrite to train it again")
                if self.state["epoch"] + 1 == cfg.epochs:  # its files are written again only if a stop cut them short
                    print(f"the run in {out} is already finished (test accuracy "
                          f"{100 * self.state['history']['test_acc'][-1]:.2f}%): nothing to train", flush=True)
            self.replaced = held if cfg.overwrite else []  # for the line a stopped command ends with
            io.remove_leftovers(out)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self._lock is not None:
            self._lock.release()
            made = self._made  # a run refused or stopped before writing anything leaves no folder it made
            if made and made.is_dir() and not any(p.is_file() and p != self.out / ".lock" for p in made.rglob("*")):
                shutil.rmtree(made)

    def files(self, model):
        """The trainer's keywords that write the run; --overwrite removes the old run only now, with data and model."""
        if self.replaced:
            print(f"replacing the run in {self.out}", flush=True)
            for name in ("model.pt", "checkpoint.pt", "metrics.json"):  # the one that says "a run" last
                (self.out / name).unlink(missing_ok=True)
        cfg, sizes = self.cfg, model_overrides(self.cfg)
        self.about = {"model": {"name": cfg.model, "label": label(cfg.model, **sizes),
                                "hyper_parameters": hyper_parameters(cfg.model, **sizes),
                                "parameters": sum(p.numel() for p in model.parameters())},
                      "data": {"path": cfg.data, "source": data.source(cfg.data), **self.identity["images"]},
                      "hardware": hardware(cfg.device), "torch": torch.__version__, "commit": commit(),
                      "config": asdict(cfg)}
        return dict(resume=self.state, on_epoch=self._save)

    def _save(self, epoch, history, state):
        io.save(self.out / "checkpoint.pt", {**state(), "config": self.identity})
        self.saved = epoch + 1  # epochs saved, as "after epoch 1 of 3" says: --resume continues from here on
        self._metrics(history)

    def finish(self, model, history):
        metrics = io.read(self.out / "metrics.json") or {}  # a resumed run's says finished only if it was before
        if self.cfg.resume and metrics.get("finished") is True and io.whole(self.out / "model.pt"):
            return  # a finished run resumed keeps its files as they were (those a stop cut short are written again)
        io.save(self.out / "model.pt", model.state_dict())
        self._metrics(history, finished=True)  # only now: a run is finished only with its weights whole

    def _metrics(self, history, finished=False):
        steady = history.epoch_time[1:] or history.epoch_time  # the first epoch carries compilation and warm-up
        io.write_json(self.out / "metrics.json", {
            "finished": finished, "epochs_done": len(history.test_acc), "final_test_acc": history.test_acc[-1],
            "final_train_acc": history.train_acc[-1], "seconds_per_epoch": sum(steady) / len(steady),
            "first_epoch_seconds": history.epoch_time[0], **self.about, "history": history.to_dict()})

    def interrupted(self):
        """The line a stopped command ends with: where the run stands and how to go on."""
        if self.saved is not None:
            return f"interrupted after epoch {self.saved} of {self.cfg.epochs} (saved): continue with --resume" + (
                " instead of --overwrite" if self.cfg.overwrite else "")
        if self.cfg.resume:
            return (f"interrupted before another epoch was saved: the run in {self.out} is as it was; --resume "
                    f"continues it")
        gone = any(not (self.out / name).exists() for name in self.replaced or ())  # a stop may land mid-removal
        held = ("was removed (--overwrite)" if gone else "is as it was") if self.replaced else None
        return (f"interrupted before the first epoch ended: nothing of this run was saved"
                f"{f', and the run it held {held}' if held else ''}; rerun the same command")


def hold(folder, also=", or give another --out"):
    """folder, created if need be and locked by this process alone; the lock goes with the process."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, where a folder goes: give --out a folder, or move the file")
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{folder} is being written by another process right now: wait for it to end{also}") from None
    return lock


def hardware(device):
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = re.search(r"^model name\s*:\s*(.+?)\s*$", cpuinfo, re.M)
    return f"CPU ({name[1] if name else platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def commit():
    """The checkout's commit, "-dirty" when the code differs from it; None outside git."""
    git = ["git", "--no-optional-locks", "-C", str(Path(__file__).resolve().parents[1])]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", "src", "requirements.txt"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "") if head.returncode == 0 else None
