"""GPULoader does the SAME augmentation as the albumentations pipeline in src.data, not a similar one.

Equality: with every random choice fixed, `augment` + `normalize` reproduce the user's own
albumentations steps to 1e-5. Distribution: the loader's random path draws crop offsets, flips
and holes with albumentations' distributions. Bookkeeping: labels, permutations, batch counts,
seeding and DDP shards match what the reference DataLoader path gives.
"""
import albumentations as A
import numpy as np
import pytest
import torch

from src.data import MEAN, STD, CIFAR10Array, SeededLoader, mean_pixel, train_transforms
from src.data import test_transforms as eval_transforms
from src.gpu_loader import GPULoader, augment, normalize

MEAN_PIXEL = mean_pixel(MEAN)  # (125, 123, 114)


def random_dataset(n, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return CIFAR10Array(images, np.arange(n) if labels is None else labels)


def nchw(images_hwc):
    return torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()


def unnormalize(x):
    """Float batch back to exact uint8 pixel values (normalize is invertible up to rounding)."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return torch.round((x.float() * std + mean) * 255).to(torch.int64)


def as_choices(crops, flips, holes, hole_ons):
    return (torch.tensor(crops), torch.tensor(flips), torch.tensor(holes), torch.tensor(hole_ons))


# ---------------------------------------------------------------- equality with albumentations

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
        if "CoarseDropout" in applied:
            (hx0, hy0, hx1, hy1), = applied["CoarseDropout"]["holes"].tolist()
            assert (hx1 - hx0, hy1 - hy0) == (16, 16)
            holes.append((hy0, hx0))
            hole_ons.append(True)
        else:
            holes.append((0, 0))
            hole_ons.append(False)
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


def test_augment_on_float_input_equals_uint8():
    images = nchw(random_dataset(16).images)
    choices = GPULoader(random_dataset(16), 16, True).sample_choices(16, torch.Generator().manual_seed(0))
    u8 = augment(images, *choices, MEAN_PIXEL)
    f32 = augment(images.float(), *choices, MEAN_PIXEL)
    assert u8.dtype == torch.uint8 and torch.equal(u8.float(), f32)


def test_test_split_is_normalize_only_in_order():
    ds = random_dataset(70)
    loader = GPULoader(ds, 32, train=False)
    xs, ys = zip(*loader)
    expected = torch.stack([eval_transforms()(image=im)["image"] for im in ds.images])
    torch.testing.assert_close(torch.cat(xs), expected, atol=1e-5, rtol=0)
    assert torch.equal(torch.cat(ys), torch.arange(70)) and [len(y) for y in ys] == [32, 32, 6]


# ---------------------------------------------------------------- distributions of the random path

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
    # the whole output is the shifted (and maybe flipped) image, padding where it leaves the image
    x = unnormalize(batches[0][:64])
    for i in range(64):
        check_whole_image(x[i], int(dy[i]), int(dx[i]), bool(flip[i]))


def check_whole_image(x, dy, dx, flip):
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    src_c = (31 - xs if flip else xs) + dx - 4
    src_r = ys + dy - 4
    inside = (src_r >= 0) & (src_r < 32) & (src_c >= 0) & (src_c < 32)
    want = torch.where(inside[None], torch.stack([8 * src_r + 4, 8 * src_c + 4, 0 * src_r]),
                       torch.tensor(MEAN_PIXEL).view(3, 1, 1))
    assert torch.equal(x, want)


def test_holes_are_16x16_ofmean_pixel_with_rate_half_and_uniform_position():
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
    assert abs(has_hole.float().mean().item() - 0.5) < 0.02
    m = is_mean[has_hole]
    assert torch.all(m.sum((1, 2)) == 256)
    y0 = m.any(2).float().argmax(1)
    x0 = m.any(1).float().argmax(1)
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    square = ((ys >= y0[:, None, None]) & (ys < y0[:, None, None] + 16)
              & (xs >= x0[:, None, None]) & (xs < x0[:, None, None] + 16))
    assert torch.equal(m, square)  # one 16x16 square, fully inside the image
    counts = torch.bincount(y0 * 17 + x0, minlength=17 * 17)
    assert len(counts) == 289 and counts.min() > 0
    expected = len(m) / 289
    assert ((counts - expected) ** 2 / expected).sum().item() < 400  # 288 d.o.f.: mean 288, sd 24


def test_sample_choices_ranges():
    loader = GPULoader(random_dataset(4), 4, True)
    crop, flip, hole, on = loader.sample_choices(50_000, torch.Generator().manual_seed(0))
    assert crop.shape == hole.shape == (50_000, 2) and flip.dtype == on.dtype == torch.bool
    for axis in (0, 1):
        assert torch.equal(torch.unique(crop[:, axis]), torch.arange(9))
        assert torch.equal(torch.unique(hole[:, axis]), torch.arange(17))


# ---------------------------------------------------------------- bookkeeping

@pytest.mark.parametrize("n,batch", [(1000, 128), (1024, 256), (100, 512), (37, 8)])
@pytest.mark.parametrize("train", [True, False])
def test_batches_match_reference_dataloader(n, batch, train):
    ds = random_dataset(n)
    ref = SeededLoader(ds, batch_size=batch, shuffle=train, drop_last=train)
    loader = GPULoader(ds, batch, train)
    ref_sizes = [len(y) for _, y in ref]
    sizes = [len(y) for _, y in loader]
    assert len(loader) == len(ref) and sizes == ref_sizes


def test_epoch_is_a_permutation_and_labels_follow_their_images():
    ds = random_dataset(1000, labels=np.arange(1000))
    torch.manual_seed(0)
    loader = GPULoader(ds, 128, train=True)
    epochs = []
    for _ in range(2):
        ys = torch.cat([y for x, y in loader])
        assert ys.dtype == torch.int64 and len(ys) == 7 * 128 and len(torch.unique(ys)) == len(ys)
        epochs.append(ys)
    assert not torch.equal(epochs[0], epochs[1])
    # replay the first epoch from its seed: every batch is augment(images[idx]) with labels[idx]
    torch.manual_seed(0)
    seed = int(torch.randint(2**62, ()))
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(1000, generator=gen)
    images = nchw(ds.images)
    torch.manual_seed(0)
    for i, (x, y) in enumerate(loader):
        idx = perm[i * 128:(i + 1) * 128]
        assert torch.equal(y, idx)
        want = normalize(augment(images[idx], *loader.sample_choices(128, gen), MEAN_PIXEL), MEAN, STD)
        assert torch.equal(x, want)


def test_manual_seed_repeats_epochs():
    ds = random_dataset(300)
    loader = GPULoader(ds, 64, train=True)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append([torch.cat([torch.cat([x.flatten(), y.float()]) for x, y in loader]) for _ in range(2)])
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[0][1])


@pytest.mark.parametrize("train", [True, False])
def test_ranks_get_disjoint_shards_covering_the_trimmed_dataset(train):
    ds = random_dataset(1001)
    shards = []
    for rank in range(2):
        torch.manual_seed(3)  # every rank has the same global seed
        loader = GPULoader(ds, 100, train, rank=rank, world_size=2, drop_last=False)
        ys = torch.cat([y for _, y in loader])
        assert len(loader) == 5 and len(ys) == 500
        shards.append(ys)
    a, b = shards
    assert not set(a.tolist()) & set(b.tolist())
    assert len(set(a.tolist()) | set(b.tolist())) == 1000
    if not train:
        assert torch.equal(a, torch.arange(0, 1000, 2)) and torch.equal(b, torch.arange(1, 1000, 2))


def test_dtype_and_channels_last():
    loader = GPULoader(random_dataset(64), 32, True, channels_last=True, dtype=torch.bfloat16)
    x, y = next(iter(loader))
    assert x.dtype == torch.bfloat16 and x.shape == (32, 3, 32, 32) and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)
