"""The one epoch loop both trainers drive.

The trainers differ in what they show (a tqdm bar per batch, or one line per epoch), their
optimizer and their schedule; the step itself (precision, EMA, clipping, DistributedDataParallel,
checkpoints, the non-finite-loss guard) lives here once.
"""
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .. import checkpoint as ckpt
from .history import History

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


class NonFiniteLoss(RuntimeError):
    pass


def is_main_process():
    return not dist.is_initialized() or dist.get_rank() == 0


def param_groups(model, weight_decay, decay_all=True):
    """With decay_all=False, norms, biases and anything in model.no_weight_decay() (a ViT's
    position embedding and class token) are not decayed: shrinking them only hurts."""
    if decay_all:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    skip = getattr(model, "no_weight_decay", set)()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Engine:
    """Holds a model, its optimizer and step options; `fit` runs epochs and returns a History.

    precision: "fp16"/"bf16" autocast on CUDA ("auto" = fp16 there, the user's choice); on CPU
    every precision runs in fp32. ema_decay evaluates an exponential moving average of the
    weights; tta_flip averages the logits of each test image and its mirror."""

    def __init__(self, model, optimizer, device="cpu", scheduler=None, *, precision="auto",
                 channels_last=False, compile=False, label_smoothing=0.0, grad_clip=None,
                 ema_decay=None, tta_flip=False, config=None):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.optimizer, self.scheduler = optimizer, scheduler
        cuda = self.device.type == "cuda"
        self.amp_dtype = {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16}.get(precision) if cuda else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.net = model
        if dist.is_initialized():
            self.net = nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if cuda else None)
        self.eval_net = model
        if compile:
            self.net, self.eval_net = torch.compile(self.net), torch.compile(model)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.grad_clip, self.tta_flip = grad_clip, tta_flip
        self.ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
                    if ema_decay else None)
        self.config = config or {}

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _batch(self, x, y):
        x = x.to(self.device, non_blocking=True).to(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    def train_epoch(self, loader, epoch, history, wrap=None, on_batch=None):
        """One pass over loader; returns (mean loss, accuracy) over every rank's images."""
        self.net.train()
        _set_epoch(loader, epoch)
        loss_sum, correct, seen = torch.zeros((), device=self.device), torch.zeros((), device=self.device), 0
        for i, (x, y) in enumerate(wrap(loader) if wrap else loader):
            x, y = self._batch(x, y)
            lr = self.optimizer.param_groups[0]["lr"]
            with self._autocast():
                out = self.net(x)
                loss = self.criterion(out, y)
            if not _finite_everywhere(loss):
                raise NonFiniteLoss(f"loss became {loss.item()} at epoch {epoch}, batch {i}, learning rate "
                                    f"{lr:.6g}: training stopped (lower the learning rate?); the last "
                                    f"checkpoint, if any, is from the epoch before")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scheduler is not None:
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            history.batch_lr.append(lr)
            loss_sum += loss.detach().float() * len(y)
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
            if on_batch:
                on_batch(i, loss.item(), 100 * correct.item() / seen)
        _average_buffers(self.model)
        if self.ema is not None:
            _average_buffers(self.ema)
        return _reduced_means(loss_sum, correct, seen)

    @torch.no_grad()
    def evaluate(self, loader, keep_wrong=0):
        """Returns (mean loss, accuracy, targets, predictions, first misclassified images)."""
        net = self.ema.module if self.ema is not None else self.eval_net
        net.eval()
        _set_epoch(loader, 0)
        loss_sum, correct, seen = torch.zeros((), device=self.device), torch.zeros((), device=self.device), 0
        targets, preds, wrong = [], [], []
        for x, y in loader:
            x, y = self._batch(x, y)
            with self._autocast():
                out = net(x).float()
                if self.tta_flip:
                    out = (out + net(x.flip(-1)).float()) / 2
            pred = out.argmax(1)
            loss_sum += nn.functional.cross_entropy(out, y, reduction="sum")
            correct += (pred == y).sum()
            seen += len(y)
            targets.append(y), preds.append(pred)
            if keep_wrong:
                # a few from every batch: test sets stored class by class would show one class only
                miss = torch.nonzero(pred != y).flatten()[:-(-keep_wrong // len(loader))]
                wrong.append((x[miss].float().cpu(), y[miss].cpu(), pred[miss].cpu()))
        loss, acc = _reduced_means(loss_sum, correct, seen)
        wrong = tuple(torch.cat(parts)[:keep_wrong] for parts in zip(*wrong)) if wrong else (
            torch.empty(0, 3, 0, 0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))
        return loss, acc, torch.cat(targets).cpu(), torch.cat(preds).cpu(), wrong

    def fit(self, train_loader, test_loader, epochs, *, checkpoint=None, resume=False, keep_wrong=20,
            wrap=None, on_batch=None, on_epoch=None):
        """Run epochs; after each one, report it and (if a path is given) save a checkpoint so that
        `resume=True` continues exactly where a killed run stopped."""
        if epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs}")
        history, start = History(), 0
        if resume and checkpoint and Path(checkpoint).exists():
            history, start = self.load_checkpoint(checkpoint)
        elif resume and is_main_process():
            print(f"no checkpoint at {checkpoint} yet: starting from epoch 0", flush=True)
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            train_loss, train_acc = self.train_epoch(train_loader, epoch, history, wrap, on_batch)
            last = epoch == epochs - 1
            test_loss, test_acc, targets, preds, wrong = self.evaluate(test_loader, keep_wrong if last else 0)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            history.append(train_loss=train_loss, train_acc=train_acc, test_loss=test_loss, test_acc=test_acc,
                           epoch_time=time.perf_counter() - t0, lr=history.batch_lr[-1])
            if last:
                history.misclassified, history.predictions = wrong, (targets, preds)
            if on_epoch and is_main_process():
                on_epoch(epoch, history)
            if checkpoint and is_main_process():
                self.save_checkpoint(checkpoint, epoch, history)
        if self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())  # keep the weights that were tested
        return history

    def save_checkpoint(self, path, epoch, history):
        ckpt.save(path, {
            "epoch": epoch, "config": self.config, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "history": history.to_dict(), "rng": ckpt.rng_state()})

    def load_checkpoint(self, path):
        state = ckpt.load(path, self.device)
        if state.get("config") != self.config:
            diff = {k: (state.get("config", {}).get(k), self.config.get(k))
                    for k in set(state.get("config", {})) | set(self.config)
                    if state.get("config", {}).get(k) != self.config.get(k)}
            raise ValueError(f"checkpoint {path} was made with another configuration "
                             f"(key: (checkpoint, now)): {diff}")
        ckpt.load_weights(self.model, state["model"], f"checkpoint {path}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        ckpt.set_rng_state(state["rng"])
        return History.from_dict(state["history"]), state["epoch"] + 1


def _set_epoch(loader, epoch):
    """DistributedSampler reshuffles only when told the epoch."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def _finite_everywhere(loss):
    """Under DDP every rank must stop together, or the others wait forever in the next all-reduce."""
    finite = torch.isfinite(loss.detach()).float()
    if dist.is_initialized():
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite)


def _average_buffers(model):
    """Each DDP rank updates BatchNorm statistics from its own batches; averaging them once per
    epoch (as timm's distribute_bn does) leaves every rank with the same model to test and save."""
    if dist.is_initialized():
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= dist.get_world_size()


def _reduced_means(loss_sum, correct, seen):
    """Sums over every rank's images, turned into means; one sync per epoch."""
    totals = torch.stack([loss_sum, correct.float(), torch.tensor(float(seen), device=loss_sum.device)])
    if dist.is_initialized():
        dist.all_reduce(totals)
    loss_sum, correct, seen = totals.tolist()
    return loss_sum / seen, correct / seen
