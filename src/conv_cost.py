"""What writing the conv-only ViT's projections as 1x1 convolutions costs against the same network written with
nn.Linear (`linear_twin`: the same weights; tests check that it gives the same logits): a step's time and memory."""
import contextlib
import copy

import torch
import torch.nn.functional as F

from .models.conv_vit import linear_twin


def _step(model, images, targets, autocast):
    model.zero_grad(set_to_none=True)
    with autocast:
        loss = F.cross_entropy(model(images), targets)
    loss.backward()


def saved_bytes(work):
    """The bytes autograd saves for backward while work() runs: the memory a step needs where no peak is kept."""
    storages = {}

    def pack(tensor):  # one storage may back several saved tensors: count it once
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        work()
    return sum(storages.values())


def _memory(model, batch, autocast):
    """Peak CUDA memory of a step; on a CPU, which keeps no peak, the bytes autograd saves for backward."""
    model.zero_grad(set_to_none=True)
    if not batch[0].is_cuda:
        return saved_bytes(lambda: _step(model, *batch, autocast))
    torch.cuda.reset_peak_memory_stats(batch[0].device)
    _step(model, *batch, autocast)
    return torch.cuda.max_memory_allocated(batch[0].device)


def conv_vs_linear(model, batch_size, device, repeats=5, warmup=2, autocast=None):
    """Mean seconds and memory of a training step of a copy of the ConvViT and of its nn.Linear twin, on one batch."""
    import logging
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found": we know
    from torch.utils import benchmark
    device = torch.device(device)
    conv = copy.deepcopy(model).to(device)
    linear, cuda = linear_twin(conv), device.type == "cuda"
    images = torch.randn(batch_size, model.channels, model.image_size, model.image_size, device=device)
    batch = images, torch.randint(0, model.mlp_head[-1].out_features, (batch_size,), device=device)
    autocast = contextlib.nullcontext() if autocast is None else autocast
    result = {"device": torch.cuda.get_device_name(device) if cuda else "CPU", "batch_size": batch_size,
              "repeats": repeats, "memory_measure": "peak CUDA memory allocated (both networks resident)" if cuda
              else "bytes saved for backward"}
    # cuDNN runs fp32 convolutions in TF32 by default, cuBLAS matmuls in fp32: IEEE for both, or the twins differ.
    backends = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = [backend.fp32_precision for backend in backends]
    for backend in backends:
        backend.fp32_precision = "ieee"
    try:
        for name, network in (("conv", conv.train()), ("linear", linear.train())):
            timer = benchmark.Timer("step(network, *batch, autocast)", globals={
                "step": _step, "network": network, "batch": batch, "autocast": autocast})  # it waits for the GPU
            timer.timeit(warmup)
            result[name] = {"seconds": timer.timeit(repeats).mean, "memory_bytes": _memory(network, batch, autocast)}
    finally:
        for backend, precision in zip(backends, before):
            backend.fp32_precision = precision
    result["ratio"] = result["conv"]["seconds"] / result["linear"]["seconds"]
    return result


def cost_table(result):
    lines = [f"Forward + backward of one batch of {result['batch_size']} on {result['device']} (mean of "
             f"{result['repeats']}); memory: {result['memory_measure']}.", "",
             "| model | ms per batch (fwd+bwd) | memory (MiB) | time / linear's |", "|---|---:|---:|---:|"]
    for name in ("conv", "linear"):
        row = result[name]
        lines.append(f"| {name} | {1000 * row['seconds']:.1f} | {row['memory_bytes'] / 2 ** 20:.1f} | "
                     f"{row['seconds'] / result['linear']['seconds']:.2f} |")
    return "\n".join(lines)
