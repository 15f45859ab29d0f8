"""CIFAR-10 as uint8 arrays in memory, the user's albumentations pipeline, and the DataLoaders.

Both sources (torchvision's download and a `train/<class>/*.jpg` folder copy) end up as the same
`CIFAR10Array`, so everything downstream (loaders, the GPU loader, plots) sees one format.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import signal
from pathlib import Path

# albumentations asks PyPI for its latest version on import: a warning in every notebook run offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
import cv2
import numpy as np
import torch
import torch.distributed as dist
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset

from .class_folders import CLASSES, image_files, read_images
from .harness.cli import signals_deferred
from .harness.errors import DataNotFound, UserError

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
# The original augmentation's settings, which the GPU loader (src/gpu_loader.py) shares.
PAD, FLIP_P, HOLE, HOLE_P = 4, 0.5, 16, 0.5


def mean_pixel(mean):
    return tuple(round(255 * m) for m in mean)


def train_transforms(mean=MEAN, std=STD, pad=PAD, size=32, flip_p=FLIP_P, hole=HOLE, hole_p=HOLE_P,
                     randaugment=None):
    """The user's augmentation. Padding and the hole are filled with the mean pixel, so both
    become 0 after Normalize: they carry no signal. `randaugment=(n_ops, magnitude)` puts
    torchvision's RandAugment in front (the "improved" recipe); None keeps the user's recipe."""
    fill = mean_pixel(mean)
    steps = [RandAugment(*randaugment)] if randaugment else []
    steps += [
        A.PadIfNeeded(size + 2 * pad, size + 2 * pad, border_mode=cv2.BORDER_CONSTANT, fill=fill),
        A.RandomCrop(size, size),
        A.HorizontalFlip(p=flip_p),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(hole, hole),
                        hole_width_range=(hole, hole), fill=fill, p=hole_p),
        A.Normalize(mean=mean, std=std),
        ToTensorV2(),
    ]
    return A.Compose(steps)


def test_transforms(mean=MEAN, std=STD):
    return A.Compose([A.Normalize(mean=mean, std=std), ToTensorV2()])


class RandAugment(A.ImageOnlyTransform):
    """torchvision's RandAugment as an albumentations step (albumentations has none)."""

    def __init__(self, num_ops=2, magnitude=10, p=1.0):
        super().__init__(p=p)
        import torchvision.transforms as T
        self.num_ops, self.magnitude = num_ops, magnitude
        self.op = T.RandAugment(num_ops=num_ops, magnitude=magnitude)

    def apply(self, img, **params):
        chw = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return self.op(chw).permute(1, 2, 0).numpy()

    def get_transform_init_args_names(self):
        return ("num_ops", "magnitude")


class CIFAR10Array(Dataset):
    """Images as one (N, 32, 32, 3) uint8 array: decoded once, cheap to index, subset or
    move to the GPU whole. Without a transform an item is the raw HWC uint8 image."""

    def __init__(self, images, labels, transform=None, classes=CLASSES):
        if len(images) == 0:
            raise ValueError("CIFAR10Array: empty split (no images)")
        self.images = np.ascontiguousarray(images, dtype=np.uint8)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.classes = tuple(classes)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image, label = self.images[i], int(self.labels[i])
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        return image, label

    def subset(self, n, seed=0):
        """The first n of a fixed permutation: nearly class-balanced, same images every run."""
        if n is None or n >= len(self):
            return self
        keep = _subset(len(self), n, seed)
        return CIFAR10Array(self.images[keep], self.labels[keep], self.transform, self.classes)


def _subset(total, n, seed):
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def cifar10(root, train=True, transform=None, download=False, subset=None, seed=0):
    """CIFAR-10 from `root`: a class-folder copy (`root/train/<class>/*.jpg`) if there is one,
    else torchvision's download (`root/cifar-10-batches-py`, fetched when download=True).
    `subset`: only that many images (CIFAR10Array.subset's choice); from class folders only
    those are decoded, so quick runs and previews do not read all 60,000."""
    root, split = Path(root), "train" if train else "test"
    if not (root / split).is_dir():
        tv = _torchvision(root, train, download)
        return CIFAR10Array(tv.data, tv.targets, transform).subset(subset, seed)
    files = image_files(root / split)
    if subset is not None and subset < len(files):
        files = [files[i] for i in _subset(len(files), subset, seed)]
    return CIFAR10Array(read_images([p for _, p in files]), [label for label, _ in files], transform)


def _torchvision(root, train, download):
    from torchvision.datasets import CIFAR10
    batches = _torchvision_folder(root, train, download)
    made = next((p for p in reversed((root, *root.parents)) if not p.exists()), None)  # the first folder it makes
    try:
        return CIFAR10(str(root), train=train, download=download)
    except RuntimeError:  # a download that is not whole: torchvision checks every file's MD5
        raise _corrupt(batches, "the download does not check out") from None
    except OSError as err:  # no network, a refused connection, a full disk
        if made and made.is_dir() and not any(p.is_file() for p in made.rglob("*")):
            shutil.rmtree(made)  # leave nothing behind
        raise DataNotFound(f"could not download CIFAR-10 into {root} ({getattr(err, 'reason', None) or err})",
                           (("--data", "give a local copy with --data (or CIFAR10_DIR in the notebooks)"),)) from None


def split_size(root, train=True, download=False):
    """How many images a split holds, without decoding any: checks before reading the data."""
    return split_listing(root, train, download)[0]


