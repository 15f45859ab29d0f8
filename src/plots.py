"""Figures for the notebooks and the run folder; none calls plt.show(), so they draw on a headless machine."""
import contextlib
import copy
import io
import math
import re

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
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
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
    """Originals above their augmented versions; the same seed, the same images and augmentations."""
    picks = np.random.default_rng(seed).choice(len(dataset), size=min(n, len(dataset)), replace=False)
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
    """Loss, accuracy and learning rate (per step, on the epoch axis) side by side."""
    h = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    fig, (loss, acc, lr) = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, scale, label in ((loss, "loss", 1, "loss"), (acc, "acc", 100, "accuracy (%)")):
        for split in ("train", "test"):
            values = np.asarray(h[f"{split}_{key}"], dtype=float) * scale
            ax.plot(np.arange(1, len(values) + 1), values, marker=".", label=split)
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.legend()
        ax.grid(alpha=0.3)
    rates = np.asarray(h["batch_lr"] or h["lr"], dtype=float)
    steps_per_epoch = len(rates) / len(h["train_loss"]) if h["batch_lr"] else 1
    lr.plot(np.arange(1, len(rates) + 1) / steps_per_epoch, rates)
    lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    lr.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def misclassified_grid(images, targets, preds, n=20, path=None):
    """The first n mistakes as the model saw them (after Normalize), titled true/pred."""
    images, targets, preds = images[:n], _numpy(targets)[:n], _numpy(preds)[:n]
    cols, rows = min(len(images), 10), math.ceil(len(images) / 10)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p in zip(axes.flat, denormalize(images), targets, preds):
        _show(ax, image, f"{CLASSES[t]}/{CLASSES[p]}")
    return _finish(fig, path)


def plot_confusion_matrix(matrix, path=None):
    """Counts in the cells, so that which classes are confused (cat/dog) reads off directly."""
    matrix = _numpy(matrix)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, int(count), ha="center", va="center", fontsize=8,
                color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.tight_layout()
    return _finish(fig, path)


def model_summary(model, input_size=(3, 32, 32), device="cpu"):
    """torchsummary's table and total, on a copy and forked generators: the model and a later run stay as they were."""
    kind = "cuda" if torch.device(device).type == "cuda" else "cpu"  # the two torchsummary knows
    text = io.StringIO()
    with torch.no_grad(), torch.random.fork_rng(), contextlib.redirect_stdout(text):
        summary(copy.deepcopy(model).eval().to(kind), tuple(input_size), device=kind)
    print(text.getvalue(), end="")
    return int(re.search(r"Total params: ([\d,]+)", text.getvalue()).group(1).replace(",", ""))


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
    arrow = dict(arrowstyle="->", color="black")
    for i, ((text, color), y) in enumerate(zip(steps, ys)):
        ax.add_patch(FancyBboxPatch((-2.2, y - 0.32), 4.4, 0.64, boxstyle="round,pad=0.05", facecolor=color,
                                    edgecolor="black"))
        ax.text(0, y, text, ha="center", va="center", fontsize=9)
        if i:
            ax.annotate("", xy=(0, y + 0.38), xytext=(0, ys[i - 1] - 0.38), arrowprops=arrow)
    ax.annotate("", xy=(2.3, ys[2] - 0.6), xytext=(2.3, ys[2] + 0.6),
                arrowprops=dict(arrow, connectionstyle="arc3,rad=-0.8"))
    ax.text(3.1, ys[2], "+ residual", va="center", fontsize=9)
    ax.add_patch(Rectangle((-2.8, ys[3] - 0.55), 6.9, ys[2] - ys[3] + 1.1, fill=False,
                           linestyle="--", edgecolor="gray"))
    ax.text(-2.7, ys[3] - 0.75, "x depth", fontsize=10, color="gray")
    ax.set(xlim=(-3.2, 4.6), ylim=(ys[-1] - 0.8, ys[0] + 0.8), title="ConvMixer")
    ax.axis("off")
    return _finish(fig, path)
