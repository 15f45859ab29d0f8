"""A run folder (src/run.py) through `python -m src.train`: one process per folder and the lock gone with
it, Ctrl-C / SIGTERM / kill -9 then an exact resume, no run replaced silently, a run finished only with its
model.pt, leftovers cleared, weights loaded without running code, the divergence guard, damaged or
other-format images and torchvision's MD5 named in one line. Real processes where processes are the point."""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import PATIENCE, cli_error, head_1, start_cli, tiny_args
from src import io
from src.cli import config_from_args
from src.config import resolve
from src.run import RunFolder, hold
from src.train import main as train
from src.trainers import TRAINERS

pytestmark = pytest.mark.usefixtures("one_thread")
# About 0.4 s an epoch alone: a signal sent once the first epoch is saved lands well before the fourth ends.
SLOW, EPOCHS = ("--dim", "32", "--depth", "2", "--patch-size", "2"), 4
STOPS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143), "SIGKILL": (signal.SIGKILL, -9)}
LEFTOVERS = ("metrics.jsona1b2c3d4.tmp", "checkpoint.ptzz_9y8x7.tmp")  # NAME + mkstemp's 8 characters + .tmp
USERS_TMP = ("notes.tmp", "my_notes.tmp", "notes.2024_01_07.tmp", "run.v2_final.tmp")  # shaped like them, a user's


def metrics(folder):
    return json.loads((Path(folder) / "metrics.json").read_text())


