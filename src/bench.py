"""One epoch (train + test pass) timed on the fast path (src/gpu_loader.py), on the albumentations DataLoader with
2 workers and with every core, and its training steps alone, each the median of --repeats after an untimed epoch;
and the physical floor (docs/command-line.md). --conv-vs-linear: the ConvViT against its nn.Linear twin."""
import os
import statistics
import time
from dataclasses import asdict, replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import io
from .cli import command, config_from_args, parser, result_file
from .config import resolve
from .conv_cost import conv_vs_linear, cost_table, saved_bytes
from .io import UserError
from .models import ConvViT, label
from .run import build_model, commit, datasets, hardware, image_counts, make_loaders, seed_everything
from .trainers import Engine, History, Step, adamw

# It times epochs at a constant learning rate, each data path with its own workers.
NOT_BENCH = ("trainer", "epochs", "out", "resume", "overwrite", "workers", "loader", "warmup")
# Dense bf16/fp16 tensor FLOP/s and memory bytes/s from the vendors' data sheets, by name (first match wins).
PEAKS = (("H100 PCIe", 756e12, 2.0e12), ("H100", 989e12, 3.35e12), ("H200", 989e12, 4.8e12),
         ("A100", 312e12, 2.0e12), ("L4", 121e12, 0.3e12), ("T4", 65e12, 0.32e12))


def _timed(device, work):  # seconds work() takes, the GPU's queue included
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda device: None
    sync(device)
    start = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - start


def bench(cfg, repeats=1, profile=False):
    """What src.bench writes: each path's epoch seconds (the median of `repeats`), the speed-ups, the physical floor."""
    seed_everything(cfg.seed)
    model = build_model(cfg)
    engine = Engine(model, adamw(model, cfg.lr_max, cfg.wd, cfg.decay_norms, cfg.beta2, cfg.device),
                    step=Step.of(cfg), device=cfg.device)

    def epochs(train, test, n):
        return [_timed(engine.device, lambda: (engine.train_epoch(train, 0, History()), engine.evaluate(test)))
                for _ in range(n)]

    images, cores = datasets(cfg), len(os.sched_getaffinity(0))
    fast = make_loaders(replace(cfg, loader="gpu"), *images)
    first, *rest = epochs(*fast, 1 + repeats)
    seconds = {"fast_first_epoch": first, "fast": statistics.median(rest)}
    for name, workers in (("reference_2_workers", 2), ("reference_all_cores", cores)):
        seconds[name] = statistics.median(epochs(*make_loaders(replace(cfg, loader="reference", workers=workers),
                                                               *images), 1 + repeats)[1:])
    resident = [next(iter(fast[0]))] * len(fast[0])
    seconds["floor"] = statistics.median(_timed(engine.device, lambda: engine.train_epoch(resident, 0, History()))
                                         for _ in range(repeats))
    floor = physical_floor(engine, resident[0], len(fast[0]) * cfg.batch_size, len(images[1]))
    if profile:  # where a training step's time goes, op by op: what a faster step must attack
        cuda = [torch.profiler.ProfilerActivity.CUDA] if engine.device.type == "cuda" else []  # else kineto errs
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, *cuda]) as steps:
            _timed(engine.device, lambda: engine.train_epoch(resident[:4], 0, History()))
        profile = steps.key_averages().table(sort_by=f"self_{engine.device.type}_time_total", row_limit=15)
    speedup = {"vs_2_workers": seconds["reference_2_workers"] / seconds["fast"],
               "vs_all_cores": seconds["reference_all_cores"] / seconds["fast"]}
    compile_s = max(seconds["fast_first_epoch"] - seconds["fast"], 0.0)
    at_peak = f"{floor['seconds']:.2f} s at the GPU's peak" if "seconds" in floor else "no peak known for this device"
    line = (f"{label(cfg.model, dim=cfg.dim, depth=cfg.depth)} epoch: fast {seconds['fast']:.2f} s ({cfg.precision}, "
            f"{cfg.compile_mode if cfg.compile else 'eager'}; first epoch +{compile_s:.1f} s), reference "
            f"{seconds['reference_2_workers']:.2f} s with 2 workers ({speedup['vs_2_workers']:.2f}x), "
            f"{seconds['reference_all_cores']:.2f} s with {cores} workers ({speedup['vs_all_cores']:.2f}x); training "
            f"steps alone {seconds['floor']:.2f} s; physical floor: {floor['flops'] / 1e12:.1f} TFLOP and "
            f"{floor['bytes'] / 1e9:.0f} GB per epoch, {at_peak}")
    return {"line": line, **({"profile": profile} if profile else {}), "seconds": seconds,
            "compile_seconds": compile_s, "speedup": speedup, "floor": floor, "workers_all_cores": cores,
            "repeats": repeats, "hardware": hardware(cfg.device), "torch": torch.__version__, "commit": commit(),
            "config": asdict(cfg)}


