"""The three notebooks: one readable page each, the committed copies carry the outputs of a real
run with the figures they save, the command line they print is the same run as their config
cell, and they run top to bottom in quick mode on the real images (into a temporary folder: the
committed files are never rewritten)."""
import ast
import json
import os
import re
import shlex
import sys
from pathlib import Path

import nbformat
import pytest

from src.harness.config import Config
from src.harness.errors import UserError
from src.harness.executor import execute, kernel_manager
from src.notebook import MODES, NOTEBOOKS, asked, command_line, settings_table
from src.train import config_from_args

REPO_ROOT = Path(__file__).resolve().parent.parent
PATHS = [REPO_ROOT / name / f"{name}.ipynb" for name in NOTEBOOKS]


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def printed(nb):
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                   for cell in code_cells(nb) for o in cell.outputs)


# ---------------------------------------------------------------------------- the committed notebooks

@pytest.mark.parametrize("path", PATHS, ids=NOTEBOOKS)
def test_committed_notebook_carries_a_complete_run(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    cells = code_cells(nb)
    # executed top to bottom in one session: execution counts 1, 2, 3, ...
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1)), path.name
    for i, cell in enumerate(cells):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{path.name}: code cell {i} ends in {errors[0].ename}: {errors[0].evalue}"
    text = printed(nb)
    mode = re.search(r"^mode: (\w+)", text, re.M).group(1)
    assert mode in ("cpu", "full"), f"{path.name} was saved from a {mode} run"
    metrics = json.loads((path.parent / f"run-{mode}" / "metrics.json").read_text())
    assert metrics["finished"]
    accuracy = f"{100 * metrics['final_test_acc']:.2f}%"
    assert f"final test accuracy {accuracy}" in text
    images = sum("image/png" in o.get("data", {}) for cell in code_cells(nb) for o in cell.outputs)
    assert images >= 4  # augmentations, curves, mistakes, confusion matrix
    # the intro describes this run: its mode, accuracy, hardware and the command that trains it
    intro = nb.cells[0].source
    command = re.search(r"^command line: (.*)$", text, re.M).group(1)
    assert f"(`{mode}` mode)" in intro and f"**{accuracy}**" in intro and metrics["hardware"] in intro
    assert command in intro


@pytest.mark.parametrize("path", PATHS, ids=NOTEBOOKS)
def test_figures_the_notebook_saves_exist_as_png(path):
    nb = nbformat.read(path, as_version=4)
    names = set(re.findall(r'"([\w.-]+\.png)"', "".join(cell.source for cell in code_cells(nb))))
    assert {"curves.png", "misclassified.png", "confusion.png"} <= names
    assert ("data_6.png" if "ViT" in path.stem else "augmentations.png") in names
    learned = ({"class_attention.png", "attention_distance.png", "position_similarity.png"} if "ViT" in path.stem
               else {"depthwise_kernels.png", "patch_filters.png"})
    assert learned <= names, "the 'What the model learned' figures"
    for name in names:
        with open(path.parent / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path.parent.name}/{name} is not a PNG file"


@pytest.mark.parametrize("path", PATHS, ids=NOTEBOOKS)
def test_src_notebook_reads_the_settings_the_notebook_asks_for(path):
    """What src.notebook checks a --resume against before the kernel starts: the run the notebook prints."""
    model, trainer, recipe = asked(path.stem)
    command = re.search(r"^command line: (.*)$", printed(nbformat.read(path, as_version=4)), re.M).group(1)
    assert f"--model {model} --trainer {trainer} --recipe {recipe}" in command


@pytest.mark.parametrize("path", PATHS, ids=NOTEBOOKS)
def test_notebook_is_one_readable_page(path):
    """Short cells, no loops (they belong in src/), and no import that is never used."""
    cells = [cell.source for cell in code_cells(nbformat.read(path, as_version=4))]
    for source in cells:
        assert len(source.splitlines()) <= 15, source
    code = "\n".join(line for source in cells for line in source.splitlines() if not line.startswith("%"))
    tree = ast.parse(code)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.For, ast.While))]
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    imported = {(a.asname or a.name).split(".")[0] for n in imports for a in n.names}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert imported <= used, f"unused imports: {imported - used}"


TRAINER_SHOWN = {"ConvMixer_experimentation_1": ("train_wrapper(model,", "Test set: Average loss: "),
                 "ConvMixer_experimentation_2": ("train_one_cycle(model,", "[ConvMixer] Epoch: "),
                 "ViT_with_convolution": ("train_one_cycle(model,", "[ConvViT] Epoch: ")}


@pytest.mark.parametrize("path", PATHS, ids=NOTEBOOKS)
def test_notebook_shows_its_settings_and_the_trainer_it_runs(path):
    nb = nbformat.read(path, as_version=4)
    tables = [o.data["text/markdown"] for cell in code_cells(nb) for o in cell.outputs
              if "text/markdown" in o.get("data", {}) and o.data["text/markdown"].startswith("| setting | value |")]
    assert len(tables) == 1
    for row in ("model", "trainer", "optimizer", "learning rate", "epochs, batch", "augmentation", "data", "running"):
        assert f"\n| {row} | " in tables[0], row
    call, printed_line = TRAINER_SHOWN[path.parent.name]
    assert sum(call in cell.source for cell in code_cells(nb)) == 1
    assert printed_line in printed(nb)


