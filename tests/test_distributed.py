"""The trainer under torchrun with DistributedDataParallel (gloo, two CPU processes): each rank trains on
its half, both end with the same weights and metrics, only rank 0 writes the run and prints."""
import json
import subprocess
import sys

import torch

from helpers import PATIENCE, REPO_ROOT, env


def test_two_ranks_share_the_work_and_end_with_the_same_weights(tiny_cifar, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(REPO_ROOT / "tests" / "ddp_worker.py"), str(tiny_cifar), str(out)], cwd=REPO_ROOT,
                          env=env(), capture_output=True, text=True, timeout=PATIENCE)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    saved = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(ranks[0][k], ranks[1][k]) and torch.equal(ranks[0][k], saved[k]) for k in saved)
    histories = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    del histories[0]["epoch_time"], histories[1]["epoch_time"]
    assert histories[0] == histories[1]  # the metrics are reduced over the ranks
    assert len(histories[0]["batch_lr"]) == 2 * 10  # 160 images, 80 a rank, batch 8: 10 steps an epoch
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["finished"] and metrics["data"]["train_images"] == 160
    assert done.stdout.count("[ConvMixer] Epoch:") == 2  # rank 0 alone prints
