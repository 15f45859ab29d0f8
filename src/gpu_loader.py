"""The whole dataset as one uint8 tensor on the device, augmented there per batch (airbench's idea).

The reference path (`data.loaders`) augments every image in Python worker processes; on a fast GPU
that, not the model, is the bottleneck. Here the images are uploaded once and each batch is augmented
with a few vectorised tensor ops, the same as `data.train_transforms()` (RandAugment if asked for,
pad with the mean pixel -> random 32x32 crop -> horizontal flip -> one 16x16 mean-filled hole ->
Normalize); only the random numbers come from torch, not numpy.
"""
import math

import torch

from .data import FLIP_P, HOLE, HOLE_P, MEAN, PAD, STD, mean_pixel
from .gpu_augment import rand_augment


def augment(images, crop_yx, flip, hole_yx, hole_on, mean_pixel, pad=PAD, hole=HOLE):
    """Augment a (B, C, H, W) batch with explicit random choices, so tests can fix each one.

    crop_yx (B, 2): top-left of the crop in the padded image, in [0, 2*pad]; flip (B,) bool;
    hole_yx (B, 2): top-left of the hole in the cropped image, in [0, H-hole]; hole_on (B,) bool.
    One padded copy of the batch plus index arithmetic replaces a Python loop over images.
    Returns a new (B, C, H, W) tensor of the input's dtype."""
    B, C, H, W = images.shape
    dev = images.device
    fill = torch.as_tensor(mean_pixel, dtype=images.dtype, device=dev).view(1, C, 1, 1)
    padded = fill.expand(B, C, H + 2 * pad, W + 2 * pad).clone()
    padded[:, :, pad:pad + H, pad:pad + W] = images
    rows = crop_yx[:, :1] + torch.arange(H, device=dev)                  # (B, H)
    cols = crop_yx[:, 1:] + torch.arange(W, device=dev)                  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)                # flip = read columns backwards
    b = torch.arange(B, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    ys = torch.arange(H, device=dev) - hole_yx[:, :1]                    # (B, H): row offset into hole
    xs = torch.arange(W, device=dev) - hole_yx[:, 1:]
    in_y, in_x = (ys >= 0) & (ys < hole), (xs >= 0) & (xs < hole)
    mask = hole_on[:, None, None] & in_y[:, :, None] & in_x[:, None, :]  # (B, H, W)
    return torch.where(mask[:, None], fill, out)


def normalize(x, mean=MEAN, std=STD):
    """uint8 -> float32 (x/255 - mean)/std per channel, as albumentations' Normalize."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() - 255 * mean) / (255 * std)


class GPULoader:
    """Iterates (x, y) batches on `device` like the reference DataLoader: same batch count and
    sizes, shuffled each epoch and augmented for train, fixed order and normalize only for test.

    Each epoch draws one seed from torch's global CPU generator and takes every random choice
    from a generator seeded with it: `torch.manual_seed` repeats runs, restoring the RNG state
    from a checkpoint resumes exactly, and DDP ranks (same global seed) share one permutation and
    keep the disjoint shards perm[rank::world_size]."""

    def __init__(self, dataset, batch_size, train, device="cpu", mean=MEAN, std=STD, pad=PAD,
                 hole=HOLE, flip_p=FLIP_P, hole_p=HOLE_P, randaugment=None, drop_last=None, rank=0, world_size=1,
                 channels_last=False, dtype=torch.float32):
        self.device = torch.device(device)
        self.images = torch.as_tensor(dataset.images).to(self.device).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.as_tensor(dataset.labels, dtype=torch.int64).to(self.device)
        self.batch_size, self.train = batch_size, train
        self.mean, self.std, self.mean_pixel = mean, std, mean_pixel(mean)
        self.pad, self.hole, self.flip_p, self.hole_p, self.randaugment = pad, hole, flip_p, hole_p, randaugment
        self.drop_last = train if drop_last is None else drop_last
        self.rank, self.world_size = rank, world_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.dtype = dtype

    def shard_size(self):
        """Images per rank: the dataset trimmed to a multiple of world_size, so ranks stay in step."""
        return len(self.labels) // self.world_size

    def __len__(self):
        n = self.shard_size()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def sample_choices(self, n, generator):
        """The random choices for n images: (crop_yx, flip, hole_yx, hole_on), as `augment` takes.
        Crop offsets are uniform over (2*pad+1)^2 positions, hole corners over (H-hole+1)^2
        (albumentations 2 keeps the hole inside the image)."""
        H, W = self.images.shape[2:]
        kw = dict(generator=generator, device=self.device)
        crop_yx = torch.randint(2 * self.pad + 1, (n, 2), **kw)
        flip = torch.rand(n, **kw) < self.flip_p
        hole_yx = torch.stack([torch.randint(H - self.hole + 1, (n,), **kw),
                               torch.randint(W - self.hole + 1, (n,), **kw)], 1)
        hole_on = torch.rand(n, **kw) < self.hole_p
        return crop_yx, flip, hole_yx, hole_on

    def __iter__(self):
        seed = int(torch.randint(2**62, ()))
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed)
        n = len(self.labels)
        if self.train:
            order = torch.randperm(n, generator=gen, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        order = order[:self.shard_size() * self.world_size][self.rank::self.world_size]
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx]
            if self.train and self.randaugment:
                x = rand_augment(x, *self.randaugment, gen)
            if self.train:
                x = augment(x, *self.sample_choices(len(idx), gen), self.mean_pixel, self.pad, self.hole)
            x = normalize(x, self.mean, self.std).to(self.dtype)
            yield x.contiguous(memory_format=self.memory_format), self.labels[idx]
