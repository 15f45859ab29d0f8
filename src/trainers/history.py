"""What a training run returns: per-epoch numbers that plots, tests and metrics.json read."""
from dataclasses import dataclass, field, fields


@dataclass
class History:
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)   # fractions in [0, 1]
    test_loss: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    epoch_time: list = field(default_factory=list)  # seconds, train + test pass
    lr: list = field(default_factory=list)          # learning rate at the end of each epoch
    batch_lr: list = field(default_factory=list)    # learning rate of every optimizer step
    train_images: int = 0                           # images per epoch
    test_images: int = 0
    # For the plots, not saved: (images, targets, predictions) of some test mistakes; (targets, predictions) of all
    misclassified: tuple = field(default=None, repr=False, compare=False)
    predictions: tuple = field(default=None, repr=False, compare=False)

    def to_dict(self):
        """The saved fields (those compared), lists copied."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.compare}
        return {key: list(value) if isinstance(value, list) else value for key, value in values.items()}

    @classmethod
    def from_dict(cls, d):
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.compare and f.name in d})
