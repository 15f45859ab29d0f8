"""The results tables, generated from the files the runs wrote: the README's block, OUT/report.md, each sweep's
table. Runs that differ only in their seed are one row, mean ± sd; a difference within the seeds' spread is none."""
import difflib
import json
import statistics
from pathlib import Path

from . import io
from .config import OPTIONS
from .io import UserError

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
GENERATED = "<!-- generated from the files linked below by src/report.py (python -m src.reproduce): do not edit -->"
MEND = "delete it: the sweep or reproduction that wrote it writes it again"  # --force redoes only what is whole
NOT_THE_SETTING = ("seed", "out", "resume", "overwrite", "download", "device", "workers", "test_batch_size")
ACCURACY_TARGETS = {"ConvMixer-256/8": 0.91, "ConvViT-512/6": 0.78}  # the study's, on the JPEG copy in 25 epochs
COMPARISONS = (  # model, (recipe, loader) against (recipe, loader), the verdict wanted
    ("ConvMixer-256/8", ("improved", "gpu"), ("baseline", "gpu"), "above"),
    ("ConvViT-512/6", ("improved", "gpu"), ("baseline", "gpu"), "above"),
    ("ConvMixer-256/8", ("improved", "gpu"), ("authors", "gpu"), "above"),
    ("ConvMixer-256/8", ("baseline", "gpu"), ("baseline", "reference"), "no difference"))
SPEED_TARGETS = (("one ConvMixer-256/8 epoch, fast path", "fast", 1.0, " s"),  # at most; the speed-ups at least
                 ("its speed-up over 2 workers", "vs_2_workers", 4.0, "x"),
                 ("its speed-up over every core", "vs_all_cores", 2.0, "x"))


def setting(m):
    """What a run's metrics.json says was run, but its seed and where (an option it predates: its default)."""
    values = {o.name: m["config"].get(o.name, o.default) for o in OPTIONS
              if o.name not in NOT_THE_SETTING and o.group != "model"}
    values.update(m["model"]["hyper_parameters"], data=str(Path(m["config"]["data"]).resolve()))
    return json.dumps(values, sort_keys=True, default=str)


def load_run(path):
    """A run's metrics.json as one flat dict; one line naming the file when it is not one."""
    m = io.read_json(path, MEND)
    try:
        c, d = m["config"], m["data"]
        run = {"path": Path(path), "model": f"{m['model']['label']} ({m['model']['parameters']:,} parameters)",
               "label": m["model"]["label"], "trainer": c["trainer"], "recipe": c["recipe"], "loader": c["loader"],
               "precision": c["precision"], "batch": str(c["batch_size"]), "epochs": c["epochs"],
               "done": m["epochs_done"], "finished": m["finished"] is True, "seed": c["seed"],
               "test": float(m["final_test_acc"]), "train": float(m["final_train_acc"]),
               "s / epoch": float(m["seconds_per_epoch"]), "images": (d["train_images"], d["test_images"]),
               "data": f"{d['source']}, `{c['data']}`", "hardware": str(m["hardware"]), "commit": str(m.get("commit")),
               "setting": setting(m)}
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path} is not a run's metrics.json ({type(err).__name__}: {err}): {MEND}") from None
    return run


def groups(runs):
    """Runs that differ only in their seed, together, seeds in order; a seed run twice alike starts another group."""
    found = {}
    for run in runs:
        alike = found.setdefault(run["setting"], [])
        group = next((g for g in alike if run["seed"] not in [r["seed"] for r in g]), [])
        if not group:
            alike.append(group)
        group.append(run)
    return [sorted(group, key=lambda r: r["seed"]) for alike in found.values() for group in alike]


def mean(group, key="test"):
    return statistics.fmean(r[key] for r in group)


def spread(group):
    return statistics.stdev(r["test"] for r in group) if len(group) > 1 else 0.0


def accuracy(group, key="test"):
    if len(group) == 1:
        return f"{100 * group[0][key]:.2f}%"
    sd = f" ± {100 * spread(group):.2f}" if key == "test" else ""
    return f"{100 * mean(group, key):.2f}{sd}% (n={len(group)})"


def compare(a, b):
    """a's mean against b's, in words, and the verdict: within the sum of the seeds' sds it is no difference."""
    diff = mean(a) - mean(b)
    said = f"{100 * diff:+.2f} points ({accuracy(a)} against {accuracy(b)})"
    if len(a) < 2 or len(b) < 2:
        return said, "undecided: single runs have no spread"
    return said, "no difference" if abs(diff) <= spread(a) + spread(b) else "above" if diff > 0 else "below"


def link(path, base):
    return f"[{path.relative_to(base)}]({path.relative_to(base)})"


def logs(group, base):
    """Each run's logs; with several seeds, each named by its seed."""
    found = [(log.stem if len(group) == 1 else f"seed {r['seed']}", log.relative_to(base))
             for r in group for log in sorted(r["path"].parent.glob("*.log"))]
    return " · ".join(f"[{name}]({path})" for name, path in found) or "—"


def table(rows, keep):
    """Markdown lines: one sentence for what every row shares (columns not in keep), then the rest."""
    shared = [c for c in rows[0] if c not in keep and len(rows) > 1 and len({r[c] for r in rows}) == 1]
    shown = [c for c in rows[0] if c not in shared]
    lines = [f"All rows: {'; '.join(f'{c}: {rows[0][c]}' for c in shared)}.", ""] if shared else []
    lines += ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    return lines + ["| " + " | ".join(r[c] for c in shown) + " |" for r in rows]


