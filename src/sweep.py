"""Recipe variants of one model, run as concurrent processes on one GPU within a wall-clock budget
(the scheduler src.reproduce uses), then one table sorted by final test accuracy:

    python -m src.sweep --sweep vit-stability --data ../shared/cifar10-jpeg

Each variant writes its metrics.json and train.log in OUT/VARIANT (OUT by default: the sweep's
folder beside the model's notebook, e.g. ViT_with_convolution/sweeps/vit-stability/); the table
goes to OUT/table.md and is printed. As with the reproduction, the same command again skips the
finished variants and continues the stopped ones. Size a sweep from what one H200 took: two ViT
runs side by side, 6-8 s per epoch each after 95 s of start-up (sweeps/vit-steps/sweep.log), so a
25-epoch ViT run costs about 100 s of the GPU and vit-stability needs more than one 10-minute call;
four ConvMixer runs beside two ViT runs, 8-9 s per epoch each (README); four ViT runs beside three
ConvMixer runs: 85-90 s of start-up, then 14 s per ViT epoch at batch 512, 16 s at 256, 23 s at 128,
and 9-11 s per ConvMixer epoch (sweeps/vit-underfit, convmixer-recipes). --quick runs the same variants
on tiny settings (tests, a CPU).

"underfit?" is "yes" when a variant's final train accuracy (on augmented images, during the last
epoch) is below its test accuracy plus one point: it fits its own training images no better than
unseen ones, so it has capacity, epochs or step size to spare, or more regularisation than it needs.
"""
import argparse
import shlex
from dataclasses import dataclass

from .harness.report import common_cells, load_run, log_link, result_files, table
from .reproduce import NOTEBOOK_OF, train_flags
from .harness.checkpoint import remove_leftovers, write_text
from .harness.cli import check_targets, one_line, usable_path
from .harness.batch import add_arguments, check_batches, check_results, interrupted, settle, summary
from .harness.run import held
from .harness.scheduler import ROOT, run_jobs, train_job

UNDERFIT_MARGIN = 0.01


@dataclass(frozen=True)
class Sweep:
    model: str
    variants: tuple  # (name, flags on top of `--trainer onecycle --epochs 25`)
    control: str = "baseline"  # the variant the others each change one thing of


LESS_REGULARISATION = ("--recipe", "improved", "--dropout", "0", "--emb-dropout", "0", "--no-decay-norms")

SWEEPS = {
    # What steadies the conv-only ViT (its improved recipe at lr 0.002 diverged, src/recipes.py): the
    # baseline (lr 0.001, warm-up 0.4), then one change at a time, then the changes together.
    "vit-stability": Sweep("vit_seed", (
        ("baseline", ()),
        ("beta2-0.99", ("--beta2", "0.99")),
        ("beta2-0.99-clip-1", ("--beta2", "0.99", "--grad-clip", "1")),
        ("improved", ("--recipe", "improved")),
        ("lr-0.002-beta2-0.99-clip-1", ("--lr-max", "0.002", "--beta2", "0.99", "--grad-clip", "1")),
        ("warmup-0.2", ("--warmup", "0.2")),
        ("label-smoothing-0.1", ("--label-smoothing", "0.1")),
    )),
    # The conv-only ViT underfits at 25 epochs (improved recipe: train 65.56% < test 71.19%,
    # ViT_with_convolution/recipes/improved): larger steps, or twice the steps, on top of that recipe.
    "vit-steps": Sweep("vit_seed", (
        ("improved", ("--recipe", "improved")),
        ("improved-lr-0.002", ("--recipe", "improved", "--lr-max", "0.002")),
        ("improved-batch-256", ("--recipe", "improved", "--batch-size", "256")),
    ), control="improved"),
    # The improved recipe underfits (train 65.56% < test 71.19%, ViT_with_convolution/recipes/improved) and
    # its position embeddings learned no 2-D layout in 25 epochs (position_similarity.png); batch 256 was
    # still climbing when cut off at 20 epochs (vit-steps). So: no dropout and no decay on norms, biases and
    # the position embedding, then on top of that more, smaller steps (a linear ViT of this shape reached 75%
    # at batch 64, REFERENCE.md). The control is ViT_with_convolution/recipes/improved, run at 25dfbb2.
    "vit-underfit": Sweep("vit_seed", (
        ("improved", ("--recipe", "improved")),
        ("less-regularisation", LESS_REGULARISATION),
        ("less-regularisation-batch-256", (*LESS_REGULARISATION, "--batch-size", "256")),
        ("less-regularisation-batch-128", (*LESS_REGULARISATION, "--batch-size", "128")),
        ("less-regularisation-batch-128-lr-0.0005",
         (*LESS_REGULARISATION, "--batch-size", "128", "--lr-max", "0.0005")),
    ), control="improved"),
    # ConvMixer-256/8: both recipes, the ConvMixer authors' CIFAR-10 settings, and one change to the
    # improved recipe at a time. The reference-loader runs come first: one at a time, they take longest.
    "convmixer-recipes": Sweep("convmixer_256_8", (
        ("authors", ("--lr-max", "0.05", "--wd", "0.005", "--randaugment", "2", "12", "--loader", "reference")),
        ("improved-randaugment-2-12", ("--recipe", "improved", "--randaugment", "2", "12", "--loader", "reference")),
        ("baseline", ()),
        ("improved", ("--recipe", "improved")),
        ("improved-no-ema", ("--recipe", "improved", "--ema", "0")),
        ("improved-batch-256", ("--recipe", "improved", "--batch-size", "256")),
    )),
}


