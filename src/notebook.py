"""What the notebooks call, so that every cell stays a few lines, and how to execute one from the
command line (its outputs, figures and run written beside it, or under --out):

    python -m src.notebook ConvMixer_experimentation_2 --mode full --data ../shared/cifar10-jpeg

A notebook's mode: "full" (the experiment: all images, 25 epochs; the default on a GPU), "cpu"
(the same model on a small subset, a check of the pipeline without a GPU; its accuracy is not the
experiment's) and "quick" (CI: a few batches). The environment tells an executed notebook what to
do: NOTEBOOK_MODE, CIFAR10_DIR (the data; else ./data, downloaded), NOTEBOOK_OUT (where its run and
figures go; quick runs default to a temporary folder), NOTEBOOK_DEVICE, NOTEBOOK_RESUME=1.
"""
import argparse
import ast
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from . import data
from .harness.checkpoint import fate, remove_leftovers, stamps
from .harness.cli import check_matplotlib, check_targets, one_line, os_problem, usable_path, within, writable_folder
from .harness.config import BY_NAME, DEFAULT_DATA, Config, model_overrides, resolve
from .harness.errors import UserError
from .harness.machine import check_device
from .harness.run import RUN_FILES, RunFolder, held, held_metrics, image_counts
from .models import create_model, hyper_parameters, label
from .trainers import KNOTS, TRAINERS
from .harness.executor import execute, plural

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("ConvMixer_experimentation_1", "ConvMixer_experimentation_2", "ViT_with_convolution")
MODES = {  # what each mode changes from the defaults (src/harness/config.py) and the recipe
    "full": {},
    "cpu": dict(epochs=2, batch_size=64, train_subset=2000, test_subset=1000),
    "quick": dict(epochs=1, batch_size=16, train_subset=256, test_subset=64, workers=0),
}
MODE_WHY = {
    "full": "the experiment: every image, the recipe's epochs and batch",
    "cpu": "a check without a GPU: the same model on 2,000 images for 2 epochs, batch 64 so that an epoch has "
           "31 steps; its accuracy says nothing about the experiment",
    "quick": "CI: a few batches in seconds, to show every cell runs",
}
ALWAYS = ("model", "trainer", "recipe", "epochs")  # echoed even when they are the defaults
# Colab brings its own torch, torchvision and Jupyter; the test tools are not needed there.
COLAB_KEEPS = re.compile(r"^(torch|torchvision|jupyter|nbclient|ipykernel|pytest)\s*([<>=!~;\[]|$)")


def lacks(mode, sizes):
    """What a mode needs that a copy of `sizes` (training, test) images lacks, as (needs, holds); None if nothing."""
    m, (train, test) = MODES[mode], sizes
    for want, have, split in ((m.get("train_subset"), train, "training"), (m.get("test_subset"), test, "test")):
        if want and want > have:
            return f"uses {want:,} {split} images", f"holds {have:,}"
    batch = m.get("batch_size", BY_NAME["batch_size"].default)
    if batch > min(m.get("train_subset") or train, train):
        return f"trains on batches of {batch}", f"holds {train:,} training images"
    return None


def install_missing_requirements():
    """In Colab: pip-install requirements.txt but for what Colab already has (keeps its torch)."""
    wanted = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if not COLAB_KEEPS.match(line)]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *wanted], check=True)


def default_mode():
    import torch
    return os.environ.get("NOTEBOOK_MODE") or ("full" if torch.cuda.is_available() else "cpu")


@dataclass
class Experiment:
    cfg: Config       # as the notebook asked for it: what the command line echoes
    settings: Config  # every value the run uses: cfg with "auto" and the recipe's values decided
    mode: str
    figures: Path     # where the notebook saves its figures; its run goes to figures/run-MODE

    def figure(self, name):
        return self.figures / name

    def preview(self, n=8):
        """n training images for the augmentation grid, decoding only those."""
        return data.cifar10(self.cfg.data, True, download=self.settings.download, subset=n)


