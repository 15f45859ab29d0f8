"""The custom training wrapper: AdamW, torch's linear OneCycleLR, a tqdm bar per batch, a test line per epoch."""
from torch.optim.lr_scheduler import OneCycleLR
from tqdm import tqdm

from .engine import Engine
from .one_cycle import WARMUP
from .step import Step, adamw

START_DIV, END_DIV = 25, 1e4  # OneCycleLR's defaults, written out: start at lr_max/25, end 1e4 times lower still


def knots(lr_max, epochs, warmup=WARMUP):
    return [(0, lr_max / START_DIV), (warmup * epochs, lr_max), (epochs, lr_max / START_DIV / END_DIV)]


def train_wrapper(model, train_loader, test_loader, epochs, lr_max=0.01, weight_decay=0.01, *, warmup=WARMUP,
                  decay_norms=True, beta2=0.999, step=Step(), device="cpu", resume=None, on_epoch=None):
    """Returns a History; the arguments are train_one_cycle's."""
    optimizer = adamw(model, lr_max, weight_decay, decay_norms, beta2, device)
    scheduler = OneCycleLR(optimizer, max_lr=lr_max, epochs=epochs, steps_per_epoch=len(train_loader),
                           pct_start=warmup, anneal_strategy="linear", div_factor=START_DIV, final_div_factor=END_DIV)
    bars = []  # one per epoch

    def progress(batches):
        bars.append(tqdm(batches, ncols=100))
        return bars[-1]

    def describe(batch_id, loss, accuracy):
        bars[-1].set_description(f"Loss={loss:.4f} Batch_id={batch_id} Accuracy={accuracy:.2f}")

    def report(epoch, history, state):
        n, accuracy = history.test_images, history.test_acc[-1]
        print(f"Epoch {epoch} | Test set: Average loss: {history.test_loss[-1]:.4f}, "
              f"Accuracy: {round(accuracy * n)}/{n} ({100 * accuracy:.2f}%)", flush=True)
        if on_epoch:
            on_epoch(epoch, history, state)

    engine = Engine(model, optimizer, scheduler, step=step, device=device)
    return engine.fit(train_loader, test_loader, epochs, resume=resume, wrap=progress, on_batch=describe,
                      on_epoch=report)
