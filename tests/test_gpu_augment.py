"""src.gpu_augment against torchvision's RandAugment, op by op and end to end.

Tolerance everywhere: 0 (bit-identical uint8 images). gpu_augment repeats torchvision's float32
arithmetic in the same order (matrices in float64 cast to float32, the same sampling grid, the
same truncations to uint8); the one rewritten step, Sharpness's 3x3 blur, sums integers and
divides by 13, which is never within 1/26 of a rounding tie, so it rounds as torchvision does.
"""
import math

import pytest
import torch
import torch.nn.functional as NF
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from src import gpu_augment as G

SIGNED = [n for n, (_, s) in G.OPS.items() if s]
VALUED_UNSIGNED = ["Posterize", "Solarize"]
NO_VALUE = ["Identity", "AutoContrast", "Equalize"]


def tv_op(img, name, v):
    """One torchvision op on one (3, H, W) uint8 image, as RandAugment's _apply_op calls it."""
    nearest = InterpolationMode.NEAREST
    if name in ("ShearX", "ShearY"):
        shear = [math.degrees(math.atan(v)), 0.0] if name == "ShearX" else [0.0, math.degrees(math.atan(v))]
        return TF.affine(img, 0.0, [0, 0], 1.0, shear, nearest, None, center=[0, 0])
    if name in ("TranslateX", "TranslateY"):
        t = [int(v), 0] if name == "TranslateX" else [0, int(v)]
        return TF.affine(img, 0.0, t, 1.0, [0.0, 0.0], nearest, None)
    return {
        "Identity": lambda: img,
        "Rotate": lambda: TF.rotate(img, v, nearest, fill=None),
        "Brightness": lambda: TF.adjust_brightness(img, 1.0 + v),
        "Color": lambda: TF.adjust_saturation(img, 1.0 + v),
        "Contrast": lambda: TF.adjust_contrast(img, 1.0 + v),
        "Sharpness": lambda: TF.adjust_sharpness(img, 1.0 + v),
        "Posterize": lambda: TF.posterize(img, int(v)),
        "Solarize": lambda: TF.solarize(img, v),
        "AutoContrast": lambda: TF.autocontrast(img),
        "Equalize": lambda: TF.equalize(img),
    }[name]()


@pytest.fixture(scope="module")
def images():
    """8 noise images plus smooth, low-contrast, saturated and flat ones (16, 3, 32, 32) uint8."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    grad = torch.stack([xx * 8, yy * 8, (xx + yy) * 4]).clamp(0, 255)
    coarse = torch.randint(0, 256, (2, 3, 8, 8), generator=g).float()
    smooth = NF.interpolate(coarse, size=32, mode="bilinear").round()
    low = 100 + grad // 6                                     # values 100..142: contrast ops matter
    saturated = torch.where(grad > 128, 255, 0)               # only 0 and 255: Solarize at bin 0
    flat = torch.full((3, 32, 32), 77)                        # flat channels: AutoContrast/Equalize no-ops
    rest = torch.stack([grad, grad.flip(-1), grad.transpose(1, 2), low, saturated, flat])
    return torch.cat([noise, smooth.to(torch.uint8), rest.to(torch.uint8)])


def apply_ops(images, op, values):
    """uint8 (B, 3, H, W) -> uint8: image i gets op index op[i] with value values[i] (signed)."""
    return G._apply(images.float(), op, values).to(torch.uint8)


def apply_op(images, op, values):
    """The op named `op` on every image, with per-image values (B,)."""
    return apply_ops(images, torch.full((len(images),), G.IDX[op], device=images.device), values)


def reference(images, names, values):
    return torch.stack([tv_op(im, n, float(v)) for im, n, v in zip(images, names, values)])


def test_op_table_matches_torchvision():
    for size in [(32, 32), (24, 40)]:
        space = T.RandAugment()._augmentation_space(31, size)
        assert list(space) == list(G.OPS)
        for m in [0, 1, 12, 30]:
            vals, signed = G.op_values(m, size)
            for i, (mags, s) in enumerate(space.values()):
                assert vals[i].item() == (float(mags[m]) if mags.ndim else 0.0)
                assert signed[i].item() == s


CASES = ([(n, m, s) for n in SIGNED for m in (0, 12, 20, 30) for s in (1, -1)]
         + [(n, m, 1) for n in VALUED_UNSIGNED for m in (0, 12, 20, 30)] + [(n, 0, 1) for n in NO_VALUE])


@pytest.mark.parametrize("name,mag,sign", CASES)
def test_op_matches_torchvision(images, name, mag, sign):
    """Bin 20 puts ShearX/ShearY sampling points exactly on pixel-rounding ties (0.2 * 2.5 = 0.5)."""
    v = sign * G.op_values(mag, (32, 32))[0][G.IDX[name]].item()
    out = apply_op(images, name, torch.full((len(images),), v))
    assert out.dtype == torch.uint8
    assert torch.equal(out, reference(images, [name] * len(images), [v] * len(images)))


@pytest.mark.parametrize("name,high", [("ShearX", 0.3), ("ShearY", 0.3), ("TranslateX", 14.5),
                                       ("TranslateY", 14.5), ("Rotate", 30.0)])
def test_geometric_per_image_values(images, name, high):
    """A different, off-grid value per image in one batch: per-image matrices, still exact."""
    v = torch.empty(len(images)).uniform_(-high, high, generator=torch.Generator().manual_seed(1))
    assert torch.equal(apply_op(images, name, v), reference(images, [name] * len(images), v))


def test_mixed_ops_in_one_batch(images):
    ops = torch.arange(len(images)) % 14
    vals, signed = G.op_values(30, (32, 32))
    v = torch.where(signed[ops] & (torch.arange(len(images)) % 3 == 0), -vals[ops], vals[ops])
    out = apply_ops(images, ops, v)
    assert torch.equal(out, reference(images, [list(G.OPS)[i] for i in ops], v))


@pytest.mark.parametrize("num_ops,magnitude", [(2, 12), (3, 30)])
def test_matches_torchvision_randaugment(images, monkeypatch, num_ops, magnitude):
    """torchvision's own T.RandAugment per image, its torch.randint fed our draws: same images."""
    ops, negate = G.sample(len(images), num_ops, torch.Generator().manual_seed(magnitude))
    out = G.rand_augment(images, num_ops, magnitude, None, choices=(ops, negate))
    aug, state = T.RandAugment(num_ops, magnitude), {}

    def fake_randint(high, size, **kw):  # RandAugment draws an op (high 14), then a sign if signed
        i, k = state["i"], state["k"]
        if high == len(G.OPS):
            state["k"] = k = k + 1
            return torch.tensor([int(ops[k, i])])
        return torch.tensor([int(negate[k, i])])

    monkeypatch.setattr(torch, "randint", fake_randint)
    for i, im in enumerate(images):
        state.update(i=i, k=-1)
        assert torch.equal(out[i], aug(im)), f"image {i}"
        assert state["k"] == num_ops - 1


