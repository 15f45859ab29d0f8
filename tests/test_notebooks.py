"""The three notebooks: a papermill `parameters` cell, a set-up cell that installs before it imports the
project, committed outputs of a real run with its figures; and one executed end to end in quick mode by
`python -m src.notebook` on the real images into a temporary folder, the checkout untouched."""
import ast
import json
import re
import subprocess
import sys

import nbformat
import pytest

from helpers import PATIENCE, REPO_ROOT, cli_error, env
from src.io import UserError
from src.notebook import MODES, NOTEBOOKS, experiment, main, run_config

PARAMETERS = {"REPO_URL", "mode", "data_dir", "out", "resume", "device"}
EXECUTED = "ConvMixer_experimentation_2"


def read(path):
    return nbformat.read(path, as_version=4)


def code(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def printed(nb):
    return "".join(o.get("text", "") for cell in code(nb) for o in cell.outputs)


def figures(nb):
    """The figures the notebook saves beside its run: exp.figure("NAME.png")."""
    return set(re.findall(r'exp\.figure\("([\w.-]+\.png)"\)', "".join(cell.source for cell in code(nb))))


def check_outputs(nb, folder, mode):
    """Executed top to bottom without an error; the run it printed is the run in folder/run-MODE, with its figures."""
    nbformat.validate(nb)
    cells = [cell for cell in code(nb) if "parameters" not in cell.metadata.get("tags", [])]  # papermill's own too
    counts = [cell.execution_count for cell in cells]
    assert counts[0] is not None and counts == list(range(counts[0], counts[0] + len(cells))), counts
    errors = [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{errors[0].ename}: {errors[0].evalue}"
    assert sum("image/png" in o.get("data", {}) for cell in cells for o in cell.outputs) >= 4
    assert re.search(rf"^mode: {mode} \(", printed(nb), re.M)
    run = folder / f"run-{mode}"
    metrics = json.loads((run / "metrics.json").read_text())
    accuracy = f"{100 * metrics['final_test_acc']:.2f}%"
    assert metrics["finished"] and f"final test accuracy {accuracy}" in printed(nb)
    assert f"(`{mode}` mode" in nb.cells[0].source and f"**{accuracy}**" in nb.cells[0].source
    for name in figures(nb):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{run / name} is not a PNG"
    return metrics


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_one_parameters_cell_and_a_set_up_cell_that_installs_before_it_imports_the_project(name):
    nb = read(REPO_ROOT / name / f"{name}.ipynb")
    tagged = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code(nb)[0]
    assigned = {t.id for node in ast.parse(tagged[0].source).body for t in node.targets}
    assert assigned == PARAMETERS
    body = ast.parse(code(nb)[1].source).body
    install = next(i for i, node in enumerate(body) if "colab.install_missing()" in ast.unparse(node))
    for node in body[:install]:
        for imported in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) else []):
            assert imported.split(".")[0] in sys.stdlib_module_names or ast.unparse(node) == "from src import colab", \
                ast.unparse(node)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_set_up_cell_reads_data_dir_and_out_from_where_the_notebook_started(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT / name)  # where Jupyter starts its kernel; the cell moves to the repository root
    monkeypatch.setenv("HOME", str(tmp_path))
    scope = {"REPO_URL": "", "data_dir": "../mydata", "out": "~/runs"}
    exec(code(read(REPO_ROOT / name / f"{name}.ipynb"))[1].source, scope)
    assert (scope["data_dir"], scope["out"]) == (str(REPO_ROOT / "mydata"), str(tmp_path / "runs"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_run_src_notebook_checks_before_the_kernel_starts_is_the_one_the_notebook_makes(name, tmp_path):
    assert run_config(name, "quick", out=tmp_path).out == str(tmp_path / name / "run-quick")  # one out, three notebooks
    source = "".join(cell.source for cell in code(read(REPO_ROOT / name / f"{name}.ipynb")))
    called = re.search(r'notebook\.experiment\("(\w+)", model="(\w+)", trainer="(\w+)", recipe="(\w+)"', source)
    assert called and called.groups() == (name, *NOTEBOOKS[name].values())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_committed_notebook_carries_the_outputs_of_its_run_and_figures(name):
    nb = read(REPO_ROOT / name / f"{name}.ipynb")
    assert figures(nb) >= {"curves.png", "misclassified.png", "confusion.png"}
    check_outputs(nb, REPO_ROOT / name, "full")


def files(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def executed(cifar10_dir, tmp_path_factory):
    out, before = tmp_path_factory.mktemp("notebook"), files(REPO_ROOT / EXECUTED)
    done = subprocess.run([sys.executable, "-m", "src.notebook", EXECUTED, "--mode", "quick", "--data",
                           str(cifar10_dir), "--out", str(out)], cwd=REPO_ROOT, env=env(), capture_output=True,
                          text=True, timeout=PATIENCE)
    return done, out / EXECUTED, before


def test_a_notebook_runs_top_to_bottom_in_quick_mode_into_its_out_folder(executed):
    done, folder, before = executed
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(folder / f"{EXECUTED}.ipynb")
    metrics = check_outputs(read(folder / f"{EXECUTED}.ipynb"), folder, "quick")
    quick = MODES["quick"]
    assert (metrics["epochs_done"], metrics["data"]["train_images"], metrics["data"]["test_images"]) == \
        (quick["epochs"], quick["train_subset"], quick["test_subset"])
    assert (folder / "run-quick" / "model.pt").is_file() and metrics["data"]["source"] == "CIFAR-10, JPEG copy"
    after = files(REPO_ROOT / EXECUTED)  # the checkout untouched
    assert after == before, sorted(p for p in {*before, *after} if before.get(p) != after.get(p))


def test_a_resume_on_other_data_is_refused_before_the_kernel_and_in_the_notebooks_words(executed, quick_cifar):
    _, folder, _ = executed
    said = f"the run in {folder / 'run-quick'} was made with other settings or data"
    line = cli_error([EXECUTED, "--mode", "quick", "--data", quick_cifar, "--out", folder.parent, "--resume"],
                     "src.notebook")
    assert line.startswith(f"error: {said}") and "code cell" not in line and "--overwrite" in line
    with pytest.raises(UserError) as err:
        experiment(EXECUTED, **NOTEBOOKS[EXECUTED], mode="quick", data=str(quick_cifar), out=folder.parent,
                   resume=True)
    assert err.value._render_traceback_()[0].endswith("set resume = False to train it again")  # what the notebook shows


def test_a_copy_too_small_for_the_mode_says_so_in_the_notebook_too(tiny_cifar, tmp_path):
    with pytest.raises(UserError) as err:
        experiment(EXECUTED, **NOTEBOOKS[EXECUTED], mode="quick", data=str(tiny_cifar), out=tmp_path)
    assert err.value._render_traceback_() == [f"error: {tiny_cifar} holds 160 train images, fewer than the 256 this "
                                              f"run uses: give a fuller copy, or another mode"]


def test_a_stopped_overwrite_says_to_continue_with_resume_instead(quick_cifar, tmp_path, monkeypatch, capsys):
    run = tmp_path / EXECUTED / "run-quick"

    def stopped(*args, **kwargs):  # the new run saved its first epoch, then Ctrl-C
        run.mkdir(parents=True, exist_ok=True)
        (run / "checkpoint.pt").write_bytes(b"")
        raise KeyboardInterrupt
    monkeypatch.setattr("papermill.execute_notebook", stopped)
    with pytest.raises(SystemExit) as exc:
        main([EXECUTED, "--mode", "quick", "--data", str(quick_cifar), "--out", str(tmp_path), "--overwrite"])
    assert exc.value.code == 130 and capsys.readouterr().err.strip().endswith("replace --overwrite with --resume")


@pytest.mark.parametrize("extra, ending", [((), "error: {run} already holds a run"),
                                           (("--resume", "--overwrite"), "error: --resume and --overwrite contradict")])
def test_the_notebooks_run_is_not_replaced_silently(executed, cifar10_dir, extra, ending):
    _, folder, _ = executed
    argv = [EXECUTED, "--mode", "quick", "--data", cifar10_dir, "--out", folder.parent, *extra]
    assert cli_error(argv, "src.notebook").startswith(ending.format(run=folder / "run-quick"))
