"""Checkpoints that survive a kill mid-write and load without running pickled code."""
import errno
import json
import fcntl
import math
import os
import random
import re
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

TMP = ".tmp"
CHECKPOINT_KEYS = ("epoch", "config", "model", "optimizer", "scaler", "scheduler", "ema", "history", "rng")
IMAGES = "images"  # the key of a checkpoint's config that holds the images the run trains and tests on
SCHEDULE_PROGRESS = ("last_epoch", "_step_count", "_last_lr", "_is_initial", "_get_lr_called_within_step")
OPTIMIZER_SETTINGS = ("eps", "weight_decay", "amsgrad", "maximize")  # what the config sets, besides beta2
PER_EPOCH = ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_time", "lr")  # a History's lists
# What to do about a run's file that cannot be read (a UserError's advice, src/harness/errors.py).
REMAKE = (("--overwrite", "pass --overwrite to train the run again"),
          (None, "rerun or finish the training that writes it"))


def save(path, state):
    atomic_write(path, lambda f: torch.save(state, f))


def atomic_write(path, write, flag="--out"):
    """write(f) into a temporary file in the same folder, then rename it: readers see the old file or
    the new one, never half of one. A killed write leaves PATH*.tmp, which `remove_leftovers` clears;
    a full disk is one line naming the file, the old file kept."""
    path, tmp = Path(path), None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path.name), suffix=TMP)  # a full disk may too
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch's zip writer wraps the OSError of a full disk
        _discard(tmp)
        cause = err if isinstance(err, OSError) else err.__cause__ or err.__context__
        if not isinstance(cause, OSError):
            raise
        kept = "the previous one is kept" if path.is_file() else "nothing was written"
        fix = "free some space or choose" if cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else \
            "remove the folder there, or choose" if path.is_dir() else "choose"
        raise UserError(f"cannot write {path}: {cause.strerror or cause} ({kept}); {fix} another {flag}") from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp):
    if tmp is not None:
        Path(tmp).unlink(missing_ok=True)


def write_text(path, text, flag="--out"):
    """A text file (a report, a table, a notebook) written whole or not at all; a full disk names it."""
    atomic_write(path, lambda f: f.write(text.encode(errors="surrogateescape")), flag)


def json_in(path, **options):
    """The JSON in a run's file, for its readers: one nested past Python's recursion limit is damaged JSON
    like any other (ValueError), not a RecursionError that each reader would have to expect."""
    try:
        return json.loads(Path(path).read_text(), **options)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def epochs_problem(done, epochs, finished=False):
    """Why a metrics.json's epochs_done of epochs is none a run writes (None where it is), for every reader
    of one: src.train and src.notebook, which continue runs, and the tables, which skip finished ones."""
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (done, epochs)) or not 1 <= done <= epochs:
        return f"epochs_done {done!r} of {epochs!r} epochs"
    if finished is True and done != epochs:
        return f"finished after epochs_done {done} of {epochs} epochs"
    return None


