"""How long one epoch (train + test pass) takes on each data path, in one process, on one model:

    python -m src.bench --data ../shared/cifar10-jpeg --repeats 3 --json bench.json

  fast          the whole dataset on the device (src/gpu_loader.py), the run's precision and compile
  reference     the albumentations DataLoader with 2 workers (what Colab has) and with every core
  floor         the training steps alone, on one batch already on the device: what the model costs

Every path first runs one untimed epoch (cuDNN autotuning, worker start); the fast path's first
epoch, which compiles, is reported as the compile time. Times are medians of --repeats epochs.
The last line says it all:

    ConvMixer-256/8 epoch: fast 1.42 s (bf16, compiled; first epoch +35.1 s), reference 6.31 s with
    2 workers (4.44x), 2.63 s with 4 workers, one per core (2.40x); training steps alone 1.24 s
"""
import argparse
import json
import statistics
import time
from dataclasses import asdict, replace

import torch

from .harness.config import model_overrides, resolve
from .harness.cli import number, one_line, writable_file
from .models import create_model, label
from .harness.machine import all_cores, commit, hardware
from .harness.run import image_counts, make_loaders, seed_everything
from .train import config_from_parsed
from .train import parser as train_parser
from .trainers import Engine, History, Step, adamw


def _synced(engine, work):
    def sync():
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
    sync()
    start = time.perf_counter()
    work()
    sync()
    return time.perf_counter() - start


def epoch_seconds(engine, train_loader, test_loader):
    return _synced(engine, lambda: (engine.train_epoch(train_loader, 0, History()), engine.evaluate(test_loader)))


def bench(cfg, repeats=1):
    """{timing: seconds} for the fast path (first epoch and median of `repeats`), the reference
    path with 2 workers and with all cores, and the training steps alone (median); cfg resolved."""
    seed_everything(cfg.seed)
    model = create_model(cfg.model, **model_overrides(cfg))
    engine = Engine(model, adamw(model, cfg.lr_max, cfg.wd, device=cfg.device), step=Step.of(cfg), device=cfg.device)
    median = lambda loaders: statistics.median(epoch_seconds(engine, *loaders) for _ in range(repeats))  # noqa: E731

    fast = make_loaders(replace(cfg, loader="gpu", randaugment=None))
    seconds = {"fast_first_epoch": epoch_seconds(engine, *fast), "fast": median(fast)}
    for name, workers in (("reference_2_workers", 2), ("reference_all_cores", all_cores())):
        reference = make_loaders(replace(cfg, loader="reference", workers=workers))
        epoch_seconds(engine, *reference)
        seconds[name] = median(reference)
    batch = next(iter(fast[0]))
    resident = [batch] * len(fast[0])
    seconds["floor"] = statistics.median(
        _synced(engine, lambda: engine.train_epoch(resident, 0, History())) for _ in range(repeats))
    return seconds


def summary(cfg, seconds, repeats):
    cores = all_cores()
    speedup = {"vs_2_workers": seconds["reference_2_workers"] / seconds["fast"],
               "vs_all_cores": seconds["reference_all_cores"] / seconds["fast"]}
    compile_s = max(seconds["fast_first_epoch"] - seconds["fast"], 0.0)
    line = (f"{label(cfg.model, **model_overrides(cfg))} epoch: fast {seconds['fast']:.2f} s "
            f"({cfg.precision}, {'compiled' if cfg.compile else 'eager'}; first epoch +{compile_s:.1f} s), "
            f"reference {seconds['reference_2_workers']:.2f} s with 2 workers ({speedup['vs_2_workers']:.2f}x), "
            f"{seconds['reference_all_cores']:.2f} s with {cores} workers, one per core "
            f"({speedup['vs_all_cores']:.2f}x); "
            f"training steps alone {seconds['floor']:.2f} s")
    return {"line": line, "seconds": seconds, "compile_seconds": compile_s, "speedup": speedup,
            "workers_all_cores": cores, "repeats": repeats, "hardware": hardware(cfg.device),
            "torch": torch.__version__, "commit": commit(), "config": asdict(cfg)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.bench", description=__doc__, parents=[train_parser()],
                                add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=number(int, 1), default=1, help="timed epochs per path (the median is kept)")
    p.add_argument("--json", help="also write the timings and settings to this file")
    args = vars(p.parse_args(argv))
    repeats, json_path = args.pop("repeats"), args.pop("json")
    with one_line():
        cfg = resolve(config_from_parsed(args))
        image_counts(cfg)  # a batch larger than the images is refused before any data is read
        json_path = json_path and writable_file(json_path, "--json")
        result = summary(cfg, bench(cfg, repeats), repeats)
        if json_path:
            json_path.write_text(json.dumps(result, indent=1))
        print(result["line"], flush=True)

if __name__ == "__main__":
    main()
