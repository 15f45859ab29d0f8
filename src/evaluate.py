"""Check a saved model without training (as timm's validate.py): test accuracy on the image alone, with
flip averaging, and with flips and one-pixel shifts (six views), accuracy per class and the confusion matrix.

    python -m src.evaluate ConvMixer_experimentation_2/run-full/model.pt --data ../shared/cifar10-jpeg

`--figures DIR` also draws what the model learned (src/analysis.py: kernels and patch filters of a
ConvMixer; attention maps, attention distance and position-embedding similarity of a ConvViT).

The model is rebuilt from the metrics.json beside the weights (its model name and sizes).
"""
import argparse
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .harness.cli import (check_matplotlib, check_targets, one_line, usable_path, within, writable_file,
                          writable_folder, write_json)
from .harness.machine import check_device
from .harness.errors import DataNotFound, UserError
from .trainers import Engine, History, Step


def predict(model, loader, device="cpu", step=Step(), keep=20):
    """A History holding `predictions` (targets, predicted classes) and `misclassified` (images,
    targets, predictions) of one test pass, computed exactly as a run's last epoch computes them."""
    record = History()
    Engine(model, None, step=step, device=device).evaluate(loader, into=record, keep=keep)
    return record


def accuracy(record):
    targets, predicted = record.predictions
    return (targets == predicted).float().mean().item()


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


def load_model(weights):
    """The model a run saved, rebuilt from the metrics.json beside its weights."""
    from .harness.checkpoint import check_weights, load, load_weights
    from .harness.config import BY_NAME
    from .harness.run import read_metrics
    from .models import create_model

    weights = Path(weights)
    metrics_path = weights.parent / "metrics.json"
    if not weights.exists():
        raise DataNotFound(f"no weights at {weights}: give the model.pt of a finished run")
    if weights.is_dir():
        raise UserError(f"{weights} is a folder, not weights: give the model.pt a run wrote")
    if not metrics_path.exists():
        raise DataNotFound(f"no metrics.json beside {weights}: it names the model to rebuild")
    metrics = read_metrics(metrics_path)
    try:
        sizes = metrics["model"]["hyper_parameters"]
        wrong = [f"{k} {v!r}, expected {BY_NAME[k].allowed}" for k, v in sizes.items()  # a depth of 10^9 would
                 if k in BY_NAME and BY_NAME[k].allowed is not None and v not in BY_NAME[k].allowed]  # build for hours
        if wrong:
            raise ValueError("; ".join(wrong))
        build = partial(create_model, metrics["model"]["name"], **sizes)
        with torch.device("meta"):  # its shapes only: sizes from a damaged file allocate nothing
            shapes = build()
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as err:  # sizes torch cannot allocate
        raise UserError(f"{metrics_path} does not name a model of this project ({err}): is it a run's "
                        f"metrics.json?") from None
    state = load(weights)
    if isinstance(state, dict) and "model" in state and "optimizer" in state:
        raise UserError(f"{weights} is a training checkpoint, not weights: give the run's model.pt")
    check_weights(state, str(weights))  # before the shapes: its own line, not "another model"
    try:
        with warnings.catch_warnings():  # torch's "copying into a meta parameter is a no-op": it is meant
            warnings.simplefilter("ignore")
            load_weights(shapes, state, str(weights))  # the sizes metrics.json gives must be the weights'
    except UserError as err:
        raise UserError(f"{err}; {metrics_path} describes another model than these weights: give the model.pt "
                        f"and metrics.json of one run") from None
    model = build()
    load_weights(model, state, str(weights))
    return model, metrics


def evaluate(weights, model, metrics, data_root, device="cpu", batch_size=1000):
    """A dict: accuracy on the image alone, with flip averaging and with six views (Step.views), per class,
    and the confusion matrix of the model load_model(weights) gave, with its metrics."""
    from . import data

    test = data.cifar10(data_root, train=False, transform=data.test_transforms())
    loader = torch.utils.data.DataLoader(test, batch_size=batch_size)
    plain = predict(model, loader, device)
    flipped = predict(model, loader, device, Step(tta_flip=True))
    shifted = predict(model, loader, device, Step(tta_flip=True, tta_translate=True))
    matrix = confusion_matrix(*plain.predictions)
    return {"weights": str(weights), "data": data.source(data_root), "test_images": len(test),
            "accuracy": accuracy(plain), "accuracy_flip": accuracy(flipped), "accuracy_six_views": accuracy(shifted),
            "per_class": {name: matrix[i, i] / max(matrix[i].sum(), 1) for i, name in enumerate(data.CLASSES)},
            "confusion_matrix": matrix.tolist(), "recorded_test_acc": metrics.get("final_test_acc")}


def learned_figures(model, data_root, folder, images=4):
    """What a saved model learned, drawn into folder (src/analysis.py); the paths written."""
    from . import analysis

    return analysis.save_figures(model.eval(), analysis.test_images(data_root, images), folder)


def report(result):
    from .data import CLASSES
    lines = [f"{result['weights']} on {result['test_images']:,} test images ({result['data']}): "
             f"accuracy {100 * result['accuracy']:.2f}%, with flip averaging {100 * result['accuracy_flip']:.2f}%, "
             f"with flips and one-pixel shifts (6 views) {100 * result['accuracy_six_views']:.2f}%"]
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
    p.add_argument("weights", type=usable_path, help="a model.pt written by a run (metrics.json beside it)")
    p.add_argument("--data", required=True, type=usable_path, help="CIFAR-10: class folders or torchvision's folder")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N; auto: cuda when there is one")
    p.add_argument("--json", type=usable_path, help="also write the result to this file")
    p.add_argument("--figures", type=usable_path, help="also draw what the model learned (src/analysis.py) as PNGs "
                                                       "into this folder")
    args = p.parse_args(argv)
    if not args.weights.strip():
        p.error(f"{args.weights!r}: give the model.pt to evaluate")
    if not args.data.strip():
        p.error(f"--data {args.data!r}: give a folder")
    written = []  # what an interrupt leaves behind
    with one_line(lambda: f"interrupted: {' and '.join(written) or 'nothing'} written", parser=p):
        check_matplotlib()
        from . import analysis
        device = check_device(args.device)
        json_path = None if args.json is None else writable_file(args.json, "--json", (args.weights, args.data))
        figures = None if args.figures is None else writable_folder(args.figures, "--figures", (args.data,))
        if json_path and figures and within(figures, json_path):
            raise UserError(f"--figures {figures}: the path --json writes its file to; give them different paths")
        if json_path and figures and json_path.resolve().parent == Path(figures).resolve() and \
                json_path.name in analysis.MIXER_FIGURES + analysis.VIT_FIGURES:
            raise UserError(f"--json {json_path}: --figures may draw {json_path.name} there; give --json another name")
        if figures:
            check_targets([figures / name for name in analysis.MIXER_FIGURES + analysis.VIT_FIGURES], "--figures")
        model, metrics = load_model(args.weights)  # read once, for the numbers and the figures
        result = evaluate(args.weights, model, metrics, args.data, device)
        if json_path:
            write_json(json_path, result)
            written.append(str(json_path))
        print(report(result))
        if figures:
            written.append(f"perhaps some figures in {figures}")  # each whole or absent
            print("figures:", *learned_figures(model, args.data, figures), sep="\n  ")


if __name__ == "__main__":
    main()
