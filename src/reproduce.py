"""Everything the README's results and the three notebooks show, run on one GPU and written into
the repository:

    python -m src.reproduce --data ../shared/cifar10-jpeg

  bench      `python -m src.bench --repeats 3`, alone on the GPU (ConvMixer_experimentation_2/bench/)
  notebooks  the three notebooks top to bottom in full mode, in place (NAME/run-full/)
  recipes    what the notebooks do not run: the improved recipe of both models, and ConvMixer's
             baseline with the reference loader (NAME/recipes/RUN/)

The baseline recipe with the fast loader is the notebooks' own runs (ConvMixer_experimentation_2,
ViT_with_convolution: one-cycle, 25 epochs, the run's precision), so each comparison differs in
one thing. The runs share the GPU as concurrent processes, print a line per epoch and write a log
beside their metrics; README.md's results block is regenerated after each run that ends. When the
budget runs out the runs are stopped: the same command again skips what finished and continues the
rest. `--quick --device cpu --data PATH --out DIR` runs every step on tiny settings under DIR
(report in DIR/report.md), in a minute or two on 2 cores.
"""
import argparse
import json
import sys
from pathlib import Path

from .harness.checkpoint import remove_leftovers, write_text
from .harness.cli import check_matplotlib, check_targets, one_line, usable_path
from .harness.config import BY_NAME
from .notebook import MODES, NOTEBOOKS, written_beside
from .harness.report import check_readme, report, write_readme
from .harness.batch import add_arguments, check_batches, check_results, interrupted, settle, summary
from .harness.run import held
from .harness.scheduler import ROOT, Job, held_run, images_in, portable, read_json, run_jobs, train_job

def flags(**values):
    """Command-line words for option values: flags(batch_size=32) -> ("--batch-size", "32")."""
    return tuple(word for name, value in values.items() for word in (BY_NAME[name].flag, str(value)))


STEPS = ("bench", "notebooks", "recipes")
EPOCHS = BY_NAME["epochs"].default  # the experiment's, as the notebooks' full mode runs it
NOTEBOOK_OF = {"convmixer_256_8": "ConvMixer_experimentation_2", "vit_seed": "ViT_with_convolution"}
RECIPE_RUNS = (  # (model, run, flags), the longest first
    ("vit_seed", "improved", ("--recipe", "improved")),
    ("convmixer_256_8", "baseline-reference-loader", ("--recipe", "baseline", "--loader", "reference")),
    ("convmixer_256_8", "improved", ("--recipe", "improved")),
)
# --quick: the notebooks' quick mode (its images, batch and workers) for every step, two epochs so that each
# run has a schedule to follow, and tiny models so that the recipe runs and the bench take seconds on a CPU.
QUICK_DATA = flags(train_subset=MODES["quick"]["train_subset"], test_subset=MODES["quick"]["test_subset"],
                   batch_size=MODES["quick"]["batch_size"])
QUICK = (*flags(workers=MODES["quick"]["workers"]), *QUICK_DATA)
QUICK_EPOCHS = 2
QUICK_MODEL = {"convmixer_256_8": flags(dim=32, depth=2),
               "vit_seed": flags(dim=64, depth=1, heads=2, dim_head=32, mlp_dim=64)}


def device_flags(args):
    return ("--device", args.device) if args.device else ()


def train_flags(model, flags, args):
    """A 25-epoch one-cycle run of model with flags; with --quick, its tiny version (but for the options flags set)."""
    quick = _without((*QUICK, *QUICK_MODEL[model]), flags) if args.quick else ()
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    return ("--model", model, "--trainer", "onecycle", "--epochs", str(epochs), *flags, "--data", args.data,
            *device_flags(args), *quick)


def _without(words, flags):
    """words, (flag, value) pairs, less the flags that flags gives."""
    return tuple(word for pair in zip(words[::2], words[1::2]) if pair[0] not in flags for word in pair)


def _notebook_done(notebook, metrics, mode):
    """Its run finished and the saved notebook shows that run: its intro names the mode and the
    accuracy, as src.notebook.describe writes them."""
    m = read_json(metrics)
    if not (m and m.get("finished") and isinstance(m.get("final_test_acc"), (int, float)) and notebook.is_file()):
        return False
    try:
        intro = "".join(json.loads(notebook.read_text())["cells"][0]["source"])  # a notebook cut short is no notebook
    except (ValueError, UnicodeDecodeError, KeyError, IndexError, TypeError):
        return False
    return f"(`{mode}` mode)" in intro and f"**{100 * m['final_test_acc']:.2f}%**" in intro


def _made_on(path, data):
    """The result file (a metrics.json, bench.json) was made on `data`: a run's config names it relative
    to the repository root, where the runs start."""
    config = (read_json(path) or {}).get("config")
    made = config.get("data") if isinstance(config, dict) else None
    return isinstance(made, str) and (ROOT / made).resolve() == Path(data).resolve()


def _other_data(path, data):
    """Why a finished result is not this call's to skip (stale), or None."""
    return "other data made it" if (read_json(path) or {}).get("config") and not _made_on(path, data) else None


