"""Train a model from the command line or a notebook: `run(Config(...))` is what both call.

    python -m src.train --model convmixer --trainer onecycle --epochs 25 --data ../shared/cifar10-jpeg

writes OUT/metrics.json (config, data, hardware, history), OUT/model.pt (final weights) and,
after every epoch, OUT/checkpoint.pt (continue a killed run with --resume).
Under `torchrun --nproc_per_node N` it trains with DistributedDataParallel.
"""
import argparse
import json
import os
import platform
import random
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from . import data
from .models import MODELS, build_model, hyper_parameters
from .recipes import RECIPES, recipe
from .trainers import TRAINERS, NonFiniteLoss, Trainer, param_groups, train_one_cycle
from .trainers.engine import PRECISIONS, is_main_process

MODEL_KEYS = {"convmixer": ("dim", "depth", "kernel_size", "patch_size"),
              "vit": ("dim", "depth", "heads", "dim_head", "mlp_dim", "patch_size", "dropout", "emb_dropout")}
LOADERS = ("reference", "gpu")
# Settings a checkpoint must share with the run that resumes it (besides the model's): another
# trainer, schedule or optimizer would not continue the same run.
RESUME_KEYS = ("trainer", "epochs", "batch_size", "train_subset", "lr_max", "wd", "warmup", "decay_all",
               "label_smoothing", "ema_decay", "grad_clip", "randaugment")


@dataclass
class Config:
    model: str = "convmixer"
    trainer: str = "onecycle"
    recipe: str = "user"
    epochs: int = 25
    data: str = "./data"
    download: bool = False
    out: str = "runs/convmixer"
    # model hyper-parameters; None keeps the model's default
    dim: int = None
    depth: int = None
    kernel_size: int = None
    patch_size: int = None
    heads: int = None
    dim_head: int = None
    mlp_dim: int = None
    dropout: float = None
    emb_dropout: float = None
    # optimisation; None takes the recipe's value
    lr_max: float = None
    wd: float = None
    warmup: float = None
    decay_all: bool = None
    label_smoothing: float = None
    ema_decay: float = None
    tta_flip: bool = None
    grad_clip: float = None
    randaugment: tuple = None
    batch_size: int = 512
    workers: int = 2
    seed: int = 0
    train_subset: int = None
    test_subset: int = None
    loader: str = "reference"
    precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    resume: bool = False
    device: str = None

    def resolved(self):
        """The config with recipe values filled in where nothing was given, checked."""
        self.check()
        defaults = dict(lr_max=None, wd=None, warmup=2 / 5, decay_all=True, label_smoothing=0.0,
                        ema_decay=None, tta_flip=False, grad_clip=None, randaugment=None)
        defaults.update(recipe(self.recipe, self.model))
        values = asdict(self)
        for key, value in defaults.items():
            if values.get(key) is None:
                values[key] = value
        if values["device"] is None:
            values["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        if values["randaugment"] and values["loader"] == "gpu":
            raise ValueError("RandAugment runs in the reference loader only: use --loader reference")
        return Config(**values)

    def check(self):
        for name, allowed in (("model", MODELS), ("trainer", TRAINERS), ("recipe", tuple(RECIPES)),
                              ("loader", LOADERS), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 or more, got {self.workers}")

    def model_kwargs(self):
        return {k: getattr(self, k) for k in MODEL_KEYS[self.model] if getattr(self, k) is not None}


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loaders(cfg):
    """The reference albumentations DataLoaders, or the whole dataset on the device (`gpu`)."""
    distributed = dist.is_initialized()
    if cfg.loader == "reference":
        return data.loaders(cfg.data, cfg.batch_size, cfg.workers, cfg.train_subset, cfg.test_subset,
                            cfg.download, cfg.device, cfg.randaugment, distributed)
    from .gpu_loader import GPULoader
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    train = data.cifar10(cfg.data, True, download=cfg.download).subset(cfg.train_subset)
    test = data.cifar10(cfg.data, False, download=cfg.download).subset(cfg.test_subset)
    common = dict(device=cfg.device, rank=rank, world_size=world, channels_last=cfg.channels_last)
    return (GPULoader(train, cfg.batch_size, train=True, **common),
            GPULoader(test, cfg.batch_size, train=False, **common))


def check_writable(folder):
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to output folder {folder}: {err.strerror or err}") from None


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


def run(cfg):
    """Train as configured; returns (model, history). Rank 0 writes OUT/metrics.json and
    OUT/model.pt; every epoch it replaces OUT/checkpoint.pt."""
    cfg = cfg.resolved()
    if is_main_process():
        check_writable(cfg.out)
    seed_everything(cfg.seed)
    device = torch.device(cfg.device)
    if dist.is_initialized() and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        cfg.device = str(device)
    train_loader, test_loader = make_loaders(cfg)
    model = build_model(cfg.model, **cfg.model_kwargs())
    options = dict(precision=cfg.precision, channels_last=cfg.channels_last, compile=cfg.compile,
                   label_smoothing=cfg.label_smoothing, grad_clip=cfg.grad_clip, ema_decay=cfg.ema_decay,
                   tta_flip=cfg.tta_flip,
                   config={"model": cfg.model, **cfg.model_kwargs(), **{k: getattr(cfg, k) for k in RESUME_KEYS}})
    fit = dict(checkpoint=Path(cfg.out) / "checkpoint.pt", resume=cfg.resume)
    if cfg.trainer == "onecycle":
        name = {"convmixer": "ConvMixer", "vit": "ConvViT"}[cfg.model]
        history = train_one_cycle(model, train_loader, test_loader, cfg.epochs, cfg.lr_max, cfg.wd, device=device,
                                  name=name, warmup=cfg.warmup, decay_all=cfg.decay_all, **fit, **options)
    else:
        history = _fit_wrapper(model, train_loader, test_loader, cfg, device, fit, options)
    if is_main_process():
        _write_results(cfg, model, history)
    return model, history


def _fit_wrapper(model, train_loader, test_loader, cfg, device, fit, options):
    """The wrapper takes any optimizer and per-batch scheduler; here AdamW and torch's linear
    OneCycleLR with the recipe's peak and warm-up, so both trainers see the same settings."""
    optimizer = torch.optim.AdamW(param_groups(model, cfg.wd, cfg.decay_all), lr=cfg.lr_max)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr_max, epochs=cfg.epochs, steps_per_epoch=len(train_loader),
        pct_start=cfg.warmup, anneal_strategy="linear")
    trainer = Trainer(model, optimizer, device, scheduler, **options)
    return trainer.fit(train_loader, test_loader, cfg.epochs, **fit)


def _write_results(cfg, model, history):
    out = Path(cfg.out)
    torch.save(model.state_dict(), out / "model.pt")
    kind = "class folders (e.g. the JPEG copy)" if (Path(cfg.data) / "train").is_dir() else "torchvision CIFAR-10"
    metrics = {"config": asdict(cfg), "model": hyper_parameters(cfg.model, **cfg.model_kwargs()), "data": {"path": cfg.data, "format": kind},
               "hardware": hardware(cfg.device), "world_size": dist.get_world_size() if dist.is_initialized() else 1,
               "torch": torch.__version__, "parameters": sum(p.numel() for p in model.parameters()),
               "final_test_acc": history.test_acc[-1], "history": history.to_dict()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))