def physical_floor(engine, batch, train_images, test_images):
    """An epoch's FLOPs (a training image as three forwards: torch's counter overcounts a depth-wise convolution's
    backward), bytes (what autograd saves, written and read once) and their seconds at the GPU's peak."""
    x, y = engine._batch(*batch)
    with FlopCounterMode(display=False) as counted, engine.step.autocast(engine.device):
        saved = saved_bytes(lambda: engine.model(x))
    views = len(engine.step.views(x[:1]))
    floor = {"flops": (3 * train_images + views * test_images) * counted.get_total_flops() / len(y),
             "bytes": 2 * train_images * saved / len(y)}
    peak = next((p for p in PEAKS if p[0] in hardware(engine.device)), None)
    if peak and engine.step.precision != "fp32":
        floor["seconds"] = max(floor["flops"] / peak[1], floor["bytes"] / peak[2])
    return floor


def main(argv=None):
    p = parser("python -m src.bench", __doc__, skip=NOT_BENCH)
    p.add_argument("--repeats", type=int, default=1, help="timed epochs (steps) per path; the median is kept")
    p.add_argument("--conv-vs-linear", action="store_true", help="instead: one training step of --model (a ConvViT) "
                   "against the same network written with nn.Linear, on a random batch")
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's table of a few training steps")
    p.add_argument("--json", help="also write the timings and settings to this file")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: give at least 1")
    written = []  # what a stop (Ctrl-C, a pipe's reader gone) leaves behind
    with command(lambda: f"interrupted before the bench ended: {written[0] if written else 'nothing'} written"):
        cfg = resolve(config_from_args(argv, p))
        if args.json is not None:
            result_file("--json", args.json, [cfg.data])
        if args.conv_vs_linear:
            seed_everything(cfg.seed)
            model = build_model(cfg)
            if not isinstance(model, ConvViT):
                raise UserError(f"--conv-vs-linear: --model {cfg.model} has no 1x1 token convolutions; give --model "
                                f"vit_seed")
            result = conv_vs_linear(model, cfg.batch_size, cfg.device, args.repeats,
                                    autocast=Step.of(cfg).autocast(cfg.device))
            result["line"] = cost_table(result)
        else:
            counts = image_counts(cfg)  # a batch larger than the images refused before any is decoded
            print(f"timing {label(cfg.model, dim=cfg.dim, depth=cfg.depth)} epochs on {counts['train_images']:,} "
                  f"training and {counts['test_images']:,} test images ({cfg.data}), {cfg.device}, {cfg.precision}: "
                  f"the fast path and the reference loader, median of {args.repeats} after an untimed one", flush=True)
            result = {"data": counts, **bench(cfg, args.repeats, args.profile)}  # the listing: src.reproduce's
        if args.json is not None:
            io.write_json(args.json, result)
            written.append(args.json)
        print(result.get("profile", ""), result["line"], sep="\n" if args.profile else "", flush=True)


if __name__ == "__main__":
    main()
