"""Every option of a run, declared once in OPTIONS.

The command line (src/train.py), the recipes' reach, the resume check, the notebooks' echo of
the command line and what reaches the model, the loaders and the trainers are all derived from
this list. Adding an option = one `Option(...)` below + the code that uses it.
"""
import json
import math
import warnings
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path

import torch

from .checkpoint import busy
from .cli import RUN_FILES, os_problem, within
from .errors import UserError
from .machine import check_compiler, check_device, check_memory, precision
from ..models import MODELS, create_model, hyper_parameters, variant
from ..recipes import RECIPES, recipe
from ..trainers import TRAINERS
from ..trainers.one_cycle import ANNEAL, WARMUP

DEFAULT_DATA = "./data"  # torchvision downloads CIFAR-10 here when nothing else is given
LOADERS = ("auto", "reference", "gpu")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
IMAGE_SIZE = 32  # CIFAR-10
WORKERS = 2  # the reference loader's DataLoader workers, unless --workers says otherwise


@dataclass(frozen=True)
class Allowed:
    """A range of numbers; str() says it in words, for --help and error messages."""
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def __contains__(self, value):
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)) \
                or not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self):
        kind = "an integer" if self.integer else "a finite number"
        show = (lambda v: str(int(v))) if self.integer else (lambda v: f"{v:g}")
        if self.high == math.inf:
            return f"{kind} {'>' if self.low_open else '>='} {show(self.low)}"
        return (f"{kind} in {'(' if self.low_open else '['}{show(self.low)}, {show(self.high)}"
                f"{')' if self.high_open else ']'}")


POSITIVE_INT = Allowed(1, integer=True)
COUNT = Allowed(0, integer=True)
DEPTH = Allowed(1, 1000, integer=True)  # deeper is no model of this study, and building one to check it takes hours
FRACTION = Allowed(0, 1, high_open=True)


@dataclass(frozen=True)
class Option:
    name: str
    default: object
    help: str
    group: str                # experiment, model, optimisation or running
    allowed: object = None    # an Allowed, a tuple of choices, one Allowed per value (nargs), or None
    type: type = None         # parses a command-line word; default: the default's type
    nargs: int = None
    resume: bool = False      # a checkpoint only continues a run made with the same value
    recipe: bool = False      # a recipe may set it (src/recipes.py)

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    @property
    def unset(self):
        """Config's default: None where a recipe, the model variant or "auto" decides."""
        return None if self.recipe or self.group == "model" else self.default