def split_listing(root, train=True, download=False):
    """(images, digest of their class/name list) of a split, without decoding any: a resumed run
    sees an image renamed, moved to another class, added or removed. torchvision's files: no digest."""
    root, split = Path(root), "train" if train else "test"
    if (root / split).is_dir():
        files = image_files(root / split)
        listing = "".join(f"{CLASSES[label]}/{path.name}\n" for label, path in files)
        return len(files), hashlib.sha256(listing.encode(errors="surrogateescape")).hexdigest()[:16]  # any name
    _torchvision_folder(root, train, download)
    return (50_000 if train else 10_000), None  # torchvision's CIFAR-10


def _torchvision_folder(root, train, download):
    """torchvision's folder in root; one line saying what to do when it is missing and not downloaded."""
    batches = root / "cifar-10-batches-py"  # torchvision's CIFAR10.base_folder
    if root.exists() and not root.is_dir():
        raise DataNotFound(f"CIFAR-10 data folder {root} is not a folder", (
            ("--data", "point --data (CIFAR10_DIR in the notebooks) at the folder holding a copy"),))
    if not download and not batches.is_dir():
        if not root.exists():
            raise DataNotFound(f"CIFAR-10 data folder {root} does not exist", (
                ("--data", "point --data (CIFAR10_DIR in the notebooks) at a copy"),
                ("--download", "pass --download to fetch it with torchvision")))
        split = "train" if train else "test"
        raise DataNotFound(f"no CIFAR-10 split '{split}' in {root} (expected class folders {root / split}/<class>/ "
                           f"or torchvision's {batches})", (("--download", "pass --download to fetch it"),
                                                           ("--data", "point --data at another copy")))
    if not download:  # checked here, before any run starts, not when torchvision reads it
        from torchvision.datasets import CIFAR10
        meta = CIFAR10.meta["filename"], CIFAR10.meta["md5"]
        for name, md5 in (*(CIFAR10.train_list if train else CIFAR10.test_list), meta):
            if not _intact(batches / name, md5):
                raise _corrupt(batches, f"{name} is missing or not CIFAR-10's")
    return batches


def _corrupt(batches, why):
    return UserError(f"{batches} is incomplete or corrupt ({why})", (
        ("--download", "delete it and pass --download"), ("--data", "point --data at a good copy")))


def _intact(path, md5):
    """The file's MD5 is CIFAR-10's; computed once per version of the file (a few checks per command)."""
    try:
        info = path.stat()
    except OSError:
        return False
    return _md5_matches(str(path), md5, (info.st_ino, info.st_size, info.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _md5_matches(path, md5, stamp):
    from torchvision.datasets.utils import check_integrity
    return check_integrity(path, md5)


def source(root):
    """What a run read, in words, for metrics.json and the results tables."""
    root = Path(root)
    if not (root / "train").is_dir():
        return "CIFAR-10 (torchvision)"
    first = next((root / "train" / CLASSES[0]).glob("*"), None) if (root / "train" / CLASSES[0]).is_dir() else None
    return "CIFAR-10, JPEG copy" if first is not None and first.suffix.lower() in (".jpg", ".jpeg") \
        else "CIFAR-10 class folders"


class SeededLoader(DataLoader):
    """A DataLoader whose albumentations randomness follows torch's generator.

    albumentations 2 seeds each pipeline from the OS and forked workers inherit one state, so
    runs would not repeat and workers would share augmentations. Here every epoch reseeds the
    pipeline from torch's RNG (per worker via torch.initial_seed()), which `--seed` and
    checkpoints already control."""

    def __init__(self, dataset, **kwargs):
        super().__init__(dataset, worker_init_fn=_seed_worker, **kwargs)

    def __iter__(self):
        if self.num_workers == 0:
            _seed_transform(self.dataset, int(torch.randint(2**31, ())))
            return super().__iter__()
        # Ctrl-C or SIGTERM waits until the workers are forked: raised inside a fork hook (logging's
        # _releaseLock), the KeyboardInterrupt would be printed as "Exception ignored" and swallowed.
        with signals_deferred():
            return super().__iter__()


def _seed_transform(dataset, seed):
    """DDP ranks start from the same torch seed; the rank keeps their augmentations apart."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed((seed + 1_000_003 * rank) % 2**31)


def _seed_worker(worker_id):
    """Also: Ctrl-C and SIGTERM are the main process's to handle; it stops its workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    info = torch.utils.data.get_worker_info()
    _seed_transform(info.dataset, info.seed % 2**31)


def loaders(root, batch_size=512, workers=2, train_subset=None, test_subset=None, download=False,
            device="cpu", randaugment=None, distributed=False, test_batch_size=None):
    """Train and test DataLoaders: the reference (CPU, albumentations) data path."""
    train = cifar10(root, True, train_transforms(randaugment=randaugment), download, train_subset)
    test = cifar10(root, False, test_transforms(), download, test_subset)
    common = dict(num_workers=workers, pin_memory=torch.device(device).type == "cuda")
    if distributed:
        from torch.utils.data.distributed import DistributedSampler
        order = (dict(sampler=DistributedSampler(train, shuffle=True, seed=torch.initial_seed())),
                 dict(sampler=DistributedSampler(test, shuffle=False)))
    else:
        order = dict(shuffle=True), dict(shuffle=False)
    return (SeededLoader(train, batch_size=batch_size, drop_last=True, **order[0], **common),
            SeededLoader(test, batch_size=test_batch_size or batch_size, **order[1], **common))
