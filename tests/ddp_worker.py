"""Run under `torchrun --nproc_per_node 2`: trains through src.train.run on CPU with gloo and
saves each rank's final weights and history, so a test can compare the ranks.
With a fourth argument `nan-on-rank1`, rank 1 alone sees a NaN loss from its fourth batch on."""
import itertools
import json
import sys

import torch
import torch.distributed as dist
from torch import nn

from src.harness.config import Config
from src.harness.run import run

data, out, loader = sys.argv[1:4]
dist.init_process_group("gloo")
rank = dist.get_rank()
if sys.argv[4:] == ["nan-on-rank1"] and rank == 1:
    calls, loss = itertools.count(), nn.CrossEntropyLoss.forward
    nn.CrossEntropyLoss.forward = lambda self, x, y: loss(self, x, y) * (float("nan") if next(calls) >= 3 else 1)
cfg = Config(model="convmixer_256_8", dim=16, depth=1, patch_size=4, epochs=2, data=data, out=out, batch_size=8,
             workers=0 if loader == "reference" else None, device="cpu", loader=loader)
model, history = run(cfg)
torch.save(model.state_dict(), f"{out}/rank{rank}.pt")
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump(history.to_dict(), f)
dist.barrier()  # neither rank tears gloo down while the other still talks to it (once, rank 1 aborted there)
dist.destroy_process_group()
