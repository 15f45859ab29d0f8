"""src.reproduce: --plan lists every run with its minutes and the calls they fill, a notebook run made on
other data is refused before any run, and the README's results block is what the committed files give."""
import json
import math
import re


from helpers import cli_error
from src.reproduce import main


def test_plan_lists_each_run_with_its_minutes_and_the_calls_they_fill(tiny_cifar, capsys):
    assert main(["--plan", "--seeds", "0", "1", "2", "--data", str(tiny_cifar)]) is None
    *runs, total = capsys.readouterr().out.strip().splitlines()
    names = [line.split(": ")[0] for line in runs]
    assert all(re.fullmatch(r"[\w/.-]+: (\d+\.\d min|no committed run like it)", line) for line in runs), runs
    # per seed: 4 recipe runs (the baselines' seed 0 is the notebooks'), then the 3 notebooks and the bench once
    assert len(runs) == 3 * 4 + 2 * 2 + 3 + 1 and len(set(names)) == len(names)
    assert {"ConvMixer_experimentation_2/recipes/improved-seed-2", "ViT_with_convolution/recipes/baseline-seed-1",
            "ConvMixer_experimentation_2/run-full", "ConvMixer_experimentation_2/bench"} <= set(names)
    assert "ViT_with_convolution/recipes/baseline" not in names
    timed = {line.split(": ")[0]: float(line.split(": ")[1].split()[0]) for line in runs if line.endswith(" min")}
    assert "ConvMixer_experimentation_2/recipes/improved" in timed  # committed runs like it exist
    found = re.fullmatch(r"(\d+) runs, 6 at a time: about (\d+) GPU minutes, (\d+) call.*", total)
    assert found and int(found[1]) == len(runs), total
    minutes, calls = int(found[2]), int(found[3])
    assert max(timed.values()) - 0.5 <= minutes <= sum(timed.values()) + 0.5
    assert calls in {math.ceil((minutes + d) * 60 / 570) for d in (-0.5, 0.5)}, total  # calls of 570 s


def test_a_notebook_run_made_on_other_data_is_refused_before_any_run(tiny_cifar, tmp_path):
    run = tmp_path / "ConvMixer_experimentation_1" / "run-quick"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"finished": True, "config": {"data": "/elsewhere"}}))
    line = cli_error(["--quick", "--only", "notebooks", "--data", tiny_cifar, "--device", "cpu", "--out", tmp_path],
                     "src.reproduce")
    assert line.startswith(f"error: {run} holds a run that is not ConvMixer_experimentation_1/run-quick's to skip or "
                           f"continue (other data made it)")
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json"]


def test_the_readme_results_are_what_the_committed_files_give(capsys, monkeypatch):
    assert main(["--check-readme"]) is None, capsys.readouterr().out[-3000:]  # exit 0
    monkeypatch.setattr("src.reproduce.check_readme", lambda readme, base: False)  # a block that differs
    assert cli_error(["--check-readme"], "src.reproduce").startswith(
        "error: README.md: its results block differs from the result files")


def test_a_bench_of_other_sizes_is_refused_not_reported(tiny_cifar, tmp_path):
    from src.batch import portable
    bench = tmp_path / "ConvMixer_experimentation_2" / "bench"
    bench.mkdir(parents=True)
    quick = dict(data=portable(tiny_cifar), dim=32, depth=2, batch_size=16, train_subset=256, test_subset=64)
    (bench / "bench.json").write_text(json.dumps({"config": quick}))  # what --quick's bench writes
    line = cli_error(["--only", "bench", "--data", tiny_cifar, "--device", "cpu", "--out", tmp_path], "src.reproduce")
    assert line.startswith(f"error: {bench} holds a run that is not ConvMixer_experimentation_2/bench's to skip or "
                           f"continue (other flags or data made it)")
