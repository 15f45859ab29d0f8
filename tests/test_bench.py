"""`python -m src.bench` on tiny settings on the CPU: every data path timed, the speed-ups and the
physical floor (FLOPs and bytes) in one JSON and one line; --conv-vs-linear times the ViT both ways."""
import json
import signal

import pytest

from helpers import TINY, cli_error, head_1
from src.bench import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_times_every_path_the_speedups_and_the_floor(tiny_cifar, tmp_path, capsys):
    main([*TINY, "--data", str(tiny_cifar), "--json", str(tmp_path / "bench.json")])
    result = json.loads((tmp_path / "bench.json").read_text())
    seconds, speedup = result["seconds"], result["speedup"]
    assert set(seconds) == {"fast_first_epoch", "fast", "reference_2_workers", "reference_all_cores", "floor"}
    assert all(s > 0 for s in seconds.values())
    assert speedup["vs_2_workers"] == pytest.approx(seconds["reference_2_workers"] / seconds["fast"])
    assert speedup["vs_all_cores"] == pytest.approx(seconds["reference_all_cores"] / seconds["fast"])
    assert result["floor"]["flops"] > 0 and result["floor"]["bytes"] > 0
    assert "seconds" not in result["floor"]  # no peak known for a CPU: no time at the peak claimed
    assert result["hardware"].startswith("CPU") and result["config"]["dim"] == 16
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("timing ConvMixer-16/1 epochs on 160 training and 40 test images (") and \
        printed[0].endswith("cpu, fp32: the fast path and the reference loader, median of 1 after an untimed one")
    assert printed[-1] == result["line"] and result["data"]["train_listing"]  # src.reproduce compares the listing


def test_a_diverging_bench_advises_what_the_bench_can_take(tiny_cifar):
    line = cli_error([*TINY, "--data", str(tiny_cifar), "--lr-max", "1e6"], "src.bench")
    assert line.endswith("training stopped; lower --lr-max")


def test_conv_vs_linear_times_the_vit_both_ways(tmp_path, capsys):
    main(["--conv-vs-linear", "--model", "vit_seed", "--dim", "32", "--depth", "1", "--heads", "2", "--dim-head", "16",
          "--mlp-dim", "32", "--batch-size", "4", "--device", "cpu", "--json", str(tmp_path / "cost.json")])
    result = json.loads((tmp_path / "cost.json").read_text())
    assert result["conv"]["seconds"] > 0 and result["linear"]["seconds"] > 0
    assert result["ratio"] == pytest.approx(result["conv"]["seconds"] / result["linear"]["seconds"])
    assert capsys.readouterr().out.strip() == result["line"] and "| conv |" in result["line"]
    assert cli_error(["--conv-vs-linear", "--device", "cpu"], "src.bench").startswith(
        "error: --conv-vs-linear: --model convmixer_256_8 has no 1x1 token convolutions")


def test_profile_prints_where_a_steps_time_goes(tiny_cifar, tmp_path, capsys):
    main([*TINY, "--data", str(tiny_cifar), "--profile", "--json", str(tmp_path / "bench.json")])
    profile = json.loads((tmp_path / "bench.json").read_text())["profile"]
    assert "aten::convolution_backward" in profile and "Self CPU" in profile
    assert profile in capsys.readouterr().out


def test_a_reader_gone_after_the_first_line_leaves_the_timings_written(tiny_cifar, tmp_path):
    code, said = head_1(*TINY, "--data", tiny_cifar, "--json", tmp_path / "bench.json", module="src.bench")
    assert code == 128 + signal.SIGPIPE and json.loads((tmp_path / "bench.json").read_text())["seconds"]["fast"] > 0
    assert said == [f"interrupted before the bench ended: {tmp_path / 'bench.json'} written"]