def busy(folder, lock=".lock"):
    """Another process holds the folder's lock (src/harness/run.py's RunFolder) right now."""
    try:
        fd = os.open(Path(folder) / lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _tmp_prefix(name):
    """NAME, cut where NAME, mkstemp's 8 random characters and .tmp would not fit in a file name's 255 bytes."""
    return os.fsdecode(os.fsencode(name)[:255 - 8 - len(TMP)])


def remove_leftovers(folder, names):
    """The temporary files of writes that a kill interrupted (see atomic_write); names may be patterns (*.png)."""
    for name in names:  # mkstemp's names: NAME, 8 of its random characters, .tmp; a user's other .tmp files stay
        for leftover in Path(folder).glob(f"{_tmp_prefix(name)}{'[a-z0-9_]' * 8}{TMP}"):
            leftover.unlink(missing_ok=True)


def load(path, map_location="cpu"):
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a pipe that would block the read
        raise UserError(f"{path} is not a regular file (a folder or pipe?)", REMAKE)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on what it finds (sparse tensors, say): ours to judge
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        with path.open("rb") as f:
            start = f.read(4)
        if not start or start == b"PK\x03\x04" and not zipfile.is_zipfile(path):  # torch.save's zip ends with its index
            raise UserError(f"{path} is not a whole saved model or checkpoint (cut short)", REMAKE) from None
        raise UserError(f"{path} is not a readable checkpoint ({reason(err)})", REMAKE) from None
    if zipfile.is_zipfile(path) and not whole(path):  # torch reads tensors without their checksums (probe 19)
        raise UserError(f"{path} is damaged: a checksum of its contents fails (a byte changed on the disk or in a "
                        f"copy)", REMAKE)
    return state


def whole(path):
    """torch.save's file is all there (its zip's index and every entry's checksum), checked without
    unpickling it: what src.sweep and src.reproduce ask of a run's files before they skip or continue it."""
    if not Path(path).is_file():  # a pipe would block the read
        return False
    try:
        with zipfile.ZipFile(path) as saved:
            return saved.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def reason(err):
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
        edited = next((k for k, (then, value) in diff.items() if _other_type(then, value)), None)
        if edited:  # its flag would read the same as the one given: advice to give it would go round in a loop
            raise UserError(f"{source} records {edited} as {diff[edited][0]!r}, which no flag gives (an edited "
                            f"file?)", (("--overwrite", "pass --overwrite"), ("--out", "give another --out")))
        then = ", ".join(_as_flag(k, then) for k, (then, _) in diff.items())
        raise UserError(f"{source} was made with another configuration (key: (then, now)): {diff}", (
            (tuple("--" + k.replace("_", "-") for k in diff), f"continue it as it was made ({then})"),
            ("--overwrite", "pass --overwrite"), ("--out", "give another --out")))


def _other_type(then, now):
    """A recorded value of another JSON type than the value given ('32' for 32): this code never writes one."""
    numbers = (int, float)
    return None not in (then, now) and type(then) is not type(now) and not (
        type(then) in numbers and type(now) in numbers)


def _as_flag(name, value):
    """The command-line words that give option `name` this value."""
    flag = "--" + name.replace("_", "-")
    if value is None or value is False:
        return f"--no-{flag[2:]}" if value is False else f"without {flag}"
    return flag if value is True else f"{flag} {' '.join(map(str, value)) if isinstance(value, list) else value}"


def check_state(path, state, config, epochs=None, batches=None):
    """The epoch a training checkpoint (Engine.save_checkpoint's) was saved after, once it is checked to be
    one that a run of `config`, `epochs` epochs of `batches` batches, continues; else one line naming it."""
    if not isinstance(state, dict):
        raise damaged(path, f"it holds {type(state).__name__}, not a checkpoint")
    missing = sorted(set(CHECKPOINT_KEYS) - set(state))
    if missing:
        raise UserError(f"checkpoint {path} lacks {', '.join(missing)}: not a training checkpoint of this "
                        f"project (model.pt holds weights only); start afresh with --overwrite")
    epoch, history = state["epoch"], state["history"]
    if not isinstance(state["config"], dict) or not isinstance(history, dict):
        raise damaged(path, "its config or history is not a dict")
    saved, now = ({k: v for k, v in c.items() if k != IMAGES} for c in (state["config"], config))
    check_config(f"checkpoint {path}", saved, now)
    changed = changed_images(state["config"].get(IMAGES), config.get(IMAGES))
    if changed:  # also where metrics.json, which records them too, is gone
        raise UserError(f"--data {config.get('data')} holds other images than when {path} was saved "
                        f"({'; '.join(changed)}): restore them, or pass --overwrite to train the run again")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch < (epochs or math.inf):
        raise damaged(path, f"epoch {epoch!r}, not one of the run's {epochs or 'many'} epochs")
    if any(not isinstance(history.get(k), list) or len(history[k]) != epoch + 1 for k in PER_EPOCH):
        raise damaged(path, f"its history is not that of {epoch + 1} epochs")
    if not all(_finite(x) for k in (*PER_EPOCH, "batch_lr") for x in history.get(k) or ()):
        raise damaged(path, "its history holds values that are not finite numbers")
    steps = history.get("batch_lr")
    if batches and (not isinstance(steps, list) or len(steps) != (epoch + 1) * batches):
        then = f"{len(steps) / (epoch + 1):g}" if isinstance(steps, list) else "?"
        raise damaged(path, f"its epochs had {then} batches, this run's have {batches}: other data, batch size or "
                            f"processes")
    return epoch


def changed_images(then, now):
    """What differs between two runs' image counts and listings (src/harness/run.py's image_counts), in
    words; nothing where `then` was not recorded (older runs) or is not a dict (an edited file)."""
    if not isinstance(then, dict) or not isinstance(now, dict):
        return []
    return [f"{k.replace('_', ' ')} {then[k]} then, {n} now" if "listing" not in k else
            f"{k.split('_')[0]} images renamed, added, removed or moved between classes"
            for k, n in now.items() if k in then and then[k] != n]


def check_optimizer(path, optimizer, fresh):
    """After loading: the optimizer's settings must be those the run's config gave it (`fresh`: its
    param_groups before loading), and its moments finite and shaped like the weights."""
    for group, then in zip(optimizer.param_groups, fresh):
        betas = group.get("betas")  # beta1 is the schedule's (OneCycleLR cycles it), beta2 the config's
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and _finite(betas[0]) and 0 <= betas[0] < 1
                and betas[1] == then["betas"][1]):
            raise damaged(path, f"its optimizer's betas is {betas!r}, this run's {then['betas']!r}")
        for key in OPTIMIZER_SETTINGS:
            if key in then and group.get(key) != then[key]:
                raise damaged(path, f"its optimizer's {key} is {group.get(key)!r}, this run's {then[key]!r}")
        if not _finite(group.get("lr")):  # below 0 after the last step: OneCycleLR steps once past its end
            raise damaged(path, f"its learning rate is {group.get('lr')!r}")
        for weight in group["params"]:
            for key, value in optimizer.state.get(weight, {}).items():
                fits = torch.is_tensor(value) and (value.numel() == 1 and value.item() >= 1 if key == "step"
                                                   else value.shape == weight.shape)
                if not fits or not torch.isfinite(value).all():
                    raise damaged(path, f"its optimizer's {key} does not fit the weights, or is not finite")