def underfit(run):
    return run["train_acc"] < run["test_acc"] + UNDERFIT_MARGIN


def sweep_table(name, variants, out, redo=()):
    """The markdown table of the variants that have a metrics.json (less those --force redoes, while
    damaged), best test accuracy first."""
    runs = sorted(((variant, flags, load_run(out / variant / "metrics.json")) for variant, flags in variants
                   if result_files(out, (f"{variant}/metrics.json",), redo)), key=lambda v: -v[2]["test_acc"])
    lines = [(f"Sweep `{name}` (`python -m src.sweep --sweep {name}`), best final test accuracy first; underfit: "
              f"train accuracy below test accuracy + {100 * UNDERFIT_MARGIN:g} point."), ""]
    rows = []
    for variant, flags, run in runs:
        cells = common_cells(run)
        rows.append({"variant": f"[{variant}]({variant}/metrics.json)",
                     "flags": f"`{shlex.join(flags)}`" if flags else "(none: the baseline)",
                     **{column: cells.pop(column) for column in ("test acc", "train acc")},
                     "underfit?": "yes" if underfit(run) else "no", **cells, "log": log_link(run["path"].parent, out)})
    if rows:
        lines += table(rows, keep=("variant", "flags", "test acc", "train acc", "underfit?", "epochs", "s / epoch"))
    missing = [variant for variant, _ in variants if variant not in {v for v, _, _ in runs}]
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", required=True, choices=tuple(SWEEPS), help="; ".join(
        f"{name}: {', '.join(variant for variant, _ in sweep.variants)}" for name, sweep in SWEEPS.items()))
    add_arguments(p, budget=570)
    p.add_argument("--out", type=usable_path, help="the sweep's folder (default: NOTEBOOK/sweeps/SWEEP beside the "
                                                   "model's notebook; with --quick: a new temporary folder)")
    p.add_argument("--only", help="comma-separated variants to run (default: all)")
    args = p.parse_args(argv)
    with one_line(lambda: interrupted(args.force), p):
        sweep = SWEEPS[args.sweep]
        names = [variant for variant, _ in sweep.variants]
        wanted = args.only.split(",") if args.only is not None else names
        if set(wanted) - set(names):
            p.error(f"--only {args.only}: the variants of {args.sweep} are {', '.join(names)}")
        variants = [(variant, flags) for variant, flags in sweep.variants if variant in wanted]
        out = settle(args, p, ROOT / NOTEBOOK_OF[sweep.model] / "sweeps" / args.sweep).out
        jobs = [train_job(f"{args.sweep}/{variant}", out / variant, train_flags(sweep.model, flags, args),
                          cpu_bound="reference" in flags) for variant, flags in variants]
        redo = check_results(jobs, args.force)  # before any run starts
        check_batches(jobs, args.given_data, args.force)
        check_targets([out / "table.md"], "--out")

        def write_table(job=None):
            out.mkdir(parents=True, exist_ok=True)
            text = sweep_table(args.sweep, variants, out, redo)
            write_text(out / "table.md", text)
            return text

        with held(out):  # a second sweep into it would report this one's epochs as its own
            remove_leftovers(out, ("table.md",))
            outcomes = run_jobs(jobs, args.jobs, args.deadline, args.force, write_table)
            print(write_table(), end="", flush=True)
        summary(outcomes, args.force)


if __name__ == "__main__":
    main()
