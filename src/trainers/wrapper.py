"""The user's custom training wrapper: a tqdm bar per batch, a test summary per epoch.

    Loss=0.5845 Batch_id=97 Accuracy=79.38: 100%|██████████| 98/98
    Epoch 3 | Test set: Average loss: 0.3012, Accuracy: 9095/10000 (90.95%)

Any optimizer, and optionally a scheduler stepped every batch (e.g. OneCycleLR).
"""
from tqdm import tqdm

from .engine import Engine


class Trainer:
    def __init__(self, model, optimizer, device="cpu", scheduler=None, **options):
        """options: Engine's (precision, channels_last, compile, label_smoothing, grad_clip,
        ema_decay, tta_flip, config)."""
        self.engine = Engine(model, optimizer, device, scheduler, **options)
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

    def fit(self, train_loader, test_loader, epochs, checkpoint=None, resume=False):
        """Returns a History; its `misclassified` holds the last epoch's first wrong test images."""
        n_test = len(test_loader.dataset)

        def on_epoch(epoch, history):
            print(self.test_summary(epoch, history.test_loss[-1], history.test_acc[-1], n_test), flush=True)

        return self.engine.fit(train_loader, test_loader, epochs, checkpoint=checkpoint, resume=resume,
                               wrap=self._progress, on_batch=self._describe, on_epoch=on_epoch)
