"""What the notebooks call, so that every cell stays a few lines, and how to execute one from the
command line (its outputs, figures and run written beside it, or under --out):

    python -m src.notebook ConvMixer_experimentation_2 --mode full --data ../shared/cifar10-jpeg

A notebook's mode: "full" (the experiment: all images, 25 epochs; the default on a GPU), "cpu"
(the same model on a small subset, a check of the pipeline without a GPU; its accuracy is not the
experiment's) and "quick" (CI: a few batches). The environment tells an executed notebook what to
do: NOTEBOOK_MODE, CIFAR10_DIR (the data; else ./data, downloaded), NOTEBOOK_OUT (where its run and
figures go; quick runs default to a temporary folder), NOTEBOOK_DEVICE, NOTEBOOK_RESUME=1.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

from . import data
from .harness.cli import one_line
from .harness.config import BY_NAME, DEFAULT_DATA, Config, resolve
from .harness.machine import check_device
from .harness.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("ConvMixer_experimentation_1", "ConvMixer_experimentation_2", "ViT_with_convolution")
MODES = {
    "full": dict(epochs=25, batch_size=512),
    "cpu": dict(epochs=2, batch_size=64, train_subset=2000, test_subset=1000),
    "quick": dict(epochs=1, batch_size=32, train_subset=256, test_subset=128, workers=0),
}
ALWAYS = ("model", "trainer", "recipe", "epochs")  # echoed even when they are the defaults
# Colab brings its own torch, torchvision and Jupyter; the test tools are not needed there.
COLAB_KEEPS = re.compile(r"^(torch|torchvision|jupyter|nbclient|ipykernel|pytest)\s*([<>=!~;\[]|$)")
INTRO_RUN = re.compile(r"(<!-- rendered run -->\n).*?(\n<!-- /rendered run -->)", re.S)


def install_missing_requirements():
    """In Colab: pip-install requirements.txt but for what Colab already has (keeps its torch)."""
    wanted = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if not COLAB_KEEPS.match(line)]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *wanted], check=True)


def default_mode():
    import torch
    return os.environ.get("NOTEBOOK_MODE") or ("full" if torch.cuda.is_available() else "cpu")


@dataclass
class Experiment:
    cfg: Config       # what run() trains; its out folder is figures/run-MODE
    resolved: Config  # cfg with every "auto" and recipe value decided
    mode: str
    figures: Path

    def figure(self, name):
        return self.figures / name

    def preview(self, n=8):
        """n training images for the augmentation grid, decoding only those."""
        return data.cifar10(self.cfg.data, True, download=self.resolved.download, subset=n)


def experiment(notebook, model, trainer, recipe, mode=None):
    """The notebook's Config for a mode; prints the mode, what "auto" chose and the command line
    that trains the same run."""
    mode = mode or default_mode()
    if mode not in MODES:
        raise ValueError(f"unknown notebook mode {mode!r}: expected one of {', '.join(MODES)}")
    out = os.environ.get("NOTEBOOK_OUT") or (tempfile.mkdtemp(prefix="notebook-quick-") if mode == "quick"
                                             else notebook)  # the set-up cell made the repository root the cwd
    resume = os.environ.get("NOTEBOOK_RESUME") == "1"
    cfg = Config(model=model, trainer=trainer, recipe=recipe, data=os.environ.get("CIFAR10_DIR", DEFAULT_DATA),
                 out=str(Path(out) / f"run-{mode}"), resume=resume, overwrite=not resume,
                 device=os.environ.get("NOTEBOOK_DEVICE", "auto"), **MODES[mode])
    chosen = resolve(cfg)
    print(f"mode: {mode} | device: {chosen.device}, precision {chosen.precision}, loader {chosen.loader}, "
          f"{'compiled' if chosen.compile else 'eager'} | data: {chosen.data}")
    print("command line:", command_line(cfg))
    return Experiment(cfg, chosen, mode, Path(out))


def command_line(cfg):
    """`python -m src.train ...` that turns into the same Config (src.train.config_from_args):
    the values that differ from the defaults, and ALWAYS."""
    args = []
    for f in fields(Config):
        value, option = getattr(cfg, f.name), BY_NAME[f.name]
        if value == f.default and f.name not in ALWAYS:
            continue
        if isinstance(value, bool):
            args.append(option.flag if value else "--no-" + option.flag[2:])
        elif isinstance(value, (tuple, list)):
            args += [option.flag, *map(str, value)]
        else:
            args += [option.flag, str(value)]
    return shlex.join(["python", "-m", "src.train", *args])


def results_line(exp):
    """One line to quote, from the run's metrics.json: model, data, hardware, mode, epochs, images,
    final test accuracy and the steady epoch time."""
    m = json.loads((Path(exp.cfg.out) / "metrics.json").read_text())
    c, d = m["config"], m["data"]
    return (f"{m['model']['label']} ({m['model']['parameters']:,} parameters) | data: {d['source']} ({d['path']}) | "
            f"hardware: {m['hardware']}, {c['precision']} | mode: {exp.mode} | {plural(m['epochs_done'], 'epoch')} on "
            f"{d['train_images']:,} training images, tested on {d['test_images']:,} | final test accuracy "
            f"{100 * m['final_test_acc']:.2f}% | {m['seconds_per_epoch']:.1f} s per epoch")


def describe(metrics, mode, command):
    """The intro's paragraph on the rendered run, from its metrics.json."""
    d, c = metrics["data"], metrics["config"]
    toy = "" if mode == "full" else (" It checks that the pipeline works end to end on real images; its accuracy "
                                     "says nothing about the 25-epoch experiment (`full` mode, on a GPU).")
    return (f"**This rendered run** (`{mode}` mode): {plural(metrics['epochs_done'], 'epoch')} on "
            f"{d['train_images']:,} training images of {d['source']}, tested on {d['test_images']:,}; "
            f"{metrics['hardware']}, {c['precision']}, {c['loader']} loader, batch {c['batch_size']}; "
            f"{metrics['seconds_per_epoch']:.1f} s per epoch (the first: {metrics['first_epoch_seconds']:.1f} s); "
            f"final test accuracy "
            f"**{100 * metrics['final_test_acc']:.2f}%** (commit {metrics['commit']}).{toy} The same run from "
            f"the command line:\n\n```bash\n{command}\n```")


