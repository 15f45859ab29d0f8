"""src/colab.py, what a notebook's set-up cell runs in Colab: missing() reads requirements.txt as pip does
and leaves out Colab's own torch and torchvision and what is already satisfied; install_missing() runs only
in Colab, asks pip for torch and torchvision at their own versions, and says in one line when a module the
runtime already imported has changed version. Its import loads nothing that is not yet installed."""
import importlib.metadata as metadata
import subprocess
import sys
import types

import pytest

from helpers import REPO_ROOT, env
from src import colab

REQUIREMENTS = """# a comment, then a blank line

torch>=9999                 # Colab's own: never installed
torchvision==0.0.1
filelock>=1                 # satisfied
numpy>=1\t# satisfied; a tab before the comment, as pip allows
psutil>=9999
surely-not-installed-xyz==1.0
pytest>=1 ; python_version < "3"
not-installed-either>=2 ; python_version >= "3"
    # an indented comment
"""


def test_missing_reads_requirements_as_pip_does(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text(REQUIREMENTS)
    assert [(r.name, str(r.specifier)) for r in colab.missing(path)] == [
        ("psutil", ">=9999"), ("surely-not-installed-xyz", "==1.0"), ("not-installed-either", ">=2")]


def test_nothing_is_missing_where_requirements_txt_was_installed():
    assert colab.missing() == []  # CI's environment, and this one: the committed file parses, all satisfied


def test_outside_colab_nothing_is_installed(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(colab, "missing", lambda: pytest.fail("outside Colab nothing is even looked at"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip ran outside Colab"))
    assert colab.install_missing() is None


@pytest.mark.parametrize("pip_exit, changed, said", [
    (0, None, None),
    (0, "surely-not-imported-dist", None),  # a new distribution nothing imported: no restart
    (0, "filelock", "installed a newer filelock, which this runtime had already imported: restart the runtime"),
    (1, None, "pip could not install psutil>=9999"),
])
def test_in_colab_pip_installs_what_is_missing_with_torch_pinned(monkeypatch, pip_exit, changed, said):
    import filelock  # noqa: F401  imported, as a kernel that ran other cells has it
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(colab, "missing", lambda: [colab.Requirement("psutil>=9999")])
    real, calls = colab.versions(), []
    monkeypatch.setattr(colab, "versions", lambda: {**real, **({changed: "99.0"} if changed and calls else {})})

    def pip(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, pip_exit)

    monkeypatch.setattr(subprocess, "run", pip)
    if said is None:
        colab.install_missing()
    else:
        with pytest.raises(colab.RestartRuntime) as err:
            colab.install_missing()
        assert str(err.value).startswith(said) and "\n" not in str(err.value)
        assert err.value._render_traceback_() == [str(err.value)]
    [argv] = calls
    assert argv[:4] == [sys.executable, "-m", "pip", "install"] and argv[-1] == "psutil>=9999"
    assert argv[-3:-1] == [f"torch=={metadata.version('torch')}", f"torchvision=={metadata.version('torchvision')}"]


def test_importing_colab_loads_no_package_that_may_still_be_missing():
    """The set-up cell imports src.colab before anything is installed: the standard library and packaging only."""
    code = "import sys; before = set(sys.modules); from src import colab; print(*set(sys.modules) - before)"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env(), capture_output=True, text=True,
                            check=True).stdout.split()
    outside = {name.split(".")[0] for name in loaded} - set(sys.stdlib_module_names) - {"src", "packaging"}
    assert not outside, outside
