"""What a training run returns: per-epoch numbers that plots, tests and metrics.json read."""
from dataclasses import dataclass, field


@dataclass
class History:
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)   # fractions in [0, 1]
    test_loss: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    epoch_time: list = field(default_factory=list)  # seconds, train + test pass
    lr: list = field(default_factory=list)          # learning rate at the end of each epoch
    batch_lr: list = field(default_factory=list)    # learning rate of every optimizer step
    train_images: int = 0                           # images per epoch, summed over DDP ranks
    test_images: int = 0
    # Set after training, for plots; not saved: (images, targets, predictions) of the first
    # misclassified test images, and (targets, predictions) of the whole test set.
    misclassified: tuple = field(default=None, repr=False, compare=False)
    predictions: tuple = field(default=None, repr=False, compare=False)

    SAVED = ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_time", "lr", "batch_lr",
             "train_images", "test_images")

    def append(self, **epoch):
        for key, value in epoch.items():
            getattr(self, key).append(value)

    def to_dict(self):
        return {key: _copy(getattr(self, key)) for key in self.SAVED}

    @classmethod
    def from_dict(cls, d):
        return cls(**{key: d[key] for key in cls.SAVED if key in d})


def _copy(value):
    return list(value) if isinstance(value, list) else value
