"""How `python -m src.notebook` executes a notebook top to bottom in a kernel of this interpreter and
saves it with its outputs, the intro's paragraph on the rendered run written from the run's files."""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import psutil

from .checkpoint import write_text
from .errors import ADVICE_FLAGS, UserError

ROOT = Path(__file__).resolve().parents[2]
INTRO_RUN = re.compile(r"(<!-- rendered run -->\n).*?(\n<!-- /rendered run -->)", re.S)
SHARED_DEVICE = "SHARED_DEVICE"  # set by the scheduler for a run that other runs may share the device with


def describe(metrics, mode, command):
    """The intro's paragraph on the rendered run, from its metrics.json."""
    d, c = metrics["data"], metrics["config"]
    toy = "" if mode == "full" else (" It checks that the pipeline works end to end on real images; its accuracy "
                                     "says nothing about the 25-epoch experiment (`full` mode, on a GPU).")
    shared = (", sharing the machine with the reproduction's other runs (the README's bench times an epoch alone)"
              if os.environ.get(SHARED_DEVICE) == "1" else "")
    return (f"**This rendered run** (`{mode}` mode): {plural(metrics['epochs_done'], 'epoch')} on "
            f"{d['train_images']:,} training images of {d['source']}, tested on {d['test_images']:,}; "
            f"{metrics['hardware']}, {c['precision']}, {c['loader']} loader, batch {c['batch_size']}; "
            f"{metrics['seconds_per_epoch']:.1f} s per epoch (the first: {metrics['first_epoch_seconds']:.1f} s)"
            f"{shared}; "
            f"final test accuracy "
            f"**{100 * metrics['final_test_acc']:.2f}%** (commit {metrics['commit']}).{toy} The same run from "
            f"the command line:\n\n```bash\n{command}\n```")


@contextmanager
def kernel_manager():
    """A kernel running this interpreter: the python3 kernel if it does, else a kernelspec for
    sys.executable in a temporary folder, removed afterwards."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import KernelManager

    try:
        argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
    except (NoSuchKernel, ValueError, LookupError, TypeError, OSError):  # none, or a kernel.json damaged (probe 20)
        argv0 = None
    if argv0 and (argv0 == sys.executable or (os.path.isabs(argv0) and os.path.samefile(argv0, sys.executable))):
        yield KernelManager(kernel_name="python3")
        return
    from ipykernel.kernelspec import install
    with tempfile.TemporaryDirectory(prefix="kernelspec-") as prefix:
        install(kernel_name="this-python", prefix=prefix)
        specs = KernelSpecManager(kernel_dirs=[str(Path(prefix) / "share" / "jupyter" / "kernels")])
        yield KernelManager(kernel_name="this-python", kernel_spec_manager=specs)


def execute(name, mode, data_root=None, out=None, device=None, resume=False, timeout=1800, flags=None):
    """Run notebook NAME top to bottom; save it (in place, or to OUT/NAME/NAME.ipynb with its run
    and figures beside it) with the intro's rendered-run paragraph filled in; a failing cell's advice
    names only `flags` (the command's). Returns its path."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    source = ROOT / name / f"{name}.ipynb"
    folder = Path(out).resolve() / name if out else ROOT / name
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NOTEBOOK_MODE": mode, "NOTEBOOK_RESUME": "1" if resume else "0", "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    env.pop("NOTEBOOK_OUT", None)  # the command's --out decides, not one left in the shell for Jupyter
    if flags:
        env[ADVICE_FLAGS] = ",".join(sorted(flags))
    if out:
        env["NOTEBOOK_OUT"] = str(folder)
    if data_root:  # relative to the repository root, where the notebook works: the echoed command stays portable
        env["CIFAR10_DIR"] = os.path.relpath(Path(data_root).resolve(), ROOT)
    if device:
        env["NOTEBOOK_DEVICE"] = device
    nb = nbformat.read(source, as_version=4)
    try:
        with kernel_manager() as km:
            _execute(NotebookClient(nb, km=km, timeout=timeout, coalesce_streams=True,
                                    resources={"metadata": {"path": str(ROOT / name)}}), env)
    except CellExecutionError as err:  # the cell's own one line (a UserError shows its message), not its traceback
        code = [c for c in nb.cells if c.cell_type == "code"]
        number = next(i for i, c in enumerate(code, 1) if any(o.output_type == "error" for o in c.outputs))
        raise UserError(f"{name} stopped in code cell {number} of {len(code)}: {err.ename}: {err.evalue}") from None
    for cell in nb.cells:  # a transient progress bar leaves only blanks behind: drop them
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if o.output_type != "stream" or o.text.strip()]
    printed = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    command = re.search(r"^command line: (.*)$", printed, re.M).group(1)
    metrics = json.loads((folder / f"run-{mode}" / "metrics.json").read_text())
    paragraph = describe(metrics, mode, command)
    nb.cells[0].source = INTRO_RUN.sub(lambda m: m.group(1) + paragraph + m.group(2), nb.cells[0].source)
    path = folder / source.name
    write_text(path, nbformat.writes(nb), "--out")  # a full disk names it
    return path


def _execute(client, env):
    """client.execute in a thread of its own, where nbclient installs no signal handlers: Ctrl-C and
    SIGTERM reach the command's (one line, exit 130 or 143), which stops the kernel and all it started."""
    failed = []

    def work():
        try:
            client.execute(env=env, stderr=subprocess.DEVNULL)  # the kernel's own log; outputs come over ZMQ
        except BaseException as err:
            failed.append(err)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.NoSuchProcess:  # it ended since it was listed (the kernel's own children, say)
                pass
        raise
    if failed:
        raise failed[0]


def plural(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"
