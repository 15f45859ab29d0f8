"""The original augmentation does what it says (a 16x16 hole of the mean pixel, pad and crop, --pad 0,
--hole-p 0, RandAugment in front), on small generated images; the reference loaders and the cheap look-ups
(listings, subsets, source) on a tiny class-folder copy."""
import shutil
import signal
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader

from src import class_folders
from src.data import (MEAN, STD, STOP_SIGNALS, CIFAR10Array, RandAugment, SeededLoader, _seed_worker, cifar10, loaders,
                      source, split_listing, subset_indices, train_transforms)
from src.io import UserError

pytestmark = pytest.mark.usefixtures("one_thread")
FILL = np.array([round(255 * m) for m in MEAN], dtype=np.uint8)


def normalized(image):
    """An HWC uint8 image as the model sees it, computed without albumentations."""
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1) / 255.0
    return (chw - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def random_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_hole_is_one_16x16_square_filled_with_the_mean_when_p_is_1():
    image = np.full((32, 32, 3), 7, np.uint8)
    pipeline = train_transforms(pad=0, hole_p=1.0)
    pipeline.set_random_seed(0)
    for _ in range(50):
        x = pipeline(image=image)["image"]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        hole = torch.isclose(x, normalized(FILL[None, None]), atol=1e-5).all(0)
        rows, cols = torch.nonzero(hole, as_tuple=True)
        assert len(rows) == 16 * 16 and rows.max() - rows.min() == 15 and cols.max() - cols.min() == 15
        assert torch.allclose(x[:, ~hole], normalized(np.full((1, 1, 3), 7, np.uint8))[:, 0], atol=1e-5)


@pytest.mark.parametrize("pad", [4, 2, 0])
def test_without_a_hole_the_output_is_a_shifted_crop_or_its_mirror_and_pad_0_only_flips(pad):
    image = random_images(1)[0]
    padded = np.tile(FILL, (32 + 2 * pad, 32 + 2 * pad, 1))
    padded[pad:pad + 32, pad:pad + 32] = image
    crops = [padded[dy:dy + 32, dx:dx + 32] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
    reference = torch.stack([normalized(view) for crop in crops for view in (crop, crop[:, ::-1])])
    pipeline = train_transforms(pad=pad, hole_p=0.0)
    pipeline.set_random_seed(1)
    seen = []
    for _ in range(60):
        distance = (reference - pipeline(image=image)["image"]).abs().flatten(1).max(1).values
        assert distance.min() < 1e-5  # one of the (2 pad + 1)^2 crops, flipped or not
        seen.append(int(distance.argmin()))
    assert len(set(seen)) > min(25, len(reference) - 1) and 15 < sum(i % 2 for i in seen) < 45


def test_randaugment_is_torchvisions_and_comes_first():
    """With no crop and no hole, the pipeline is torchvision's RandAugment (drawing from torch's generator),
    then a flip, then Normalize."""
    pipeline = train_transforms(pad=0, hole_p=0.0, randaugment=(2, 12))
    assert isinstance(pipeline.transforms[0], RandAugment)
    changed = 0
    for i, image in enumerate(random_images(12)):
        torch.manual_seed(i)
        x = pipeline(image=image)["image"]
        torch.manual_seed(i)
        expected = T.RandAugment(2, 12)(torch.from_numpy(image).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        assert any(torch.allclose(x, normalized(view), atol=1e-5) for view in (expected, expected[:, ::-1]))
        changed += not np.array_equal(expected, image)
    assert changed >= 9


def test_a_subset_decodes_only_its_images_and_keeps_their_labels(tiny_cifar, monkeypatch):
    full = cifar10(tiny_cifar, train=True)
    assert full.images.shape == (160, 32, 32, 3) and full.images.dtype == np.uint8
    assert np.bincount(full.labels).tolist() == [16] * 10 and full[20][1] == full.labels[20] == 1
    decoded, read = [], class_folders.read_image
    monkeypatch.setattr(class_folders, "read_image", lambda path: decoded.append(path) or read(path))
    picked = cifar10(tiny_cifar, train=True, subset=8)
    assert len(decoded) == 8  # only the subset's files are decoded
    keep = subset_indices(160, 8)  # the same images, every run, as subsetting the whole split
    assert np.array_equal(picked.images, full.images[keep]) and np.array_equal(picked.labels, full.labels[keep])
    assert len(set(picked.labels.tolist())) >= 4


def test_reference_loaders_batch_shuffle_and_keep_labels(tiny_cifar):
    torch.manual_seed(0)
    train, test = loaders(cifar10(tiny_cifar, True), cifar10(tiny_cifar, False), batch_size=16, workers=0,
                          test_batch_size=64)
    assert len(train) == 10 and len(test) == 1  # 160 train images, drop_last; 40 test in one batch
    xs, ys = zip(*train)
    assert all(x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 for x in xs)
    labels = torch.cat(ys)
    assert sorted(labels.tolist()) == sorted(train.dataset.labels.tolist())
    assert labels.tolist() != sorted(labels.tolist())  # shuffled
    x, y = next(iter(test))  # test: in order, exactly the normalized pixels
    assert y.tolist() == test.dataset.labels.tolist()
    assert torch.allclose(x, torch.stack([normalized(image) for image in test.dataset.images]), atol=1e-5)
    steps = loaders(test.dataset, test.dataset, workers=0, pad=0, hole_p=0.0)[0].dataset.transform.transforms
    assert [(type(s).__name__, s.p) for s in steps[:2]] == [("HorizontalFlip", 0.5), ("CoarseDropout", 0)]  # no crop


def test_split_listing_counts_without_decoding_and_sees_renamed_or_moved_images(tiny_cifar, tmp_path):
    root = shutil.copytree(tiny_cifar, tmp_path / "copy")
    count, digest = split_listing(root, True)
    assert count == 160 and split_listing(root, False)[0] == 40 and split_listing(tiny_cifar, True) == (160, digest)
    (root / "train/cat/0000.png").rename(root / "train/cat/0000b.png")
    renamed = split_listing(root, True)
    (root / "train/cat/0000b.png").rename(root / "train/dog/0000b.png")
    moved = split_listing(root, True)
    assert renamed[0] == moved[0] == 160 and len({digest, renamed[1], moved[1]}) == 3
    (root / "train/dog/0000b.png").unlink()
    assert split_listing(root, True)[0] == 159
    with pytest.raises(UserError, match="no CIFAR-10 in"):
        split_listing(tmp_path / "nothing", True)
    assert source(root) == "CIFAR-10 class folders"  # what a run read: PNGs (the JPEG copy: test_real_data)
    assert source(tmp_path / "nothing") == "CIFAR-10 (torchvision)"


def test_a_stop_waits_until_the_workers_are_up_and_is_not_theirs_to_handle(monkeypatch):
    """Raised as they start, a Ctrl-C is dropped or hangs the exit; any thread (torch has several) may take it."""
    go, started, before = threading.Event(), [], {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    taker = threading.Thread(target=lambda: go.wait() and signal.raise_signal(signal.SIGTERM))
    taker.start()
    def start(self):  # as torch starts the workers, a thread of the process takes a SIGTERM
        go.set()
        taker.join()
        started.append(self)
        return iter(())
    monkeypatch.setattr(DataLoader, "__iter__", start)
    images = CIFAR10Array(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4), train_transforms())
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(dataset=images, seed=1))
    try:
        signal.signal(signal.SIGTERM, stop := lambda *_: 1 / 0)  # a stop raises, as src.cli's does
        with pytest.raises(ZeroDivisionError):
            iter(SeededLoader(images, num_workers=2, batch_size=2))
        assert started and signal.getsignal(signal.SIGTERM) is stop  # the start ran to its end, then the stop came
        _seed_worker(0)  # as a worker starts: the main process stops its workers itself
        assert all(signal.getsignal(signum) == signal.SIG_IGN for signum in STOP_SIGNALS)
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
