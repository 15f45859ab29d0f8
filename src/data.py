"""CIFAR-10 (torchvision's or a class-folder copy) as uint8 arrays, the original augmentation, the reference loaders."""
import hashlib
import os
import signal
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # else it asks PyPI for a newer version on import
import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from .class_folders import CLASSES, image_files, read_images  # noqa: E402
from .io import UserError  # noqa: E402

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
MEAN_PIXEL = tuple(round(255 * m) for m in MEAN)
# The original augmentation: pad 4 and crop back to 32, flip, one 16x16 hole half the time.
PAD, FLIP_P, HOLE, HOLE_P = 4, 0.5, 16, 0.5
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def train_transforms(pad=PAD, hole_p=HOLE_P, randaugment=None):
    """Padding and hole are the mean pixel, 0 after Normalize; `randaugment=(n_ops, magnitude)` goes first."""
    steps = [RandAugment(*randaugment)] if randaugment else []
    if pad:
        steps += [A.PadIfNeeded(32 + 2 * pad, 32 + 2 * pad, border_mode=cv2.BORDER_CONSTANT, fill=MEAN_PIXEL),
                  A.RandomCrop(32, 32)]
    steps += [A.HorizontalFlip(p=FLIP_P),
              A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(HOLE, HOLE), hole_width_range=(HOLE, HOLE),
                              fill=MEAN_PIXEL, p=hole_p),
              A.Normalize(mean=MEAN, std=STD), ToTensorV2()]
    return A.Compose(steps)


def test_transforms():
    return A.Compose([A.Normalize(mean=MEAN, std=STD), ToTensorV2()])


class RandAugment(A.ImageOnlyTransform):
    """torchvision's RandAugment as an albumentations step (albumentations has none)."""

    def __init__(self, num_ops=2, magnitude=10):
        super().__init__(p=1.0)
        import torchvision.transforms as T
        self.num_ops, self.magnitude = num_ops, magnitude
        self.op = T.RandAugment(num_ops=num_ops, magnitude=magnitude)

    def apply(self, img, **params):
        return self.op(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)).permute(1, 2, 0).numpy()


class CIFAR10Array(Dataset):
    """Images as one (N, 32, 32, 3) uint8 array: decoded once, cheap to index, subset or move to the GPU whole."""

    def __init__(self, images, labels, transform=None):
        self.images = np.ascontiguousarray(images, dtype=np.uint8)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform, self.classes = transform, CLASSES

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = self.images[i]
        return (self.transform(image=image)["image"] if self.transform else image), int(self.labels[i])


def subset_indices(total, n, seed=0):
    """The first n of a fixed permutation: nearly class-balanced, the same images every run."""
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def cifar10(root, train=True, transform=None, download=False, subset=None):
    """A class-folder copy if root has one, else torchvision's; `subset` decodes only that many (for previews)."""
    root, split = Path(root), "train" if train else "test"
    if (root / split).is_dir():
        files = image_files(root / split)
        if subset is not None and subset < len(files):
            files = [files[i] for i in subset_indices(len(files), subset)]
        return CIFAR10Array(read_images([p for _, p in files]), [label for label, _ in files], transform)
    from torchvision.datasets import CIFAR10
    check_torchvision_copy(root, train, download)
    try:
        tv = CIFAR10(str(root), train=train, download=download)
    except OSError as err:  # no network, a refused connection, a full disk
        raise UserError(f"could not download CIFAR-10 into {root} ({getattr(err, 'reason', None) or err}): give a "
                        f"local copy with --data") from None
    keep = slice(None) if subset is None or subset >= len(tv.targets) else subset_indices(len(tv.targets), subset)
    return CIFAR10Array(tv.data[keep], np.asarray(tv.targets)[keep], transform)


def check_torchvision_copy(root, train=True, download=False):
    """torchvision's files in root are CIFAR-10's: their MD5 checked before a run starts, not when it reads them."""
    if download:
        return
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity
    root, batches = Path(root), Path(root) / CIFAR10.base_folder
    if not batches.is_dir():
        raise UserError(f"no CIFAR-10 in {root} (class folders {root / ('train' if train else 'test')}/<class>/ or "
                        f"torchvision's {batches}): point --data at a copy (src.train --download fetches one)")
    meta = CIFAR10.meta["filename"], CIFAR10.meta["md5"]
    for name, md5 in (*(CIFAR10.train_list if train else CIFAR10.test_list), meta):
        if not check_integrity(str(batches / name), md5):  # False for a missing file too
            raise UserError(f"{batches / name} is missing or not CIFAR-10's (its MD5 differs): delete {batches} and "
                            f"fetch it again (src.train --download), or point --data at a good copy")


def split_listing(root, train=True, download=False):
    """(count, digest of the class/name list; torchvision's: None), decoding nothing: a resume sees images moved."""
    root, split = Path(root), "train" if train else "test"
    if (root / split).is_dir():
        files = image_files(root / split)
        listing = "".join(f"{CLASSES[label]}/{path.name}\n" for label, path in files)
        return len(files), hashlib.sha256(listing.encode(errors="surrogateescape")).hexdigest()[:16]
    check_torchvision_copy(root, train, download)
    return (50_000 if train else 10_000), None


def source(root):
    """What a run read, in words, for metrics.json and the results tables."""
    first = min((Path(root) / "train" / CLASSES[0]).glob("*"), default=None)
    jpeg = first is not None and first.suffix.lower() in (".jpg", ".jpeg")
    return "CIFAR-10 (torchvision)" if first is None else "CIFAR-10, JPEG copy" if jpeg else "CIFAR-10 class folders"


class SeededLoader(DataLoader):
    """Albumentations 2 seeds itself from the OS (one state in all forked workers); here torch's RNG, --seed's, does."""

    def __init__(self, dataset, **kwargs):
        super().__init__(dataset, worker_init_fn=_seed_worker, **kwargs)

    def __iter__(self):
        if self.num_workers == 0:
            self.dataset.transform.set_random_seed(int(torch.randint(2**31, ())))
            return super().__iter__()
        came = []  # a stop waits until the workers are up: raised as they start, it is lost, or they hang the exit
        before = {signum: signal.signal(signum, lambda signum, frame: came.append(signum)) for signum in STOP_SIGNALS}
        try:
            return super().__iter__()
        finally:
            for signum, handler in before.items():
                signal.signal(signum, handler)
            if came:
                signal.raise_signal(came[0])


def _seed_worker(worker_id):
    """Ctrl-C, SIGTERM and SIGHUP are the main process's to handle: it stops its workers itself."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**31)


def loaders(train, test, batch_size=512, workers=2, pad=PAD, hole_p=HOLE_P, randaugment=None, pin_memory=False,
            test_batch_size=None):
    """Train and test DataLoaders over two CIFAR10Arrays: the reference (CPU, albumentations) data path."""
    train = CIFAR10Array(train.images, train.labels, train_transforms(pad, hole_p, randaugment))
    test = CIFAR10Array(test.images, test.labels, test_transforms())
    common = dict(num_workers=workers, pin_memory=pin_memory)
    return (SeededLoader(train, batch_size=batch_size, shuffle=True, drop_last=True, **common),
            SeededLoader(test, batch_size=test_batch_size or batch_size, **common))
