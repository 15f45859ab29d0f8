"""Check a saved model without training (as timm's validate.py): test accuracy with and without
flip averaging, accuracy per class and the confusion matrix.

    python -m src.evaluate ConvMixer_experimentation_2/run-full/model.pt --data ../shared/cifar10-jpeg

The model is rebuilt from the metrics.json beside the weights (its model name and sizes).
"""
import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataNotFound, UserError
from .trainers.engine import Step


@dataclass
class Predictions:
    targets: torch.Tensor   # (N,) true classes
    plain: torch.Tensor     # (N,) predicted classes from the image alone
    flipped: torch.Tensor   # (N,) predicted classes from the logits averaged with the mirror image's
    tta_flip: bool          # which of the two the run reports
    wrong: tuple            # (images, targets, predictions): a few mistakes from every batch

    @property
    def predictions(self):
        return self.flipped if self.tta_flip else self.plain

    def accuracy(self, flip=None):
        used = self.predictions if flip is None else self.flipped if flip else self.plain
        return (used == self.targets).float().mean().item()

    def mistakes(self, n=20):
        """The first n misclassified test images (as the model saw them), spread over the test set."""
        return tuple(t[:n] for t in self.wrong)


@torch.no_grad()
def predict(model, loader, device="cpu", step=Step(), keep=20):
    """One pass over loader, in the run's precision and memory format; the mistakes kept are a few
    from every batch, since a test set stored class by class would otherwise show one class."""
    device = torch.device(device)
    memory_format = torch.channels_last if step.channels_last else torch.contiguous_format
    model.eval()
    per_batch = -(-keep // max(len(loader), 1))
    targets, plain, flipped, wrong = [], [], [], []
    for x, y in loader:
        x, y = x.to(device, non_blocking=True).to(memory_format=memory_format), y.to(device, non_blocking=True)
        with step.autocast(device):
            logits, mirrored = model(x).float(), model(x.flip(-1)).float()
        p, f = logits.argmax(1), (logits + mirrored).argmax(1)
        used = f if step.tta_flip else p
        miss = torch.nonzero(used != y).flatten()[:per_batch]
        wrong.append((x[miss].float().cpu(), y[miss].cpu(), used[miss].cpu()))
        targets.append(y), plain.append(p), flipped.append(f)
    return Predictions(torch.cat(targets).cpu(), torch.cat(plain).cpu(), torch.cat(flipped).cpu(), step.tta_flip,
                       tuple(torch.cat(parts) for parts in zip(*wrong)))


def confusion_matrix(targets, preds, num_classes=10):
    """Counts of (true, predicted) pairs: rows are true classes, columns predictions."""
    targets, preds = (np.asarray(t.cpu() if torch.is_tensor(t) else t).astype(np.int64).ravel()
                      for t in (targets, preds))
    if targets.shape != preds.shape:
        raise ValueError(f"confusion_matrix: {targets.size} targets but {preds.size} predictions")
    both = np.concatenate([targets, preds])
    if both.size and (both.min() < 0 or both.max() >= num_classes):
        raise ValueError(f"confusion_matrix: labels must be in [0, {num_classes})")
    counts = np.bincount(targets * num_classes + preds, minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes)


def evaluate(weights, data_root, device="cpu", batch_size=1000):
    """A dict: accuracy with and without flip averaging, per class, and the confusion matrix."""
    from . import data
    from .models import create_model

    weights = Path(weights)
    metrics_path = weights.parent / "metrics.json"
    if not weights.is_file():
        raise DataNotFound(f"no weights at {weights}")
    if not metrics_path.is_file():
        raise DataNotFound(f"no metrics.json beside {weights}: it names the model to rebuild")
    metrics = json.loads(metrics_path.read_text())
    model = create_model(metrics["model"]["name"], **metrics["model"]["hyper_parameters"])
    from .checkpoint import load, load_weights
    load_weights(model, load(weights), str(weights))
    test = data.cifar10(data_root, train=False, transform=data.test_transforms())
    loader = torch.utils.data.DataLoader(test, batch_size=batch_size)
    result = predict(model.to(device), loader, device)
    matrix = confusion_matrix(result.targets, result.plain)
    return {"weights": str(weights), "data": data.source(data_root), "test_images": len(test),
            "accuracy": result.accuracy(flip=False), "accuracy_flip": result.accuracy(flip=True),
            "per_class": {name: matrix[i, i] / max(matrix[i].sum(), 1) for i, name in enumerate(data.CLASSES)},
            "confusion_matrix": matrix.tolist(), "recorded_test_acc": metrics.get("final_test_acc")}


def report(result):
    from .data import CLASSES
    lines = [f"{result['weights']} on {result['test_images']:,} test images ({result['data']}): "
             f"accuracy {100 * result['accuracy']:.2f}%, with flip averaging {100 * result['accuracy_flip']:.2f}%"]
    if result["recorded_test_acc"] is not None:
        lines.append(f"the run recorded {100 * result['recorded_test_acc']:.2f}% (with its own test-time settings)")
    lines.append("per class: " + ", ".join(f"{name} {100 * acc:.1f}%" for name, acc in result["per_class"].items()))
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    width = max(len(name) for name in CLASSES)
    lines += [f"{name:>{width}} " + " ".join(f"{n:5d}" for n in row)
              for name, row in zip(CLASSES, result["confusion_matrix"])]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", help="a model.pt written by a run (metrics.json beside it)")
    p.add_argument("--data", required=True, help="CIFAR-10: class folders or torchvision's folder")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="also write the result to this file")
    args = p.parse_args(argv)
    try:
        result = evaluate(args.weights, args.data, args.device)
    except (UserError, OSError) as err:
        sys.exit(f"error: {err}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(report(result))


if __name__ == "__main__":
    main()
