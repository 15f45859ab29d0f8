"""The results tables, generated from the files the runs wrote (metrics.json, bench.json) so that no
number is typed by hand: the README's block between the markers, and OUT/report.md for a quick or
fresh reproduction. `python -m src.reproduce --check-readme` fails when the README's block is not
what the files give.
"""
import difflib
from pathlib import Path

from .checkpoint import epochs_problem, json_in, write_text
from .config import BY_NAME
from .errors import UserError
from ..models import label

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
GENERATED = "<!-- generated from the files linked below by src/report.py (python -m src.reproduce): do not edit -->"
NOT_RECORDED = "not recorded"
FULL_RUNS = ("*/run-full/metrics.json", "*/recipes/*/metrics.json", "*/sweeps/*/*/metrics.json")
# What the study is to reach on the JPEG copy in 25 epochs (../shared/REFERENCE.md): test accuracy per
# model; one ConvMixer epoch on the fast path in seconds, its speed-ups over the albumentations
# DataLoader with 2 workers and with every core, and its accuracy's largest distance from that loader's.
ACCURACY_TARGETS = {"ConvMixer-256/8": 0.91, "ConvViT-512/6": 0.78}
EPOCH_TARGET, VS_2_WORKERS, VS_ALL_CORES, LOADER_GAP = 1.5, 4.0, 2.0, 0.003


def percent(fraction):
    return f"{100 * fraction:.2f}%"


def seconds(value):
    return f"{value:.1f} s" if value >= 10 else f"{value:.2f} s"


DAMAGED = (ValueError, KeyError, TypeError, AttributeError)  # what reading a damaged result file raises
DELETE = [(None, "delete its folder")]  # src.sweep and src.reproduce add --force where it redoes the run


def _read(path):
    if not Path(path).is_file():  # a pipe would block the read for good
        raise ValueError("not a regular file")
    return json_in(path, parse_constant=int)  # int() refuses NaN and Infinity: damage too


def load_run(path):
    """A run's metrics.json as one flat dict, its cells checked; one line naming the file when it is not one."""
    try:
        run = _flat(_read(path), path)
        if not all(0 <= run[key] <= 1 for key in ("test_acc", "train_acc")):
            raise ValueError(f"accuracies {run['test_acc']!r}, {run['train_acc']!r} outside 0..1")
        wrong = epochs_problem(run["epochs_done"], run["epochs"], run["finished"])
        if wrong:  # a finished run of -1 epochs was skipped and shown (probe 18)
            raise ValueError(wrong)
        return common_cells(run) and run  # the numbers are numbers
    except DAMAGED as err:
        raise UserError(f"{path} is not a run's metrics.json ({type(err).__name__}: {err})", DELETE) from None


def damage(path):
    """None when the report can read path (a metrics.json or bench.json); else the one line naming it."""
    try:
        bench_row(path, path.parent) if path.name == "bench.json" else load_run(path)
    except UserError as err:
        return err


def result_files(base, patterns, redo=()):
    """The files patterns find under base, less those of runs being redone (--force) while still damaged."""
    return [p for pattern in patterns for p in sorted(base.glob(pattern)) if p not in redo or not damage(p)]


def _flat(m, path):
    c, d = m["config"], m["data"]
    return {"path": Path(path), "model": m["model"]["label"], "parameters": m["model"]["parameters"],
            "trainer": c["trainer"], "recipe": c["recipe"], "loader": c["loader"],
            "precision": "fp32" if c["device"] == "cpu" else c["precision"], "batch": c["batch_size"],
            "epochs": c["epochs"], "epochs_done": m["epochs_done"], "finished": m["finished"],
            "test_acc": m["final_test_acc"], "train_acc": m["final_train_acc"], "hardware": m["hardware"] + "",
            "seconds_per_epoch": m["seconds_per_epoch"], "images": (d["train_images"], d["test_images"]),
            "data": f"{d['source']}, `{c['data']}`", "commit": m.get("commit") or NOT_RECORDED}  # hardware: text


def epochs_cell(run):
    return str(run["epochs"]) if run["finished"] else f"{run['epochs_done']} of {run['epochs']} epochs"


def log_link(folder, base):
    logs = sorted(Path(folder).glob("*.log"))
    return " · ".join(f"[{log.stem}]({log.relative_to(base)})" for log in logs) or "—"


def common_cells(run):
    """The cells every table of runs shows: what was trained, where, and how it ended."""
    return {"model": f"{run['model']} ({run['parameters']:,} parameters)", "trainer": run["trainer"],
            "recipe": run["recipe"], "loader": run["loader"], "precision": run["precision"],
            "batch": str(run["batch"]), "images (train / test)": "{:,} / {:,}".format(*run["images"]),
            "epochs": epochs_cell(run), "test acc": percent(run["test_acc"]), "train acc": percent(run["train_acc"]),
            "s / epoch": seconds(run["seconds_per_epoch"]), "data": run["data"], "hardware": run["hardware"],
            "commit": run["commit"]}


