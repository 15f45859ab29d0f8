"""The custom training wrapper: a tqdm bar per batch, a test summary per epoch.

    Loss=0.5845 Batch_id=97 Accuracy=79.38: 100%|██████████| 98/98
    Epoch 3 | Test set: Average loss: 0.3012, Accuracy: 9095/10000 (90.95%)

`Trainer` takes any optimizer and, optionally, a scheduler stepped every batch; `train_wrapper`
is how the experiments use it: AdamW and torch's linear OneCycleLR, peaking at `warmup`. The bar's
numbers are read from the device every Engine.sync_every batches (every batch on CPU).
"""
from torch.optim.lr_scheduler import OneCycleLR
from tqdm import tqdm

from .engine import Engine
from .step import Step
from .optimizer import adamw
from .one_cycle import WARMUP

START_DIV, END_DIV = 25, 1e4  # OneCycleLR's defaults, written out: start at lr_max/25, end 1e4 times lower still


def knots(lr_max, epochs, warmup=WARMUP):
    """The (epoch, learning rate) points OneCycleLR runs through, linearly, batch by batch."""
    return [(0, lr_max / START_DIV), (warmup * epochs, lr_max), (epochs, lr_max / START_DIV / END_DIV)]


class Trainer:
    def __init__(self, model, optimizer, scheduler=None, *, step=Step(), device="cpu"):
        self.engine = Engine(model, optimizer, scheduler, step=step, device=device)
        self._bar = None

    def _progress(self, batches):
        self._bar = tqdm(batches, ncols=100)
        return self._bar

    def _describe(self, batch_id, loss, accuracy):
        self._bar.set_description(f"Loss={loss:.4f} Batch_id={batch_id} Accuracy={accuracy:.2f}")

    @staticmethod
    def test_summary(epoch, loss, accuracy, n):
        return (f"Epoch {epoch} | Test set: Average loss: {loss:.4f}, "
                f"Accuracy: {round(accuracy * n)}/{n} ({100 * accuracy:.2f}%)")

    def fit(self, train_loader, test_loader, epochs, resume=None, on_epoch=None):
        def report(epoch, history, state):
            print(self.test_summary(epoch, history.test_loss[-1], history.test_acc[-1], history.test_images),
                  flush=True)
            if on_epoch:
                on_epoch(epoch, history, state)

        return self.engine.fit(train_loader, test_loader, epochs, resume=resume, wrap=self._progress,
                               on_batch=self._describe, on_epoch=report)


def train_wrapper(model, train_loader, test_loader, epochs, lr_max=0.01, weight_decay=0.01, *, warmup=WARMUP,
                  decay_norms=True, beta2=0.999, step=Step(), device="cpu", resume=None, on_epoch=None):
    """The wrapper with AdamW and a linear one-cycle schedule; returns a History."""
    optimizer = adamw(model, lr_max, weight_decay, decay_norms, beta2, device)
    scheduler = OneCycleLR(optimizer, max_lr=lr_max, epochs=epochs, steps_per_epoch=len(train_loader),
                           pct_start=warmup, anneal_strategy="linear", div_factor=START_DIV,
                           final_div_factor=END_DIV)
    trainer = Trainer(model, optimizer, scheduler, step=step, device=device)
    return trainer.fit(train_loader, test_loader, epochs, resume=resume, on_epoch=on_epoch)
