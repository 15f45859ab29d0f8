"""The ConvMixer authors' CIFAR-10 loop ("class" one-cycle): AdamW, a learning rate interpolated
per batch through [0, WARMUP, ANNEAL, 1] x epochs -> [0, lr_max, lr_max/20, 0], mixed precision on
CUDA, one line per epoch:

    [ConvMixer] Epoch: 24 | Train Acc: 0.9283, Test Acc: 0.9095, Time: 27.7, lr: 0.000000
"""
import numpy as np
from torch.optim.lr_scheduler import LambdaLR

from .engine import Engine
from .optimizer import adamw
from .step import Step

WARMUP, ANNEAL = 2 / 5, 4 / 5  # the authors' knots, as fractions of the run


def knots(lr_max, epochs, warmup=WARMUP, anneal=ANNEAL):
    """The (epoch, learning rate) points the schedule runs through, linearly, batch by batch."""
    return [(0, 0.0), (warmup * epochs, lr_max), (anneal * epochs, lr_max / 20), (epochs, 0.0)]


def lr_schedule(lr_max, epochs, warmup=WARMUP, anneal=ANNEAL):
    """Learning rate at fractional epoch t (piecewise linear)."""
    if not 0 < warmup < anneal < 1:
        raise ValueError(f"need 0 < warmup < anneal < 1, got warmup={warmup}, anneal={anneal}")
    epoch, lr = zip(*knots(lr_max, epochs, warmup, anneal))
    return lambda t: float(np.interp(t, epoch, lr))


def epoch_line(name, epoch, history):
    return (f"[{name}] Epoch: {epoch} | Train Acc: {history.train_acc[-1]:.4f}, "
            f"Test Acc: {history.test_acc[-1]:.4f}, Time: {history.epoch_time[-1]:.1f}, "
            f"lr: {history.lr[-1]:.6f}")


def train_one_cycle(model, train_loader, test_loader, epochs, lr_max=0.01, weight_decay=0.01, *, warmup=WARMUP,
                    decay_norms=True, beta2=0.999, step=Step(), device="cpu", name="ConvMixer", resume=None,
                    on_epoch=None):
    """Returns a History. decay_norms=False spares norms, biases and a ViT's embeddings from weight
    decay; `step` sets precision, EMA, clipping...; resume, on_epoch: see Engine.fit."""
    optimizer = adamw(model, lr_max, weight_decay, decay_norms, beta2, device)
    schedule = lr_schedule(lr_max, epochs, warmup)
    steps = len(train_loader)
    # Batch k of the run trains at schedule((k + 1) / steps), as in the authors' loop.
    scheduler = LambdaLR(optimizer, lambda k: schedule((k + 1) / steps) / lr_max)
    engine = Engine(model, optimizer, scheduler, step=step, device=device)

    def report(epoch, history, state):
        print(epoch_line(name, epoch, history), flush=True)
        if on_epoch:
            on_epoch(epoch, history, state)

    return engine.fit(train_loader, test_loader, epochs, resume=resume, on_epoch=report)
