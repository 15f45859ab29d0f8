"""On the real images (CIFAR10_DIR, e.g. ../shared/cifar10-jpeg): counts, and that a short CPU
training learns. These fail, not skip, when CIFAR10_DIR is set but the data is missing."""
import numpy as np
import pytest
import torch

from src.data import CLASSES, cifar10, loaders, source, split_size
from src.models import convmixer
from src.trainers import train_one_cycle


@pytest.fixture(scope="module")
def splits(cifar10_dir):
    return cifar10(cifar10_dir, train=True), cifar10(cifar10_dir, train=False)


def test_jpeg_copy_has_every_image_in_cifar10_class_order(splits):
    train, test = splits
    assert (len(train), len(test)) == (50_000, 10_000)
    assert train.images.shape == (50_000, 32, 32, 3) and train.images.dtype == np.uint8
    assert np.bincount(train.labels).tolist() == [5_000] * 10
    assert np.bincount(test.labels).tolist() == [1_000] * 10
    assert train.classes == CLASSES
    # per-channel means of the test split, as the copy's README states
    assert np.allclose(test.images.reshape(-1, 3).mean(0) / 255, [0.4941, 0.4851, 0.4504], atol=2e-4)


def test_sizes_and_source_without_decoding(cifar10_dir):
    assert (split_size(cifar10_dir, True), split_size(cifar10_dir, False)) == (50_000, 10_000)
    assert source(cifar10_dir) == "CIFAR-10, JPEG copy"


def test_short_cpu_training_on_real_images_beats_chance_by_far(cifar10_dir):
    """ConvMixer-48/3 on 4,000 images, 3 epochs: measured 42.1% on 1,000 test images."""
    torch.manual_seed(0)
    train, test = loaders(cifar10_dir, batch_size=64, workers=0, train_subset=4000, test_subset=1000)
    history = train_one_cycle(convmixer(48, 3), train, test, 3, lr_max=0.01)
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.test_acc[-1] > 0.33  # chance is 0.10
