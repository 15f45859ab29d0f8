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
    # Last epoch only, for plots; not saved: (images, targets, predictions) and (targets, predictions).
    misclassified: tuple = field(default=None, repr=False, compare=False)
    predictions: tuple = field(default=None, repr=False, compare=False)

    NUMBERS = ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_time", "lr", "batch_lr")

    def append(self, **epoch):
        for key, value in epoch.items():
            getattr(self, key).append(value)

    def to_dict(self):
        return {key: list(getattr(self, key)) for key in self.NUMBERS}

    @classmethod
    def from_dict(cls, d):
        return cls(**d)