def runs_table(runs, base, keep=("runs", "test acc", "logs")):
    rows = []
    for group in groups(runs):
        first = group[0]
        epochs = str(first["epochs"]) if all(r["finished"] for r in group) else \
            ", ".join(f"{r['done']} of {r['epochs']}" for r in group)
        rows.append({"runs": " · ".join([link(first["path"].parent, base)] + [
                         f"[seed {r['seed']}]({r['path'].parent.relative_to(base)})" for r in group[1:]]),
                     **{k: first[k] for k in ("model", "trainer", "recipe", "loader", "precision", "batch")},
                     "images (train / test)": "{:,} / {:,}".format(*first["images"]), "epochs": epochs,
                     "seeds": ", ".join(str(r["seed"]) for r in group), "test acc": accuracy(group),
                     "train acc": accuracy(group, "train"), "s / epoch": f"{mean(group, 's / epoch'):.1f} s",
                     "data": first["data"], "hardware": first["hardware"],
                     "commit": ", ".join(sorted({r["commit"] for r in group})), "logs": logs(group, base)})
    return table(rows, keep)


def targets(runs, speed):
    """Each target beside what the committed runs say of it, judged on means."""
    full = groups([r for r in runs if r["finished"] and r["epochs"] == 25 and r["images"] == (50_000, 10_000)
                   and not r["hardware"].startswith("CPU")])
    rows = []
    for model, goal in ACCURACY_TARGETS.items():
        best = max((g for g in full if g[0]["label"] == model), key=mean, default=None)
        said = best and f"{accuracy(best)}, {best[0]['recipe']} recipe, {best[0]['loader']} loader"
        rows.append((f"{model}: test accuracy", f"≥ {100 * goal:.2f}%", said,
                     best and ("yes" if mean(best) >= goal else "no")))
    for model, a, b, wanted in COMPARISONS:
        pair = [max((g for g in full if (g[0]["label"], g[0]["recipe"], g[0]["loader"], g[0]["trainer"]) ==
                     (model, *side, "onecycle")), key=len, default=None) for side in (a, b)]  # the most seeds
        said, verdict = compare(*pair) if all(pair) else (None, None)
        what = f"{a[0]} recipe against {b[0]}" if a[1] == b[1] else "fast loader against the reference loader"
        rows.append((f"{model}: {what}", "above, beyond the seeds' spread" if wanted == "above" else wanted, said,
                     verdict and ("yes" if verdict == wanted else verdict if "undecided" in verdict else
                                  f"no: {verdict}")))
    for what, key, goal, unit in SPEED_TARGETS:
        met = speed and (speed[key] <= goal if key == "fast" else speed[key] >= goal)
        rows.append((what, f"{'≤' if key == 'fast' else '≥'} {goal:g}{unit}", speed and f"{speed[key]:.2f}{unit}",
                     speed and ("yes" if met else "no")))
    rows = [{"target": t, "goal": g, "committed": v or "no run yet", "met": m or "—"} for t, g, v, m in rows]
    return ["### The targets (25 epochs on the JPEG copy; accuracies are means over the seeds run)", "",
            *table(rows, keep=tuple(rows[0])), ""]


def report(base, mode="full"):
    """The results of a reproduction in markdown (mode quick: of its tiny runs, without targets or CPU checks)."""
    base, speed = Path(base), None
    runs = [load_run(p) for pattern in (f"*/run-{mode}/metrics.json", "*/recipes/*/metrics.json")
            for p in sorted(base.glob(pattern))]
    lines = [GENERATED, "", "### The runs (`python -m src.reproduce`; runs that differ only in their seed are one "
             "row, mean ± standard deviation)", ""]
    lines += [*runs_table(runs, base), "", "Several runs shared the machine at a time, so their seconds per epoch are "
              "longer than a run's alone; the bench below times epochs alone.", ""] if runs else \
        ["Not run yet: `python -m src.reproduce` on one GPU.", ""]
    bench = next(iter(sorted(base.glob("*/bench/bench.json"))), None)
    if bench:
        b = io.read_json(bench, MEND)
        speed = {"fast": b["seconds"]["fast"], **b["speedup"]}
        lines += [f"One epoch (train and test pass) on each data path, `python -m src.bench` on {b['hardware']}, "
                  f"commit {b.get('commit')} ({link(bench, base)} · {logs([{'path': bench}], base)}): {b['line']}.", ""]
    sweeps = sorted(base.glob("*/sweeps/*/table.md"))
    if sweeps:
        lines += ["Sweeps (`python -m src.sweep`), each a table sorted by test accuracy: " +
                  ", ".join(f"[{p.parent.name}]({p.relative_to(base)})" for p in sweeps) + ".", ""]
    if mode == "full":
        cpu = [load_run(p) for p in sorted(base.glob("*/run-cpu/metrics.json"))]
        lines += targets(runs, speed)
        lines += ["### Checks on CPU (the notebooks' `cpu` mode: each pipeline learns end to end; the accuracies "
                  "say nothing about the experiment)", "", *runs_table(cpu, base), ""] if cpu else []
    return "\n".join(lines).rstrip() + "\n"


def readme_block(readme, base, check=False):
    """Write the README's block from the files; with check, only compare, and print the difference if any."""
    text = Path(readme).read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise UserError(f"{readme} has no results block: put the lines {BEGIN} and {END} where it goes")
    start, want = start + len(BEGIN), report(base)
    if not check:
        return io.write_text(readme, text[:start] + "\n" + want + text[end:])
    have = text[start:end].lstrip("\n")
    if have != want:
        print("".join(difflib.unified_diff(have.splitlines(True), want.splitlines(True), "README", "files")))
        raise UserError(f"{readme}: its results block differs from the result files (the difference is above): run "
                        f"python -m src.reproduce --write-readme")