def table(rows, keep):
    """Markdown lines: one sentence for what every row shares (columns not in keep), then a table
    of the rest, so the tables stay narrow."""
    columns = list(rows[0])
    shared = [c for c in columns if c not in keep and len(rows) > 1 and len({r[c] for r in rows}) == 1]
    shown = [c for c in columns if c not in shared]
    lines = [f"All rows: {'; '.join(f'{c}: {rows[0][c]}' for c in shared)}.", ""] if shared else []
    lines += ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    return lines + ["| " + " | ".join(r[c] for c in shown) + " |" for r in rows]


def runs_table(paths, base):
    runs = sorted((load_run(p) for p in paths),
                  key=lambda r: (r["model"], r["trainer"], r["recipe"], r["loader"], str(r["path"])))
    rows = [{"run": f"[{r['path'].parent.relative_to(base)}]({r['path'].relative_to(base)})",
             **common_cells(r), "log": log_link(r["path"].parent, base)} for r in runs]
    return table(rows, keep=("run", "test acc", "log"))


def bench_row(path, base):
    def reference(key, against, workers):
        return f"{seconds(s[key])}, {workers} workers ({speedup[against]:.2f}x)" if key in s else "—"

    try:
        b = _read(path)
        c, s, speedup = b["config"], b["seconds"], b["speedup"]
        compiled = f" (+{b['compile_seconds']:.1f} s compile)" if c["compile"] else ""
        images = [f"{n:,}" if n else "all" for n in (c["train_subset"], c["test_subset"])]
        return {"bench": f"[{path.parent.relative_to(base)}]({path.relative_to(base)})",
                "model": label(c["model"], dim=c["dim"], depth=c["depth"]),
                "images (train / test)": " / ".join(images), "batch": str(c["batch_size"]),
                "precision": "fp32" if c["device"] == "cpu" else c["precision"],
                "fast path": seconds(s["fast"]) + compiled,
                "reference loader": reference("reference_2_workers", "vs_2_workers", 2),
                "reference, all cores": reference("reference_all_cores", "vs_all_cores", b.get("workers_all_cores")),
                "training steps alone": seconds(s["floor"]) if "floor" in s else "—",
                "hardware": b["hardware"] + "", "commit": b.get("commit") or NOT_RECORDED,  # text
                "log": log_link(path.parent, base)}
    except DAMAGED as err:
        raise UserError(f"{path} is not a bench.json of src.bench ({type(err).__name__}: {err})", DELETE) from None


def sweep_line(folder, base, redo=()):
    runs = [load_run(p) for p in result_files(folder, ("*/metrics.json",), redo)]
    link = f"- [{folder.name}]({(folder / 'table.md').relative_to(base)})"
    if not runs:
        return f"{link}: no variant has finished an epoch yet"
    best = max(runs, key=lambda r: r["test_acc"])
    epochs = f"{best['epochs']} epochs" if best["finished"] else epochs_cell(best)
    return (f"{link}: {len(runs)} variants of {best['model']} on {best['hardware']}; best test accuracy "
            f"{percent(best['test_acc'])} ({best['path'].parent.name}, {epochs})")


def section(base, title, runs=(), benches=(), sweeps=(), empty=None, note=None, redo=()):
    """A heading, a note, then the tables of the files the glob patterns find (less `redo`'s damaged
    ones); `empty` (or nothing) if they find none."""
    runs, benches, sweeps = (result_files(base, patterns, redo) for patterns in (runs, benches, sweeps))
    if not (runs or benches or sweeps):
        return [title, "", empty, ""] if empty else []
    lines = [title, ""] + ([note, ""] if note else [])
    if runs:
        lines += runs_table(runs, base) + [""]
    if benches:
        lines += ["One epoch (train and test pass) on each data path (`python -m src.bench`):", ""]
        lines += table([bench_row(p, base) for p in benches], keep=("bench", "fast path", "log")) + [""]
    if sweeps:
        lines += ["Sweeps (`python -m src.sweep`), each a table sorted by test accuracy:", ""]
        lines += [sweep_line(p.parent, base, redo) for p in sweeps] + [""]
    return lines


def full_runs(base, redo=()):
    """The finished runs of the experiment itself: every image, the full epochs, on a GPU."""
    runs = [load_run(p) for p in result_files(base, FULL_RUNS, redo)]
    return [r for r in runs if r["finished"] and r["epochs"] == BY_NAME["epochs"].default
            and r["images"] == (50_000, 10_000) and not r["hardware"].startswith("CPU")]


