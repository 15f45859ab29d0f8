"""Recipe variants of one model run side by side on one GPU within a budget, into OUT/VARIANT (seed s > 0:
OUT/VARIANT-seed-s), then OUT/table.md, best mean test accuracy first (docs/reproducing.md)."""
import argparse
import shlex

from . import io
from .batch import IMPROVED, NOTEBOOK_OF, add_arguments, run_all, seeded, train_flags, train_job
from .pool import ROOT
from .report import groups, load_run, mean, runs_table

AUTHORS_AUGMENTATION = ("--randaugment", "2", "12", "--pad", "0", "--hole-p", "0")

SWEEPS = {  # model, then (variant, flags on top of `--trainer onecycle --epochs 25`), the likeliest gain first
    # The authors' recipe scores 89.89% on the JPEG copy with their script (../shared/REFERENCE.md), above every run
    # of the improved recipe: their augmentation on the fast path, then with the improved recipe's tricks on top.
    "convmixer-authors": ("convmixer_256_8", (
        ("authors", ("--recipe", "authors")),
        ("improved-authors-augmentation", (*IMPROVED, *AUTHORS_AUGMENTATION)),
        ("improved-authors-augmentation-no-smoothing", (*IMPROVED, *AUTHORS_AUGMENTATION, "--label-smoothing", "0")),
    )),
    # The ViT underfits (train below test accuracy) and attends almost uniformly; its position embedding
    # starts at std 1 where the ViT paper and timm start at 0.02, so it may never learn the 2-D layout.
    "vit-candidates": ("vit_seed", (
        ("improved-emb-init-0.02", (*IMPROVED, "--emb-init-std", "0.02")),
        ("improved-no-hole", (*IMPROVED, "--hole-p", "0")),
        ("improved-batch-256", (*IMPROVED, "--batch-size", "256")),
        ("improved-warmup-0.2", (*IMPROVED, "--warmup", "0.2")),
        ("improved-all-four", (*IMPROVED, "--emb-init-std", "0.02", "--hole-p", "0", "--batch-size", "256",
                               "--warmup", "0.2")),
    )),
}


def sweep_table(name, variants, out):
    runs = [load_run(path) for variant, _ in variants for path in sorted(out.glob(f"{variant}*/metrics.json"))
            if path.parent.name == variant or path.parent.name.startswith(f"{variant}-seed-")]
    flags = dict(variants)
    ordered = [run for group in sorted(groups(runs), key=lambda g: -mean(g)) for run in group]
    named = {run["path"].parent.name.split("-seed-")[0] for run in ordered}
    lines = [f"Sweep `{name}` (`python -m src.sweep --sweep {name}`), best mean test accuracy first.", ""]
    if ordered:
        lines += [*runs_table(ordered, out, keep=("runs", "test acc", "train acc", "seeds")), "",
                  "Flags on top of the sweep's `--trainer onecycle --epochs 25` (tiny with --quick): " +
                  "; ".join(f"{v}: `{shlex.join(flags[v])}`" for v in flags if v in named) + "."]
    missing = [variant for variant in flags if variant not in named]
    return "\n".join(lines + ([f"\nNot run yet: {', '.join(missing)}."] if missing else [])) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.sweep", description=__doc__)
    p.add_argument("--sweep", required=True, choices=tuple(SWEEPS), help="; ".join(
        f"{name}: {', '.join(variant for variant, _ in variants)}" for name, (_, variants) in SWEEPS.items()))
    p.add_argument("--only", help="comma-separated variants to run (default: all)")
    add_arguments(p)
    args = p.parse_args(argv)
    model, variants = SWEEPS[args.sweep]
    if args.only and set(args.only.split(",")) - {v for v, _ in variants}:
        p.error(f"--only {args.only}: the variants of {args.sweep} are {', '.join(v for v, _ in variants)}")

    def write(out):
        io.write_text(out / "table.md", sweep_table(args.sweep, variants, out))
        return (out / "table.md").read_text() + f"table: {out / 'table.md'}\n"

    def jobs_in(out):
        return [train_job(f"{args.sweep}/{folder.name}", folder, (*train_flags(model, flags, args), "--seed", seed))
                for variant, flags in variants if not args.only or variant in args.only.split(",")
                for seed, folder in seeded(out / variant, args.seeds)]

    run_all(args, p, ROOT / NOTEBOOK_OF[model] / "sweeps" / args.sweep, jobs_in, write)


if __name__ == "__main__":
    main()
