"""Figures for the notebook and the run folder: augmentations, training curves, mistakes,
confusion matrix, model summary and a ConvMixer diagram.

Every plot returns its Figure (the caller closes it) and saves a PNG when given `path`;
nothing calls plt.show(), so the module works under the Agg backend on a headless machine.
"""
import contextlib
import io
import math
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyBboxPatch, Rectangle
from torchsummary import summary

from .data import CLASSES, MEAN, STD
from .io import atomic_write


def _numpy(x):
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _finish(fig, path):
    """fig, saved to path (if any) whole or not at all: a full disk is one line naming it."""
    if path is not None:
        atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix[1:] or "png", dpi=100,
                                                 bbox_inches="tight"))
    return fig


def _show(ax, image, title):
    ax.imshow(image)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def denormalize(x, mean=MEAN, std=STD):
    """Undo Normalize so that what the model saw can be shown as an image."""
    hwc = np.moveaxis(_numpy(x).astype(np.float32), -3, -1)
    return np.clip(hwc * np.asarray(std, np.float32) + np.asarray(mean, np.float32), 0, 1)


def augmentation_grid(dataset, transform, n=8, seed=0, path=None):
    """Originals above their augmented versions, to check the pipeline by eye. The same seed
    picks the same images and (albumentations pipelines are reseeded) the same augmentations."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)
    fig, axes = plt.subplots(2, len(picks), figsize=(1.6 * len(picks), 3.6), squeeze=False)
    for col, i in enumerate(picks):
        image, name = dataset.images[i], dataset.classes[dataset.labels[i]]
        _show(axes[0, col], image, name)
        _show(axes[1, col], denormalize(transform(image=image)["image"]), name)
    axes[0, 0].text(-4, 16, "original", rotation=90, ha="right", va="center")
    axes[1, 0].text(-4, 16, "augmented", rotation=90, ha="right", va="center")
    return _finish(fig, path)


def training_curves(history, path=None):
    """Loss, accuracy and learning rate side by side: over- and under-fitting and the schedule
    are read off one figure. The per-step learning rate is drawn on the epoch axis."""
    h = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    fig, (loss, acc, lr) = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, scale, label in ((loss, "loss", 1, "loss"), (acc, "acc", 100, "accuracy (%)")):
        for split in ("train", "test"):
            values = np.asarray(h.get(f"{split}_{key}", []), dtype=float) * scale
            ax.plot(np.arange(1, len(values) + 1), values, marker=".", label=split)
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.legend()
        ax.grid(alpha=0.3)
    rates = np.asarray(h.get("batch_lr") or h.get("lr") or [], dtype=float)
    steps_per_epoch = len(rates) / max(len(h.get("train_loss", [])), 1) if h.get("batch_lr") else 1
    lr.plot(np.arange(1, len(rates) + 1) / steps_per_epoch, rates)
    lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    lr.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def misclassified_grid(images, targets, preds, classes=CLASSES, n=20, path=None):
    """The first n mistakes as the model saw them (after Normalize), titled true/pred."""
    images, targets, preds = images[:n], _numpy(targets)[:n], _numpy(preds)[:n]
    if len(images) == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        ax.axis("off")
        return _finish(fig, path)
    cols = min(len(images), 10)
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p in zip(axes.flat, denormalize(images), targets, preds):
        _show(ax, image, f"{classes[t]}/{classes[p]}")
    return _finish(fig, path)


def plot_confusion_matrix(matrix, classes=CLASSES, path=None):
    """Counts in the cells, so that which classes are confused (cat/dog) reads off directly."""
    matrix = _numpy(matrix)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(matrix, cmap="Blues")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, int(count), ha="center", va="center", fontsize=8,
                color="white" if count > threshold else "black")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.tight_layout()
    return _finish(fig, path)


def model_summary(model, input_size=(3, 32, 32), device="cpu"):
    """Print torchsummary's table and return its total parameter count. The forward pass runs
    in eval mode under no_grad so that BatchNorm statistics are not changed by random input, and
    on a fork of the random generators, so that a run trained after it draws what it would have
    drawn without it; every module's mode and the model's device are restored afterwards."""
    kind = "cuda" if torch.device(device).type == "cuda" and torch.cuda.is_available() else "cpu"
    modes = {m: m.training for m in model.modules()}
    original = next(model.parameters(), torch.empty(0)).device
    text = io.StringIO()
    try:
        model.eval().to(kind)
        with torch.no_grad(), torch.random.fork_rng(), contextlib.redirect_stdout(text):
            summary(model, tuple(input_size), device=kind)
    finally:
        model.to(original)
        for m, training in modes.items():
            m.training = training
    print(text.getvalue(), end="")
    return int(re.search(r"Total params: ([\d,]+)", text.getvalue()).group(1).replace(",", ""))


def _box(ax, x, y, text, color):
    ax.add_patch(FancyBboxPatch((x - 2.2, y - 0.32), 4.4, 0.64, boxstyle="round,pad=0.05",
                                facecolor=color, edgecolor="black"))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start, end, style="arc3"):
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="->", connectionstyle=style, color="black"))


def mixer_diagram(path=None):
    """The ConvMixer layout at a glance, matching src/models/convmixer.py part for part."""
    steps = [("input image  3 x H x W", "white"),
             ("patch embedding\nConv k=p, stride p  ->  GELU  ->  BN", "#cde4f7"),
             ("depth-wise Conv k x k (groups=dim)\nGELU  ->  BN", "#fde2c4"),
             ("point-wise Conv 1x1\nGELU  ->  BN", "#d7f0d2"),
             ("global average pool", "#e8e0f5"),
             ("Linear  dim -> classes", "#e8e0f5")]
    ys = [10 - 1.5 * i for i in range(len(steps))]
    fig, ax = plt.subplots(figsize=(6, 8))
    for (text, color), y in zip(steps, ys):
        _box(ax, 0, y, text, color)
    for upper, lower in zip(ys, ys[1:]):
        _arrow(ax, (0, upper - 0.38), (0, lower + 0.38))
    _arrow(ax, (2.3, ys[2] + 0.6), (2.3, ys[2] - 0.6), "arc3,rad=-0.8")
    ax.text(3.1, ys[2], "+ residual", va="center", fontsize=9)
    ax.add_patch(Rectangle((-2.8, ys[3] - 0.55), 6.9, ys[2] - ys[3] + 1.1, fill=False,
                           linestyle="--", edgecolor="gray"))
    ax.text(-2.7, ys[3] - 0.75, "x depth", fontsize=10, color="gray")
    ax.set(xlim=(-3.2, 4.6), ylim=(ys[-1] - 0.8, ys[0] + 0.8), title="ConvMixer")
    ax.axis("off")
    return _finish(fig, path)
