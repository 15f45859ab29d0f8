"""Installs in Colab what requirements.txt asks for, before anything imports it: standard library and packaging only."""
import importlib
import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
COLAB_HAS = {"torch", "torchvision", "ipykernel", "papermill", "pytest"}  # its CUDA builds; its Jupyter; no tests


class RestartRuntime(Exception):
    def _render_traceback_(self):  # IPython shows this line instead of a traceback
        return [str(self)]


def missing(requirements=REQUIREMENTS):
    """The requirements this Python does not satisfy, read as pip reads them, less what Colab brings."""
    wanted = []
    for line in Path(requirements).read_text().splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()  # pip's comments: # at the start or after a blank
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) in COLAB_HAS or requirement.marker and not requirement.marker.evaluate():
            continue
        try:
            if requirement.specifier.contains(metadata.version(requirement.name), prereleases=True):
                continue
        except metadata.PackageNotFoundError:
            pass
        wanted.append(requirement)
    return wanted


def versions():
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def install_missing():
    """Torch and torchvision held; an imported package keeps its old code until a restart, so one line says so."""
    wanted = "google.colab" in sys.modules and missing()
    if not wanted:
        return
    before = versions()
    held = [f"{name}=={before[name]}" for name in ("torch", "torchvision") if name in before]  # satisfied: kept
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *held, *map(str, wanted)])
    if done.returncode:
        raise RestartRuntime(f"pip could not install {', '.join(map(str, wanted))} (its message is above)")
    importlib.invalidate_caches()
    changed = {name for name, version in versions().items() if before.get(name) != version}
    modules = metadata.packages_distributions()
    stale = sorted({canonicalize_name(d) for m in sys.modules if m in modules for d in modules[m]} & changed)
    if stale:
        raise RestartRuntime(f"installed a newer {', '.join(stale)}, which this runtime had already imported: "
                             f"restart the runtime (Runtime > Restart session), then run all cells again")
