"""How long one epoch (train + test pass) takes on each data path, in one process, on one model:

    python -m src.bench --data ../shared/cifar10-jpeg --repeats 3 --json bench.json

  fast          the whole dataset on the device (src/gpu_loader.py), the run's precision and compile
  reference     the albumentations DataLoader with 2 workers (what Colab has) and with every core
  floor         the training steps alone, on one batch already on the device: what the model costs

Every path first runs one untimed epoch (cuDNN autotuning, worker start); the fast path's first
epoch, which compiles, is reported as the compile time. Times are medians of --repeats epochs, and
the last line gives them all with the speed-ups.

`--conv-vs-linear --model vit_seed` times instead one training step of the conv-only ViT against the
same network written with nn.Linear (same weights, checked to agree first), with the memory each needs.
"""
import argparse
import contextlib
import copy
import statistics
import time
from dataclasses import asdict, replace

import torch
import torch.nn.functional as F

from .harness.config import BY_NAME, model_overrides, resolve
from .harness.cli import number, one_line, usable_path, writable_file, write_json
from .harness.errors import UserError
from .models import ConvViT, create_model, label
from .models.conv_vit import linear_twin
from .harness.machine import all_cores, commit, free_memory, hardware
from .harness.run import image_counts, make_loaders, seed_everything
from .train import config_from_parsed
from .train import parser as train_parser
from .trainers import Engine, History, Step, adamw


# It times epochs at a constant learning rate, each data path with its own workers and the original augmentation.
NOT_BENCH = ("trainer", "epochs", "out", "resume", "overwrite", "workers", "loader", "warmup", "randaugment")
# --conv-vs-linear times one training step on a random batch: the model, the batch and how it is computed.
CONV_LINEAR_USES = {"model", "dim", "depth", "patch_size", "heads", "dim_head", "mlp_dim", "dropout",
                    "emb_dropout", "batch_size", "seed", "precision", "device", "repeats", "json", "conv_vs_linear"}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device, work):
    """Seconds work() takes on device, the GPU's queue included."""
    _sync(device)
    start = time.perf_counter()
    work()
    _sync(device)
    return time.perf_counter() - start


def epoch_seconds(engine, train_loader, test_loader):
    return _timed(engine.device, lambda: (engine.train_epoch(train_loader, 0, History()), engine.evaluate(test_loader)))


def bench(cfg, repeats=1):
    """{timing: seconds} for the fast path (first epoch and median of `repeats`), the reference
    path with 2 workers and with all cores, and the training steps alone (median); cfg resolved."""
    seed_everything(cfg.seed)
    model = create_model(cfg.model, **model_overrides(cfg))
    optimizer = adamw(model, cfg.lr_max, cfg.wd, cfg.decay_norms, cfg.beta2, cfg.device)
    engine = Engine(model, optimizer, step=Step.of(cfg), device=cfg.device)
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
        _timed(engine.device, lambda: engine.train_epoch(resident, 0, History())) for _ in range(repeats))
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


# What the conv-only ViT's 1x1 convolutions cost against the same network written with nn.Linear

@contextlib.contextmanager
def _ieee_fp32():
    """cuDNN runs fp32 convolutions in TF32 by default, cuBLAS runs matmuls in full fp32: without
    this the conv model would be timed at a lower precision than its twin, and differ from it."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = before


def _step(model, images, targets, autocast):
    model.zero_grad(set_to_none=True)
    with autocast:
        loss = F.cross_entropy(model(images), targets)
    loss.backward()


def _median_seconds(networks, batch, autocast, repeats, warmup):
    """Each network's median step time. Their steps alternate, so that a change in the load of a
    shared machine hits both alike."""
    times = {name: [] for name in networks}
    for _ in range(warmup + repeats):
        for name, network in networks.items():
            times[name].append(_timed(batch[0].device, lambda: _step(network, *batch, autocast)))
    return {name: statistics.median(seconds[warmup:]) for name, seconds in times.items()}


def _memory(networks, batch, autocast, measure):
    """Each network's memory, with no gradients left over from either."""
    memory = {}
    for name, network in networks.items():
        for each in networks.values():
            each.zero_grad(set_to_none=True)
        memory[name] = measure(network, batch, autocast)
    return memory


