"""The one epoch loop both trainers drive: its state goes to `on_epoch` and comes back to resume it exactly."""
import math
import random
import time

import numpy as np
import torch
from torch import nn

from ..io import UserError
from .ema import EMA
from .history import History
from .step import Step

SYNC_EVERY = 32  # CUDA batches between host reads; on CPU a read costs nothing and happens every batch
MAX_LOSS_FACTOR = 10  # times a uniform guess's loss (ln 10): confidently wrong on average, blown up though finite


class Diverged(UserError):
    """Training blew up: the message says when (epoch, batch, learning rate) and what."""


class Engine:
    """Holds a model, its optimizer, schedule and Step; `fit` runs epochs and returns a History."""
    PARTS = ("model", "optimizer", "scaler", "scheduler", "ema")  # what a state_dict holds besides the generators

    def __init__(self, model, optimizer, scheduler=None, *, step=Step(), device="cpu"):
        self.device, self.step = torch.device(device), step
        cuda = self.device.type == "cuda"
        torch.backends.cudnn.benchmark = cuda  # fixed shapes: let cuDNN pick its fastest kernels once
        self.memory_format = torch.channels_last if step.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.scaler = torch.amp.GradScaler("cuda", enabled=step.amp_dtype(self.device) == torch.float16)
        self.ema = EMA(model, step.ema) if step.ema else None
        self.net, self.eval_net = model, self.ema.module if self.ema else model  # test the EMA if any
        if step.compile:
            self.net, self.eval_net = (torch.compile(net, mode=step.compile_mode) for net in (self.net, self.eval_net))
        self.criterion = nn.CrossEntropyLoss(label_smoothing=step.label_smoothing)
        self.sync_every = SYNC_EVERY if cuda else 1

    def _batch(self, x, y):
        return (x.to(self.device, non_blocking=True).to(memory_format=self.memory_format),
                y.to(self.device, non_blocking=True))

    def train_epoch(self, loader, epoch, history, on_batch=None, wrap=None):
        """(mean loss, accuracy, images); on_batch(i, loss, accuracy %) at every host read; wrap: a progress bar."""
        self.net.train()
        loss_sum, correct, seen = torch.zeros((), device=self.device), torch.zeros((), device=self.device), 0
        first_bad, bad_loss = torch.full((), -1, device=self.device), torch.zeros((), device=self.device)
        batches, offset = len(loader), len(history.batch_lr)
        for i, (x, y) in enumerate(wrap(loader) if wrap else loader):
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
            if due:  # one host read, before the step: on CPU no step ever follows a bad loss
                batch, bad_value, loss_now, correct_now = torch.stack(
                    [first_bad.float(), bad_loss, value, correct.float()]).tolist()
                if batch >= 0:
                    raise Diverged(f"loss became {bad_value:.4g} at epoch {epoch}, batch {int(batch)}, learning rate "
                                   f"{history.batch_lr[offset + int(batch)]:.6g} (above {MAX_LOSS_FACTOR}x a uniform "
                                   f"guess's, or not finite): training stopped; lower --lr-max")
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
                self.ema.update()
            if due and on_batch:
                on_batch(i, loss_now, 100 * correct_now / seen)
        return _means(loss_sum, correct, seen)

    @torch.no_grad()
    def evaluate(self, loader, into=None, keep=20):
        """A History `into` gets the predictions and `keep` mistakes, a few per batch (splits may be in class order)."""
        self.eval_net.eval()
        loss_sum, correct, seen = torch.zeros((), device=self.device), torch.zeros((), device=self.device), 0
        per_batch, targets, predicted, wrong = -(-keep // max(len(loader), 1)), [], [], []
        for x, y in loader:
            x, y = self._batch(x, y)
            with self.step.autocast(self.device):
                views = self.step.views(x)
                out = sum(self.eval_net(v).float() for v in views) / len(views)
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
        return _means(loss_sum, correct, seen)

    def fit(self, train_loader, test_loader, epochs, *, resume=None, wrap=None, on_batch=None, on_epoch=None):
        """After each epoch on_epoch(epoch, history, state): `resume=state()` continues from there."""
        history, start = self.load_state_dict(resume) if resume is not None else (History(), 0)
        if start == epochs:  # a finished run resumed: its predictions come from one test pass
            self.evaluate(test_loader, into=history)
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            train_loss, train_acc, history.train_images = self.train_epoch(train_loader, epoch, history, on_batch, wrap)
            last = history if epoch == epochs - 1 else None  # the predictions and mistakes the plots show
            test_loss, test_acc, history.test_images = self.evaluate(test_loader, into=last)
            tensors = [t for t in self.model.state_dict().values() if t.is_floating_point()]
            finite = torch.stack(torch._foreach_norm(tensors)).isfinite().all().item()
            if not finite or not math.isfinite(test_loss):
                what = "the weights are no longer finite" if not finite else f"the test loss became {test_loss}"
                raise Diverged(f"{what} after epoch {epoch} (learning rate {history.batch_lr[-1]:.6g}): training "
                               f"stopped; lower --lr-max")
            for key, value in dict(train_loss=train_loss, train_acc=train_acc, test_loss=test_loss, test_acc=test_acc,
                                   epoch_time=time.perf_counter() - t0, lr=history.batch_lr[-1]).items():
                getattr(history, key).append(value)
            if on_epoch:
                on_epoch(epoch, history, lambda: self.state_dict(epoch, history))
        if self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())  # keep the weights that were tested
        return history

    def state_dict(self, epoch, history):
        """Everything an epoch changed, so that a resumed run continues exactly."""
        np_state = np.random.get_state()
        parts = {name: getattr(self, name) for name in self.PARTS}  # no scheduler or no EMA: None
        return {"epoch": epoch, "history": history.to_dict(),
                **{name: part.state_dict() if part is not None else None for name, part in parts.items()},
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                        "numpy": [torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
                        "python": random.getstate()}}

    def load_state_dict(self, state):
        """(History, first epoch to train) of a state_dict(); generator states go back as CPU tensors."""
        for name in self.PARTS:
            if getattr(self, name) is not None:
                getattr(self, name).load_state_dict(state[name])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([generator.cpu() for generator in rng["cuda"]])
        keys, *rest = rng["numpy"]  # pos, has_gauss, gauss
        np.random.set_state(("MT19937", keys.cpu().numpy().astype(np.uint32), *rest))
        version, internal, gauss_next = rng["python"]
        random.setstate((version, tuple(internal), gauss_next))
        return History.from_dict(state["history"]), state["epoch"] + 1


def _means(loss_sum, correct, seen):
    """(mean loss, accuracy, images), read from the device in one sync."""
    loss_sum, correct = torch.stack([loss_sum, correct.float()]).tolist()
    return loss_sum / seen, correct / seen, seen
