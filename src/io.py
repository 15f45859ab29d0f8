"""Files that survive a kill mid-write and load without running pickled code, and the error a user can mend."""
import contextlib
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import torch


FEWER = r", or at most \d+ with --[\w-]+"  # run.image_counts' other remedy, for commands that can take it


class UserError(ValueError):
    """A failure the user causes and can mend: the message names the setting or file and what to do."""

    def _render_traceback_(self):
        """What IPython shows instead of a traceback: a notebook's settings have no dashes, its mode fixes the sizes."""
        said = re.sub(FEWER, ", or another mode", str(self)).replace("pass --overwrite", "set resume = False")
        said = re.sub(r"(?<![\w/.-])--data\b", "data_dir", said.replace("src.train --download", "data_dir = None"))
        return ["error: " + re.sub(r"(?<![\w/.-])--([a-z][a-z-]*)", lambda m: m[1].replace("-", "_"), said)]


def atomic_write(path, write):
    """A reader sees the old file or the new one, never half of one; a full disk is one line, the old file kept."""
    path, tmp = Path(path), None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        cause = err if isinstance(err, OSError) else err.__cause__ or err.__context__  # torch wraps the OSError
        if isinstance(cause, OSError):
            kept = "the previous one is kept" if path.is_file() else "nothing was written"
            raise UserError(f"cannot write {path}: {cause.strerror or cause} ({kept})") from None
        raise


def remove_leftovers(folder):
    """Writes a kill interrupted: a file this project writes, mkstemp's 8 characters, .tmp (a user's x.tmp is kept)."""
    for leftover in Path(folder).glob("*.tmp"):
        if re.fullmatch(r".+\.(json|pt|md|png|ipynb)[a-z0-9_]{8}\.tmp", leftover.name):
            leftover.unlink(missing_ok=True)


def save(path, obj):
    atomic_write(path, lambda f: torch.save(obj, f))


def write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path, value):
    write_text(path, json.dumps(value, indent=1, allow_nan=False))  # strict JSON: a NaN is a bug, not a value


def read_json(path, mend="delete it, or rerun what writes it"):
    """The JSON object in path; one line naming the file, and `mend`, when it is not one."""
    try:
        value = json.loads(Path(path).read_text())
        if not isinstance(value, dict):
            raise ValueError(f"a {type(value).__name__}, where an object goes")
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not readable JSON ({err}): {mend}") from None
    return value


def read(path):
    """The JSON object in path, or None: no file, or a damaged one (whoever needs it refuses it, or writes it again)."""
    with contextlib.suppress(UserError):
        return read_json(path)


def load(path, map_location="cpu", mend="rerun what writes it"):
    """Weights only, so no pickled code runs; checksums first, or a changed byte would load as another weight."""
    if not whole(path):  # callers check that the file is there, to say what to give instead
        raise UserError(f"{path} is cut short or damaged: {mend}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # torch's refusal is a page of advice, including one that must never be followed
        raise UserError(f"{path} holds more than tensors and plain values (loading it could run code, so it is "
                        f"refused): {mend}") from None


def whole(path):
    """torch.save's zip is all there and every entry's checksum holds, checked without unpickling it."""
    try:
        with zipfile.ZipFile(path) as saved:
            return saved.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False
