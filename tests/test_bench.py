"""`python -m src.bench`: every timing it promises, in one JSON and one line (tiny, on CPU)."""
import json

import pytest

from helpers import TINY_MODEL
from src.bench import all_cores, main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_times_every_path_and_reports_them(tiny_cifar, tmp_path, capsys):
    main([*TINY_MODEL, "--data", str(tiny_cifar), "--repeats", "2", "--json", str(tmp_path / "bench.json")])
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
