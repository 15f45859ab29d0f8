"""The original augmentation does what it says, on small generated images; the loaders and the
cheap look-ups (split sizes, subsets, source) on a tiny class-folder copy."""
import numpy as np
import pytest
import torch

from src import class_folders
from src.data import (MEAN, STD, CIFAR10Array, cifar10, loaders, source, split_size,
                      test_transforms as eval_transforms, train_transforms)

FILL = np.array([round(255 * m) for m in MEAN], dtype=np.uint8)


def normalized(pixel):
    return (torch.tensor(pixel / 255.0, dtype=torch.float32) - torch.tensor(MEAN)) / torch.tensor(STD)


def fill_mask(x):
    """Pixels of a CHW output that equal the mean pixel after Normalize."""
    return torch.isclose(x, normalized(FILL)[:, None, None], atol=1e-5).all(0)


def test_hole_is_one_16x16_square_filled_with_the_mean_when_p_is_1():
    image = np.full((32, 32, 3), 7, np.uint8)
    pipeline = train_transforms(pad=0, hole_p=1.0)
    pipeline.set_random_seed(0)
    for _ in range(50):
        x = pipeline(image=image)["image"]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        rows, cols = torch.nonzero(fill_mask(x), as_tuple=True)
        assert len(rows) == 16 * 16
        assert rows.max() - rows.min() == 15 and cols.max() - cols.min() == 15
        assert torch.allclose(x[:, ~fill_mask(x)], normalized(np.array([7, 7, 7]))[:, None], atol=1e-5)


def test_no_hole_when_p_is_0_and_pad_crop_only_shifts_the_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pipeline = train_transforms(hole_p=0.0, flip_p=0.0)
    pipeline.set_random_seed(1)
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    padded[:4], padded[-4:], padded[:, :4], padded[:, -4:] = FILL, FILL, FILL, FILL
    reference = torch.stack([eval_transforms()(image=padded[dy:dy + 32, dx:dx + 32])["image"]
                             for dy in range(9) for dx in range(9)])
    for _ in range(30):
        x = pipeline(image=image)["image"]
        assert x.shape == (3, 32, 32)
        assert (reference - x).abs().flatten(1).max(1).values.min() < 1e-5  # one of the 81 crops


def test_test_transform_only_normalizes():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = eval_transforms()(image=image)["image"]
    expected = (torch.from_numpy(image).permute(2, 0, 1) / 255.0 - torch.tensor(MEAN)[:, None, None]) \
        / torch.tensor(STD)[:, None, None]
    assert torch.allclose(x, expected, atol=1e-5)


def test_labels_never_change_and_subset_is_fixed():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(40) % 10
    dataset = CIFAR10Array(images, labels, train_transforms(hole_p=1.0))
    for i in range(40):
        assert dataset[i][1] == labels[i]
    raw = CIFAR10Array(images, labels)
    assert raw[3][0].dtype == np.uint8 and raw[3][1] == 3
    subset = raw.subset(10)
    assert len(subset) == 10 and raw.subset(None) is raw and raw.subset(40) is raw
    again = raw.subset(10)
    assert np.array_equal(subset.images, again.images) and np.array_equal(subset.labels, again.labels)
    for image, label in zip(subset.images, subset.labels):  # each subset image keeps its own label
        assert labels[np.flatnonzero((images == image).all(axis=(1, 2, 3)))[0]] == label


def test_reference_loaders_batch_shuffle_and_keep_labels(tiny_cifar):
    torch.manual_seed(0)
    train, test = loaders(tiny_cifar, batch_size=16, workers=0, test_batch_size=64)
    assert len(train) == 10 and len(test) == 1  # 160 train images, drop_last; 40 test in one batch
    xs, ys = zip(*train)
    assert all(x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 for x in xs)
    labels = torch.cat(ys)
    assert sorted(labels.tolist()) == sorted(train.dataset.labels.tolist())
    assert labels.tolist() != sorted(labels.tolist())  # shuffled
    x, y = next(iter(test))
    assert x.shape == (40, 3, 32, 32) and y.tolist() == test.dataset.labels.tolist()  # test: in order
    # what the model sees of a test image is exactly its normalized pixels
    assert torch.allclose(x[0], eval_transforms()(image=test.dataset.images[0])["image"])


def test_split_sizes_subsets_and_source_read_no_more_than_needed(tiny_cifar, monkeypatch):
    assert (split_size(tiny_cifar, True), split_size(tiny_cifar, False)) == (160, 40)
    full = cifar10(tiny_cifar, train=True)
    decoded, read = [], class_folders.read_image
    monkeypatch.setattr(class_folders, "read_image", lambda path: decoded.append(path) or read(path))
    picked = cifar10(tiny_cifar, train=True, subset=8, seed=1)
    assert len(decoded) == 8  # only the subset's files are decoded
    same = full.subset(8, seed=1)  # the same images as subsetting the whole split, with their labels
    assert np.array_equal(picked.images, same.images) and np.array_equal(picked.labels, same.labels)
    assert picked.images.shape == (8, 32, 32, 3) and picked.images.dtype == np.uint8
    assert source(tiny_cifar) == "CIFAR-10 class folders"  # PNGs; the JPEG copy says so (test_real_data)
    assert source("/nonexistent") == "CIFAR-10 (torchvision)"


def test_empty_split_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        CIFAR10Array(np.zeros((0, 32, 32, 3), np.uint8), [])
