"""What writing the conv-only ViT's projections as 1x1 convolutions costs against the same network
written with nn.Linear (`linear_twin`: the same weights, checked to compute the same logits first):
one training step's time and the memory it needs."""
import contextlib
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from .models.conv_vit import linear_twin


def _timed(device, work):
    """Seconds work() takes on device, the GPU's queue included."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda device: None
    sync(device)
    start = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - start


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
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    _step(model, *batch, autocast)
    torch.cuda.synchronize(device)
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
    result = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
                  batch_size=batch_size, repeats=repeats, memory_measure="peak CUDA memory allocated (both networks resident)" if device.type == "cuda"
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