def plural(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def kernel_manager():
    """A kernel running this interpreter: the python3 kernel if it does, else a kernelspec for
    sys.executable written to a temporary folder."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import KernelManager

    try:
        argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
    except NoSuchKernel:
        argv0 = None
    if argv0 and (argv0 == sys.executable or (os.path.isabs(argv0) and os.path.samefile(argv0, sys.executable))):
        return KernelManager(kernel_name="python3")
    from ipykernel.kernelspec import install
    prefix = tempfile.mkdtemp(prefix="kernelspec-")
    install(kernel_name="this-python", prefix=prefix)
    specs = KernelSpecManager(kernel_dirs=[str(Path(prefix) / "share" / "jupyter" / "kernels")])
    return KernelManager(kernel_name="this-python", kernel_spec_manager=specs)


def execute(name, mode, data_root=None, out=None, device=None, resume=False, timeout=1800):
    """Run notebook NAME top to bottom; save it (in place, or to OUT/NAME/NAME.ipynb with its run
    and figures beside it) with the intro's rendered-run paragraph filled in. Returns its path."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    source = ROOT / name / f"{name}.ipynb"
    folder = Path(out).resolve() / name if out else ROOT / name
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NOTEBOOK_MODE": mode, "NOTEBOOK_RESUME": "1" if resume else "0", "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    if out:
        env["NOTEBOOK_OUT"] = str(folder)
    if data_root:  # relative to the repository root, where the notebook works: the echoed command stays portable
        env["CIFAR10_DIR"] = os.path.relpath(Path(data_root).resolve(), ROOT)
    if device:
        env["NOTEBOOK_DEVICE"] = device
    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(nb, km=kernel_manager(), timeout=timeout, coalesce_streams=True,
                            resources={"metadata": {"path": str(ROOT / name)}})
    try:
        client.execute(env=env)
    except CellExecutionError as err:  # the cell's own one line (a UserError shows its message), not its traceback
        cell = next(c for c in nb.cells if any(o.output_type == "error" for o in c.get("outputs", ())))
        first = next(line for line in cell.source.splitlines() if line.strip() and not line.startswith("#"))
        raise UserError(f"{name} stopped in the cell `{first}`: {err.ename}: {err.evalue}") from None
    for cell in nb.cells:  # a transient progress bar leaves only blanks behind: drop them
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if o.output_type != "stream" or o.text.strip()]
    printed = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    command = re.search(r"^command line: (.*)$", printed, re.M).group(1)
    metrics = json.loads((folder / f"run-{mode}" / "metrics.json").read_text())
    paragraph = describe(metrics, mode, command)
    nb.cells[0].source = INTRO_RUN.sub(lambda m: m.group(1) + paragraph + m.group(2), nb.cells[0].source)
    path = folder / source.name
    nbformat.write(nb, path)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.notebook", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=NOTEBOOKS)
    p.add_argument("--mode", choices=tuple(MODES), default=None, help="default: $NOTEBOOK_MODE, else full on a GPU, "
                                                                      "else cpu")
    p.add_argument("--data", help="CIFAR-10 (class folders or torchvision's); default: $CIFAR10_DIR or ./data")
    p.add_argument("--out", help="write the executed notebook, its run and figures under OUT/NAME (default: "
                                 "in place; quick mode: a new temporary folder)")
    p.add_argument("--device", help="cpu, cuda or cuda:N; default: $NOTEBOOK_DEVICE, else a GPU if any")
    p.add_argument("--resume", action="store_true", help="continue the notebook's unfinished run")
    args = p.parse_args(argv)
    mode = args.mode or default_mode()
    if mode not in MODES:
        p.error(f"NOTEBOOK_MODE={mode}: expected one of {', '.join(MODES)}")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        p.error(f"--out {args.out}: is a file; give a folder")
    out = args.out or (tempfile.mkdtemp(prefix="notebook-quick-") if mode == "quick" else None)
    with one_line(lambda: f"interrupted: {args.name} was not saved; --resume continues its run"):
        check_device(args.device or os.environ.get("NOTEBOOK_DEVICE", "auto"))
        data_root = args.data or os.environ.get("CIFAR10_DIR", DEFAULT_DATA)
        data.split_size(data_root, download=Path(data_root) == Path(DEFAULT_DATA))
        print(execute(args.name, mode, args.data, out, args.device, args.resume))

if __name__ == "__main__":
    main()
