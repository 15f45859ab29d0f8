"""The one epoch loop both trainers drive.

The trainers differ in what they show (a tqdm bar per batch, or one line per epoch), their
optimizer and their schedule; the step itself (precision, EMA, clipping, DistributedDataParallel,
checkpoints, the divergence guard) lives here once. On CUDA the host reads the device only every
SYNC_EVERY batches (the divergence flag and the progress numbers), so the GPU never waits on Python.
"""
import copy
import logging
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..harness import checkpoint as ckpt
from ..harness.cli import stop_requested
from ..harness.errors import Diverged
from .ema import EMA
from .history import History
from .step import AMP, Step

# Said by the commands that write checkpoints (those with --resume): src.bench writes none.
CHECKPOINT_BEFORE = (("--resume", "the last checkpoint, if any, is from the epoch before"),)

SYNC_EVERY = 32  # CUDA batches between host reads; on CPU a read costs nothing and happens every batch
# A batch loss above this many times a uniform guess's (ln of the class count: 23 for CIFAR-10)
# means confidently wrong on average: the run has blown up, even while the loss is still finite.
MAX_LOSS_FACTOR = 10


def is_main_process():
    return not dist.is_initialized() or dist.get_rank() == 0


class Engine:
    """Holds a model, its optimizer, schedule and Step; `fit` runs epochs and returns a History."""

    def __init__(self, model, optimizer, scheduler=None, *, step=Step(), device="cpu", config=None):
        if step.precision not in AMP:
            raise ValueError(f"unknown precision {step.precision!r}: expected one of {', '.join(AMP)}")
        self.device, self.step = torch.device(device), step
        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
        self.memory_format = torch.channels_last if step.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.amp_dtype = step.amp_dtype(self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ema = EMA(model, step.ema) if step.ema else None
        self.net, self.eval_net = model, model if self.ema is None else self.ema.module  # test the EMA if any
        if dist.is_initialized():
            self.net = nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if cuda else None)
        if step.compile:
            if not cuda:  # a CUDA build of torch on a machine without a GPU warns of it: nothing to do about it here
                logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            self.net, self.eval_net = torch.compile(self.net), torch.compile(self.eval_net)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=step.label_smoothing)
        self.sync_every = SYNC_EVERY if cuda else 1
        self.config = config or {}

    def _batch(self, x, y):
        x = x.to(self.device, non_blocking=True).to(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    def train_epoch(self, loader, epoch, history, on_batch=None, wrap=None):
        """One pass over loader; returns (mean loss, accuracy, images) over every rank's images.
        on_batch(i, loss, accuracy %) is called at every host read."""
        self.net.train()
        _set_epoch(loader, epoch)
        zeros = dict(device=self.device)
        loss_sum, correct, seen = torch.zeros((), **zeros), torch.zeros((), **zeros), 0
        first_bad, bad_loss = torch.full((), -1, dtype=torch.long, **zeros), torch.zeros((), **zeros)
        batches, offset = len(loader), len(history.batch_lr)
        for i, (x, y) in enumerate(wrap(loader) if wrap else loader):
            if stop_requested():  # a Ctrl-C that Python swallowed in a finaliser
                raise KeyboardInterrupt
            x, y = self._batch(x, y)
            history.batch_lr.append(self.optimizer.param_groups[0]["lr"])
            with self.step.autocast(self.device):
                out = self.net(x)
                loss = self.criterion(out, y)
            value = loss.detach().float()
            new_bad = (first_bad < 0) & ~(value <= MAX_LOSS_FACTOR * math.log(out.shape[-1]))  # NaN is bad too
            first_bad, bad_loss = torch.where(new_bad, i, first_bad), torch.where(new_bad, value, bad_loss)
            loss_sum += value * len(y)
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
            due = (i + 1) % self.sync_every == 0 or i + 1 == batches
            if due:  # before the step: on CPU no step ever follows a bad loss
                loss_now, correct_now = self._stop_if_bad(first_bad, bad_loss, value, correct, epoch,
                                                          history.batch_lr[offset:])
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.step.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.step.grad_clip, foreach=True)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scheduler is not None:
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            if due and on_batch:
                on_batch(i, loss_now, 100 * correct_now / seen)
        _average_buffers(self.model)
        if self.ema is not None:
            _average_buffers(self.ema.module)
        return _reduced_means(loss_sum, correct, seen)

    def _stop_if_bad(self, first_bad, bad_loss, value, correct, epoch, epoch_lrs):
        """One host read: raise Diverged if any rank saw a bad loss; else (loss, correct so far)."""
        bad = torch.stack([first_bad.float(), bad_loss])
        if dist.is_initialized():  # every rank stops at the same batch, or the others wait forever
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        batch, loss, now, right = torch.cat([bad, torch.stack([value, correct.float()])]).tolist()
        if batch >= 0:
            batch = int(batch)
            raise Diverged(f"loss became {loss:.4g} at epoch {epoch}, batch {batch}, learning rate "
                           f"{epoch_lrs[batch]:.6g} "
                           f"(above {MAX_LOSS_FACTOR}x a uniform guess's, or not finite): training stopped "
                           f"(lower the learning rate?)", CHECKPOINT_BEFORE)
        return now, right

    @torch.no_grad()
    def evaluate(self, loader, into=None, keep=20):
        """(mean loss, accuracy, images) on loader, with the EMA weights when there are some. Given a
        History `into`, also fills its predictions and `keep` mistakes, a few from every batch (a test
        set stored class by class would otherwise show one class): the last epoch's test pass does this,
        so no second pass is needed."""
        net = self.eval_net
        net.eval()
        _set_epoch(loader, 0)
        loss_sum, correct, seen = torch.zeros((), device=self.device), torch.zeros((), device=self.device), 0
        per_batch, targets, predicted, wrong = -(-keep // max(len(loader), 1)), [], [], []
        for x, y in loader:
            x, y = self._batch(x, y)
            out = self.logits(net, x)
            loss_sum += nn.functional.cross_entropy(out, y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
            if into is not None:
                p = out.argmax(1)
                miss = torch.nonzero(p != y).flatten()[:per_batch]
                wrong.append((x[miss].float().cpu(), y[miss].cpu(), p[miss].cpu()))
                targets.append(y), predicted.append(p)
        if into is not None:
            into.predictions = torch.cat(targets).cpu(), torch.cat(predicted).cpu()
            into.misclassified = tuple(torch.cat(parts)[:keep] for parts in zip(*wrong))
        return _reduced_means(loss_sum, correct, seen)

    def logits(self, net, x):
        with self.step.autocast(self.device):
            views = self.step.views(x)
            return sum(net(v).float() for v in views) / len(views)

    def fit(self, train_loader, test_loader, epochs, *, checkpoint=None, resume=False, wrap=None, on_batch=None,
            on_epoch=None):
        """Run epochs; after each one, save a checkpoint (if a path is given: `resume=True` continues
        exactly where a killed run stopped), then call on_epoch(epoch, history)."""
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        history, start = History(), 0
        if resume and checkpoint and Path(checkpoint).exists():
            history, start = self.load_checkpoint(checkpoint, epochs, len(train_loader))
        elif resume and is_main_process():
            print(f"no checkpoint at {checkpoint} yet: starting from epoch 0", flush=True)
        if start == epochs:  # a finished run resumed: its predictions come from one test pass
            self.evaluate(test_loader, into=history)
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            train_loss, train_acc, history.train_images = self.train_epoch(train_loader, epoch, history, on_batch, wrap)
            last = history if epoch == epochs - 1 else None  # the predictions and mistakes the plots show
            test_loss, test_acc, history.test_images = self.evaluate(test_loader, into=last)
            self._stop_if_weights_blew_up(epoch, test_loss, history)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            history.append(train_loss=train_loss, train_acc=train_acc, test_loss=test_loss, test_acc=test_acc,
                           epoch_time=time.perf_counter() - t0, lr=history.batch_lr[-1])
            if checkpoint and is_main_process():
                self.save_checkpoint(checkpoint, epoch, history)
            if on_epoch and is_main_process():
                on_epoch(epoch, history)
        if self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())  # keep the weights that were tested
        return history

    def _stop_if_weights_blew_up(self, epoch, test_loss, history):
        tensors = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        finite = torch.stack(torch._foreach_norm(tensors)).isfinite().all().item()
        if not finite or not math.isfinite(test_loss):
            what = "the weights are no longer finite" if not finite else f"the test loss became {test_loss}"
            raise Diverged(f"{what} after epoch {epoch} (learning rate {history.batch_lr[-1]:.6g}): training "
                           f"stopped (lower the learning rate?)", CHECKPOINT_BEFORE)

    def save_checkpoint(self, path, epoch, history):
        ckpt.save(path, {
            "epoch": epoch, "config": self.config, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "history": history.to_dict(), "rng": ckpt.rng_state()})

    def load_checkpoint(self, path, epochs=None, batches=None):
        """(History, first epoch) of the run saved in checkpoint path, which `epochs` epochs of `batches`
        batches continue; one line naming the file when it is not a checkpoint this run can continue from."""
        state = ckpt.load(path, self.device)
        epoch = ckpt.check_state(path, state, self.config, epochs, batches)
        ckpt.load_weights(self.model, state["model"], f"checkpoint {path}")
        fresh = [dict(group) for group in self.optimizer.param_groups]
        schedule = copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None
        with ckpt.refused(path):
            self.optimizer.load_state_dict(state["optimizer"])
            ckpt.check_optimizer(path, self.optimizer, fresh)
            self.scaler.load_state_dict(state["scaler"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
                ckpt.check_schedule(path, self.scheduler.state_dict(), schedule, len(state["history"]["batch_lr"]),
                                    [group["lr"] for group in self.optimizer.param_groups])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
                ckpt.check_finite(self.ema.module.state_dict(), f"checkpoint {path} (its EMA)")
            ckpt.set_rng_state(state["rng"])
        return History.from_dict(state["history"]), epoch + 1


def _set_epoch(loader, epoch):
    """DistributedSampler reshuffles only when told the epoch."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def _average_buffers(model):
    """Each DDP rank updates BatchNorm statistics from its own batches; averaging them once per
    epoch (as timm's distribute_bn does) leaves every rank with the same model to test and save."""
    if dist.is_initialized():
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= dist.get_world_size()


def _reduced_means(loss_sum, correct, seen):
    """Sums over every rank's images, turned into (mean loss, accuracy, images); one sync."""
    totals = torch.stack([loss_sum, correct.float(), torch.tensor(float(seen), device=loss_sum.device)])
    if dist.is_initialized():
        dist.all_reduce(totals)
    loss_sum, correct, seen = totals.tolist()
    return loss_sum / seen, correct / seen, int(seen)
