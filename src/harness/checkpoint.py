"""Checkpoints that survive a kill mid-write and load without running pickled code."""
import os
import random
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

TMP = ".tmp"
# What to do about a run's file that cannot be read (a UserError's advice, src/harness/errors.py).
REMAKE = (("--overwrite", "pass --overwrite to train the run again"),
          (None, "rerun or finish the training that writes it"))


def save(path, state):
    atomic_write(path, lambda f: torch.save(state, f))


def atomic_write(path, write, flag="--out"):
    """write(f) into a temporary file in the same folder, then rename it: readers see the old file or
    the new one, never half of one. A killed write leaves PATH*.tmp, which `remove_leftovers` clears;
    a full disk is one line naming the file, the old file kept."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=TMP)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch's zip writer wraps the OSError of a full disk
        Path(tmp).unlink(missing_ok=True)
        cause = err if isinstance(err, OSError) else err.__cause__ or err.__context__
        if not isinstance(cause, OSError):
            raise
        kept = "the previous one is kept" if path.exists() else "nothing was written"
        raise UserError(f"cannot write {path}: {cause.strerror or cause} ({kept}); free some space or choose "
                        f"another {flag}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_leftovers(folder, names):
    """The temporary files of writes that a kill interrupted (see atomic_write)."""
    for name in names:
        for leftover in Path(folder).glob(f"{name}*{TMP}"):
            leftover.unlink(missing_ok=True)


def load(path, map_location="cpu"):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        with path.open("rb") as f:
            start = f.read(4)
        if not start or start == b"PK\x03\x04" and not zipfile.is_zipfile(path):  # torch.save's zip ends with its index
            raise UserError(f"{path} is not a whole saved model or checkpoint (cut short)", REMAKE) from None
        raise UserError(f"{path} is not a readable checkpoint ({_reason(err)})", REMAKE) from None


def _reason(err):
    """One line. torch's weights-only refusal is a page of advice (including "load it with
    weights_only=False", which must never be followed for a file of unknown origin): keep its cause."""
    text = str(err).strip()
    blocked = re.search(r"GLOBAL ([\w.]+)|([\w.]+) was not an allowed global", text)
    if blocked or "Weights only load failed" in text:
        cause = f"it holds {blocked.group(1) or blocked.group(2)}" if blocked else "it holds more than tensors"
        return (f"refused by the weights-only loader: {cause}; only tensors and plain values load, no pickled code "
                f"is run")
    return text.split("\n")[0].split(". ")[0] or type(err).__name__


def check_config(source, saved, now):
    """A run continues only with the settings it was made with: name every one that differs."""
    if saved != now:
        diff = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}
        raise UserError(f"{source} was made with another configuration (key: (then, now)): {diff}; continue it with "
                        f"the same settings, or pass --overwrite or another --out")


def load_weights(model, state_dict, source="checkpoint"):
    """load_state_dict with an error that says which model the file was made for."""
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise UserError(f"{source} holds no weights (a dict of tensors): is it a model.pt written by a run?")
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(own.keys() & state_dict.keys()) if own[k].shape != state_dict[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {_few(missing)}" if missing else "", f"unexpected {_few(unexpected)}" if unexpected else "",
                 f"shape mismatch {_few(shapes)}" if shapes else ""]
        raise UserError(f"{source} does not fit this model (another model or configuration?): "
                         + "; ".join(p for p in parts if p))
    model.load_state_dict(state_dict)


def _few(items, n=3):
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def rng_state():
    """Every generator an epoch draws from, as tensors and ints (weights_only-safe)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": random.getstate()}


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
