"""Everything the README's results and the three notebooks show, run on one GPU (docs/reproducing.md):
the bench alone on the GPU (ConvMixer_experimentation_2/bench/), the three notebooks in full mode in place
(NAME/run-full/) and the recipe runs (NAME/recipes/RUN/, seed s > 0: RUN-seed-s), as concurrent runs
within --budget; the same command again skips what finished and continues the rest."""
import argparse
import sys

from . import io
from .batch import IMPROVED, NOTEBOOK_OF, QUICK, QUICK_MODEL, add_arguments, device, portable, run_all, seeded, \
    train_flags, train_job
from .cli import command
from .notebook import NOTEBOOKS
from .pool import ROOT, Job, read
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
    flags = (*QUICK_MODEL["convmixer_256_8"], *QUICK[:6]) if args.quick else ("--repeats", "3")  # QUICK less workers
    return Job("ConvMixer_experimentation_2/bench", ("--data", args.data, *device(args), *flags, "--json",
               portable(folder / "bench.json")), folder, done=lambda: made_on(folder / "bench.json", args.data),
               stale=lambda: None, module="src.bench", alone=True)


def notebook_job(name, args, out, mode):
    """`python -m src.notebook NAME`: in place into the repository, else under out."""
    run = out / name / f"run-{mode}"

    def done():
        metrics, notebook = read(run / "metrics.json") or {}, out / name / f"{name}.ipynb"
        shown = notebook.is_file() and f"**{100 * metrics.get('final_test_acc', -1):.2f}%**" in notebook.read_text()
        return metrics.get("finished") is True and made_on(run / "metrics.json", args.data) and shown

    def stale():
        return "other data made it" if read(run / "metrics.json") and not made_on(run / "metrics.json", args.data) \
            else None

    return Job(f"{name}/run-{mode}", (name, "--mode", mode, "--data", args.data, *device(args),
               *(("--out", portable(out)) if out != ROOT else ())), run, done, stale, module="src.notebook")


def plan(args, out, mode):
    """{step: [Job]}: every run of the reproduction, writing under out, the longest first."""
    recipes = [train_job(f"{NOTEBOOK_OF[model]}/recipes/{folder.name}", folder,
                         (*train_flags(model, flags, args), "--seed", str(seed)))
               for model, name, flags, zero in RECIPE_RUNS
               for seed, folder in seeded(out / NOTEBOOK_OF[model] / "recipes" / name, args.seeds) if seed or zero]
    return {"recipes": recipes, "notebooks": [notebook_job(name, args, out, mode) for name in reversed(NOTEBOOKS)],
            "bench": [bench_job(args, out)]}  # alone on the GPU, once the trainings are done


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.reproduce", description=__doc__)
    add_arguments(p)
    p.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps of {', '.join(STEPS)}")
    p.add_argument("--write-readme", action="store_true", help="only regenerate the README's results block")
    p.add_argument("--check-readme", action="store_true", help="only check the README's results block against the "
                   "result files (exit 1 if it differs)")
    args = p.parse_args(argv)
    only, mode = args.only.split(","), "quick" if args.quick else "full"
    if set(only) - set(STEPS):
        p.error(f"--only {args.only}: expected steps among {', '.join(STEPS)}")
    if args.write_readme or args.check_readme:
        with command():
            if args.write_readme:
                return write_readme(ROOT / "README.md", ROOT)
            sys.exit(0 if check_readme(ROOT / "README.md", ROOT) else 1)

    def write(out):
        if out == ROOT:
            write_readme(ROOT / "README.md", ROOT)
        else:
            io.write_text(out / "report.md", report(out, mode))
        return f"results: {ROOT / 'README.md' if out == ROOT else out / 'report.md'}\n"

    run_all(args, p, ROOT, lambda out: [job for step, jobs in plan(args, out, mode).items() if step in only
                                        for job in jobs], write)


if __name__ == "__main__":
    main()
