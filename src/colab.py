"""What a notebook's set-up cell runs in Colab: install what requirements.txt asks for and the runtime lacks,
before anything imports it, never touching Colab's own torch and torchvision. Standard library and
`packaging` only: it runs before the requirements are there."""
import importlib
import importlib.metadata as metadata
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
# Colab's torch and torchvision are built for its CUDA; its Jupyter runs the notebook; tests run elsewhere.
COLAB_HAS = {"torch", "torchvision", "ipykernel", "papermill", "pytest"}


class RestartRuntime(Exception):
    def _render_traceback_(self):  # IPython shows this line instead of a traceback
        return [str(self)]


def missing(requirements=REQUIREMENTS):
    """The requirements this Python does not satisfy (comments, blank lines and markers read as pip
    reads them), less what Colab brings."""
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
    """In Colab: pip-install what is missing, torch and torchvision held at their versions. A package the
    kernel has already imported keeps its old code until the runtime restarts: then one line says so."""
    wanted = "google.colab" in sys.modules and missing()
    if not wanted:
        return
    before = versions()
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as pins:
        pins.write("".join(f"{name}=={before[name]}\n" for name in ("torch", "torchvision") if name in before))
        pins.flush()
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", pins.name, *map(str, wanted)])
    if done.returncode:
        raise RestartRuntime(f"pip could not install {', '.join(map(str, wanted))} (its message is above)")
    importlib.invalidate_caches()
    changed = {name for name, version in versions().items() if before.get(name) != version}
    modules = metadata.packages_distributions()
    stale = sorted({canonicalize_name(d) for m in sys.modules if m in modules for d in modules[m]} & changed)
    if stale:
        raise RestartRuntime(f"installed a newer {', '.join(stale)}, which this runtime had already imported: "
                             f"restart the runtime (Runtime > Restart session), then run all cells again")
