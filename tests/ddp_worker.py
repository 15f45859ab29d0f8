"""Run under `torchrun --nproc_per_node 2`: trains through src.train.run on CPU with gloo and
saves each rank's final weights and history, so a test can compare the ranks."""
import json
import sys

import torch
import torch.distributed as dist

from src.train import Config, run

data, out, loader = sys.argv[1:4]
dist.init_process_group("gloo")
cfg = Config(model="convmixer", dim=16, depth=1, patch_size=4, epochs=2, data=data, out=out, batch_size=8,
             workers=0, device="cpu", loader=loader)
model, history = run(cfg)
rank = dist.get_rank()
torch.save(model.state_dict(), f"{out}/rank{rank}.pt")
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump(history.to_dict(), f)
dist.destroy_process_group()
