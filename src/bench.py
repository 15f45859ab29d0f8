"""Time one epoch (train + test pass) with the reference data path and with the fast one, in the
same process, on the same model and settings; the last line compares them:

    convmixer-256/8 epoch: reference 6.31 s, fast 1.42 s, speedup 4.44x

    python -m src.bench --data ../shared/cifar10-jpeg                      # GPU, full data
    python -m src.bench --data ../shared/cifar10-jpeg --device cpu --dim 64 --depth 2 \\
        --train-subset 2048 --test-subset 512 --batch-size 128              # CPU, small

Each path first runs one untimed warm-up epoch (cuDNN autotuning, torch.compile, worker start).
"""
import argparse
import json
import time
from pathlib import Path

import torch

from .models import build_model, label
from .train import config_from_parsed, hardware, make_loaders, parser as train_parser, seed_everything
from .trainers import Engine, History


def time_epoch(engine, train_loader, test_loader):
    def sync():
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
    sync()
    start = time.perf_counter()
    engine.train_epoch(train_loader, 0, History())
    engine.evaluate(test_loader)
    sync()
    return time.perf_counter() - start


def bench(cfg, repeats=1):
    """{path: best epoch seconds over `repeats` timed epochs} for the reference and fast paths."""
    cfg = cfg.resolved()
    seconds = {}
    for loader in ("reference", "fast"):
        seed_everything(cfg.seed)
        cfg.loader = "gpu" if loader == "fast" else "reference"
        train_loader, test_loader = make_loaders(cfg)
        model = build_model(cfg.model, **cfg.model_kwargs())
        engine = Engine(model, torch.optim.AdamW(model.parameters(), lr=cfg.lr_max, weight_decay=cfg.wd),
                        cfg.device, precision=cfg.precision, channels_last=cfg.channels_last,
                        compile=cfg.compile)
        time_epoch(engine, train_loader, test_loader)
        seconds[loader] = min(time_epoch(engine, train_loader, test_loader) for _ in range(repeats))
    return seconds


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.bench", description=__doc__, parents=[train_parser()],
                                add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=1, help="timed epochs per path (the best is kept)")
    p.add_argument("--json", help="also write the timings and settings to this file")
    args = vars(p.parse_args(argv))
    repeats, json_path = args.pop("repeats"), args.pop("json")
    cfg = config_from_parsed(args).resolved()
    seconds = bench(cfg, repeats)
    ratio = seconds["reference"] / seconds["fast"]
    line = (f"{label(cfg.model, **cfg.model_kwargs())} epoch: reference {seconds['reference']:.2f} s, fast {seconds['fast']:.2f} s, "
            f"speedup {ratio:.2f}x")
    if json_path:
        Path(json_path).write_text(json.dumps({"seconds": seconds, "speedup": ratio, "line": line,
                                               "hardware": hardware(cfg.device), "torch": torch.__version__,
                                               "config": {k: str(v) for k, v in vars(cfg).items()}}, indent=1))
    print(line)


if __name__ == "__main__":
    main()