def ended(argv):
    """src.train's exit code in this process (None when it returned)."""
    try:
        train([str(a) for a in argv])
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def stopped(tiny_cifar, tmp_path_factory):
    """Three runs started at once, each paused (SIGSTOP) as soon as its first epoch is saved; while they hold
    their folders a second run into one is tried; then each gets its signal."""
    root = tmp_path_factory.mktemp("stopped")
    procs = {name: start_cli(*tiny_args(tiny_cifar, root / name, *SLOW, epochs=EPOCHS), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for name in STOPS}
    paused, deadline = set(), time.monotonic() + PATIENCE
    while len(paused) < len(procs) and time.monotonic() < deadline:
        for name, proc in procs.items():
            if name not in paused and (proc.poll() is not None or (io.read(root / name / "metrics.json") or {})
                                       .get("epochs_done", 0) >= 1):
                proc.send_signal(signal.SIGSTOP)  # nothing if it ended: then the tests say so
                paused.add(name)
        time.sleep(0.01)
    try:
        race = ended(tiny_args(tiny_cifar, root / "SIGKILL", *SLOW, epochs=EPOCHS))
    finally:
        for name, proc in procs.items():
            proc.send_signal(STOPS[name][0] if name in paused else signal.SIGKILL)
            proc.send_signal(signal.SIGCONT)
    return {name: SimpleNamespace(folder=root / name, rc=proc.wait(PATIENCE), stderr=proc.stderr.read(), race=race)
            for name, proc in procs.items()}


@pytest.fixture(scope="module")
def reference(tiny_cifar, tmp_path_factory, one_thread):
    """The same run, never stopped."""
    folder = tmp_path_factory.mktemp("reference") / "run"
    train(tiny_args(tiny_cifar, folder, *SLOW, epochs=EPOCHS))
    return folder


def test_a_second_run_into_a_folder_a_run_holds_is_refused_in_one_line(stopped):
    folder = stopped["SIGKILL"].folder
    assert isinstance(stopped["SIGKILL"].race, str), stopped["SIGKILL"].race
    assert stopped["SIGKILL"].race.startswith(f"error: {folder} is being written by another process")
    assert "\n" not in stopped["SIGKILL"].race


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_ends_the_run_with_one_line_saying_where_it_stopped(stopped, name):
    run = stopped[name]
    done = metrics(run.folder)["epochs_done"]
    assert run.rc == STOPS[name][1] and 1 <= done < EPOCHS, run.stderr
    assert run.stderr.strip().splitlines() == [f"interrupted after epoch {done} of {EPOCHS} (saved): continue with "
                                               f"--resume"]


@pytest.mark.parametrize("name", list(STOPS))
def test_a_stopped_or_killed_run_resumes_exactly_and_its_leftovers_go(stopped, reference, tiny_cifar, name):
    """kill -9 too: the lock went with the process. Resumed, the run ends as the run never stopped ends."""
    run = stopped[name]
    assert run.rc == STOPS[name][1] and not metrics(run.folder)["finished"]
    for leftover in (*LEFTOVERS, *USERS_TMP):
        (run.folder / leftover).write_text("half a file")
    assert ended(tiny_args(tiny_cifar, run.folder, *SLOW, "--resume", epochs=EPOCHS)) is None
    resumed, whole = metrics(run.folder), metrics(reference)
    assert resumed["finished"] and resumed["epochs_done"] == EPOCHS
    del resumed["history"]["epoch_time"], whole["history"]["epoch_time"]
    assert resumed["history"] == whole["history"]
    mine, theirs = (torch.load(f / "model.pt", weights_only=True) for f in (run.folder, reference))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert sorted(p.name for p in run.folder.glob("*.tmp")) == sorted(USERS_TMP)  # a user's: kept


@pytest.fixture
def finished(tiny_cifar, tmp_path):
    """A finished one-epoch run on a copy of the tiny data (which a test may change): (argv, folder, data)."""
    data = Path(shutil.copytree(tiny_cifar, tmp_path / "data"))
    argv = tiny_args(data, tmp_path / "run", epochs=1)
    train(argv)
    return SimpleNamespace(argv=argv, folder=tmp_path / "run", data=data,
                           files={p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()})


def _add_image(data):
    shutil.copy(data / "train/cat/0000.png", data / "train/cat/extra.png")


def _rename_image(data):
    (data / "train/cat/0000.png").rename(data / "train/cat/renamed.png")


@pytest.mark.parametrize("flags, change, said", [
    (("--seed", "1"), None, "seed: 0 then, 1 now"),
    (("--lr-max", "0.02"), None, "lr_max: 0.01 then, 0.02 now"),
    (("--workers", "1"), None, "workers: 0 then, 1 now"),  # another loader or worker count draws other batches
    ((), _add_image, "images: "),
    ((), _rename_image, "images: "),
], ids=["seed", "setting", "workers", "image-added", "image-renamed"])
def test_resume_refuses_another_seed_setting_or_data(finished, flags, change, said):
    if change:
        change(finished.data)
    line = cli_error([*finished.argv, *flags, "--resume"])
    assert line.startswith(f"error: the run in {finished.folder} was made with other settings or data") and said in line
    assert {p.name: p.read_bytes() for p in finished.folder.iterdir()} == finished.files


def test_an_existing_run_is_refused_without_resume_or_overwrite(finished):
    line = cli_error(finished.argv)
    assert line.startswith(f"error: {finished.folder} already holds a run") and "--resume" in line and \
        "--overwrite" in line
    assert {p.name: p.read_bytes() for p in finished.folder.iterdir()} == finished.files


def _damage_an_image(data):
    image = data / "test/dog/0003.png"
    image.write_bytes(image.read_bytes()[:-30])
    return f"error: image {image} is damaged"


@pytest.mark.parametrize("change", ["no data", "damaged image", "none"])
def test_overwrite_removes_the_old_run_only_once_the_new_one_has_its_data_and_model(finished, change):
    data = finished.data if change != "no data" else finished.data.parent / "nowhere"
    said = _damage_an_image(data) if change == "damaged image" else f"error: no CIFAR-10 in {data}"
    argv = [*finished.argv, "--data", data, "--seed", "1", "--overwrite"]
    if change == "none":
        assert ended(argv) is None and metrics(finished.folder)["config"]["seed"] == 1
    else:
        assert cli_error(argv).startswith(said)
        assert {p.name: p.read_bytes() for p in finished.folder.iterdir()} == finished.files


def test_a_run_is_finished_only_with_its_model(tiny_cifar, tmp_path, monkeypatch):
    """model.pt cannot be written (a full disk): the run ends in one line, and its metrics.json does not say
    "finished" (the pool would skip it, and src.evaluate look for weights that are not there)."""
    save = io.save

    def full_disk(path, obj):
        if Path(path).name == "model.pt":
            raise io.UserError(f"cannot write {path}: No space left on device (nothing was written)")
        save(path, obj)

    monkeypatch.setattr(io, "save", full_disk)
    assert cli_error(tiny_args(tiny_cifar, tmp_path / "run", epochs=1)).startswith("error: cannot write")
    assert metrics(tmp_path / "run")["finished"] is False and not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize("flags, said", [
    (("--out", "{new}"), "interrupted before the first epoch ended: nothing of this run was saved; rerun the same "
     "command"),
    (("--overwrite",), "interrupted before the first epoch ended: nothing of this run was saved, and the run it held "
     "was removed (--overwrite); rerun the same command"),
    (("--resume",), "interrupted before another epoch was saved: the run in {run} is as it was; --resume continues it"),
], ids=["new-run", "overwrite", "resume"])
def test_a_run_stopped_before_it_saved_an_epoch_says_what_became_of_its_folder(finished, flags, said, monkeypatch,
                                                                               capsys):
    def ctrl_c(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler interrupts this

    monkeypatch.setitem(TRAINERS, "onecycle", ctrl_c)  # Ctrl-C once the data and the model are there
    new = finished.folder.parent / "new"
    assert ended([*finished.argv, *(f.format(new=new) for f in flags)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == said.format(run=finished.folder)
    left = {p.name: p.read_bytes() for p in finished.folder.iterdir()}
    assert left == finished.files if "--overwrite" not in flags else not set(left) & {"model.pt", "metrics.json",
                                                                                       "checkpoint.pt"}
    assert not new.exists()  # a run that wrote nothing leaves no folder it made


def test_a_stopped_overwrite_says_whether_the_old_run_is_gone_and_to_continue_without_it(finished):
    with RunFolder(resolve(config_from_args([*finished.argv, "--overwrite"]))) as folder:
        assert folder.interrupted().endswith(", and the run it held is as it was; rerun the same command")  # untouched
        (finished.folder / "model.pt").unlink()  # the first file it removes
        assert folder.interrupted().endswith(", and the run it held was removed (--overwrite); rerun the same command")
        folder.saved = 1  # as after its first epoch
        assert folder.interrupted().endswith("(saved): continue with --resume instead of --overwrite")


def test_a_checkpoint_that_holds_only_weights_is_named_as_such(finished):
    shutil.copy(finished.folder / "model.pt", finished.folder / "checkpoint.pt")
    assert cli_error([*finished.argv, "--resume"]) == (f"error: {finished.folder / 'checkpoint.pt'} is not a training "
                                                 f"checkpoint (a model.pt's weights?): pass --overwrite to train the "
                                                 f"run again")


@pytest.mark.parametrize("damage", ["gone", "cut short"])
def test_a_finished_runs_resume_without_its_checkpoint_says_the_run_is_finished(finished, damage):
    checkpoint = finished.folder / "checkpoint.pt"
    checkpoint.unlink() if damage == "gone" else checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    line = cli_error([*finished.argv, "--resume"])  # not "pass --overwrite", which would train it again
    assert line.endswith(" its run is finished (model.pt), and needs none: nothing to continue"), line
    assert (finished.folder / "model.pt").read_bytes() == finished.files["model.pt"]


def test_a_finished_run_whose_model_pt_is_damaged_and_checkpoint_gone_is_trained_again(finished):
    (finished.folder / "checkpoint.pt").unlink()
    (finished.folder / "model.pt").write_bytes(finished.files["model.pt"][:2000])
    assert cli_error([*finished.argv, "--resume"]).endswith("continue from; pass --overwrite to train it again")
    assert cli_error([finished.folder / "model.pt", "--data", finished.data, "--device", "cpu"], "src.evaluate"
                     ).endswith("is cut short or damaged: the run's command with --overwrite trains the run again")


def test_a_stop_once_the_checkpoint_is_saved_says_the_epoch_it_saved(tiny_cifar, tmp_path, capsys):
    def ctrl_c(*args):  # stopped while its metrics.json is written, after checkpoint.pt
        raise KeyboardInterrupt
    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exc:
        patch.setattr("src.io.write_json", ctrl_c)
        train(tiny_args(tiny_cifar, tmp_path / "run"))
    assert exc.value.code == 130 and capsys.readouterr().err.strip().splitlines()[-1] == \
        "interrupted after epoch 1 of 2 (saved): continue with --resume"
    train([*tiny_args(tiny_cifar, tmp_path / "run"), "--resume"])
    assert io.read(tmp_path / "run" / "metrics.json")["finished"] is True


def test_a_reader_gone_from_the_pipe_stops_the_run_as_sigpipe_would_saying_where(tiny_cifar, tmp_path):
    code, said = head_1(*tiny_args(tiny_cifar, tmp_path / "run", epochs=30))
    assert code == 128 + signal.SIGPIPE and len(said) == 1 and said[0].startswith("interrupted "), said


@pytest.mark.parametrize("cut", [None, "model.pt", "metrics.json"])
def test_a_finished_run_resumed_trains_nothing_and_mends_only_a_file_cut_short(finished, capsys, cut):
    if cut:
        (finished.folder / cut).write_bytes(finished.files[cut][:500])
    capsys.readouterr()
    argv = [f"{a}/" if a == str(finished.data) else a for a in finished.argv]  # the data path typed otherwise
    assert train([*argv, "--resume"]) is None
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith(f"the run in {finished.folder} is already finished (test accuracy ")
    assert not any(line.startswith("training ") for line in printed)
    after = {p.name: p.read_bytes() for p in finished.folder.iterdir()}
    assert after["model.pt"] == finished.files["model.pt"] and (cut or after == finished.files)


class Code:
    """Unpickled, it would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _flip_a_weight_byte(path):
    """One byte changed inside the largest tensor's stored bytes."""
    state = torch.load(path, weights_only=True)
    tensors = state.get("model", state)
    largest = max(tensors.values(), key=torch.Tensor.numel).numpy().tobytes()
    raw = bytearray(path.read_bytes())
    at = raw.find(largest) + len(largest) // 2
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, said", [("code", "holds more than tensors and plain values (loading it could run "
                                                     "code, so it is refused)"),
                                          ("flipped", "is cut short or damaged")])
@pytest.mark.parametrize("name", ["checkpoint.pt", "model.pt"])
def test_weights_load_without_running_code_and_a_damaged_file_is_refused(finished, tiny_cifar, name, damage, said):
    path, marker = finished.folder / name, finished.folder.parent / "ran"
    if name == "checkpoint.pt":  # a stopped run's: one whose model.pt is not written yet
        (finished.folder / "model.pt").unlink()
    if damage == "code":
        torch.save({"model": Code(marker)}, path)
    else:
        _flip_a_weight_byte(path)
    argv, module = (([*finished.argv, "--resume"], "src.train") if name == "checkpoint.pt" else
                    ([path, "--data", tiny_cifar, "--device", "cpu"], "src.evaluate"))
    line = cli_error(argv, module)
    assert line.startswith(f"error: {path} {said}") and "weights_only" not in line  # torch's advice is not passed on
    assert line.endswith(": pass --overwrite to train it again" if name == "checkpoint.pt" else
                         ": delete it: the run's command with --resume writes it again from its checkpoint.pt")
    assert not marker.exists()
    if name == "model.pt":  # the advice works, however whole the zip of another object is
        path.unlink()
        assert train([*finished.argv, "--resume"]) is None and path.read_bytes() == finished.files["model.pt"]


def test_the_divergence_guard_stops_the_run_in_one_line(tiny_cifar, tmp_path):
    line = cli_error(tiny_args(tiny_cifar, tmp_path / "run", "--lr-max", "1e6", epochs=1))
    assert line.endswith("training stopped; lower --lr-max (with --overwrite)")
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize("kind", ["truncated PNG", "BMP"])
def test_a_damaged_or_other_format_image_is_named_in_one_line(tiny_cifar, tmp_path, kind):
    data = Path(shutil.copytree(tiny_cifar, tmp_path / "data"))
    if kind == "BMP":
        (data / "train/frog/0001.png").rename(data / "train/frog/0001.bmp")
        said = f"error: {data / 'train/frog/0001.bmp'}: only JPEG and PNG images are read"
    else:
        said = _damage_an_image(data)
    assert cli_error(tiny_args(data, tmp_path / "run", epochs=1)).startswith(said)


def test_a_torchvision_copy_with_another_md5_is_refused_before_any_run(tmp_path):
    from torchvision.datasets import CIFAR10
    batches = tmp_path / "tv" / CIFAR10.base_folder
    batches.mkdir(parents=True)
    for name, _ in (*CIFAR10.train_list, *CIFAR10.test_list, (CIFAR10.meta["filename"], None)):
        (batches / name).write_bytes(b"not CIFAR-10")
    line = cli_error(tiny_args(tmp_path / "tv", tmp_path / "run", epochs=1))
    assert line.startswith(f"error: {batches}/") and "MD5" in line and not (tmp_path / "run").exists()


def test_a_refused_or_stopped_run_removes_only_the_folders_it_made_not_a_run_beside_it(tiny_cifar, tmp_path):
    cfg = resolve(config_from_args(tiny_args(tiny_cifar, tmp_path / "new" / "b")))
    with RunFolder(cfg):  # it made new/ and new/b/, and stops before writing anything
        other = hold(tmp_path / "new" / "a")  # a second terminal's run, started beside it
    assert (tmp_path / "new" / "a" / ".lock").exists()  # that run's folder and lock stay
    other.release()