def bench_job(args, out):
    folder = out / "ConvMixer_experimentation_2" / "bench"
    flags = (*QUICK_MODEL["convmixer_256_8"], *QUICK_DATA) if args.quick else ("--repeats", "3")
    return Job("ConvMixer_experimentation_2/bench", "src.bench", ("--data", args.data, *device_flags(args), *flags,
               "--json", portable(folder / "bench.json")), folder, log="bench.log", resume=(), replace=(),
               done=lambda: _made_on(folder / "bench.json", args.given_data), alone=True, result="bench.json",
               stale=lambda: _other_data(folder / "bench.json", args.given_data), **batch_of(args))


def batch_of(args):
    """The batch and training images of the bench and the notebooks' runs."""
    quick = MODES["quick"]
    return dict(batch=quick["batch_size"], images=quick["train_subset"]) if args.quick else \
        dict(batch=BY_NAME["batch_size"].default)


def notebook_job(name, args, out, mode):
    """`python -m src.notebook NAME`: in place into the repository, else under out."""
    folder, images = out / name, images_in(args.given_data)
    flags = (name, "--mode", mode, "--data", args.data, *device_flags(args),
             *(("--out", portable(out)) if out != ROOT else ()))
    run = folder / f"run-{mode}"
    return Job(f"{name}/run-{mode}", "src.notebook", flags, run, log="notebook.log", **batch_of(args),
               writes=tuple(written_beside(folder, name)),
               stale=lambda: held_run(run, images)[1] or _other_data(run / "metrics.json", args.given_data),
               done=lambda: _notebook_done(folder / f"{name}.ipynb", run / "metrics.json", mode) and held_run(
                   run, images)[0] and _made_on(run / "metrics.json", args.given_data))


def plan(args, out, mode):
    """{step: [Job]}: every run of the reproduction, writing under out, the longest first."""
    return {"bench": [bench_job(args, out)],
            "notebooks": [notebook_job(name, args, out, mode) for name in reversed(NOTEBOOKS)],  # the ViT first
            "recipes": [train_job(f"{NOTEBOOK_OF[model]}/recipes/{run}", out / NOTEBOOK_OF[model] / "recipes" / run,
                                  train_flags(model, flags, args), cpu_bound="reference" in flags)
                        for model, run, flags in RECIPE_RUNS]}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, budget=570)
    p.add_argument("--out", type=usable_path, help="write under OUT, the report in OUT/report.md (default: the "
                                                   "repository and its README; with --quick: a new temporary folder)")
    p.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps of {', '.join(STEPS)} "
                                                            "(default: all)")
    p.add_argument("--readme", default=str(ROOT / "README.md"), type=usable_path,
                   help="the README whose results block is written or checked")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--write-readme", action="store_true", help="only regenerate the README's results block")
    only.add_argument("--check-readme", action="store_true",
                      help="only check the README's results block against the result files (exit 1 if it differs)")
    args = p.parse_args(argv)
    readme_only = args.check_readme or args.write_readme
    unused = [f"--{k.replace('_', '-')}" for k, v in vars(args).items()
              if v != p.get_default(k) and k not in ("readme", "check_readme", "write_readme")]
    if (args.out or args.quick) and args.readme != p.get_default("readme") and not readme_only:
        p.error(f"--readme: with {'--out' if args.out else '--quick'} the report goes to OUT/report.md, not to a "
                f"README")
    if readme_only and unused:
        p.error(f"--{'check' if args.check_readme else 'write'}-readme runs nothing: {', '.join(unused)} would do "
                f"nothing")
    with one_line(lambda: interrupted(args.force), p):
        if args.check_readme:
            sys.exit(0 if check_readme(args.readme, ROOT) else 1)
        if args.write_readme:
            return write_readme(args.readme, ROOT)
        run_all(args, p)


def run_all(args, p):
    """The steps --only names, within the budget; the report rewritten as each run ends."""
    steps = args.only.split(",")
    if set(steps) - set(STEPS):
        p.error(f"--only {args.only}: expected steps among {', '.join(STEPS)}")
    if "notebooks" in steps:
        check_matplotlib()  # their kernels draw with the same MPLBACKEND
    out = settle(args, p, ROOT).out
    if args.quick and out == ROOT:
        p.error("--quick writes under --out, never into the repository")
    mode = "quick" if args.quick else "full"

    jobs = [job for step, planned in plan(args, out, mode).items() if step in steps for job in planned]
    redo = check_results(jobs, args.force)  # before any run starts; --force redoes damaged results
    if out != ROOT:
        check_targets([out / "report.md"], "--out")  # a pipe there was replaced by the report (probe 19)
    check_batches(jobs, args.given_data, args.force)

    def write_report(job=None):
        if out == ROOT:
            write_readme(args.readme, ROOT, redo)
        else:
            write_text(out / "report.md", report(out, mode, redo))

    with held(out):  # a second reproduction into it would report this one's runs as its own
        readme = Path(args.readme)  # what a killed write of the report or README left
        remove_leftovers(*((readme.parent, (readme.name,)) if out == ROOT else (out, ("report.md",))))
        write_report()  # a README without the markers, or another damaged result file, fails now, not after the runs
        outcomes = run_jobs(jobs, args.jobs, args.deadline, args.force, write_report)
        write_report()
    print(f"results: {args.readme if out == ROOT else out / 'report.md'}", flush=True)
    summary(outcomes, args.force)


if __name__ == "__main__":
    main()
