"""Every option declared once (OPTIONS), so the flags, recipes, resume check and echoed command line agree."""
import json
import math
import os
import re
import warnings
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path

import torch

from .io import UserError
from .models import MODELS, create_model, variant
from .recipes import RECIPES, recipe
from .trainers import TRAINERS
from .trainers.one_cycle import ANNEAL, WARMUP

DEFAULT_DATA = "./data"  # torchvision downloads CIFAR-10 here when nothing else is given
WORKERS = 2  # the reference loader's DataLoader workers, unless --workers says otherwise


@dataclass(frozen=True)
class Allowed:
    """A range of numbers that str() says in words, for error messages."""
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def __contains__(self, v):
        return (not isinstance(v, bool) and isinstance(v, int if self.integer else (int, float)) and math.isfinite(v)
                and (v > self.low if self.low_open else v >= self.low)
                and (v < self.high if self.high_open else v <= self.high))

    def __str__(self):
        show = (lambda v: str(int(v))) if self.integer else (lambda v: f"{v:g}")
        kind = "an integer" if self.integer else "a number"
        if self.high == math.inf:
            return f"{kind} {'>' if self.low_open else '>='} {show(self.low)}"
        return f"{kind} in {'(['[not self.low_open]}{show(self.low)}, {show(self.high)}{')]'[not self.high_open]}"


POSITIVE = Allowed(1, integer=True)
FRACTION = Allowed(0, 1, high_open=True)


@dataclass(frozen=True)
class Option:
    name: str
    default: object
    help: str
    group: str              # experiment, model, optimisation or running
    allowed: object = None  # an Allowed, a tuple of choices, one Allowed per value (nargs), or None
    type: type = None       # parses a command-line word (default: the default's type)
    nargs: int = None
    resume: bool = False    # part of what a run is: --resume refuses another value
    recipe: bool = False    # a recipe may set it (src/recipes.py)

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    @property
    def unset(self):  # Config's default: None where a recipe or the model variant decides
        return None if self.recipe or self.group == "model" else self.default


def _size(name, allowed=POSITIVE, kind=int, recipe=False, help="a model hyper-parameter (default: the variant's)"):
    return Option(name, None, help, "model", allowed, kind, resume=True, recipe=recipe)


def _tuned(name, default, help, allowed=None, kind=None, nargs=None):  # a recipe may set it; a run keeps it
    return Option(name, default, help, "optimisation", allowed, kind, nargs, resume=True, recipe=True)