def _saved_bytes(model, batch, autocast):
    """Bytes of the distinct storages autograd keeps for backward: the activation memory a step
    needs, which is what a CPU can report (it has no peak-memory counter)."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        _step(model, *batch, autocast)
    return sum(storages.values())


def _peak_cuda_bytes(model, batch, autocast):
    device = batch[0].device
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    _step(model, *batch, autocast)
    _sync(device)
    return torch.cuda.max_memory_allocated(device)


def _check_agreement(conv, linear, images):
    with torch.no_grad():
        ours, theirs = conv.eval()(images), linear.eval()(images)
    if not torch.allclose(ours, theirs, atol=1e-4):
        raise AssertionError(f"the conv model and its nn.Linear twin disagree on the batch: largest "
                             f"logit difference {(ours - theirs).abs().max().item():.3g} (atol 1e-4)")


def conv_vs_linear(model, batch_size, device, repeats=5, warmup=2, autocast=None):
    """Median seconds of one training step (forward + backward, train mode) of a ConvViT and of its
    nn.Linear twin on the same random batch, and the memory each needs, after checking that the two
    compute the same logits. Both run in IEEE fp32 unless `autocast` (a reusable context such as
    torch.autocast("cuda", dtype=torch.bfloat16)) says otherwise. Neither `model` nor its mode
    is changed: both networks are copies."""
    device = torch.device(device)
    conv = copy.deepcopy(model).to(device)
    linear = linear_twin(conv)
    images = torch.randn(batch_size, model.channels, model.image_size, model.image_size, device=device)
    batch = images, torch.randint(0, model.mlp_head[-1].out_features, (batch_size,), device=device)
    autocast = contextlib.nullcontext() if autocast is None else autocast
    measure = _peak_cuda_bytes if device.type == "cuda" else _saved_bytes
    with _ieee_fp32():
        _check_agreement(conv, linear, images)
        networks = dict(conv=conv.train(), linear=linear.train())
        seconds = _median_seconds(networks, batch, autocast, repeats, warmup)
        memory = _memory(networks, batch, autocast, measure)
    result = dict(device=hardware(device), batch_size=batch_size, repeats=repeats,
                  memory_measure="peak CUDA memory allocated (both networks resident)" if device.type == "cuda"
                  else "bytes saved for backward")
    result.update({name: dict(seconds=seconds[name], memory_bytes=memory[name]) for name in networks})
    result["ratio"] = result["conv"]["seconds"] / result["linear"]["seconds"]
    return result


def cost_table(result):
    """The comparison as a markdown table, with the device and batch it was measured on."""
    lines = [f"Forward + backward of one batch of {result['batch_size']} on {result['device']} "
             f"(median of {result['repeats']}); memory: {result['memory_measure']}.", "",
             "| model | ms per batch (fwd+bwd) | memory (MiB) | time / linear's |",
             "|---|---:|---:|---:|"]
    for name in ("conv", "linear"):
        row = result[name]
        ratio = row["seconds"] / result["linear"]["seconds"]
        lines.append(f"| {name} | {1000 * row['seconds']:.1f} | {row['memory_bytes'] / 2 ** 20:.1f} | {ratio:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.bench", description=__doc__, parents=[train_parser(skip=NOT_BENCH)],
                                add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=number(int, 1), default=1, help="timed epochs (steps) per path; the median "
                                                                     "is kept")
    p.add_argument("--conv-vs-linear", action="store_true", help="instead: one training step of --model (a ConvViT) "
                   "against the same network written with nn.Linear, on a random batch: time and memory")
    p.add_argument("--json", type=usable_path, help="also write the timings and settings to this file")
    args = vars(p.parse_args(argv))
    unused = sorted(k for k, v in args.items() if v != p.get_default(k) and k not in CONV_LINEAR_USES)
    if args["conv_vs_linear"] and unused:
        p.error(f"--conv-vs-linear times a random batch: {', '.join(BY_NAME[k].flag for k in unused)} would do nothing")
    repeats, json_path, linear = args.pop("repeats"), args.pop("json"), args.pop("conv_vs_linear")
    with one_line(lambda: "interrupted before every path was timed: nothing written or shown", parser=p):
        cfg = resolve(config_from_parsed(args))
        json_path = None if json_path is None else writable_file(json_path, "--json", (cfg.data,))
        if linear:
            result = conv_vs_linear_of(cfg, repeats)
            result["line"] = cost_table(result)
        else:
            image_counts(cfg)  # a batch larger than the images is refused before any data is read
            result = summary(cfg, bench(cfg, repeats), repeats)
        if json_path:
            write_json(json_path, result)
        print(result["line"], flush=True)


def conv_vs_linear_of(cfg, repeats):
    """conv_vs_linear for the configured ViT, batch and precision."""
    seed_everything(cfg.seed)
    model = create_model(cfg.model, **model_overrides(cfg))
    if not isinstance(model, ConvViT):
        raise UserError(f"--conv-vs-linear: --model {cfg.model} has no 1x1 token convolutions; give a ConvViT "
                        f"(--model vit_seed)")
    need, (free, where) = 4 * cfg.batch_size * model.channels * model.image_size ** 2, free_memory(cfg.device)
    if need > free:  # torch's overflow or allocation traceback, else (no data bounds this batch)
        raise UserError(f"--batch-size {cfg.batch_size}: its random images alone need {need / 2**30:.3g} GiB, more "
                        f"than the {free / 2**30:.1f} GiB free on {where}; give a smaller --batch-size")
    return conv_vs_linear(model, cfg.batch_size, cfg.device, repeats, autocast=Step.of(cfg).autocast(cfg.device))

if __name__ == "__main__":
    main()