def check_schedule(path, now, fresh, steps, lrs):
    """After loading: the learning-rate schedule is the run's own (`fresh`: its state before loading),
    `steps` optimizer steps into it, as the history says, and the optimizer's rates `lrs` are the ones
    it set last (the next step uses them)."""
    for key, value in fresh.items():
        if key not in SCHEDULE_PROGRESS and now.get(key) != value:
            raise damaged(path, f"its learning-rate schedule's {key} is not this run's")
    if now.get("last_epoch") != steps:
        raise damaged(path, f"its schedule is at step {now.get('last_epoch')!r}, its history at step {steps}")
    if now.get("_last_lr") != lrs:
        raise damaged(path, f"its optimizer's learning rate {lrs!r} is not its schedule's {now.get('_last_lr')!r}")


def _finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def damaged(path, why):
    return UserError(f"{path} is not a checkpoint this run can continue from ({why})", REMAKE)


@contextmanager
def refused(path):
    """Loading a checkpoint's states: what torch refuses (a state of another shape) is one line naming it."""
    try:
        yield
    except (torch.OutOfMemoryError, UserError):  # a UserError names the file already
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError) as err:
        raise damaged(path, reason(err)) from None


def check_weights(state_dict, source):
    """A dict of plain tensors (not sparse, say), all finite: what a run's model.pt holds."""
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) and v.layout == torch.strided
                                                   for v in state_dict.values()):
        raise UserError(f"{source} holds no weights (a dict of dense tensors): is it a model.pt written by a run?")
    check_finite(state_dict, source)


def load_weights(model, state_dict, source="checkpoint"):
    """load_state_dict with an error that says which model the file was made for."""
    check_weights(state_dict, source)
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    both = sorted(own.keys() & state_dict.keys())
    shapes = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in both if own[k].shape != state_dict[k].shape]
    kinds = [f"{k}: file {state_dict[k].dtype} vs model {own[k].dtype}"  # integers would load as floats, silently
             for k in both if own[k].is_floating_point() != state_dict[k].is_floating_point()]
    if missing or unexpected or shapes or kinds:
        parts = [f"missing {_few(missing)}" if missing else "", f"unexpected {_few(unexpected)}" if unexpected else "",
                 f"shape mismatch {_few(shapes)}" if shapes else "", f"type mismatch {_few(kinds)}" if kinds else ""]
        raise UserError(f"{source} does not fit this model (another model or configuration?): "
                         + "; ".join(p for p in parts if p))
    model.load_state_dict(state_dict)


def check_finite(state_dict, source):
    """A diverged or damaged run's weights would train or test on NaN."""
    broken = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise UserError(f"{source} holds weights that are not finite ({_few(broken)})", REMAKE)


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
    """Generator states must be CPU tensors, wherever the checkpoint was loaded to (a resumed CUDA run
    loads it onto the GPU)."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([generator.cpu() for generator in state["cuda"]])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def stamps(out, names):
    """{name: (inode, mtime)} of the run files in out (a file replaced or rewritten changes its stamp)."""
    found = {}
    for name in names if out else ():
        try:
            info = (Path(out) / name).stat()
            found[name] = (info.st_ino, info.st_mtime_ns)
        except (OSError, TypeError, ValueError):
            pass
    return found


def fate(out, then, now):
    """What became of the run out held before a command was stopped, from its files' stamps then and now,
    as the end of its line: ', and the run OUT held is kept as it was' or '... was removed'; '' if none."""
    if not then:
        return ""
    kept = all(now.get(name) == stamp for name, stamp in then.items())
    return f", and the run {out} held {'is kept as it was' if kept else 'was removed'}"
