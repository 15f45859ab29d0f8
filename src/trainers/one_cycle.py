"""The ConvMixer authors' CIFAR-10 loop: AdamW, their learning rate knots, a line per epoch as theirs prints it."""
import numpy as np
from torch.optim.lr_scheduler import LambdaLR

from .engine import Engine
from .step import Step, adamw

WARMUP, ANNEAL = 2 / 5, 4 / 5  # the authors' knots, as fractions of the run


def knots(lr_max, epochs, warmup=WARMUP):
    return [(0, 0.0), (warmup * epochs, lr_max), (ANNEAL * epochs, lr_max / 20), (epochs, 0.0)]


def train_one_cycle(model, train_loader, test_loader, epochs, lr_max=0.01, weight_decay=0.01, *, warmup=WARMUP,
                    decay_norms=True, beta2=0.999, step=Step(), device="cpu", name="ConvMixer", resume=None,
                    on_epoch=None):
    """Returns a History; decay_norms: see param_groups; step: precision, EMA...; resume, on_epoch: Engine.fit."""
    optimizer = adamw(model, lr_max, weight_decay, decay_norms, beta2, device)
    (at, rates), steps = zip(*knots(lr_max, epochs, warmup)), len(train_loader)
    # Batch k of the run trains at the rate of epoch (k + 1) / steps, as in the authors' loop.
    scheduler = LambdaLR(optimizer, lambda k: float(np.interp((k + 1) / steps, at, rates)) / lr_max)

    def report(epoch, history, state):
        print(f"[{name}] Epoch: {epoch} | Train Acc: {history.train_acc[-1]:.4f}, "
              f"Test Acc: {history.test_acc[-1]:.4f}, Time: {history.epoch_time[-1]:.1f}, "
              f"lr: {history.lr[-1]:.6f}", flush=True)
        if on_epoch:
            on_epoch(epoch, history, state)

    engine = Engine(model, optimizer, scheduler, step=step, device=device)
    return engine.fit(train_loader, test_loader, epochs, resume=resume, on_epoch=report)