def experiment(notebook, model, trainer, recipe, mode=None):
    """The notebook's Config for a mode; shows every value the run will use, as a table, and the
    command line that trains the same run."""
    from IPython.display import Markdown, display

    mode = mode or default_mode()
    if mode not in MODES:
        raise UserError(f"NOTEBOOK_MODE={mode}: expected one of {', '.join(MODES)}")
    out = os.environ.get("NOTEBOOK_OUT") or (tempfile.mkdtemp(prefix="notebook-quick-") if mode == "quick"
                                             else notebook)  # the set-up cell made the repository root the cwd
    cfg = config(out, model, trainer, recipe, mode, os.environ.get("CIFAR10_DIR", DEFAULT_DATA),
                 os.environ.get("NOTEBOOK_DEVICE", "auto"), os.environ.get("NOTEBOOK_RESUME") == "1")
    settings = claim(cfg)
    print(f"mode: {mode} ({MODE_WHY[mode]})")
    display(Markdown(settings_table(settings)))
    print("command line:", command_line(cfg))
    return Experiment(cfg, settings, mode, Path(out))


def config(out, model, trainer, recipe, mode, data_root, device, resume):
    """The run a notebook makes in out/run-MODE."""
    return Config(model=model, trainer=trainer, recipe=recipe, data=data_root, out=str(Path(out) / f"run-{mode}"),
                  resume=resume, overwrite=not resume, device=device, **MODES[mode])


def asked(name):
    """(model, trainer, recipe), as notebook NAME's settings cell asks `experiment` for them."""
    cells = json.loads((ROOT / name / f"{name}.ipynb").read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    python = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))  # magics
    calls = [node for node in ast.walk(ast.parse(python)) if isinstance(node, ast.Call)
             and getattr(node.func, "attr", getattr(node.func, "id", None)) == "experiment"]
    given = {k.arg: ast.literal_eval(k.value) for call in calls[:1] for k in call.keywords}
    if not {"model", "trainer", "recipe"} <= given.keys():
        raise UserError(f"{name}.ipynb: no settings cell calling experiment(model=..., trainer=..., recipe=...)")
    return given["model"], given["trainer"], given["recipe"]


def claim(cfg):
    """cfg resolved, once its run folder is found to be one it may write (not another's, nor made with other
    settings or data, its files whole): in the kernel before any figure, and before the kernel starts."""
    settings = resolve(cfg)
    with RunFolder(settings):
        pass
    return settings


def written_beside(folder, name):
    """The files a notebook writes whole beside its run: itself, executed, and its figures."""
    return [folder / f"{name}.ipynb", *(folder.glob("*.png") if folder.is_dir() else ())]


