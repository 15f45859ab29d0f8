"""Everything the README's results and the notebooks show, run on one GPU within --budget (docs/reproducing.md):
the recipe runs (NAME/recipes/RUN/, seed s > 0: RUN-seed-s), the notebooks in full mode in place (NAME/run-full/),
then the bench alone (ConvMixer_experimentation_2/bench/); the same command again continues what did not finish."""
import argparse

from . import io
from .batch import IMPROVED, LISTED, NOTEBOOK_OF, QUICK, QUICK_MODEL, add_arguments, device, portable, run_all, \
    seeded, train_flags, train_job, weights_gone
from .cli import command
from .notebook import NOTEBOOKS
from .pool import ROOT, Job, read
from .report import readme_block, report

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
    """Whether path's run read data as it is now: the folder (paths as the runs, started in the repository, resolve
    them) and, where recorded, the images listed."""
    made = read(path) or {}
    listed, where = made.get("data", {}), made.get("config", {}).get("data")
    return where is not None and (ROOT / where).resolve() == (ROOT / data).resolve() and all(
        listed.get(f"{split}_listing", now) == now for split in ("train", "test")
        for now in [LISTED(data, split == "train", False)[1]])


def bench_job(args, out):
    folder = out / "ConvMixer_experimentation_2" / "bench"
    result = folder / "bench.json"
    flags = (*QUICK_MODEL["convmixer_256_8"], *QUICK[:6]) if args.quick else ("--repeats", "3")  # QUICK less workers
    # the sizes those flags time (the full bench: ConvMixer-256/8's own), which a bench.json must have to be this one's
    sizes = dict(dim=32, depth=2, batch_size=16, train_subset=256, test_subset=64) if args.quick else \
        dict(dim=256, depth=8, batch_size=512, train_subset=None, test_subset=None)

    def other():
        made = (read(result) or {}).get("config", {})
        return made and (not made_on(result, args.data) or any(made.get(k) != v for k, v in sizes.items()))

    return Job("ConvMixer_experimentation_2/bench", ("--data", args.data, *device(args), *flags, "--json",
               portable(result)), folder, done=lambda: made_on(result, args.data) and not other(),
               stale=lambda: other() and "other flags or data made it", module="src.bench", alone=True)


def notebook_job(name, args, out, mode):
    """`python -m src.notebook NAME`: in place into the repository, else under out."""
    run = out / name / f"run-{mode}"

    def done():
        metrics, notebook = read(run / "metrics.json") or {}, out / name / f"{name}.ipynb"
        shown = notebook.is_file() and f"**{100 * metrics.get('final_test_acc', -1):.2f}%**" in notebook.read_text()
        return metrics.get("finished") is True and stale() is None and shown

    def stale():
        metrics = read(run / "metrics.json")
        if metrics and not made_on(run / "metrics.json", args.data):
            return "other data made it"
        return weights_gone(run, metrics) if metrics else None

    return Job(f"{name}/run-{mode}", (name, "--mode", mode, "--data", args.data, *device(args),
               *(("--out", portable(out)) if out != ROOT else ())), run, done, stale, module="src.notebook")


def plan(args, out, mode, steps):
    """The recipes, the notebooks (the ViT's first: the longest), then the bench, alone once the trainings are done."""
    recipes = [train_job(f"{NOTEBOOK_OF[model]}/recipes/{folder.name}", folder,
                         (*train_flags(model, flags, args), "--seed", str(seed)))
               for model, name, flags, zero in RECIPE_RUNS if "recipes" in steps
               for seed, folder in seeded(out / NOTEBOOK_OF[model] / "recipes" / name, args.seeds) if seed or zero]
    notebooks = [notebook_job(name, args, out, mode) for name in reversed(NOTEBOOKS) if "notebooks" in steps]
    return recipes + notebooks + ([bench_job(args, out)] if "bench" in steps else [])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.reproduce", description=__doc__)
    add_arguments(p)
    p.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps of {', '.join(STEPS)}")
    readme = p.add_mutually_exclusive_group()
    readme.add_argument("--write-readme", action="store_true", help="only regenerate the README's results block")
    readme.add_argument("--check-readme", action="store_true", help="only check the README's results block against "
                        "the result files (exit 1 if it differs)")
    args = p.parse_args(argv)
    only, mode = args.only.split(","), "quick" if args.quick else "full"
    if set(only) - set(STEPS):
        p.error(f"--only {args.only}: expected steps among {', '.join(STEPS)}")
    if args.write_readme or args.check_readme:
        with command():
            return readme_block(ROOT / "README.md", ROOT, check=args.check_readme)

    def write(out):
        if out == ROOT:
            readme_block(ROOT / "README.md", ROOT)
        else:
            io.write_text(out / "report.md", report(out, mode))
        return f"results: {ROOT / 'README.md' if out == ROOT else out / 'report.md'}\n"

    run_all(args, p, ROOT, lambda out: plan(args, out, mode, only), write)


if __name__ == "__main__":
    main()