def test_sample_distribution():
    n, num_ops = 20000, 2
    ops, negate = G.sample(n, num_ops, torch.Generator().manual_seed(0))
    assert ops.shape == negate.shape == (num_ops, n)      # exactly num_ops draws per image
    counts = torch.bincount(ops.flatten(), minlength=14).double()
    expected = n * num_ops / 14
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 34.53                                    # chi-square, 13 dof, p = 0.001
    signed = G.op_values(0, (32, 32))[1][ops]
    frac = negate[signed].double().mean().item()
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / signed.sum().item())


def test_rand_augment_applies_num_ops_rounds(images, monkeypatch):
    """One op per image per round, num_ops rounds, with the ops that sample() draws."""
    seen, apply = [], G._apply
    monkeypatch.setattr(G, "_apply", lambda x, op, v: seen.append(op) or apply(x, op, v))
    G.rand_augment(images, 3, 9, torch.Generator().manual_seed(5))
    ops, _ = G.sample(len(images), 3, torch.Generator().manual_seed(5))
    assert len(seen) == 3 and all(torch.equal(s, o) for s, o in zip(seen, ops))


def test_seeds_and_global_rng(images):
    state = torch.get_rng_state()
    run = lambda seed: G.rand_augment(images, 2, 12, torch.Generator().manual_seed(seed))
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(G.rand_augment(images, 2, 12, g), G.rand_augment(images, 2, 12, g))
    assert torch.equal(torch.get_rng_state(), state)       # nothing drawn from the global RNG


def test_dtype_shape_device_and_input_kept(images):
    before = images.clone()
    out = G.rand_augment(images, 2, 12, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == images.shape and out.device == images.device
    assert torch.equal(images, before)


def test_magnitude_zero(images):
    """At bin 0 every op is the identity except Solarize (threshold 255 inverts 255 -> 0),
    AutoContrast and Equalize (no magnitude) -- as torchvision does."""
    changes = {"Solarize", "AutoContrast", "Equalize"}
    vals = G.op_values(0, (32, 32))[0]
    for i, name in enumerate(G.OPS):
        for sign in ((1, -1) if name in SIGNED else (1,)):
            out = apply_op(images, name, torch.full((len(images),), sign * vals[i].item()))
            tv_same = all(torch.equal(tv_op(im, name, sign * vals[i].item()), im) for im in images)
            assert torch.equal(out, images) == tv_same == (name not in changes), name
    solarized = apply_op(images, "Solarize", torch.full((len(images),), 255.0))
    assert torch.equal(solarized, torch.where(images == 255, 0, images).to(torch.uint8))
    keep = torch.tensor([i for i, n in enumerate(G.OPS) if n not in changes])
    choices = G.sample(len(images), 2, torch.Generator().manual_seed(0))
    choices = (keep[choices[0] % len(keep)], choices[1])
    assert torch.equal(G.rand_augment(images, 2, 0, None, choices=choices), images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(images, monkeypatch):
    """Same choices on the GPU give the same images, TF32 allowed (no matmul or conv is used)."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    big = images.repeat(32, 1, 1, 1)
    for mag in (12, 30):
        ops, negate = G.sample(len(big), 2, torch.Generator().manual_seed(mag))
        cpu = G.rand_augment(big, 2, mag, None, choices=(ops, negate))
        gpu = G.rand_augment(big.cuda(), 2, mag, None, choices=(ops.cuda(), negate.cuda()))
        assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
    g = torch.Generator(device="cuda").manual_seed(0)
    assert G.rand_augment(big.cuda(), 2, 12, g).device.type == "cuda"