MODEL_SIZE = "a hyper-parameter of the model (default: the --model variant's)"
OPTIONS = (
    # experiment
    Option("model", "convmixer_256_8", "named model size (src/models)", "experiment", tuple(MODELS), resume=True),
    Option("trainer", "onecycle", "onecycle: the authors' loop, one line per epoch; wrapper: the custom "
           "training wrapper, a tqdm bar per batch", "experiment", tuple(TRAINERS), resume=True),
    Option("recipe", "baseline", "default values of the optimisation options (src/recipes.py)", "experiment",
           tuple(RECIPES)),
    Option("epochs", 25, "epochs to train", "experiment", POSITIVE_INT, resume=True),
    Option("data", DEFAULT_DATA, "class-folder copy (train/<class>/*.jpg) or torchvision's CIFAR-10 folder; "
           f"the default {DEFAULT_DATA} is downloaded by torchvision if missing", "experiment", type=str, resume=True),
    Option("download", None, "download CIFAR-10 with torchvision into --data (default: only into the default "
           f"{DEFAULT_DATA}, when it holds no copy)", "experiment", type=bool),
    Option("out", None, "output folder (default runs/MODEL-TRAINER-RECIPE)", "experiment", type=str),
    Option("resume", False, "continue the run in --out from its checkpoint.pt", "experiment"),
    Option("overwrite", False, "replace the run that --out already holds", "experiment"),
    # model: None keeps the variant's value
    *(Option(name, None, MODEL_SIZE, "model", DEPTH if name == "depth" else POSITIVE_INT, type=int, resume=True)
      for name in ("dim", "depth", "kernel_size", "patch_size", "heads", "dim_head", "mlp_dim")),
    *(Option(name, None, MODEL_SIZE, "model", FRACTION, type=float, resume=True, recipe=True)
      for name in ("dropout", "emb_dropout")),
    # optimisation: None takes the recipe's value, else the default here
    Option("lr_max", None, "peak learning rate", "optimisation", Allowed(0, low_open=True), float, resume=True,
           recipe=True),
    Option("wd", 0.0, "AdamW weight decay", "optimisation", Allowed(0), float, resume=True, recipe=True),
    Option("beta2", 0.999, "AdamW's second-moment decay", "optimisation", FRACTION, float, resume=True,
           recipe=True),
    Option("warmup", WARMUP, f"fraction of the run spent warming up (< {ANNEAL:g}, where annealing starts)",
           "optimisation", Allowed(0, ANNEAL, low_open=True, high_open=True), float, resume=True, recipe=True),
    Option("decay_norms", True, "weight decay on norms, biases, position embedding and class token too",
           "optimisation", resume=True, recipe=True),
    Option("label_smoothing", 0.0, "label smoothing of the training loss", "optimisation", FRACTION, float,
           resume=True, recipe=True),
    Option("ema", 0.0, "evaluate an exponential moving average of the weights with this decay (0: none)",
           "optimisation", FRACTION, float, resume=True, recipe=True),
    Option("tta_flip", False, "average the logits of each test image and its mirror", "optimisation",
           resume=True, recipe=True),
    Option("tta_translate", False, "also average those of each view shifted a pixel up-left and down-right (as "
           "airbench)", "optimisation", resume=True, recipe=True),
    Option("grad_clip", 0.0, "clip the gradient norm to this value (0: no clipping)", "optimisation", Allowed(0),
           float, resume=True, recipe=True),
    Option("randaugment", None, "torchvision's RandAugment before the original augmentation (reference loader)",
           "optimisation", (Allowed(1, 14, integer=True), Allowed(0, 30, integer=True)), int, nargs=2,
           resume=True, recipe=True),
    # running
    Option("batch_size", 512, "images per optimizer step", "running", POSITIVE_INT, resume=True),
    Option("workers", None, f"DataLoader worker processes of the reference loader (default: {WORKERS})", "running",
           COUNT, int),
    Option("seed", 0, "seeds torch, numpy and random: CPU runs repeat bit for bit", "running",
           Allowed(0, 2**32 - 1, integer=True), resume=True),
    Option("train_subset", None, "train on this many images (quick runs)", "running", POSITIVE_INT, int,
           resume=True),
    Option("test_subset", None, "test on this many images (quick runs)", "running", POSITIVE_INT, int,
           resume=True),
    Option("loader", "auto", "reference: albumentations DataLoader; gpu: the whole dataset on the device, same "
           "augmentation; auto: gpu on CUDA", "running", LOADERS),
    Option("precision", "auto", "CUDA autocast; auto: bf16 where the GPU has it, else fp16 (CPU: fp32)",
           "running", PRECISIONS),
    Option("channels_last", None, "channels-last memory format (default: on CUDA)", "running", type=bool),
    Option("compile", None, "torch.compile the model (default: on CUDA)", "running", type=bool),
    Option("device", "auto", "cpu, cuda or cuda:N; auto: cuda when there is one", "running", type=str),
)
BY_NAME = {o.name: o for o in OPTIONS}

Config = make_dataclass("Config", [(o.name, object, field(default=o.unset)) for o in OPTIONS])
Config.__doc__ = "One run's settings, one field per Option; `resolve(config)` fills in and checks them."


