"""What a trained model learned: the ConvMixer paper's kernel figures; for ConvViT, attention rollout (Abnar &
Zuidema 2020), mean attention distance and position-embedding similarity (the ViT paper's Figure 7)."""
import copy
import math
from functools import reduce
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from . import data
from .models.conv_vit import ConvViT
from .plots import _finish, denormalize


def _mosaic(tiles, cols, fill):
    """Tiles (n, h, w[, c]) row-major in one image, `fill` between them: one imshow, not hundreds of slow axes."""
    rows = math.ceil(len(tiles) / cols)
    pad = [(0, rows * cols - len(tiles)), (0, 1), (0, 1)] + [(0, 0)] * (tiles.ndim - 3)
    tiles = np.pad(tiles, pad, constant_values=fill)
    return rearrange(tiles, "(r c) h w ... -> (r h) (c w) ...", c=cols)[:-1, :-1]


def _tile_ticks(count, size):  # the centres of a mosaic's tiles, in pixels
    return np.arange(count) * (size + 1) + (size - 1) / 2


def confusion_matrix(targets, preds, num_classes=10):
    """Counts of (true, predicted) pairs: rows are true classes, columns predictions."""
    targets, preds = (np.asarray(torch.as_tensor(t).cpu()).astype(np.int64).ravel() for t in (targets, preds))
    return np.bincount(targets * num_classes + preds, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def plot_depthwise_kernels(model, channels=64, path=None):
    """Blocks as rows, the first `channels` kernels of each, each scaled to [-1, 1] so that its shape shows."""
    kernels = torch.stack([block[0].fn[0].weight.detach().cpu()[:channels, 0] for block in model.blocks])
    depth, shown, k = kernels.shape[:3]
    kernels = kernels / kernels.abs().amax((-2, -1), keepdim=True).clamp_min(1e-12)
    grid = _mosaic(rearrange(kernels, "b c k l -> (b c) k l").numpy(), shown, np.nan)
    fig, ax = plt.subplots(figsize=(max(4, 0.2 * (k + 1) * shown / 5), 0.2 * (k + 1) * depth / 5 + 1))
    ax.imshow(grid, cmap=plt.get_cmap("RdBu_r").with_extremes(bad="white"), vmin=-1, vmax=1, interpolation="nearest")
    ax.set_yticks(_tile_ticks(depth, k), [f"block {i}" for i in range(1, depth + 1)], fontsize=7)
    ax.set_xticks([])
    ax.set_title(f"depth-wise {k}x{k} kernels, first {shown} channels per block", fontsize=9)
    return _finish(fig, path)


def plot_patch_filters(model, path=None):
    """The stem's dim filters as RGB patches, each stretched to [0, 1] on its own."""
    weight = rearrange(model.stem[0].weight.detach().cpu(), "n c h w -> n h w c")
    low, high = weight.amin((1, 2, 3), keepdim=True), weight.amax((1, 2, 3), keepdim=True)
    patches = (weight - low) / (high - low).clamp_min(1e-12)
    cols = math.ceil(math.sqrt(len(patches)))
    fig, ax = plt.subplots(figsize=(5, 5 * math.ceil(len(patches) / cols) / cols))
    ax.imshow(_mosaic(patches.numpy(), cols, 1.0), interpolation="nearest")
    ax.axis("off")
    ax.set_title(f"{len(patches)} patch-embedding filters ({weight.shape[1]}x{weight.shape[2]})", fontsize=9)
    return _finish(fig, path)


def record_attention(model, images):
    """(logits, [per block (B, heads, N, N)]): hooks on a copy of the model (left as it was) read each softmax."""
    model, attentions = copy.deepcopy(model).eval(), []
    for attn, _ in model.transformer.layers:
        attn.attend.register_forward_hook(lambda module, args, out: attentions.append(out.detach()))
    with torch.no_grad():
        logits = model(images.to(next(model.parameters()).device))
    return logits, attentions


def attention_rollout(attentions):
    """(B, N, N): what each token draws from each input token over all blocks, the residual path as self-attention."""
    def mix(attention):
        mixed = attention.mean(1) + torch.eye(attention.shape[-1], device=attention.device)
        return mixed / mixed.sum(-1, keepdim=True)
    return reduce(lambda rollout, attention: mix(attention) @ rollout, attentions[1:], mix(attentions[0]))


def _patch_distances(grid, patch_size):
    """(P, P) distances in pixels between the centres of a grid x grid layout of patches."""
    centres = torch.cartesian_prod(torch.arange(grid), torch.arange(grid)).double()  # (row, column), row-major
    return torch.cdist(centres, centres) * patch_size


def mean_attention_distance(attention, grid, patch_size):
    """(heads,): pixels from query to key patch, attention-weighted, mean over queries and images (ViT paper Fig. 7)."""
    patches = attention[..., 1:, 1:].double()
    patches = patches / patches.sum(-1, keepdim=True)
    return (patches * _patch_distances(grid, patch_size).to(patches.device)).sum(-1).mean((0, 2)).float()


def plot_position_similarity(model, path=None):
    """Tile (r, c): patch (r, c)'s similarity to every patch; a learned 2-D layout shows a spot moving with (r, c)."""
    positions = F.normalize(model.pos_embedding.detach()[0, 1:].cpu(), dim=-1)
    similarity = positions @ positions.T  # cosine
    grid = math.isqrt(len(similarity))
    fig, ax = plt.subplots(figsize=(7, 6))
    tiles = _mosaic(rearrange(similarity, "q (h w) -> q h w", h=grid).numpy(), grid, np.nan)
    image = ax.imshow(tiles, cmap=plt.get_cmap("viridis").with_extremes(bad="white"), vmin=-1, vmax=1)
    ax.set_xticks(_tile_ticks(grid, grid), range(1, grid + 1), fontsize=7)
    ax.set_yticks(_tile_ticks(grid, grid), range(1, grid + 1), fontsize=7)
    ax.set(xlabel="input patch column", ylabel="input patch row", title="position embedding similarity")
    fig.colorbar(image, ax=ax, label="cosine similarity")
    return _finish(fig, path)


def plot_class_attention(images, attentions, mean, std, heads=None, path=None):
    """Rows: images. Columns: the image, the class token's attention in the last block per head, and rollout's."""
    last = attentions[-1]
    heads = range(last.shape[1]) if heads is None else heads
    maps = torch.stack([last[:, head, 0, 1:] for head in heads] + [attention_rollout(attentions)[:, 0, 1:]], 1)
    maps = rearrange(maps.float().cpu(), "b m (h w) -> b m h w", h=math.isqrt(maps.shape[-1]))  # patches as a grid
    maps = F.interpolate(maps, images.shape[-2:], mode="bilinear")  # each then scaled to [0, 1] for display
    maps = (maps / maps.amax((-2, -1), keepdim=True).clamp_min(1e-12)).numpy()
    fig, axes = plt.subplots(len(images), maps.shape[1] + 1, figsize=(1.6 * (maps.shape[1] + 1), 1.7 * len(images)),
                             squeeze=False)
    for row, picture in enumerate(denormalize(images, mean, std)):
        for col, ax in enumerate(axes[row]):
            ax.imshow(picture)
            if col:
                ax.imshow(maps[row, col - 1], cmap="inferno", alpha=0.6)
            ax.axis("off")
    for ax, title in zip(axes[0], ["image", *(f"head {head}" for head in heads), "rollout"]):
        ax.set_title(title, fontsize=8)
    return _finish(fig, path)


def plot_attention_distance(distances, uniform=None, path=None):
    """A dot per head and block (ViT paper: early heads look near and far, late ones far); `uniform`: a dashed line."""
    distances = np.stack([np.asarray(torch.as_tensor(d).cpu()) for d in distances])
    blocks = np.arange(1, len(distances) + 1)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(np.repeat(blocks, distances.shape[1]), distances.ravel(), s=18, color="tab:blue", alpha=0.7)
    if uniform is not None:
        ax.axhline(uniform, color="gray", linestyle="--", label=f"uniform attention ({uniform:.1f} px)")
        ax.legend(loc="lower right", fontsize=8)
    ax.set(xlabel="block", ylabel="mean attention distance (pixels)", xticks=blocks,
           ylim=(0, 1.1 * max(distances.max(), uniform or 0) or 1), title="mean attention distance per head")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def attention_distances(model, attentions):
    return [mean_attention_distance(a, model.image_size // model.patch_size, model.patch_size) for a in attentions]


def uniform_distance(model):
    """The mean attention distance of uniform attention: where heads that learned no locality sit."""
    return _patch_distances(model.image_size // model.patch_size, model.patch_size).mean().item()


def test_images(data_root, n=4):
    """n test images of several classes (a fixed spread over the split), normalised as a model sees them."""
    test = data.cifar10(data_root, train=False, transform=data.test_transforms(), subset=n)
    return torch.stack([test[i][0] for i in range(len(test))])


def save_figures(model, test_images, folder):
    """What a trained model learned, as PNGs in folder (test_images, normalised: a ConvViT's attention); the paths."""
    if isinstance(model, ConvViT):
        _, attentions = record_attention(model, test_images)
        figures = {"class_attention.png": plot_class_attention(test_images, attentions, data.MEAN, data.STD),
                   "attention_distance.png": plot_attention_distance(attention_distances(model, attentions),
                                                                     uniform_distance(model)),
                   "position_similarity.png": plot_position_similarity(model)}
    else:
        figures = {"depthwise_kernels.png": plot_depthwise_kernels(model),
                   "patch_filters.png": plot_patch_filters(model)}
    Path(folder).mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        _finish(fig, Path(folder) / name)
        plt.close(fig)
    return [Path(folder) / name for name in figures]
