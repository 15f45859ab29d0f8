"""Run under `torchrun --nproc_per_node 2`: trains through src.run.run on CPU with gloo and saves each
rank's final weights and history beside the run, so a test can compare the ranks."""
import json
import sys

import torch
import torch.distributed as dist

from src.config import Config
from src.run import run

data, out = sys.argv[1:3]
dist.init_process_group("gloo")
rank = dist.get_rank()
cfg = Config(model="convmixer_256_8", dim=16, depth=1, patch_size=4, epochs=2, data=data, out=out, batch_size=8,
             workers=0, device="cpu")
model, history = run(cfg)
torch.save(model.state_dict(), f"{out}/rank{rank}.pt")
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump(history.to_dict(), f)
dist.barrier()  # neither rank tears gloo down while the other still talks to it
dist.destroy_process_group()