def resolve(cfg):
    """A copy with every value decided (recipe, model variant, "auto") and checked: raises
    UserError naming the flag, the value and what is allowed. Reads no data."""
    values = asdict(cfg)
    for name in ("model", "trainer", "recipe"):
        _check(BY_NAME[name], values[name])
    values["device"] = check_device(values["device"])
    cuda = values["device"].startswith("cuda")
    family = variant(values["model"]).family
    values.update({name: value for name, value in recipe(values["recipe"], family).items() if values[name] is None})
    values.update({o.name: o.default for o in OPTIONS if o.group != "model" and values[o.name] is None})
    for o in OPTIONS:
        _check(o, values[o.name])
    for name in ("data", "out"):
        if values[name] is not None and not values[name].strip():
            raise UserError(f"--{name} {values[name]!r}: give a folder")
        if values[name] is not None and os_problem(values[name]):
            raise UserError(f"--{name} {values[name]}: {os_problem(values[name])}; give another path")
    if values["out"] is not None and within(Path(values["out"]), Path(values["data"])):
        raise UserError(f"--out {values['out']}: inside --data {values['data']}; give a folder outside the data")
    if values["lr_max"] is None:
        raise UserError(f"--lr-max: recipe {values['recipe']!r} sets none for {family}; give one")
    own = variant(values["model"]).hyper_parameters
    for o in OPTIONS:
        if o.group == "model" and values[o.name] is not None and o.name not in own:
            raise UserError(f"{o.flag} {values[o.name]}: --model {values['model']} has no {o.name} (its sizes: "
                            f"{', '.join(own)}); drop {o.flag}")
    try:
        sizes = hyper_parameters(values["model"], **{o.name: values[o.name] for o in OPTIONS if o.group == "model"})
        with torch.device("meta"), warnings.catch_warnings():  # checks the sizes with a CIFAR image, allocating
            warnings.simplefilter("ignore")                     # nothing; training shows any warning itself
            model = create_model(values["model"], **sizes)
            shrink = [o.flag for o in OPTIONS if o.name in own and o.type is int and o.name != "patch_size"]
            check_memory(model, values["model"], values["device"], shrink)  # before the forward, which takes longer
            model(torch.empty(2, 3, IMAGE_SIZE, IMAGE_SIZE))  # two: BatchNorm of a 1x1 map needs more than one
    except UserError:
        raise
    except ValueError as err:
        raise UserError(f"--model {values['model']}: {err}") from None
    except RuntimeError as err:
        raise UserError(f"--model {values['model']}: these sizes cannot take a {IMAGE_SIZE}x{IMAGE_SIZE} image "
                        f"({str(err).strip().splitlines()[-1]})") from None
    values.update({k: v for k, v in sizes.items() if k in BY_NAME})
    if values["randaugment"] is not None:
        values["randaugment"] = tuple(values["randaugment"])
    values["precision"] = precision(values["precision"], values["device"])
    asked = values["loader"]
    if values["loader"] == "auto":
        values["loader"] = "gpu" if cuda and not values["randaugment"] else "reference"
    if values["randaugment"] and values["loader"] == "gpu":
        raise UserError("--randaugment runs in the reference loader only: use --loader reference")
    if asked == "gpu" and values["workers"] is not None:
        raise UserError(f"--workers {values['workers']}: the gpu loader has no DataLoader workers; drop --workers, "
                        f"or use --loader reference")
    if values["loader"] == "gpu":  # it ignores workers: none are kept, so that a resolved config resolves again
        values["workers"] = None
    elif values["workers"] is None:
        values["workers"] = WORKERS
    values.update({name: cuda if values[name] is None else values[name] for name in ("channels_last", "compile")})
    if values["compile"]:
        check_compiler(values["device"])
    if values["resume"] and values["overwrite"]:
        raise UserError("--resume and --overwrite contradict each other: continue the run or replace it")
    values["out"] = values["out"] or f"runs/{values['model']}-{values['trainer']}-{values['recipe']}"
    if values["resume"] and not any((Path(values["out"]) / name).exists() for name in RUN_FILES):
        raise UserError(f"--out {values['out']}: " + ("another process is starting a run there right now, its first "
                        "epoch not saved yet; wait for it to end, or choose another --out" if busy(values["out"]) else
                        f"no run to resume there (none of {', '.join(RUN_FILES)}); give the run's folder, or drop "
                        f"--resume to start one"))
    folders = all((Path(values["data"]) / split).is_dir() for split in ("train", "test"))  # read as they are
    if values["download"] and folders:
        raise UserError(f"--download: --data {values['data']} holds class folders (train/<class>/, test/<class>/), "
                        f"which are read as they are; drop --download")
    if values["download"] is None:  # an explicit --no-download is kept
        values["download"] = Path(values["data"]) == Path(DEFAULT_DATA) and not folders
    return Config(**values)


Config.resolved = resolve


def _check(option, value):
    allowed = option.allowed
    if value is None or allowed is None:
        if allowed is None and option.type is bool and value is not None and not isinstance(value, bool):
            raise UserError(f"{option.flag} {value!r}: expected True or False")
        return
    if option.nargs:
        if not isinstance(value, (tuple, list)) or len(value) != option.nargs:
            raise UserError(f"{option.flag} {value!r}: expected {option.nargs} values")
        for v, a in zip(value, allowed):
            if v not in a:
                raise UserError(f"{option.flag} {' '.join(map(str, value))}: each value must be {a} (got {v!r})")
    elif isinstance(allowed, tuple):
        if value not in allowed:
            raise UserError(f"{option.flag} {value!r}: expected one of {', '.join(allowed)}")
    elif value not in allowed:
        raise UserError(f"{option.flag} {value!r}: expected {allowed}")


RESUME_KEYS = tuple(o.name for o in OPTIONS if o.resume)  # what a run is: --resume refuses other values


def fingerprint(cfg):
    """The values a run resumed must keep, of a Config or a dict (metrics.json's config), as JSON holds
    them (tuples become lists); the data as an absolute path, however it was written. A run recorded
    before an option existed ran with its default."""
    values = cfg if isinstance(cfg, dict) else asdict(cfg)
    values = json.loads(json.dumps({name: values.get(name, BY_NAME[name].default) for name in RESUME_KEYS}))
    return {**values, "data": str(Path(values["data"]).resolve()) if values.get("data") else None}


def model_overrides(cfg):
    return {o.name: getattr(cfg, o.name) for o in OPTIONS if o.group == "model" and getattr(cfg, o.name) is not None}
