"""What the notebooks call, so that every cell stays a few lines, and `python -m src.notebook NAME`, which executes
one with papermill (docs/command-line.md); a mode's run and figures go to NAME/run-MODE/."""
import argparse
import logging
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import data
from .batch import ROOT, portable
from .cli import command, command_line
from .config import DEFAULT_DATA, Config, model_overrides, resolve
from .io import FEWER, UserError, read_json, write_text
from .models import create_model, hyper_parameters, label
from .run import RUN_FILES, RunFolder, hold
from .trainers import KNOTS, TRAINERS

# Each notebook's experiment, as its cell passes it to experiment(): main() checks that run before a kernel starts.
NOTEBOOKS = {"ConvMixer_experimentation_1": dict(model="convmixer_256_8", trainer="wrapper", recipe="baseline"),
             "ConvMixer_experimentation_2": dict(model="convmixer_256_8", trainer="onecycle", recipe="baseline"),
             "ViT_with_convolution": dict(model="vit_seed", trainer="onecycle", recipe="baseline")}
MODES = {"full": {},  # what each mode changes from the defaults and the recipe
         "cpu": dict(epochs=2, batch_size=64, train_subset=2000, test_subset=1000),
         "quick": dict(epochs=1, batch_size=16, train_subset=256, test_subset=64, workers=0)}
MODE_WHY = {"full": "the experiment: every image, the recipe's epochs and batch",
            "cpu": "a check without a GPU (2,000 images, 2 epochs): its accuracy says nothing about the experiment",
            "quick": "CI: a few batches, to show every cell runs"}
INTRO_RUN = re.compile(r"(<!-- rendered run -->\n).*?(\n<!-- /rendered run -->)", re.S)


