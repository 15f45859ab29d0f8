"""The three notebooks: they run top to bottom on the real images (quick mode, in memory: the
committed files are never rewritten), the committed copies carry the outputs of a real run with
the figures they save, and the command line they print is the same run as their config cell."""
import json
import os
import re
import shlex
import sys
from pathlib import Path

import nbformat
import pytest

from src.notebook import command_line
from src.train import Config, config_from_args

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = [REPO_ROOT / name / f"{name}.ipynb"
             for name in ("ConvMixer_experimentation_1", "ConvMixer_experimentation_2", "ViT_with_convolution")]
IDS = [path.stem for path in NOTEBOOKS]
PYTHON_NAMES = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def text_of(output):
    if output.output_type == "stream":
        return output.text
    return output.get("data", {}).get("text/plain", "")


def printed(nb):
    return "".join(text_of(o) for cell in code_cells(nb) for o in cell.outputs)


# ---------------------------------------------------------------------------- the committed notebooks

@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_notebook_carries_a_complete_run(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for i, cell in enumerate(code_cells(nb)):
        assert cell.outputs, f"{path.name}: code cell {i} has no output (not executed?)\n{cell.source}"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{path.name}: code cell {i} ends in {errors[0].ename}: {errors[0].evalue}"
    text = printed(nb)
    mode = re.search(r"^mode: (\w+)", text, re.M).group(1)
    assert mode in ("cpu", "full"), f"{path.name} was saved from a {mode} run"
    metrics = json.loads((path.parent / f"run-{mode}" / "metrics.json").read_text())
    assert f"final test accuracy {100 * metrics['final_test_acc']:.2f}%" in text
    images = sum("image/png" in o.get("data", {}) for cell in code_cells(nb) for o in cell.outputs)
    assert images >= 4  # augmentations, curves, mistakes, confusion matrix


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_figures_the_notebook_saves_exist_as_png(path):
    nb = nbformat.read(path, as_version=4)
    names = set(re.findall(r'"([\w.-]+\.png)"', "".join(cell.source for cell in code_cells(nb))))
    assert {"curves.png", "misclassified.png", "confusion.png"} <= names
    assert ("data_6.png" if "ViT" in path.stem else "augmentations.png") in names
    for name in names:
        with open(path.parent / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path.parent.name}/{name} is not a PNG file"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_introduction_gives_the_command_the_run_used(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown"
    command = re.search(r"^command line: (.*)$", printed(nb), re.M).group(1)
    assert command in nb.cells[0].source
    assert "REPLACE-WITH-YOUR-FORK" in code_cells(nb)[0].source  # no public URL yet


@pytest.mark.parametrize("cfg", [
    Config(model="convmixer", trainer="wrapper", lr_max=0.01, wd=0.01, dim=256, depth=8, kernel_size=5,
           patch_size=2, epochs=2, batch_size=64, train_subset=2000, test_subset=1000,
           data="../shared/cifar10-jpeg", out="ConvMixer_experimentation_1/run-cpu"),
    Config(model="vit", recipe="improved", data="./data", download=True, out="runs/vit-onecycle-improved",
           decay_all=False, tta_flip=False, ema_decay=0.99, randaugment=(2, 10), channels_last=True,
           dropout=0.0, precision="bf16"),
], ids=["cpu-mode-mixer", "options"])
def test_command_line_turns_back_into_the_same_config(cfg):
    args = shlex.split(command_line(cfg))
    assert args[:3] == ["python", "-m", "src.train"]
    assert config_from_args(args[3:]) == cfg


# ---------------------------------------------------------------------------- executing them

@pytest.fixture(scope="module")
def kernel_manager(tmp_path_factory):
    """A kernel manager whose kernel runs this interpreter: the usual python3 kernel when its
    spec starts sys.executable, else a kernelspec for sys.executable written to a temp folder."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import KernelManager

    try:
        argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
    except NoSuchKernel:
        argv0 = None
    if argv0 in PYTHON_NAMES or (argv0 and os.path.abspath(argv0) == os.path.abspath(sys.executable)):
        return lambda: KernelManager(kernel_name="python3")
    from ipykernel.kernelspec import install
    prefix = tmp_path_factory.mktemp("kernelspec")
    install(kernel_name="notebook-test", prefix=str(prefix))
    specs = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    assert specs.get_kernel_spec("notebook-test").argv[0] == sys.executable
    return lambda: KernelManager(kernel_name="notebook-test", kernel_spec_manager=specs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_top_to_bottom_in_quick_mode(path, cifar10_dir, kernel_manager, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("CIFAR10_DIR", str(cifar10_dir.resolve()))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the quick run's output folder lands here
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    before = {p: p.stat().st_mtime_ns for p in path.parent.rglob("*") if p.is_file()}
    client = NotebookClient(nb, km=kernel_manager(), timeout=600,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    text = printed(nb)
    assert re.search(r"^mode: quick", text, re.M)
    assert "final test accuracy" in text and "on 256 training images, tested on 128" in text
    assert nb.cells[-1].outputs[0].text.strip() == sys.executable  # the kernel ran this interpreter
    after = {p: p.stat().st_mtime_ns for p in path.parent.rglob("*") if p.is_file()}
    assert after == before, "a quick run changed files beside the committed notebook"
    runs = list(tmp_path.glob("notebook-quick-*/run-quick/metrics.json"))
    assert len(runs) == 1
