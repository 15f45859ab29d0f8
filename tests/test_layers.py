"""The layering, read from the source (ast): the study imports nothing from src but itself and src/io.py,
no module imports a command, and no file in src grows past 250 lines."""
import ast

import pytest

from helpers import REPO_ROOT

SRC = REPO_ROOT / "src"
STUDY = sorted({*SRC.glob("models/*.py"), *SRC.glob("trainers/*.py"), *(SRC / f"{name}.py" for name in (
    "data", "class_folders", "gpu_loader", "gpu_augment", "recipes", "plots", "analysis", "conv_cost"))})
COMMANDS = {"src.train", "src.evaluate", "src.bench", "src.sweep", "src.reproduce"}
MAX_LINES = 250


def module_of(path):
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def as_module(name):
    """The module a dotted name is: a package's attribute (`from . import data`) counts as its module."""
    base = REPO_ROOT.joinpath(*name.split("."))
    return name if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file() else name.rpartition(".")[0]


def src_imports(path, source=None):
    """Every src module a file imports, at any depth (function-level imports too), relative ones resolved."""
    package = module_of(path) if path.name == "__init__.py" else module_of(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source if source is not None else path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            anchor = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join(anchor + ([node.module] if node.module else []))
            found |= {as_module(f"{base}.{alias.name}") for alias in node.names}
    return {name for name in found if name == "src" or name.startswith("src.")}


def test_the_scan_resolves_relative_function_level_and_package_imports():
    engine = SRC / "trainers" / "engine.py"
    assert src_imports(engine, "def f():\n    from ..run import x\n    from . import ema\n") == {
        "src.run", "src.trainers.ema"}
    assert src_imports(SRC / "analysis.py") >= {"src.data", "src.models.conv_vit", "src.plots"}
    assert len(STUDY) == 18 and all(path.is_file() for path in STUDY)  # every study file found


@pytest.mark.parametrize("path", STUDY, ids=lambda p: str(p.relative_to(SRC)))
def test_the_study_imports_only_itself_and_io(path):
    allowed = {module_of(p) for p in STUDY} | {"src.io"}
    assert src_imports(path) <= allowed, f"{path.name} imports {sorted(src_imports(path) - allowed)}"


def test_no_module_imports_a_command():
    offenders = {module_of(path): sorted(src_imports(path) & COMMANDS) for path in SRC.rglob("*.py")}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_source_file_is_over_250_lines():
    lengths = {str(path.relative_to(SRC)): len(path.read_text().splitlines()) for path in SRC.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
