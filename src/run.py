"""One training run, as the command line and the notebooks both start it: `run(Config(...))`.

It resolves and checks the config before reading any data, refuses to replace a run it was not
asked to replace, trains, and writes into cfg.out: checkpoint.pt and metrics.json after every
epoch (metrics.json says `"finished": false` until the last), model.pt at the end.
"""
import json
import os
import platform
import random
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from . import data
from .checkpoint import check_config
from .config import fingerprint, model_overrides
from .errors import UserError
from .evaluate import predict
from .models import create_model, hyper_parameters, label, variant
from .trainers import TRAINERS, History, Step
from .trainers.engine import is_main_process

RUN_FILES = ("metrics.json", "checkpoint.pt", "model.pt")
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
    from .gpu_loader import GPULoader
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    train = data.cifar10(cfg.data, True, download=cfg.download, subset=cfg.train_subset)
    test = data.cifar10(cfg.data, False, download=cfg.download, subset=cfg.test_subset)
    common = dict(device=cfg.device, rank=rank, world_size=world, channels_last=cfg.channels_last)
    return (GPULoader(train, cfg.batch_size, train=True, **common),
            GPULoader(test, test_batch, train=False, **common))


def hardware(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                     if line.startswith("model name")), name)
    return f"CPU ({name}, {torch.get_num_threads()} threads)"


def commit():
    """The checkout's commit, "-dirty" when the code (src/, requirements.txt) differs from it; None
    outside git. Results and notebooks are left out: a run rewrites them as it goes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src",
                                "requirements.txt"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run(cfg):
    """Train as configured; returns (model, history). Rank 0 writes the run's files."""
    cfg = cfg.resolved()
    out, created = Path(cfg.out), not Path(cfg.out).exists()
    totals = data.split_size(cfg.data, True), data.split_size(cfg.data, False)  # each lists its files once
    n_train, n_test = (min(subset or total, total)
                       for subset, total in zip((cfg.train_subset, cfg.test_subset), totals))
    if cfg.batch_size > n_train:  # counted without decoding an image
        raise UserError(f"--batch-size {cfg.batch_size}: larger than the {n_train} training images, so an epoch "
                        f"would have no full batch")
    if is_main_process():
        finished = _claim(out, cfg)
        if finished:
            return finished
    try:
        return _train(cfg, out, {"train_images": n_train, "test_images": n_test})
    except BaseException:
        if created and is_main_process() and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run that failed before writing anything leaves no empty folder
        raise


def _claim(out, cfg):
    """Refuse to replace a run silently; with --resume of a finished run, return its results."""
    held = [name for name in RUN_FILES if (out / name).exists()]
    if cfg.resume and (out / "metrics.json").exists():
        metrics = json.loads((out / "metrics.json").read_text())
        if metrics.get("finished"):
            wanted = json.loads(json.dumps(fingerprint(cfg)))  # as metrics.json holds it: tuples become lists
            then = {k: metrics["config"].get(k) for k in wanted}
            check_config(f"the finished run {out / 'metrics.json'}", then, wanted)
            print(f"the run in {out} is already finished ({metrics['epochs_done']} of {cfg.epochs} epochs, test "
                  f"accuracy {100 * metrics['final_test_acc']:.2f}%): nothing to resume", flush=True)
            model = create_model(cfg.model, **model_overrides(cfg))
            model.load_state_dict(torch.load(out / "model.pt", map_location="cpu", weights_only=True))
            return model, History.from_dict(metrics["history"])
    if held and not (cfg.resume or cfg.overwrite):
        raise UserError(f"{out} already holds a run ({', '.join(held)}): pass --resume to continue it, "
                        f"--overwrite to replace it, or another --out")
    if held and cfg.overwrite:
        print(f"replacing the run in {out} (--overwrite)", flush=True)
        for name in held:
            (out / name).unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to output folder {out}: {err.strerror or err}") from None
    return None


def _train(cfg, out, sizes):
    seed_everything(cfg.seed)
    device = torch.device(cfg.device)
    if dist.is_initialized() and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        cfg.device = str(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    sizes_given = model_overrides(cfg)
    model = create_model(cfg.model, **sizes_given)
    train_loader, test_loader = make_loaders(cfg)
    step = Step.of(cfg)
    extra = {"name": variant(cfg.model).title} if cfg.trainer == "onecycle" else {}  # its epoch line's prefix
    about = {"model": {"name": cfg.model, "label": label(cfg.model, **sizes_given),
                       "hyper_parameters": hyper_parameters(cfg.model, **sizes_given),
                       "parameters": sum(p.numel() for p in model.parameters())},
             "data": {"path": cfg.data, "source": data.source(cfg.data), **sizes}, "hardware": hardware(cfg.device),
             "world_size": dist.get_world_size() if dist.is_initialized() else 1, "torch": torch.__version__,
             "commit": commit(), "config": asdict(cfg)}
    history = TRAINERS[cfg.trainer](
        model, train_loader, test_loader, cfg.epochs, cfg.lr_max, cfg.wd, warmup=cfg.warmup,
        decay_norms=cfg.decay_norms, beta2=cfg.beta2, step=step, device=device, checkpoint=out / "checkpoint.pt",
        resume=cfg.resume, config=fingerprint(cfg), on_epoch=lambda epoch, h: _write_metrics(out, about, h),
        **extra)
    result = predict(model, test_loader, device, step)
    history.predictions = result.targets, result.predictions
    history.misclassified = result.mistakes()
    if is_main_process():
        torch.save(model.state_dict(), out / "model.pt")
        _write_metrics(out, about, history, finished=True)
        if cfg.compile and len(history.epoch_time) > 1:
            steady = history.epoch_time[1:]
            print(f"torch.compile: the first epoch took {history.epoch_time[0]:.1f} s (compiling), the others "
                  f"{sum(steady) / len(steady):.2f} s on average", flush=True)
    return model, history


def _write_metrics(out, about, history, finished=False):
    steady = history.epoch_time[1:] or history.epoch_time  # the first epoch carries compilation and warm-up
    metrics = {"finished": finished, "epochs_done": len(history.test_acc), "final_test_acc": history.test_acc[-1],
               "final_train_acc": history.train_acc[-1], "seconds_per_epoch": sum(steady) / len(steady),
               "first_epoch_seconds": history.epoch_time[0], **about, "history": history.to_dict()}
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1, allow_nan=False))  # strict JSON: a NaN is a bug, not a value
    os.replace(tmp, out / "metrics.json")
