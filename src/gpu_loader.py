"""The whole dataset as one uint8 tensor on the device, given `data.train_transforms()`'s augmentation there per
batch (airbench's idea): on a fast GPU the reference path's Python workers, not the model, are the bottleneck."""
import math

import torch

from .data import FLIP_P, HOLE, HOLE_P, MEAN, MEAN_PIXEL, PAD, STD
from .gpu_augment import rand_augment


def augment(images, crop_yx, flip, hole_yx, hole_on, mean_pixel, pad=PAD, hole=HOLE):
    """Pad, crop at crop_yx, flip, and a mean-pixel hole at hole_yx: choices given, so that tests can fix each."""
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
    ys = (torch.arange(H, device=dev) - hole_yx[:, :1])[:, :, None]      # (B, H, 1): row offset into the hole
    xs = (torch.arange(W, device=dev) - hole_yx[:, 1:])[:, None, :]      # (B, 1, W)
    mask = hole_on[:, None, None] & (ys >= 0) & (ys < hole) & (xs >= 0) & (xs < hole)  # (B, H, W)
    return torch.where(mask[:, None], fill, out)


def normalize(x, mean=MEAN, std=STD):
    """As albumentations' Normalize; mean and std already on x's device spare every batch a copy from the host."""
    mean, std = (255 * torch.as_tensor(v, device=x.device).view(1, -1, 1, 1) for v in (mean, std))
    return (x.float() - mean) / std


class GPULoader:
    """Batches as the reference DataLoader's, each epoch seeded from torch's RNG: runs repeat and resume exactly."""

    def __init__(self, dataset, batch_size, train, device="cpu", pad=PAD, flip_p=FLIP_P, hole_p=HOLE_P,
                 randaugment=None, channels_last=False):
        self.device = torch.device(device)
        self.images = torch.as_tensor(dataset.images).to(self.device).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.as_tensor(dataset.labels, dtype=torch.int64).to(self.device)
        self.batch_size, self.train = batch_size, train
        self.pad, self.flip_p, self.hole_p, self.randaugment = pad, flip_p, hole_p, randaugment
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.mean, self.std = (torch.tensor(v, device=self.device) for v in (MEAN, STD))
        self.fill = torch.tensor(MEAN_PIXEL, dtype=torch.uint8, device=self.device)

    def __len__(self):
        return len(self.labels) // self.batch_size if self.train else math.ceil(len(self.labels) / self.batch_size)

    def sample_choices(self, n, generator):
        """`augment`'s choices for n images, drawn as albumentations 2 draws them (holes inside the image)."""
        H, W = self.images.shape[2:]
        kw = dict(generator=generator, device=self.device)
        crop_yx = torch.randint(2 * self.pad + 1, (n, 2), **kw)
        flip = torch.rand(n, **kw) < self.flip_p
        hole_yx = torch.stack([torch.randint(H - HOLE + 1, (n,), **kw), torch.randint(W - HOLE + 1, (n,), **kw)], 1)
        return crop_yx, flip, hole_yx, torch.rand(n, **kw) < self.hole_p

    def __iter__(self):
        gen = torch.Generator(device=self.device).manual_seed(int(torch.randint(2**62, ())))
        n, dev = len(self.labels), self.device
        order = torch.randperm(n, generator=gen, device=dev) if self.train else torch.arange(n, device=dev)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx]
            if self.train and self.randaugment:
                x = rand_augment(x, *self.randaugment, gen)
            if self.train:
                x = augment(x, *self.sample_choices(len(idx), gen), self.fill, self.pad)
            yield normalize(x, self.mean, self.std).contiguous(memory_format=self.memory_format), self.labels[idx]