def plural(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclass
class Experiment:
    settings: Config  # every value the run uses, resolved
    mode: str

    def figure(self, name):
        """Figures go beside the mode's run: a cpu or quick run never replaces the full run's."""
        return Path(self.settings.out) / name


def run_config(name, mode, data=None, out=None, resume=False, device="auto", **experiment):
    """The notebook's run in mode (unresolved), as its kernel makes it and `python -m src.notebook` checks it first."""
    if mode not in MODES:
        raise UserError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    out = (Path(out) if out else Path(tempfile.mkdtemp(prefix="notebook-")) if mode == "quick" else ROOT) / name
    run = out.resolve() / f"run-{mode}"
    run = os.path.relpath(run) if Path.cwd() in run.parents else str(run)  # as the command line shows it
    return Config(**(experiment or NOTEBOOKS[name]), data=portable(data) if data else DEFAULT_DATA, out=run,
                  resume=resume, overwrite=not resume, device=device, **MODES[mode])


def experiment(name, model, trainer, recipe, mode=None, data=None, out=None, resume=False, device="auto"):
    """The notebook's run, checked, its every value shown as a table and as the command line that trains it."""
    from IPython.display import Markdown, display  # the kernel's, not needed by the command line
    mode = mode or ("full" if torch.cuda.is_available() else "cpu")
    cfg = run_config(name, mode, data, out, resume, device, model=model, trainer=trainer, recipe=recipe)
    settings = resolve(cfg)
    with RunFolder(settings) as folder:  # not another process's, nor (resume) made with other settings or data
        images = folder.identity["images"]
    Path(settings.out).mkdir(parents=True, exist_ok=True)
    print(f"mode: {mode} ({MODE_WHY[mode]})")
    display(Markdown(settings_table(settings, images)))
    print("command line:", command_line(replace(cfg, resume=False, overwrite=True)))  # works in any folder
    return Experiment(settings, mode)


def settings_table(s, images):
    """Every value a resolved config gives the run, in words: a reader need not open src/ to know what ran."""
    sizes = hyper_parameters(s.model, **model_overrides(s))
    with torch.device("meta"):
        parameters = sum(p.numel() for p in create_model(s.model, **sizes).parameters())
    decay = "every parameter" if s.decay_norms else "weights only (not norms, biases, position embedding, class token)"
    knots = " → ".join(f"{lr:.3g} at epoch {epoch:g}" for epoch, lr in KNOTS[s.trainer](s.lr_max, s.epochs, s.warmup))
    views = [*(["the mirror image's"] if s.tta_flip else []),
             *(["those of each view shifted a pixel up-left and down-right"] if s.tta_translate else [])]
    augment = [f"RandAugment ({s.randaugment[0]} ops, magnitude {s.randaugment[1]})"] if s.randaugment else []
    augment += [f"pad {s.pad} with the mean pixel and random 32x32 crop"] if s.pad else []
    augment += [f"horizontal flip (p {data.FLIP_P:g})"]
    augment += [f"one {data.HOLE}x{data.HOLE} hole of the mean pixel (p {s.hole_p:g})"] if s.hole_p else []
    rows = {"model": f"`{s.model}`: {label(s.model, **sizes)}, {', '.join(f'{k} {v}' for k, v in sizes.items())}; "
                     f"{parameters:,} parameters",
            "trainer": f"`{s.trainer}` ({TRAINERS[s.trainer].__name__}), recipe `{s.recipe}`",
            "optimizer": f"AdamW, betas (0.9, {s.beta2:g}), weight decay {s.wd:g} on {decay}",
            "learning rate": f"per batch, linear: {knots}",
            "epochs, batch": f"{plural(s.epochs, 'epoch')} of {images['train_images'] // s.batch_size} steps, "
                             f"{s.batch_size} images per step",
            "loss": f"cross-entropy, label smoothing {s.label_smoothing:g}" +
                    (f"; gradient norm clipped at {s.grad_clip:g}" if s.grad_clip else ""),
            "tested": (f"an EMA of the weights (decay {s.ema:g})" if s.ema else "the weights") +
                      (f", logits averaged with {' and '.join(views)}" if views else ", on the image alone"),
            "augmentation": ", ".join(augment) + ", normalize",
            "data": f"`{s.data}` ({data.source(s.data)}): {images['train_images']:,} training and "
                    f"{images['test_images']:,} test images",
            "running": f"{s.device}, {s.precision}, {s.loader} loader" + (f" ({s.workers} workers)" if s.loader ==
                       "reference" else "") + f", channels-last {'on' if s.channels_last else 'off'}, "
                       f"{'compiled' if s.compile else 'eager'}, seed {s.seed}"}
    return "\n".join(["| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows.items())])


def results_line(exp):
    """One line to quote, from the run's metrics.json."""
    m = read_json(Path(exp.settings.out) / "metrics.json")
    c, d = m["config"], m["data"]
    return (f"{m['model']['label']} ({m['model']['parameters']:,} parameters) | data: {d['source']} ({d['path']}) | "
            f"hardware: {m['hardware']}, {c['precision']} | mode: {exp.mode} | {plural(m['epochs_done'], 'epoch')} on "
            f"{d['train_images']:,} training images, tested on {d['test_images']:,} | final test accuracy "
            f"{100 * m['final_test_acc']:.2f}% | {m['seconds_per_epoch']:.1f} s per epoch")


def describe(metrics, mode, command, shared=False):
    """The intro's paragraph on the rendered run, from its metrics.json."""
    d, c = metrics["data"], metrics["config"]
    toy = "" if mode == "full" else (" It checks that the pipeline works end to end on real images; its accuracy "
                                     "says nothing about the 25-epoch experiment (`full` mode, on a GPU).")
    shared = ", sharing the GPU with other runs (the README's bench times an epoch alone)" if shared else ""
    return (f"**This rendered run** (`{mode}` mode, commit {metrics['commit']}): "
            f"{plural(metrics['epochs_done'], 'epoch')} on {d['train_images']:,} training images of {d['source']}, "
            f"tested on {d['test_images']:,}; {metrics['hardware']}, {c['precision']}, {c['loader']} loader, batch "
            f"{c['batch_size']}; {metrics['seconds_per_epoch']:.1f} s per epoch (the first: "
            f"{metrics['first_epoch_seconds']:.1f} s){shared}; final test accuracy "
            f"**{100 * metrics['final_test_acc']:.2f}%**.{toy} The same run from the command line:\n\n"
            f"```bash\n{command}\n```")


def main(argv=None):
    import nbformat
    import papermill

    logging.disable(logging.CRITICAL)  # papermill's, nbclient's and asyncio's lines when a kernel is stopped
    p = argparse.ArgumentParser(prog="python -m src.notebook", description=__doc__)
    p.add_argument("name", choices=NOTEBOOKS)
    p.add_argument("--mode", choices=tuple(MODES), help="default: full on a GPU, else cpu")
    p.add_argument("--data", default=os.environ.get("CIFAR10_DIR"), type=os.path.expanduser, help="CIFAR-10 (class "
                   f"folders or torchvision's); default: $CIFAR10_DIR, else {DEFAULT_DATA} (downloaded)")
    p.add_argument("--out", type=os.path.expanduser, help="write the executed notebook, its run and figures under "
                   "OUT/NAME (default: in place; quick mode: a temporary folder)")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N; auto: a GPU if any")
    p.add_argument("--resume", action="store_true", help="continue the notebook's unfinished run")
    p.add_argument("--overwrite", action="store_true", help="replace the run the notebook's folder holds")
    args = p.parse_args(argv)
    mode = args.mode or ("full" if torch.cuda.is_available() else "cpu")
    cfg = run_config(args.name, mode, args.data, args.out, args.resume, args.device)  # quick, no --out: a new folder
    run = Path(cfg.out).resolve()
    folder = run.parent
    written = lambda: {name: (run / name).stat().st_mtime_ns for name in RUN_FILES if (run / name).exists()}

    def interrupted():  # read from the run folder: the kernel's own line is not relayed
        now = written()
        if now.get("checkpoint.pt") not in (None, before.get("checkpoint.pt")):
            out = f" --out {folder.parent}" if mode == "quick" and not args.out else ""  # a new temporary one else
            how = "replace --overwrite with --resume" if args.overwrite else f"add --resume{out}"
            return f"interrupted: {args.name} was not written; its run in {run} saved epochs: {how}"
        held = ", and the run it held " + ("is as it was" if now == before else "was removed (--overwrite)")
        return f"interrupted: nothing of {args.name}'s run was saved{held if before else ''}; rerun the same command"

    before = written()
    with command(interrupted):
        if args.data is not None and not any((Path(args.data) / n).is_dir() for n in ("train", "cifar-10-batches-py")):
            raise UserError(f"--data {args.data}: no CIFAR-10 there (class folders train/<class>/, or torchvision's "
                            f"cifar-10-batches-py); give a copy, or leave --data out to download it")
        try:
            with RunFolder(resolve(replace(cfg, overwrite=args.overwrite))):  # what the kernel refuses, refused first
                pass
        except UserError as err:  # a mode's sizes are fixed
            raise UserError(re.sub(FEWER, ", or another --mode", str(err))) from None
        lock = hold(folder)  # one notebook at a time writes there
        try:
            nb = papermill.execute_notebook(
                ROOT / args.name / f"{args.name}.ipynb", None, cwd=ROOT / args.name, progress_bar=False,
                kernel_name="python3", extra_arguments=["--IPKernelApp.log_level=CRITICAL"], parameters=dict(
                    mode=mode, out=str(folder.parent), resume=args.resume, device=args.device,
                    data_dir=args.data and str(Path(args.data).resolve())))
            for cell in (c for c in nb.cells if c.cell_type == "code"):  # a progress bar leaves only blanks behind
                cell.outputs = [o for o in cell.outputs if o.output_type != "stream" or o.text.strip()]
            printed = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
            shown = re.search(r"^command line: (.*)$", printed, re.M)[1]
            paragraph = describe(read_json(run / "metrics.json"), mode, shown, os.environ.get("SHARED_DEVICE") == "1")
            nb.cells[0].source = INTRO_RUN.sub(lambda m: m[1] + paragraph + m[2], nb.cells[0].source)
            write_text(folder / f"{args.name}.ipynb", nbformat.writes(nb))
        except papermill.PapermillExecutionError as err:
            raise UserError(f"{args.name} stopped in code cell {err.exec_count}: {err.ename}: "
                            f"{err.evalue.removeprefix('error: ')}") from None
        finally:
            lock.release()
        print(folder / f"{args.name}.ipynb")


if __name__ == "__main__":
    main()
