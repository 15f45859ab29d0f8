"""What the notebooks print around a run: the command line equivalent to their Config, and the
final results line read from the run's metrics.json. Nothing here trains or plots."""
import json
import shlex
from dataclasses import fields
from pathlib import Path

from .train import Config

CIFAR10_TRAIN_IMAGES = 50_000
# Config fields whose command-line flag is not `--field-name` (see src/train.py parser()).
FLAGS = {"decay_all": ("--decay-norms", "--no-decay-norms"), "ema_decay": "--ema"}
# Written even when they are the defaults, so that the command says what it trains.
ALWAYS = ("model", "trainer", "epochs", "batch_size")


def command_line(cfg):
    """`python -m src.train ...` that turns into the same Config (src.train.config_from_args):
    besides ALWAYS, only the values that differ from the command line's defaults are written."""
    default = Config()
    args = []
    for f in fields(Config):
        name, value = f.name, getattr(cfg, f.name)
        if name == "download":
            # the command line downloads whenever --data is its default ./data
            if value and cfg.data != default.data:
                args.append("--download")
            elif not value and cfg.data == default.data:
                raise ValueError("the command line always downloads into ./data: set download=True")
            continue
        if name == "out":
            if value != f"runs/{cfg.model}-{cfg.trainer}-{cfg.recipe}":
                args += ["--out", value]
            continue
        if value == getattr(default, name) and name not in ALWAYS:
            continue
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        if isinstance(value, bool):
            on, off = flag if isinstance(flag, tuple) else (flag, "--no-" + flag[2:])
            args.append(on if value else off)
        elif isinstance(value, (tuple, list)):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    return shlex.join(["python", "-m", "src.train", *args])


def results_line(history, cfg, mode, model_name):
    """One line to quote: model, data, hardware, mode, epochs, images, final test accuracy and
    mean epoch time, from the History and cfg.out/metrics.json."""
    metrics = json.loads((Path(cfg.out) / "metrics.json").read_text())
    data = metrics["data"]
    if data["format"].startswith("class folders"):
        jpeg = next((Path(data["path"]) / "train").rglob("*.jp*g"), None) is not None
        source = "JPEG copy of CIFAR-10" if jpeg else "CIFAR-10 class folders"
    else:
        source = "torchvision CIFAR-10"
    n_train = min(cfg.train_subset or CIFAR10_TRAIN_IMAGES, CIFAR10_TRAIN_IMAGES)
    n_test = len(history.predictions[0])
    epochs = len(history.test_acc)
    mean_time = sum(history.epoch_time) / epochs
    return (f"{model_name} ({metrics['parameters']:,} parameters) | data: {source} ({data['path']}) | "
            f"hardware: {metrics['hardware']} | mode: {mode} | {epochs} epoch{'s' * (epochs != 1)} on "
            f"{n_train:,} training images, tested on {n_test:,} | final test accuracy "
            f"{100 * history.test_acc[-1]:.2f}% | mean epoch time {mean_time:.1f} s")