OPTIONS = (
    Option("model", "convmixer_256_8", "named model size (src/models)", "experiment", tuple(MODELS), resume=True),
    Option("trainer", "onecycle", "onecycle: the authors' loop, one line per epoch; wrapper: the custom training "
           "wrapper, a tqdm bar per batch", "experiment", tuple(TRAINERS), resume=True),
    Option("recipe", "baseline", "default values of the optimisation options (src/recipes.py)", "experiment",
           tuple(RECIPES)),
    Option("epochs", 25, "epochs to train", "experiment", POSITIVE, resume=True),
    Option("data", DEFAULT_DATA, "class-folder copy (train/<class>/*.jpg) or torchvision's CIFAR-10 folder",
           "experiment", type=os.path.expanduser, resume=True),  # --data=~/x: no shell expands it
    Option("download", None, f"download CIFAR-10 with torchvision into --data (default: into {DEFAULT_DATA} only)",
           "experiment", type=bool),
    Option("out", None, "output folder (default runs/MODEL-TRAINER-RECIPE)", "experiment", type=os.path.expanduser),
    Option("resume", False, "continue the run in --out from its checkpoint.pt", "experiment"),
    Option("overwrite", False, "replace the run that --out already holds", "experiment"),
    _size("dim"),
    _size("depth", Allowed(1, 1000, integer=True)),
    *(_size(name) for name in ("kernel_size", "patch_size", "heads", "dim_head", "mlp_dim")),
    *(_size(name, FRACTION, float, True) for name in ("dropout", "emb_dropout")),
    _size("emb_init_std", Allowed(0, low_open=True), float, True, "std of the ViT's first position embedding"),
    _tuned("lr_max", None, "peak learning rate", Allowed(0, low_open=True), float),
    _tuned("wd", 0.0, "AdamW weight decay", Allowed(0)),
    _tuned("beta2", 0.999, "AdamW's second-moment decay", FRACTION),
    _tuned("warmup", WARMUP, f"fraction of the run spent warming up (annealing starts at {ANNEAL:g})",
           Allowed(0, ANNEAL, low_open=True, high_open=True)),
    _tuned("decay_norms", True, "weight decay on norms, biases, position embedding and class token too"),
    _tuned("label_smoothing", 0.0, "label smoothing of the training loss", FRACTION),
    _tuned("ema", 0.0, "test an exponential moving average of the weights with this decay (0: none)", FRACTION),
    _tuned("tta_flip", False, "average the logits of each test image and its mirror"),
    _tuned("tta_translate", False, "also of each view shifted a pixel up-left and down-right (as airbench)"),
    _tuned("grad_clip", 0.0, "clip the gradient norm to this value (0: no clipping)", Allowed(0)),
    _tuned("randaugment", None, "torchvision's RandAugment (ops, magnitude) before the rest of the augmentation",
           (Allowed(1, 14, integer=True), Allowed(0, 30, integer=True)), int, 2),
    _tuned("pad", 4, "pad the image this much and crop 32x32 at random (0: no crop)", Allowed(0, 16, integer=True)),
    _tuned("hole_p", 0.5, "probability of the 16x16 hole (0: none)", Allowed(0, 1)),
    Option("batch_size", 512, "images per optimizer step", "running", POSITIVE, resume=True),
    Option("test_batch_size", None, "images per test batch (default: 4x --batch-size)", "running", POSITIVE, int),
    Option("workers", None, f"DataLoader workers of the reference loader (default: {WORKERS})", "running",
           Allowed(0, integer=True), int, resume=True),
    Option("seed", 0, "seeds torch, numpy and random: CPU runs repeat bit for bit", "running",
           Allowed(0, 2**32 - 1, integer=True), resume=True),
    Option("train_subset", None, "train on this many images (quick runs)", "running", POSITIVE, int, resume=True),
    Option("test_subset", None, "test on this many images (quick runs)", "running", POSITIVE, int, resume=True),
    Option("loader", "auto", "reference: albumentations DataLoader; gpu: the whole dataset on the device, the same "
           "augmentation; auto: gpu on CUDA", "running", ("auto", "reference", "gpu"), resume=True),
    Option("precision", "auto", "CUDA autocast; auto: bf16 where the GPU has it, else fp16 (CPU: fp32)", "running",
           ("auto", "fp32", "fp16", "bf16")),
    Option("channels_last", None, "channels-last memory format (default: on CUDA)", "running", type=bool),
    Option("compile", None, "torch.compile the model (default: on CUDA)", "running", type=bool),
    Option("compile_mode", "default", "torch.compile's mode (reduce-overhead: CUDA graphs)", "running",
           ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")),
    Option("device", "auto", "cpu, cuda or cuda:N; auto: cuda when there is one", "running", type=str),
)
BY_NAME = {o.name: o for o in OPTIONS}
Config = make_dataclass("Config", [(o.name, object, field(default=o.unset)) for o in OPTIONS])


def check(option, value):
    """One line naming the flag, the value and what is allowed, unless value is allowed (None: unset)."""
    allowed, kind = option.allowed, option.type or type(option.default)
    if option.nargs:
        ok = isinstance(value, (tuple, list)) and len(value) == option.nargs and \
            all(v in a for v, a in zip(value, allowed))
        said = f"{option.nargs} values, {' and '.join(map(str, allowed))}"
    elif allowed is None:
        ok, said = kind is not bool or isinstance(value, bool), "True or False"
    else:
        ok, said = value in allowed, f"one of {', '.join(allowed)}" if isinstance(allowed, tuple) else allowed
    if value is not None and not ok:
        raise UserError(f"{option.flag} {value!r}: expected {said}")


def device_of(name):
    if name in ("auto", "cpu"):
        return "cuda" if name == "auto" and torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cuda(:\d+)?", str(name)):
        raise UserError(f"--device {name!r}: expected cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    if int(name.partition(":")[2] or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
    return name


def resolve(cfg):
    """A copy of cfg with every value decided (recipe, model variant, "auto") and checked. Reads no data."""
    v = asdict(cfg)
    for name in ("model", "trainer", "recipe"):
        check(BY_NAME[name], v[name])
    v["device"] = device_of(v["device"])
    cuda, model = v["device"].startswith("cuda"), variant(v["model"])
    own, preset = model.hyper_parameters, recipe(v["recipe"], model.family)
    for o in OPTIONS:
        if o.group == "model" and v[o.name] is not None and o.name not in own:
            raise UserError(f"{o.flag}: --model {v['model']} has no {o.name} (its sizes: {', '.join(own)}); "
                            f"drop {o.flag}")
        if v[o.name] is None:  # the recipe's value, else the variant's size or the option's default
            v[o.name] = preset.get(o.name, own.get(o.name) if o.group == "model" else o.default)
        check(o, v[o.name])
    v["out"] = f"runs/{v['model']}-{v['trainer']}-{v['recipe']}" if v["out"] is None else v["out"]
    data, out, folders = Path(v["data"]).resolve(), Path(v["out"]).resolve(), (Path(v["data"]) / "train").is_dir()
    for wrong, said in (
            (not str(v["data"]).strip(), f"--data {v['data']!r}: give a folder"),
            (not str(v["out"]).strip(), f"--out {v['out']!r}: give a folder"),
            (v["lr_max"] is None, f"--lr-max: recipe {v['recipe']!r} sets none for {model.family}; give one"),
            (not cuda and v["precision"] not in ("auto", "fp32"),
             f"--precision {v['precision']}: mixed precision runs on CUDA only; use --precision fp32"),
            (v["loader"] == "gpu" and v["workers"] is not None,
             f"--workers {v['workers']}: the gpu loader has no DataLoader workers; drop --workers"),
            (v["compile_mode"] != "default" and not (cuda if v["compile"] is None else v["compile"]),
             f"--compile-mode {v['compile_mode']}: the model is not compiled here; add --compile"),
            (v["resume"] and v["overwrite"], "--resume and --overwrite contradict each other: continue the run or "
                                             "replace it"),
            (out == data or data in out.parents,
             f"--out {v['out']}: inside --data {v['data']}; give a folder outside the data"),
            (v["download"] and folders,
             f"--download: --data {v['data']} holds class folders, read as they are; drop --download")):
        if wrong:
            raise UserError(said)
    _check_sizes(Config(**v))
    if v["precision"] == "auto":
        v["precision"] = "fp32" if not cuda else \
            "bf16" if torch.cuda.get_device_capability(torch.device(v["device"]))[0] >= 8 else "fp16"
    if v["loader"] == "auto":
        v["loader"] = "gpu" if cuda and v["workers"] is None else "reference"
    if v["loader"] == "reference" and v["workers"] is None:
        v["workers"] = WORKERS
    v.update({name: cuda if v[name] is None else v[name] for name in ("channels_last", "compile")})
    v["randaugment"] = v["randaugment"] and tuple(v["randaugment"])
    if v["download"] is None:
        v["download"] = Path(v["data"]) == Path(DEFAULT_DATA) and not folders
    return Config(**v)


def _check_sizes(cfg):
    """Sizes that cannot take a 32x32 image, refused on the meta device: nothing is allocated, however large."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # two images: BatchNorm of a 1x1 map needs more than one value
            create_model(cfg.model, **model_overrides(cfg))(torch.empty(2, 3, 32, 32))
    except ValueError as err:
        raise UserError(f"--model {cfg.model}: {err}: give sizes that fit it") from None
    except RuntimeError as err:
        raise UserError(f"--model {cfg.model}: these sizes cannot take a 32x32 image "
                        f"({str(err).strip().splitlines()[-1]}): give smaller ones") from None


def model_overrides(cfg):
    return {o.name: getattr(cfg, o.name) for o in OPTIONS if o.group == "model" and getattr(cfg, o.name) is not None}


def fingerprint(cfg):
    """What --resume must keep, as JSON holds it; a run recorded before an option existed ran with its default."""
    values = cfg if isinstance(cfg, dict) else asdict(cfg)
    values = json.loads(json.dumps({o.name: values.get(o.name, o.default) for o in OPTIONS if o.resume}))
    return {**values, "data": str(Path(values["data"]).resolve())}
