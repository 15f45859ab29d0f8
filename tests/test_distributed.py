"""The one-cycle trainer under torchrun with DistributedDataParallel (gloo, 2 CPU processes):
each rank trains on its half, both end with the same weights, only rank 0 writes results."""
import json
import subprocess
import sys

import pytest
import torch

from helpers import PATIENCE, REPO_ROOT, cli_env

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def torchrun(*args):
    env = cli_env()
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([*TORCHRUN, str(REPO_ROOT / "tests" / "ddp_worker.py"), *map(str, args)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=PATIENCE)


@pytest.mark.parametrize("loader", ["reference", "gpu"])
def test_two_ranks_share_the_work_and_end_with_the_same_weights(tiny_cifar, tmp_path, loader):
    out = tmp_path / "run"
    done = torchrun(tiny_cifar, out, loader)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    history = json.loads((out / "rank0.json").read_text())
    # 160 training images, 80 per rank, batch 8: 10 optimizer steps per epoch on each rank
    assert len(history["batch_lr"]) == 2 * 10
    other = json.loads((out / "rank1.json").read_text())
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "batch_lr"):
        assert other[key] == history[key]  # metrics are reduced across ranks
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert done.stdout.count("[ConvMixer] Epoch:") == 2  # only rank 0 logs
    if loader == "gpu":  # launched again: rank 1 trained on while rank 0 refused, then died of it (probe 10)
        again = torchrun(tiny_cifar, out, loader)
        ending = "pass --resume to continue it, --overwrite to replace it, or another --out"
        refused = [line for line in again.stderr.splitlines() if line.endswith(ending)]
        assert again.returncode != 0 and len(refused) == 2 and "Connection closed" not in again.stderr, again.stderr


def test_a_non_finite_loss_on_one_rank_stops_every_rank(tiny_cifar, tmp_path):
    done = torchrun(tiny_cifar, tmp_path / "run", "gpu", "nan-on-rank1")
    assert done.returncode != 0
    # rank 0's loss is finite, yet it stops at the same batch instead of waiting for rank 1
    stops = [line for line in done.stderr.splitlines() if "Diverged: loss became" in line]
    assert len(stops) == 2 and all("epoch 0, batch 3" in line for line in stops), done.stderr[-3000:]
