"""What writing the conv-only ViT's projections as 1x1 convolutions costs against the same network
written with nn.Linear (`linear_twin`: the same weights, checked to compute the same logits first):
one training step's time and the memory it needs."""
import contextlib
import copy

import torch
import torch.nn.functional as F
from torch.utils import benchmark

from .models.conv_vit import linear_twin


@contextlib.contextmanager
def _ieee_fp32():
    """cuDNN runs fp32 convolutions in TF32 by default, cuBLAS matmuls in full fp32: without this the
    conv model would be timed at a lower precision than its twin, and differ from it."""
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


def _memory(model, batch, autocast):
    """Peak CUDA memory of a step; on a CPU, which keeps no peak, the bytes autograd saves for backward."""
    model.zero_grad(set_to_none=True)
    if batch[0].is_cuda:
        torch.cuda.reset_peak_memory_stats(batch[0].device)
        _step(model, *batch, autocast)
        return torch.cuda.max_memory_allocated(batch[0].device)
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        _step(model, *batch, autocast)
    return sum(storages.values())


def conv_vs_linear(model, batch_size, device, repeats=5, warmup=2, autocast=None):
    """Mean seconds of one training step of a ConvViT and of its nn.Linear twin on the same random batch,
    and the memory each needs, in IEEE fp32 unless `autocast` (a reusable context) says otherwise. Both
    networks are copies: `model` is left as it was."""
    device = torch.device(device)
    conv = copy.deepcopy(model).to(device)
    linear = linear_twin(conv)
    images = torch.randn(batch_size, model.channels, model.image_size, model.image_size, device=device)
    batch = images, torch.randint(0, model.mlp_head[-1].out_features, (batch_size,), device=device)
    autocast = contextlib.nullcontext() if autocast is None else autocast
    result = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU", batch_size=batch_size,
                  repeats=repeats, memory_measure="peak CUDA memory allocated (both networks resident)"
                  if device.type == "cuda" else "bytes saved for backward")
    with _ieee_fp32():
        with torch.no_grad():
            ours, theirs = conv.eval()(images), linear.eval()(images)
        if not torch.allclose(ours, theirs, atol=1e-4):
            raise AssertionError(f"the conv model and its nn.Linear twin disagree by up to "
                                 f"{(ours - theirs).abs().max().item():.3g} (atol 1e-4)")
        for name, network in (("conv", conv.train()), ("linear", linear.train())):
            timer = benchmark.Timer("step(network, *batch, autocast)", globals=dict(
                step=_step, network=network, batch=batch, autocast=autocast))  # it waits for the GPU
            timer.timeit(warmup)
            result[name] = dict(seconds=timer.timeit(repeats).mean, memory_bytes=_memory(network, batch, autocast))
    result["ratio"] = result["conv"]["seconds"] / result["linear"]["seconds"]
    return result


def cost_table(result):
    """The comparison as a markdown table, with the device and batch it was measured on."""
    lines = [f"Forward + backward of one batch of {result['batch_size']} on {result['device']} (mean of "
             f"{result['repeats']}); memory: {result['memory_measure']}.", "",
             "| model | ms per batch (fwd+bwd) | memory (MiB) | time / linear's |", "|---|---:|---:|---:|"]
    for name in ("conv", "linear"):
        row = result[name]
        lines.append(f"| {name} | {1000 * row['seconds']:.1f} | {row['memory_bytes'] / 2 ** 20:.1f} | "
                     f"{row['seconds'] / result['linear']['seconds']:.2f} |")
    return "\n".join(lines)
