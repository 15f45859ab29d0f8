"""GPULoader does the SAME augmentation as the albumentations pipeline in src.data, not a similar one.
Equality: with every random choice fixed, `augment` + `normalize` reproduce the user's own albumentations
steps to 1e-5. Distribution: crop offsets, flips and holes drawn as albumentations draws them; --pad 0
--hole-p 0 leaves flips only; RandAugment runs on the batch before the crop. Bookkeeping: labels,
permutations, batch counts and seeding as the reference DataLoader path gives them."""
import albumentations as A
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from src.data import MEAN, STD, CIFAR10Array, train_transforms
from src.data import test_transforms as eval_transforms
from src.gpu_augment import rand_augment
from src.gpu_loader import GPULoader, augment, normalize

pytestmark = pytest.mark.usefixtures("one_thread")
MEAN_PIXEL = tuple(round(255 * m) for m in MEAN)  # (125, 123, 114)


def random_dataset(n, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return CIFAR10Array(images, np.arange(n) if labels is None else labels)


def nchw(images_hwc):
    return torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()


def unnormalize(x):
    """Float batch back to exact uint8 pixel values (normalize is invertible up to rounding)."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return torch.round((x.float() * std + mean) * 255).to(torch.int64)


def as_choices(crops, flips, holes, hole_ons):
    return (torch.tensor(crops), torch.tensor(flips), torch.tensor(holes), torch.tensor(hole_ons))


def test_matches_user_pipeline_with_its_own_random_choices():
    """Run the user's exact steps (train_transforms()) with save_applied_params, read the crop,
    flip and hole it chose for each image, feed the same choices to augment: same tensors."""
    ds = random_dataset(300)
    compose = A.Compose(train_transforms().transforms, save_applied_params=True)
    compose.set_random_seed(123)
    expected, crops, flips, holes, hole_ons = [], [], [], [], []
    for image in ds.images:
        out = compose(image=image)
        applied = dict(out["applied_transforms"])
        x_min, y_min, x_max, y_max = applied["RandomCrop"]["crop_coords"]
        assert (x_max - x_min, y_max - y_min) == (32, 32)
        crops.append((y_min, x_min))
        flips.append("HorizontalFlip" in applied)
        hole = applied.get("CoarseDropout")
        if hole:
            (hx0, hy0, hx1, hy1), = hole["holes"].tolist()
            assert (hx1 - hx0, hy1 - hy0) == (16, 16)
        holes.append((hy0, hx0) if hole else (0, 0))
        hole_ons.append(bool(hole))
        expected.append(out["image"])
    assert 0 < sum(flips) < len(flips) and 0 < sum(hole_ons) < len(hole_ons)
    got = normalize(augment(nchw(ds.images), *as_choices(crops, flips, holes, hole_ons), MEAN_PIXEL), MEAN, STD)
    torch.testing.assert_close(got, torch.stack(expected), atol=1e-5, rtol=0)


@pytest.mark.parametrize("crop", [(0, 0), (8, 8), (0, 8), (8, 0), (3, 5)])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("hole", [None, (0, 0), (16, 16), (0, 16), (7, 2)])
def test_matches_user_steps_at_extreme_choices(crop, flip, hole):
    """Every corner crop and hole (which random sampling may miss) through the user's own
    transform objects, applied with forced parameters."""
    pad_t, crop_t, flip_t, drop_t, norm_t, to_tensor = train_transforms().transforms
    images = random_dataset(3, seed=1).images
    expected = []
    for image in images:
        img = pad_t.apply(image, pad_top=4, pad_bottom=4, pad_left=4, pad_right=4)
        img = crop_t.apply(img, crop_coords=(crop[1], crop[0], crop[1] + 32, crop[0] + 32))
        img = flip_t.apply(img) if flip else img
        if hole is not None:
            img = drop_t.apply(img, holes=np.array([[hole[1], hole[0], hole[1] + 16, hole[0] + 16]]), seed=0)
        expected.append(to_tensor.apply(norm_t.apply(img)))
    n = len(images)
    choices = as_choices([crop] * n, [flip] * n, [hole or (0, 0)] * n, [hole is not None] * n)
    got = normalize(augment(nchw(images), *choices, MEAN_PIXEL), MEAN, STD)
    torch.testing.assert_close(got, torch.stack(expected), atol=1e-5, rtol=0)


def test_test_split_is_normalize_only_in_order():
    ds = random_dataset(70)
    loader = GPULoader(ds, 32, train=False)
    xs, ys = zip(*loader)
    expected = torch.stack([eval_transforms()(image=im)["image"] for im in ds.images])
    torch.testing.assert_close(torch.cat(xs), expected, atol=1e-5, rtol=0)
    assert torch.equal(torch.cat(ys), torch.arange(70)) and [len(y) for y in ys] == [32, 32, 6]


def coded_dataset(n):
    """Each pixel says where it came from: R = 8*row + 4, G = 8*col + 4, B = 0. The mean pixel
    (125, 123, 114) never occurs, so padding and holes are recognisable too."""
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    image = np.stack([8 * r + 4, 8 * c + 4, 0 * r], -1).astype(np.uint8)
    return CIFAR10Array(np.repeat(image[None], n, 0), np.zeros(n))


def test_crop_offsets_uniform_over_81_positions_and_flip_rate_half():
    """Decode each output's crop offset and flip from its pixels, over several epochs."""
    torch.manual_seed(0)
    loader = GPULoader(coded_dataset(2048), 512, train=True, hole_p=0.0)
    batches = [x for _ in range(8) for x, _ in loader]
    assert all(x.shape[1:] == (3, 32, 32) for x in batches)
    centre = unnormalize(torch.cat([x[:, :, 16:17, 15:17] for x in batches]))
    rows = (centre[:, 0, 0, 1] - 4) // 8  # source image row of output pixel (16, 16)
    cols = (centre[:, 1, 0] - 4) // 8     # source image columns of output pixels (16, 15), (16, 16)
    flip = cols[:, 1] < cols[:, 0]
    assert torch.all((cols[:, 1] - cols[:, 0]).abs() == 1)
    dy = rows - 12                                  # unflipped: out (y, x) <- image (y + dy - 4, x + dx - 4)
    dx = torch.where(flip, cols[:, 1] - 11, cols[:, 1] - 12)
    counts = torch.bincount(dy * 9 + dx, minlength=81)
    assert dy.min() == 0 and dy.max() == 8 and dx.min() == 0 and dx.max() == 8 and len(counts) == 81
    expected = len(centre) / 81
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert counts.min() > 0 and chi2 < 140, chi2  # 80 d.o.f.: mean 80, sd 12.6
    assert abs(flip.float().mean().item() - 0.5) < 0.02


def test_holes_are_16x16_of_the_mean_pixel_with_rate_half_and_uniform_position():
    """pad=0 leaves a constant image unchanged except for the hole, so the mean-valued pixels are
    exactly the hole."""
    torch.manual_seed(1)
    value = np.full((32, 32, 3), (200, 10, 60), np.uint8)
    loader = GPULoader(CIFAR10Array(np.repeat(value[None], 1024, 0), np.zeros(1024)), 256, True, pad=0)
    x = unnormalize(torch.cat([x for _ in range(8) for x, _ in loader]))
    is_mean = (x == torch.tensor(MEAN_PIXEL).view(1, 3, 1, 1)).all(1)
    is_value = (x == torch.tensor((200, 10, 60)).view(1, 3, 1, 1)).all(1)
    assert torch.all(is_mean | is_value)
    has_hole = is_mean.any((1, 2))
    m = is_mean[has_hole]
    assert abs(has_hole.float().mean().item() - 0.5) < 0.02 and torch.all(m.sum((1, 2)) == 256)
    y0, x0 = m.any(2).float().argmax(1), m.any(1).float().argmax(1)
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    square = ((ys >= y0[:, None, None]) & (ys < y0[:, None, None] + 16)
              & (xs >= x0[:, None, None]) & (xs < x0[:, None, None] + 16))
    assert torch.equal(m, square)  # one 16x16 square, fully inside the image
    counts = torch.bincount(y0 * 17 + x0, minlength=17 * 17)
    expected = len(m) / 289
    assert counts.min() > 0 and ((counts - expected) ** 2 / expected).sum().item() < 400  # 288 d.o.f.: mean 288, sd 24


def test_pad_0_and_hole_p_0_only_flip():
    ds = random_dataset(512)
    torch.manual_seed(2)
    images, mirrored = nchw(ds.images).long(), []
    for x, y in GPULoader(ds, 128, True, pad=0, hole_p=0.0):
        x = unnormalize(x)
        same, mirror = ((x == v).flatten(1).all(1) for v in (images[y], images[y].flip(-1)))
        assert torch.all(same ^ mirror)
        mirrored.append(mirror)
    assert abs(torch.cat(mirrored).float().mean().item() - 0.5) < 0.07  # 512 images: sd 0.022


@pytest.mark.parametrize("randaugment, pad, hole_p, flip_p", [(None, 4, 0.5, 0.5), ((2, 12), 0, 0.0, 0.0),
                                                              ((2, 12), 4, 0.5, 0.5)])
def test_an_epoch_replayed_from_its_seed(randaugment, pad, hole_p, flip_p):
    """Each batch is images[idx], labels[idx] for idx the epoch's permutation, through gpu_augment.rand_augment
    (if asked for), then the crop, flip and hole: every choice from the generator the epoch seeded. With no
    crop, flip or hole: rand_augment alone."""
    ds = random_dataset(96)
    loader = GPULoader(ds, 32, True, pad=pad, hole_p=hole_p, flip_p=flip_p, randaugment=randaugment)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
    perm, images = torch.randperm(96, generator=gen), nchw(ds.images)
    torch.manual_seed(0)
    for i, (x, y) in enumerate(loader):
        idx = perm[i * 32:(i + 1) * 32]
        augmented = rand_augment(images[idx], *randaugment, gen) if randaugment else images[idx]
        assert torch.equal(y, idx) and (not randaugment or (augmented != images[idx]).flatten(1).any(1).sum() > 20)
        want = augment(augmented, *loader.sample_choices(32, gen), MEAN_PIXEL, pad)
        assert torch.equal(x, normalize(want, MEAN, STD))
        assert pad or torch.equal(x, normalize(augmented, MEAN, STD))


@pytest.mark.parametrize("n,batch", [(1000, 128), (1024, 256), (100, 512), (37, 8)])
@pytest.mark.parametrize("train", [True, False])
def test_batches_match_reference_dataloader(n, batch, train):
    ds = random_dataset(n)
    ref, loader = DataLoader(ds, batch_size=batch, shuffle=train, drop_last=train), GPULoader(ds, batch, train)
    assert len(loader) == len(ref) and [len(y) for _, y in loader] == [len(y) for _, y in ref]


def test_every_epoch_is_another_permutation():
    torch.manual_seed(0)
    loader = GPULoader(random_dataset(1000), 128, train=True)
    first, second = (torch.cat([y for _, y in loader]) for _ in range(2))
    assert all(len(ys) == 7 * 128 == len(torch.unique(ys)) and ys.dtype == torch.int64 for ys in (first, second))
    assert not torch.equal(first, second)


def test_float_batches_in_channels_last():
    loader = GPULoader(random_dataset(64), 32, True, channels_last=True)
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and x.shape == (32, 3, 32, 32) and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)