def parser():
    p = argparse.ArgumentParser(prog="python -m src.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Config()
    p.add_argument("--model", choices=MODELS, default=d.model)
    p.add_argument("--trainer", choices=TRAINERS, default=d.trainer,
                   help="onecycle: the authors' loop, one line per epoch; wrapper: tqdm bar per batch")
    p.add_argument("--recipe", choices=tuple(RECIPES), default=d.recipe,
                   help="default values of the optimisation options below (src/recipes.py)")
    p.add_argument("--epochs", type=positive_int, default=d.epochs)
    p.add_argument("--data", default=d.data, help="class-folder copy (train/<class>/*.jpg) or torchvision's "
                   "CIFAR-10 folder; the default ./data is downloaded by torchvision if missing")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 with torchvision into --data")
    p.add_argument("--out", default=None, help="output folder (default runs/MODEL-TRAINER-RECIPE)")
    m = p.add_argument_group("model (defaults: ConvMixer-256/8 k5 p2; ViT seed configuration)")
    for key in ("dim", "depth", "kernel_size", "patch_size", "heads", "dim_head", "mlp_dim"):
        m.add_argument("--" + key.replace("_", "-"), type=positive_int)
    m.add_argument("--dropout", type=float)
    m.add_argument("--emb-dropout", type=float)
    o = p.add_argument_group("optimisation (default: the recipe's)")
    o.add_argument("--lr-max", type=float)
    o.add_argument("--wd", type=float, help="AdamW weight decay")
    o.add_argument("--warmup", type=float, help="fraction of the run spent warming up (the user's: 0.4)")
    o.add_argument("--decay-norms", dest="decay_all", action=argparse.BooleanOptionalAction,
                   help="weight decay on norms, biases, position embedding and class token too")
    o.add_argument("--label-smoothing", type=float)
    o.add_argument("--ema", dest="ema_decay", type=float,
                   help="evaluate an EMA of the weights with this decay (0: none)")
    o.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, help="average logits over horizontal flips")
    o.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value")
    o.add_argument("--randaugment", type=positive_int, nargs=2, metavar=("N_OPS", "MAGNITUDE"))
    r = p.add_argument_group("running")
    r.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    r.add_argument("--workers", type=int, default=d.workers)
    r.add_argument("--seed", type=int, default=d.seed)
    r.add_argument("--train-subset", type=positive_int, help="train on this many images (quick runs)")
    r.add_argument("--test-subset", type=positive_int, help="test on this many images (quick runs)")
    r.add_argument("--loader", choices=LOADERS, default=d.loader,
                   help="reference: albumentations DataLoader; gpu: whole dataset on the device")
    r.add_argument("--precision", choices=PRECISIONS, default=d.precision, help="CUDA autocast (CPU: fp32)")
    r.add_argument("--channels-last", action="store_true")
    r.add_argument("--compile", action="store_true", help="torch.compile the model")
    r.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    r.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    return p


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def config_from_args(argv=None):
    return config_from_parsed(vars(parser().parse_args(argv)))


def config_from_parsed(args):
    """The Config that parsed command-line arguments describe (src.bench parses more of them)."""
    if args["out"] is None:
        args["out"] = f"runs/{args['model']}-{args['trainer']}-{args['recipe']}"
    args["download"] = args["download"] or args["data"] == Config.data
    if args["randaugment"]:
        args["randaugment"] = tuple(args["randaugment"])
    known = {f.name for f in fields(Config)}
    return Config(**{k: v for k, v in args.items() if k in known})


def main(argv=None):
    cfg = config_from_args(argv)
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
    try:
        run(cfg)
    except (ValueError, FileNotFoundError, NonFiniteLoss) as err:
        sys.exit(f"error: {err}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