def settings_table(s):
    """Every value a resolved config gives the run, in words, as a markdown table."""
    sizes = hyper_parameters(s.model, **model_overrides(s))
    images = image_counts(s)
    with torch.device("meta"):
        parameters = sum(p.numel() for p in create_model(s.model, **sizes).parameters())
    decay = "every parameter" if s.decay_norms else "weights only (not norms, biases, position embedding, class token)"
    knots = " → ".join(f"{lr:.3g} at epoch {epoch:g}" for epoch, lr in KNOTS[s.trainer](s.lr_max, s.epochs, s.warmup))
    rand = f"RandAugment ({s.randaugment[0]} ops, magnitude {s.randaugment[1]}), " if s.randaugment else ""
    clip = f"; gradient norm clipped at {s.grad_clip:g}" if s.grad_clip else ""
    views = [*(["the mirror image's"] if s.tta_flip else []),
             *(["those of each view shifted a pixel up-left and down-right"] if s.tta_translate else [])]
    tested = (f"an EMA of the weights (decay {s.ema:g})" if s.ema else "the weights") + (
        f", logits averaged with {' and '.join(views)}" if views else ", on the image alone")
    workers = f" ({s.workers} workers)" if s.loader == "reference" else ""
    rows = [
        ("model", f"`{s.model}`: {label(s.model, **model_overrides(s))}, "
                  f"{', '.join(f'{k} {v}' for k, v in sizes.items())}; {parameters:,} parameters"),
        ("trainer", f"`{s.trainer}` ({TRAINERS[s.trainer].__name__}), recipe `{s.recipe}`"),
        ("optimizer", f"AdamW, betas (0.9, {s.beta2:g}), weight decay {s.wd:g} on {decay}"),
        ("learning rate", f"per batch, linear: {knots}"),
        ("epochs, batch", f"{plural(s.epochs, 'epoch')} of {images['train_images'] // s.batch_size} steps, "
                          f"{s.batch_size} images per step"),
        ("loss", f"cross-entropy, label smoothing {s.label_smoothing:g}{clip}"),
        ("tested", tested),
        ("augmentation", f"{rand}pad {data.PAD} with the mean pixel and random 32x32 crop, horizontal flip (p "
                         f"{data.FLIP_P:g}), one {data.HOLE}x{data.HOLE} hole of the mean pixel (p {data.HOLE_P:g}), "
                         f"normalize"),
        ("data", f"`{s.data}` ({data.source(s.data)}): {images['train_images']:,} training and "
                 f"{images['test_images']:,} test images"),
        ("running", f"{s.device}, {s.precision}, {s.loader} loader{workers}, channels-last "
                    f"{'on' if s.channels_last else 'off'}, {'compiled' if s.compile else 'eager'}, seed {s.seed}"),
    ]
    return "\n".join(["| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def command_line(cfg):
    """`python -m src.train ...` that turns into the same Config (src.train.config_from_args):
    the values that differ from the defaults, and ALWAYS."""
    args = []
    for f in fields(Config):
        value, option = getattr(cfg, f.name), BY_NAME[f.name]
        if value == f.default and f.name not in ALWAYS:
            continue
        if isinstance(value, bool):
            args.append(option.flag if value else "--no-" + option.flag[2:])
        elif isinstance(value, (tuple, list)):
            args += [option.flag, *map(str, value)]
        else:
            args += [option.flag, str(value)]
    return shlex.join(["python", "-m", "src.train", *args])


def results_line(exp):
    """One line to quote, from the run's metrics.json: model, data, hardware, mode, epochs, images,
    final test accuracy and the steady epoch time."""
    m = json.loads((Path(exp.cfg.out) / "metrics.json").read_text())
    c, d = m["config"], m["data"]
    return (f"{m['model']['label']} ({m['model']['parameters']:,} parameters) | data: {d['source']} ({d['path']}) | "
            f"hardware: {m['hardware']}, {c['precision']} | mode: {exp.mode} | {plural(m['epochs_done'], 'epoch')} on "
            f"{d['train_images']:,} training images, tested on {d['test_images']:,} | final test accuracy "
            f"{100 * m['final_test_acc']:.2f}% | {m['seconds_per_epoch']:.1f} s per epoch")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.notebook", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=NOTEBOOKS)
    p.add_argument("--mode", choices=tuple(MODES), default=None, help="default: $NOTEBOOK_MODE, else full on a GPU, "
                                                                      "else cpu")
    p.add_argument("--data", type=usable_path, help="CIFAR-10 (class folders or torchvision's); default: "
                                                    "$CIFAR10_DIR or ./data")
    p.add_argument("--out", type=usable_path, help="write the executed notebook, its run and figures under OUT/NAME "
                                                   "(default: in place; quick mode: a new temporary folder)")
    p.add_argument("--device", help="cpu, cuda or cuda:N; default: $NOTEBOOK_DEVICE, else a GPU if any")
    p.add_argument("--resume", action="store_true", help="continue the notebook's unfinished run")
    p.add_argument("--overwrite", action="store_true", help="replace the run the notebook's folder already holds")
    args = p.parse_args(argv)
    if args.resume and args.overwrite:
        p.error("--resume and --overwrite contradict each other: continue the run or replace it")
    mode = args.mode or default_mode()
    if mode not in MODES:
        p.error(f"NOTEBOOK_MODE={mode}: expected one of {', '.join(MODES)}")
    if args.out is not None and (not args.out.strip() or Path(args.out).exists() and not Path(args.out).is_dir()):
        p.error(f"--out {args.out!r}: give a folder")
    out = args.out
    run = Path(out or ROOT) / args.name / f"run-{mode}"
    before = stamps(run, RUN_FILES)

    def interrupted():  # --resume only where this run saved a checkpoint (or continues one)
        now = stamps(run, RUN_FILES)
        saved = now.get("checkpoint.pt")
        return f"interrupted: {args.name} was not saved; " + (
            "--resume continues its run" if saved and (args.resume or saved != before.get("checkpoint.pt")) else
            f"nothing of its run was saved either{fate(run, before, now)}: rerun the same command to start it")

    with one_line(interrupted, p):
        check_matplotlib()  # the kernel draws with the same MPLBACKEND
        check_device(*(args.device, "--device") if args.device is not None else
                     (os.environ.get("NOTEBOOK_DEVICE", "auto"), "NOTEBOOK_DEVICE"))
        data_root = args.data if args.data is not None else os.environ.get("CIFAR10_DIR", DEFAULT_DATA)
        if not data_root.strip():
            raise UserError(f"{'--data' if args.data is not None else 'CIFAR10_DIR'} {data_root!r}: give a folder")
        if os_problem(data_root):  # CIFAR10_DIR's; --data's is argparse's
            raise UserError(f"CIFAR10_DIR {data_root}: {os_problem(data_root)}; give another path")
        if within(Path(out or ROOT) / args.name, Path(data_root)):
            p.error(f"--out {out or ROOT}: the notebook would write {Path(out or ROOT) / args.name}, inside --data "
                    f"{data_root}; give a folder outside the data")
        folder = writable_folder(Path(out or ROOT) / args.name, "--out")
        check_targets(written_beside(folder, args.name), "--out")
        sizes = [data.split_size(data_root, train, Path(data_root) == Path(DEFAULT_DATA)) for train in (True, False)]
        if run.exists() and not run.is_dir():
            raise UserError(f"{run} is not a folder, where the notebook's run goes: remove it, or give another --out")
        saved = [name for name in RUN_FILES if (run / name).exists()]
        odd = next((run / name for name in saved if not (run / name).is_file()), None)  # neither flag would help
        if odd:
            raise UserError(f"{odd} is not a regular file (a folder or pipe?): remove it, or give another --out")
        if not args.overwrite:
            held_metrics(run, saved)
        if saved and not (args.resume or args.overwrite):
            raise UserError(f"{run} already holds a run ({', '.join(saved)}): pass --resume to continue it, "
                            f"--overwrite to replace it, or another --out")
        if args.resume and not saved:
            raise UserError(f"--resume: {run} holds no run to continue (none of {', '.join(RUN_FILES)}); drop "
                            f"--resume to start one, or give the --out it was run with")
        short = lacks(mode, sizes)
        if short:
            raise UserError(f"--mode {mode} {short[0]}; {data_root} {short[1]}: point --data at a larger copy, or "
                            f"choose a mode that fits")
        if args.resume:  # what the kernel's settings cell checks (the run is its own, whole, on these images), now
            with contextlib.redirect_stdout(io.StringIO()):  # what it says, the kernel says
                claim(config(run.parent, *asked(args.name), mode, data_root,
                             args.device or os.environ.get("NOTEBOOK_DEVICE", "auto"), True))
        out = out or (tempfile.mkdtemp(prefix="notebook-quick-") if mode == "quick" else None)  # all checked
        folder = Path(out or ROOT) / args.name
        with held(folder):  # one notebook at a time writes its figures there
            remove_leftovers(folder, ("*.png", f"{args.name}.ipynb"))  # what a killed kernel was writing
            print(execute(args.name, mode, args.data, out, args.device, args.resume,
                          flags=set(p._option_string_actions)))


if __name__ == "__main__":
    main()