def test_settings_table_shows_every_value_the_run_uses(tiny_cifar):
    cfg = Config(model="vit_seed", recipe="improved", data=str(tiny_cifar), device="cpu", lr_max=0.003, wd=0.02,
                 warmup=0.3, batch_size=16, epochs=10, label_smoothing=0.1, randaugment=(2, 9), dropout=0.0,
                 decay_norms=False, seed=7).resolved()
    table = settings_table(cfg)
    for text in ("`vit_seed`: ConvViT-512/6", "dim 512, depth 6", "dropout 0.0", "`onecycle` (train_one_cycle)",
                 "recipe `improved`", "betas (0.9, 0.99)", "weight decay 0.02 on weights only",
                 "0 at epoch 0 → 0.003 at epoch 3 → 0.00015 at epoch 8 → 0 at epoch 10",
                 "10 epochs of 10 steps, 16 images per step", "label smoothing 0.1; gradient norm clipped at 1",
                 "an EMA of the weights (decay 0.99), logits averaged", "RandAugment (2 ops, magnitude 9)",
                 "160 training and 40 test images", "cpu, fp32, reference loader (2 workers)", "seed 7"):
        assert text in table, text
    wrapper = settings_table(Config(trainer="wrapper", data=str(tiny_cifar), device="cpu", epochs=5,
                                    batch_size=16).resolved())
    assert "0.0004 at epoch 0 → 0.01 at epoch 2 → 4e-08 at epoch 5" in wrapper  # OneCycleLR's own knots


@pytest.mark.parametrize("cfg", [
    Config(model="convmixer_256_8", trainer="wrapper", lr_max=0.01, wd=0.01, dim=256, epochs=2, batch_size=64,
           train_subset=2000, test_subset=1000, data="../shared/cifar10-jpeg", overwrite=True,
           out="ConvMixer_experimentation_1/run-cpu"),
    Config(model="vit_seed", recipe="improved", download=True, out="runs/vit", decay_norms=False, tta_flip=False,
           ema=0.99, randaugment=(2, 10), channels_last=True, compile=False, dropout=0.0, precision="bf16"),
], ids=["cpu-mode-mixer", "options"])
def test_command_line_turns_back_into_the_same_config(cfg):
    args = shlex.split(command_line(cfg))
    assert args[:3] == ["python", "-m", "src.train"]
    assert config_from_args(args[3:]) == cfg


def test_notebooks_run_in_this_interpreter():
    with kernel_manager() as km:
        argv0, spec = km.kernel_spec.argv[0], Path(km.kernel_spec.resource_dir)
    assert os.path.samefile(argv0, sys.executable) or argv0 == sys.executable
    if km.kernel_name != "python3":  # a kernelspec of its own: gone with the notebook (hundreds were left in /tmp)
        assert not spec.exists()


# ---------------------------------------------------------------------------- executing them

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom_in_quick_mode(name, quick_reproduction):
    """Executed by `python -m src.reproduce --quick` (conftest.py), into a temporary folder; that the
    checkout stays untouched is test_reproduce.py's."""
    assert quick_reproduction.first.returncode == 0, quick_reproduction.first.stdout[-3000:]
    folder = quick_reproduction.out / name
    nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    cells = code_cells(nb)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert not [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    text = printed(nb)
    assert re.search(r"^mode: quick \(", text, re.M)
    table = next(o.data["text/markdown"] for cell in cells for o in cell.outputs
                 if "text/markdown" in o.get("data", {}))
    assert "| running | cpu, fp32, reference loader (0 workers)" in table
    quick = MODES["quick"]
    assert "final test accuracy" in text and \
        f"on {quick['train_subset']} training images, tested on {quick['test_subset']}" in text
    metrics = json.loads((folder / "run-quick" / "metrics.json").read_text())
    assert metrics["finished"] and metrics["data"]["train_images"] == quick["train_subset"]
    assert f"final test accuracy {100 * metrics['final_test_acc']:.2f}%" in text
    assert "(`quick` mode)" in nb.cells[0].source
    assert {p.name for p in folder.glob("*.png")} >= {"curves.png", "misclassified.png", "confusion.png"}
    assert {p.name for p in folder.glob("*.png")} >= ({"class_attention.png", "attention_distance.png",
                                                      "position_similarity.png"} if "ViT" in name
                                                     else {"depthwise_kernels.png", "patch_filters.png"})


def test_missing_data_fails_in_the_settings_cell_with_one_line(tmp_path):
    with pytest.raises(UserError) as err:
        execute("ViT_with_convolution", "quick", tmp_path / "no-cifar", out=tmp_path)
    message = str(err.value)
    assert "stopped in code cell 2 of " in message  # the settings cell checks the data before any work
    assert "DataNotFound: CIFAR-10 data folder" in message and "CIFAR10_DIR" in message
    assert "\n" not in message and "Traceback" not in message