def targets(base, redo=()):
    """Each target beside the best committed run or bench that speaks to it."""
    runs, rows = full_runs(base, redo), []

    def row(target, goal, met, found):
        rows.append({"target": target, "goal": goal, "committed": found or "no run yet",
                     "met": ("yes" if met else "no") if found else "—"})

    def link(path):
        return f"[{path.parent.relative_to(base)}]({path.relative_to(base)})"

    for model, goal in ACCURACY_TARGETS.items():
        best = max((r for r in runs if r["model"] == model), key=lambda r: r["test_acc"], default=None)
        row(f"{model}: test accuracy", f"≥ {percent(goal)}", best and best["test_acc"] >= goal,
            best and f"{percent(best['test_acc'])}, {link(best['path'])}")
    pair = [r for r in runs if (r["model"], r["trainer"], r["recipe"]) == ("ConvMixer-256/8", "onecycle", "baseline")]
    fast, ref = (next((r for r in pair if r["loader"] == loader), None) for loader in ("gpu", "reference"))
    gap = fast and ref and fast["test_acc"] - ref["test_acc"]
    row("fast loader's accuracy against the reference loader's (ConvMixer, baseline)", f"within {100 * LOADER_GAP:g} "
        "points", gap is not None and abs(gap) <= LOADER_GAP, fast and ref and f"{100 * gap:+.2f} points "
        f"({percent(fast['test_acc'])}, {link(fast['path'])}; {percent(ref['test_acc'])}, {link(ref['path'])})")
    path = next((p for p in result_files(base, ("*/bench/bench.json",), redo)
                 if not bench_row(p, base)["hardware"].startswith("CPU")), None)
    b = path and _read(path)
    epoch, x = (b["seconds"]["fast"], b["speedup"]) if b else (0, {"vs_2_workers": 0, "vs_all_cores": 0})
    at = path and f", {link(path)}"
    row("one ConvMixer-256/8 epoch, fast path", f"≤ {EPOCH_TARGET:g} s", epoch <= EPOCH_TARGET,
        b and seconds(epoch) + at)
    row("its speed-up over the reference loader, 2 workers", f"≥ {VS_2_WORKERS:g}x",
        x["vs_2_workers"] >= VS_2_WORKERS, b and f"{x['vs_2_workers']:.2f}x{at}")
    row("its speed-up over the reference loader, every core", f"≥ {VS_ALL_CORES:g}x",
        x["vs_all_cores"] >= VS_ALL_CORES, b and f"{x['vs_all_cores']:.2f}x{at}")
    return ["### The targets (25 epochs on the JPEG copy)", "", *table(rows, keep=tuple(rows[0])), ""]


def report(base, mode="full", redo=()):
    """The results in markdown: the reproduction's runs (mode full: the notebooks on a GPU, the
    recipes, the bench and the sweeps; quick: their tiny versions), then the checks on CPU."""
    base = Path(base)
    title = ("### Quick check (`python -m src.reproduce --quick`): every step on tiny settings; the numbers test the "
             "pipeline, not the models" if mode == "quick" else
             "### On one GPU (`python -m src.reproduce`): the notebooks in full mode, the recipes, the bench")
    lines = [GENERATED, ""]
    lines += section(base, title, (f"*/run-{mode}/metrics.json", "*/recipes/*/metrics.json"), ("*/bench/bench.json",),
                     ("*/sweeps/*/table.md",), empty="Not run yet: `python -m src.reproduce` on one GPU writes "
                     "these runs, their logs and this section.", note="The runs shared the machine, several at a "
                     "time, so their seconds per epoch are longer than a run's alone; the bench times epochs alone.",
                     redo=redo)
    if mode == "full":
        lines += targets(base, redo)
    lines += section(base, "### Checks on CPU (the notebooks' `cpu` mode: each pipeline learns end to end; the "
                     "accuracies say nothing about the experiment)", ("*/run-cpu/metrics.json",))
    return "\n".join(lines).rstrip() + "\n"


def _block(readme):
    if not Path(readme).is_file():
        raise UserError(f"--readme {readme}: not a regular file; give the README to check or write")
    text = Path(readme).read_text(errors="surrogateescape")  # any bytes outside the block are written back as read
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise UserError(f"{readme} has no results block: put the lines {BEGIN} and {END} where it goes")
    return text, start + len(BEGIN), end


def write_readme(readme, base, redo=()):
    text, start, end = _block(readme)
    write_text(readme, text[:start] + "\n" + report(base, redo=redo) + text[end:], "--readme")


def check_readme(readme, base):
    """True when the README's block is what the files give; else print the difference."""
    text, start, end = _block(readme)
    have, want = text[start:end].lstrip("\n"), report(base)
    if have != want:
        diff = difflib.unified_diff(have.splitlines(True), want.splitlines(True), "README", "files")
        print(f"{readme}: the results block differs from what the result files give (python -m src.reproduce "
              f"--write-readme regenerates it):\n" + "".join(diff))
    return have == want
