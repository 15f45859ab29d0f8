"""Everything the README's results and the notebooks show, run on one GPU within --budget (docs/reproducing.md):
the recipe runs (NAME/recipes/RUN/, seed s > 0: RUN-seed-s), the notebooks in full mode in place (NAME/run-full/),
then the bench alone (ConvMixer_experimentation_2/bench/); the same command again continues what did not finish."""
import argparse

from . import io
from .batch import IMPROVED, NOTEBOOK_OF, QUICK, QUICK_MODEL, add_arguments, job, portable, run_all, seeded, \
    train_flags, train_job
from .cli import command, config_from_args
from .io import read
from .notebook import NOTEBOOKS, run_config
from .pool import ROOT
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


def bench_job(args, out):
    folder, flags = out / "ConvMixer_experimentation_2" / "bench", ("--data", args.data, "--device", args.device)
    sizes = (*QUICK_MODEL["convmixer_256_8"], *QUICK[:6]) if args.quick else ()  # QUICK less its workers
    return job("ConvMixer_experimentation_2/bench", folder, lambda: config_from_args([*flags, *sizes]), (
        *flags, *sizes, *(() if args.quick else ("--repeats", "3")), "--json", portable(folder / "bench.json")),
        "src.bench", "bench.json", alone=True)


def notebook_job(name, args, out, mode):
    """`python -m src.notebook NAME`: in place into the repository, else under out; done once the notebook shows it."""
    where = ("--out", portable(out)) if out != ROOT else ()
    return job(f"{name}/run-{mode}", out / name / f"run-{mode}",
               lambda: run_config(name, mode, args.data, out, device=args.device),
               (name, "--mode", mode, "--data", args.data, "--device", args.device, *where), "src.notebook",
               shown=lambda made: f"**{100 * made['final_test_acc']:.2f}%**" in str(read(out / name / f"{name}.ipynb")))


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
        given = [k for k, v in vars(args).items() if v != p.get_default(k) and not k.endswith("_readme")]
        if given:  # not silently ignored: these read the checkout's README and result files only
            p.error(f"--{given[0].replace('_', '-')}: --check-readme and --write-readme take no other flag; drop it")
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
