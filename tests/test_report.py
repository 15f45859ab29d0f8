"""src/report.py on synthetic metrics.json files: runs that differ only in their seed are one group, a
comparison decides nothing on single runs, "no difference" within the seeds' spread and above/below beyond
it; a file that is not a run's is refused in one line; the README block is generated and checked."""
import json
import re

import pytest

from src.io import UserError
from src.report import BEGIN, END, compare, groups, load_run, readme_block, runs_table


def write_run(folder, test, seed=0, recipe="baseline"):
    m = {"finished": True, "epochs_done": 25, "final_test_acc": test, "final_train_acc": 0.9, "seconds_per_epoch": 9.0,
         "first_epoch_seconds": 30.0, "hardware": "NVIDIA H200", "commit": "abc1234",
         "model": {"name": "convmixer_256_8", "label": "ConvMixer-256/8", "parameters": 594186,
                   "hyper_parameters": {"dim": 256, "depth": 8, "kernel_size": 5, "patch_size": 2}},
         "data": {"train_images": 50000, "test_images": 10000, "source": "CIFAR-10, JPEG copy"},
         "config": {"model": "convmixer_256_8", "trainer": "onecycle", "recipe": recipe, "loader": "gpu",
                    "precision": "bf16", "batch_size": 512, "epochs": 25, "seed": seed, "data": "/data/cifar10",
                    "out": str(folder), "workers": None}}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(m))
    return folder / "metrics.json"


def group(base, name, accuracies, recipe="baseline"):
    """One setting run with seeds 0, 1, ...: NAME, NAME-seed-1, ... (as src.batch.seeded names them)."""
    runs = [load_run(write_run(base / (name if s == 0 else f"{name}-seed-{s}"), acc, s, recipe))
            for s, acc in enumerate(accuracies)]
    (found,) = groups(runs)
    return found


def test_runs_that_differ_only_in_their_seed_are_one_group(tmp_path):
    paths = [write_run(tmp_path / "b-seed-1", 0.81, 1), write_run(tmp_path / "c", 0.9, 0, "improved"),
             write_run(tmp_path / "b", 0.80, 0)]
    found = groups([load_run(p) for p in paths])
    assert [[(r["path"].parent.name, r["seed"]) for r in g] for g in found] == [[("b", 0), ("b-seed-1", 1)],
                                                                                [("c", 0)]]
    table = "\n".join(runs_table([load_run(p) for p in paths], tmp_path))
    assert "| [b](b) · [seed 1](b-seed-1) |" in table and "| 80.50 ± 0.71% (n=2) |" in table


def test_a_seed_run_twice_alike_is_not_counted_twice(tmp_path):
    paths = [write_run(tmp_path / "b", 0.80, 0), write_run(tmp_path / "b-seed-1", 0.81, 1),
             write_run(tmp_path / "d-seed-1", 0.50, 1)]  # on a CPU, baseline and baseline-reference-loader are alike
    found = groups([load_run(p) for p in paths])
    assert [[r["path"].parent.name for r in g] for g in found] == [["b", "b-seed-1"], ["d-seed-1"]]


@pytest.mark.parametrize("a, b, verdict", [
    ([0.80], [0.70], "undecided: single runs have no spread"),
    ([0.80, 0.70], [0.70], "undecided: single runs have no spread"),
    ([0.80, 0.82], [0.78, 0.80], "no difference"),  # 2 points apart, within the sum of the spreads (1.4 + 1.4)
    ([0.90, 0.91], [0.80, 0.81], "above"),
    ([0.80, 0.81], [0.90, 0.91], "below"),
])
def test_compare_decides_only_beyond_the_seeds_spread(tmp_path, a, b, verdict):
    said, found = compare(group(tmp_path, "a", a, "improved"), group(tmp_path, "b", b))
    assert found == verdict
    assert said.startswith(f"{100 * (sum(a) / len(a) - sum(b) / len(b)):+.2f} points (")


@pytest.mark.parametrize("change, said", [({"final_test_acc": None}, "is not a run's metrics.json"),
                                          ({"model": {}}, "is not a run's metrics.json (KeyError")])
def test_a_file_that_is_not_a_runs_metrics_is_refused_in_one_line(tmp_path, change, said):
    path = write_run(tmp_path / "run", 0.5)
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(UserError) as err:
        load_run(path)
    assert str(err.value).startswith(str(path)) and said in str(err.value) and "\n" not in str(err.value)


def test_the_readme_block_is_generated_from_the_files_and_checked(tmp_path, capsys):
    write_run(tmp_path / "ConvMixer_experimentation_2" / "run-full", 0.8842)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{BEGIN}\ntyped by hand: 99.99%\n{END}\n\nThe rest.\n")
    with pytest.raises(UserError, match="its results block differs from the result files"):
        readme_block(readme, tmp_path, check=True)
    readme_block(readme, tmp_path)
    text = readme.read_text()
    assert text.startswith(f"# Title\n\n{BEGIN}\n") and text.endswith(f"{END}\n\nThe rest.\n")
    assert "88.42%" in text and "99.99%" not in text and readme_block(readme, tmp_path, check=True) is None
    capsys.readouterr()
    readme.write_text(text.replace("88.42%", "88.43%"))
    with pytest.raises(UserError):
        readme_block(readme, tmp_path, check=True)
    diff = capsys.readouterr().out
    assert re.search(r"^-.*88\.43%", diff, re.M) and re.search(r"^\+.*88\.42%", diff, re.M)
