"""`python -m src.bench`: every timing it promises, in one JSON and one line (tiny, on CPU)."""
import json

import pytest
import torch
from torch import nn

from helpers import TINY_BENCH
from src import bench
from src.bench import all_cores, main
from src.models import create_model
from src.models.conv_vit import Conv1x1, linear_twin

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_times_every_path_and_reports_them(tiny_cifar, tmp_path, capsys):
    main([*TINY_BENCH, "--data", str(tiny_cifar), "--repeats", "2", "--json", str(tmp_path / "bench.json")])
    result = json.loads((tmp_path / "bench.json").read_text())
    seconds = result["seconds"]
    assert set(seconds) == {"fast_first_epoch", "fast", "reference_2_workers", "reference_all_cores", "floor"}
    assert all(s > 0 for s in seconds.values())
    assert result["speedup"]["vs_2_workers"] == pytest.approx(seconds["reference_2_workers"] / seconds["fast"])
    assert result["workers_all_cores"] == all_cores() and result["repeats"] == 2
    assert result["compile_seconds"] >= 0 and result["hardware"].startswith("CPU")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == result["line"] and line.startswith("ConvMixer-16/1 epoch: fast ")
    assert f"with {all_cores()} workers, one per core (" in line and "training steps alone" in line


@pytest.fixture
def vit():
    torch.manual_seed(0)
    return create_model("vit_seed", dim=32, depth=2, heads=2, dim_head=16, mlp_dim=32)


def test_conv_vs_linear_times_both_and_reports_the_ratio(vit):
    vit.train()
    result = bench.conv_vs_linear(vit, batch_size=4, device="cpu", repeats=2, warmup=1)
    assert vit.training and any(isinstance(m, Conv1x1) for m in vit.modules())
    for name in ("conv", "linear"):
        assert result[name]["seconds"] > 0 and result[name]["memory_bytes"] > 0
    assert result["ratio"] == pytest.approx(result["conv"]["seconds"] / result["linear"]["seconds"])
    assert result["memory_measure"] == "bytes saved for backward" and result["device"].startswith("CPU")
    table = bench.cost_table(result)
    assert result["device"] in table and "batch of 4" in table
    assert f"| conv | {1000 * result['conv']['seconds']:.1f} |" in table
    assert table.splitlines()[-1].endswith("| 1.00 |")


def test_conv_vs_linear_checks_agreement_before_timing(vit, monkeypatch):
    calls = []

    class Disagreeing(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            calls.append(self.training)
            return self.model(x) + 1e-3

    monkeypatch.setattr(bench, "linear_twin", lambda model: Disagreeing(linear_twin(model)))
    with pytest.raises(AssertionError, match="disagree"):
        bench.conv_vs_linear(vit, batch_size=2, device="cpu", repeats=1, warmup=0)
    assert calls == [False]  # the one eval-mode check, no training step


def test_conv_vs_linear_from_the_command_line(tmp_path, capsys):
    main(["--conv-vs-linear", "--model", "vit_seed", "--dim", "32", "--depth", "1", "--heads", "2", "--dim-head", "16",
          "--mlp-dim", "32", "--batch-size", "4", "--device", "cpu", "--json", str(tmp_path / "cost.json")])
    result = json.loads((tmp_path / "cost.json").read_text())
    assert capsys.readouterr().out.strip() == result["line"] and "| conv |" in result["line"]
    assert result["conv"]["seconds"] > 0 and result["device"].startswith("CPU")
    with pytest.raises(SystemExit) as exc:
        main(["--conv-vs-linear", "--device", "cpu"])
    assert exc.value.code == ("error: --conv-vs-linear: --model convmixer_256_8 has no 1x1 token convolutions; give "
                              "a ConvViT (--model vit_seed)")
