"""What this machine is and can do: the device a run asks for, its precision and free memory, and
how metrics.json and the bench name the hardware and the code they ran on."""
import os
import platform
import shutil
import subprocess
from pathlib import Path

import torch

from .errors import UserError


def hardware(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                     if line.startswith("model name")), name)
    return f"CPU ({name}, {torch.get_num_threads()} threads)"


def all_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def commit():
    """The checkout's commit, "-dirty" when the code (src/, requirements.txt) differs from it; None
    outside git. Results and notebooks are left out: a run rewrites them as it goes."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10)
        # --no-optional-locks: a run killed while git refreshes the index leaves no index.lock behind
        dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no", "--",
                                "src", "requirements.txt"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def check_memory(model, name, device, shrink=("--dim", "--depth")):
    """The weights, their gradients and AdamW's two moments must fit in the device's free memory, before
    any data is read (activations come on top)."""
    need = 4 * sum(p.numel() * p.element_size() for p in model.parameters())
    free, where = free_memory(device)
    if need > free:
        raise UserError(f"--model {name}: its weights, gradients and optimizer state need {need / 2**30:.1f} GiB, "
                        f"more than the {free / 2**30:.1f} GiB free on {where}; use a smaller "
                        f"{', '.join(shrink[:-1])} or {shrink[-1]}")


def free_memory(device):
    """(bytes free, where) on the device."""
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info(torch.device(device))[0], device
    import psutil
    return psutil.virtual_memory().available, "this machine"


def check_device(name, flag="--device"):
    """The device `name` names, checked; `flag` is where the user gave it (a flag, or an environment variable)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UserError(f"{flag} {name!r}: expected cpu, cuda, cuda:N or auto")
    if device.type == "cpu":
        if device.index:
            raise UserError(f"{flag} {name}: a CPU has no index; use {flag} cpu")
        return "cpu"  # cpu:0 too: torch.load cannot map a checkpoint onto "cpu:0" (probe 19)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{flag} {name}: no CUDA GPU is available here; use {flag} cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"{flag} {name}: there are only {torch.cuda.device_count()} CUDA devices")
    return str(device)


def check_compiler(device):
    """torch.compile builds its CPU kernels with a C++ compiler, found as inductor finds it ($CXX, else g++): one
    line before any work, not inductor's page of traceback in the first epoch (probe 20)."""
    if device.startswith("cuda"):
        return
    compiler = os.environ.get("CXX") or "g++"
    if not shutil.which(compiler):
        raise UserError(f"--compile: torch.compile builds CPU kernels with a C++ compiler, and there is no "
                        f"{compiler} here{' (CXX)' if os.environ.get('CXX') else ''}: install one, or drop --compile")


def precision(precision, device):
    """On CPU everything runs in fp32 (asking for less is refused: it would do nothing); "auto" on CUDA
    is bf16 where the GPU computes it natively (Ampere and newer) and fp16 with a grad scaler
    elsewhere (a T4 in Colab)."""
    if not device.startswith("cuda"):
        if precision not in ("auto", "fp32"):
            raise UserError(f"--precision {precision}: mixed precision runs on CUDA only, and this run is on "
                            f"{device}; use --precision auto or fp32")
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.get_device_capability(torch.device(device))[0] >= 8 else "fp16"
    return precision
