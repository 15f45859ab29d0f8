"""Everything the README's results and the three notebooks show, run on one GPU and written into the
repository:

    python -m src.reproduce --data ../shared/cifar10-jpeg [--seeds 0 1 2] [--plan]

  bench      `python -m src.bench --repeats 3`, alone on the GPU (ConvMixer_experimentation_2/bench/)
  notebooks  the three notebooks top to bottom in full mode, in place (NAME/run-full/), seed 0
  recipes    the improved and the authors' recipes, ConvMixer's baseline on the reference loader, and, for
             seeds above 0, the notebooks' baselines (NAME/recipes/RUN/, seed s > 0: RUN-seed-s)

The runs share the GPU as concurrent processes, print a line per epoch and write a log beside their
metrics; README.md's results block is regenerated as each run ends. When the budget runs out the runs
are stopped: the same command again skips what finished and continues the rest. `--plan` prints the
runs and the GPU minutes they take, estimated from the committed runs, without running any.
`--quick --device cpu --data PATH` runs every step on tiny settings in a temporary folder.
"""
import argparse
import sys

from . import io
from .cli import command
from .notebook import MODES, NOTEBOOKS
from .batch import (IMPROVED, NOTEBOOK_OF, QUICK_MODEL, add_arguments, check, finish, portable, print_plan, seeded,
                    settle, train_flags, train_job)
from .pool import ROOT, Job, read, run_jobs
from .report import check_readme, report, write_readme

STEPS = ("bench", "notebooks", "recipes")
RECIPE_RUNS = (  # (model, run, flags, whether seed 0 runs here: the notebooks run the baselines' seed 0)
    ("vit_seed", "improved", IMPROVED, True),
    ("convmixer_256_8", "baseline-reference-loader", ("--recipe", "baseline", "--loader", "reference"), True),
    ("convmixer_256_8", "improved", IMPROVED, True),
    ("convmixer_256_8", "authors", ("--recipe", "authors"), True),
    ("vit_seed", "baseline", ("--recipe", "baseline"), False),
    ("convmixer_256_8", "baseline", ("--recipe", "baseline"), False),
)


def made_on(path, data):
    return (read(path) or {}).get("config", {}).get("data") == data


def bench_job(args, out):
    folder = out / "ConvMixer_experimentation_2" / "bench"
    quick = MODES["quick"]
    flags = (*QUICK_MODEL["convmixer_256_8"], "--batch-size", str(quick["batch_size"]), "--train-subset",
             str(quick["train_subset"]), "--test-subset", str(quick["test_subset"])) if args.quick else ("--repeats", "3")
    return Job("ConvMixer_experimentation_2/bench", ("--data", args.data, *device(args), *flags, "--json",
               portable(folder / "bench.json")), folder, done=lambda: made_on(folder / "bench.json", args.data),
               stale=lambda: None, module="src.bench", log="bench.log", result="bench.json", resume=(), replace=(),
               alone=True)


def notebook_job(name, args, out, mode):
    """`python -m src.notebook NAME`: in place into the repository, else under out."""
    run = out / name / f"run-{mode}"

    def done():
        metrics, notebook = read(run / "metrics.json") or {}, out / name / f"{name}.ipynb"
        shown = notebook.is_file() and f"**{100 * metrics.get('final_test_acc', -1):.2f}%**" in notebook.read_text()
        return metrics.get("finished") is True and made_on(run / "metrics.json", args.data) and shown

    return Job(f"{name}/run-{mode}", (name, "--mode", mode, "--data", args.data, *device(args),
               *(("--out", portable(out)) if out != ROOT else ())), run, done=done, module="src.notebook",
               log="notebook.log", stale=lambda: (read(run / "metrics.json") and not made_on(run / "metrics.json",
                                                  args.data) and "other data made it") or None)


def device(args):
    return ("--device", args.device) if args.device else ()


def plan(args, out, mode):
    """{step: [Job]}: every run of the reproduction, writing under out, the longest first."""
    recipes = [train_job(f"{NOTEBOOK_OF[model]}/recipes/{folder.name}", folder,
                         (*train_flags(model, flags, args), "--seed", str(seed)))
               for model, name, flags, zero in RECIPE_RUNS
               for seed, folder in seeded(out / NOTEBOOK_OF[model] / "recipes" / name, args.seeds) if seed or zero]
    return {"recipes": recipes, "notebooks": [notebook_job(name, args, out, mode) for name in reversed(NOTEBOOKS)],
            "bench": [bench_job(args, out)]}  # alone on the GPU, once the trainings are done


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps of {', '.join(STEPS)}")
    p.add_argument("--write-readme", action="store_true", help="only regenerate the README's results block")
    p.add_argument("--check-readme", action="store_true", help="only check the README's results block against the "
                   "result files (exit 1 if it differs)")
    args = p.parse_args(argv)
    if set(args.only.split(",")) - set(STEPS):
        p.error(f"--only {args.only}: expected steps among {', '.join(STEPS)}")
    with command(lambda: "interrupted: the same command continues (finished runs are skipped, stopped ones "
                         "resume from their checkpoints)"):
        if args.write_readme:
            return write_readme(ROOT / "README.md", ROOT)
        if args.check_readme:
            sys.exit(0 if check_readme(ROOT / "README.md", ROOT) else 1)
        out = settle(args, p, ROOT)
        mode = "quick" if args.quick else "full"
        jobs = [job for step, planned in plan(args, out, mode).items() if step in args.only for job in planned]
        if args.plan:
            return print_plan(jobs, args.jobs)
        check(jobs, args.force)

        def write_report():
            if out == ROOT:
                write_readme(ROOT / "README.md", ROOT)
            else:
                io.write_text(out / "report.md", report(out, mode))

        outcomes = run_jobs(jobs, args.jobs, args.deadline, args.force, write_report)
        write_report()
        print(f"results: {ROOT / 'README.md' if out == ROOT else out / 'report.md'}", flush=True)
        finish(outcomes, args.force)


if __name__ == "__main__":
    main()
