"""The ConvMixer authors' CIFAR-10 loop ("class" one-cycle): AdamW, a learning rate interpolated
per batch through [0, 2/5, 4/5, 1] x epochs -> [0, lr_max, lr_max/20, 0], mixed precision on
CUDA, one line per epoch:

    [ConvMixer] Epoch: 24 | Train Acc: 0.9283, Test Acc: 0.9095, Time: 27.7, lr: 0.000000
"""
import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from .engine import Engine, param_groups


def lr_schedule(lr_max, epochs, warmup=2 / 5, anneal=4 / 5):
    """Learning rate at fractional epoch t (piecewise linear)."""
    if not 0 < warmup < anneal < 1:
        raise ValueError(f"need 0 < warmup < anneal < 1, got warmup={warmup}, anneal={anneal}")
    return lambda t: float(np.interp(t, [0, warmup * epochs, anneal * epochs, epochs],
                                     [0, lr_max, lr_max / 20, 0]))


def epoch_line(name, epoch, history):
    return (f"[{name}] Epoch: {epoch} | Train Acc: {history.train_acc[-1]:.4f}, "
            f"Test Acc: {history.test_acc[-1]:.4f}, Time: {history.epoch_time[-1]:.1f}, "
            f"lr: {history.lr[-1]:.6f}")


def train_one_cycle(model, train_loader, test_loader, epochs, lr_max=0.01, weight_decay=0.01, *,
                    device="cpu", name="ConvMixer", warmup=2 / 5, decay_all=True,
                    checkpoint=None, resume=False, **options):
    """options: Engine's (precision, channels_last, compile, label_smoothing, grad_clip,
    ema_decay, tta_flip, config). decay_all=False spares norms, biases and a ViT's embeddings
    from weight decay. Returns a History."""
    if epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs}")
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay, decay_all), lr=lr_max)
    schedule = lr_schedule(lr_max, epochs, warmup)
    steps = len(train_loader)
    # Batch k of the run trains at schedule((k + 1) / steps), as in the authors' loop.
    scheduler = LambdaLR(optimizer, lambda k: schedule((k + 1) / steps) / lr_max)
    engine = Engine(model, optimizer, device, scheduler, **options)
    return engine.fit(train_loader, test_loader, epochs, checkpoint=checkpoint, resume=resume,
                      on_epoch=lambda epoch, history: print(epoch_line(name, epoch, history), flush=True))
