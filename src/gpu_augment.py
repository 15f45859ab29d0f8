"""torchvision's RandAugment (NEAREST, fill 0) batched on the device, bit for bit: every stage is an exact identity
for the images that did not draw it (no host syncs or data-dependent shapes) and repeats torchvision's float
arithmetic step by step, with no matmul or conv for TF32 to change."""
import functools
import math

import torch
import torch.nn.functional as F
from torchvision.transforms import RandAugment

OPS = RandAugment()._augmentation_space(31, (32, 32))  # name -> (magnitudes at 32x32, signed), in op-index order
IDX = {name: i for i, name in enumerate(OPS)}


@functools.lru_cache(maxsize=None)
def op_values(magnitude, size, device="cpu"):
    """(values, signed) of the 14 ops; cached, so that a training step copies nothing from the host (it blocks)."""
    space = RandAugment()._augmentation_space(31, size)
    values = [float(magnitudes[magnitude]) if magnitudes.ndim else 0.0 for magnitudes, _ in space.values()]
    return (torch.tensor(values, dtype=torch.float32, device=device),
            torch.tensor([signed for _, signed in space.values()], dtype=torch.bool, device=device))


def sample(n, num_ops, generator, device="cpu"):
    ops = torch.randint(len(OPS), (num_ops, n), generator=generator, device=device)
    return ops, torch.randint(2, (num_ops, n), generator=generator, device=device).bool()  # and the signs to flip


def _inverse_affine(cx, cy, angle, tx, ty, shear_x, shear_y):
    """torchvision's _get_inverse_affine_matrix (scale 1) on float64 (B,) tensors, operation for operation."""
    rot, sx, sy = angle * (math.pi / 180), shear_x * (math.pi / 180), shear_y * (math.pi / 180)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = 0.0 + (m0 * (-cx - tx) + m1 * (-cy - ty)) + cx
    m5 = 0.0 + (m3 * (-cx - tx) + m4 * (-cy - ty)) + cy
    return torch.stack([m0, m1, m2, m3, m4, m5], 1).view(-1, 2, 3)


def _affine(x, op, v):
    """As torchvision's F.affine/F.rotate; shears turn about the top-left corner (RandAugment passes center=[0, 0])."""
    H, W = x.shape[-2:]
    v, zero = v.double(), torch.zeros((), dtype=torch.float64, device=x.device)
    at = lambda name: op == IDX[name]
    shear = v.atan() * (180.0 / math.pi)  # math.degrees(math.atan(v)), as RandAugment passes it
    corner = at("ShearX") | at("ShearY")  # center=[0, 0]: (-W/2, -H/2) from the image centre
    # all-zero parameters give exactly the identity matrix, hence an exact copy
    theta = _inverse_affine(torch.where(corner, -W * 0.5, zero), torch.where(corner, -H * 0.5, zero),
        torch.where(at("Rotate"), -v, zero),  # F.rotate turns by -angle in the affine convention
        torch.where(at("TranslateX"), v.trunc(), zero), torch.where(at("TranslateY"), v.trunc(), zero),
        torch.where(at("ShearX"), shear, zero), torch.where(at("ShearY"), shear, zero)).float()
    # torchvision's _gen_affine_grid written out in the CPU bmm's order (x * t0 + y * t1 + t2): no TF32 rounding
    t = torch.stack([theta[:, 0] / (0.5 * W), theta[:, 1] / (0.5 * H)], -1)[:, None, None]  # (B,1,1,3,2)
    xs = torch.linspace(-W * 0.5 + 0.5, W * 0.5 - 0.5, steps=W, device=x.device).view(1, 1, W, 1)
    ys = torch.linspace(-H * 0.5 + 0.5, H * 0.5 - 0.5, steps=H, device=x.device).view(1, H, 1, 1)
    grid = xs * t[..., 0, :] + ys * t[..., 1, :] + t[..., 2, :]  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _blend(x, op, v):
    """Brightness/Color/Contrast/Sharpness: torchvision's _blend(img, degenerate, 1 + v); ratio 1 for other ops."""
    B, H, W = x.shape[0], *x.shape[-2:]
    r64 = torch.where((op >= IDX["Brightness"]) & (op <= IDX["Sharpness"]), 1.0 + v.double(), 1.0)
    r, q = r64.float().view(B, 1, 1, 1), (1.0 - r64).float().view(B, 1, 1, 1)
    red, green, blue = x.unbind(1)
    gray = (0.2989 * red + 0.587 * green + 0.114 * blue).trunc().unsqueeze(1)  # rgb_to_grayscale on uint8
    # _blurred_degenerate_image: conv with [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, rounded, border kept. Here the
    # integer sum / 13, never within 1/26 of a .5 tie: it rounds as the float conv does, and no TF32 conv can shift it.
    total = 4 * x[..., 1:-1, 1:-1] + sum(x[..., i:i + H - 2, j:j + W - 2] for i in range(3) for j in range(3))
    blurred = x.clone()
    blurred[..., 1:-1, 1:-1] = (total / 13).round()
    at = lambda name: (op == IDX[name]).view(B, 1, 1, 1)
    degenerate = torch.where(at("Color"), gray, torch.where(at("Brightness"), 0.0, blurred))
    degenerate = torch.where(at("Contrast"), gray.mean(dim=(1, 2, 3), keepdim=True), degenerate)
    return (r * x + q * degenerate).clamp(0, 255).trunc()


def _equalize(x):
    """torchvision's equalize; the histogram is a scatter_add: exact, deterministic, no host sync (unlike bincount)."""
    B, C, H, W = x.shape
    flat = x.reshape(B * C, H * W).long()
    hist = torch.zeros(B * C, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    below = F.pad(hist.cumsum(1), (1, 0))[:, :-1]  # below[p] = #pixels < p
    step = below.gather(1, flat.amax(dim=1, keepdim=True)) // 255
    lut = ((below + step // 2) // step.clamp(min=1)).clamp(0, 255)
    return torch.where(step == 0, flat, lut.gather(1, flat)).to(x.dtype).view(B, C, H, W)


def _apply(x, op, v):
    """One op per image on a float32 batch of integer values; op (B,) long, v (B,) float."""
    at = lambda name: (op == IDX[name]).view(-1, 1, 1, 1)
    x = _affine(x, op, v)
    x = _blend(x, op, v)
    step = torch.where(op == IDX["Posterize"], 2.0 ** (8 - v.trunc()), 1.0).view(-1, 1, 1, 1)
    x = torch.floor(x / step) * step  # img & -(2 ** (8 - bits))
    threshold = torch.where(op == IDX["Solarize"], v.float(), math.inf).view(-1, 1, 1, 1)
    x = torch.where(x >= threshold, 255 - x, x)
    lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    scale = 255 / (hi - lo)  # autocontrast: flat channels (inf scale) are left unchanged
    flat = ~torch.isfinite(scale)
    lo, scale = torch.where(flat, 0.0, lo), torch.where(flat, 1.0, scale)
    x = torch.where(at("AutoContrast"), ((x - lo) * scale).clamp(0, 255).trunc(), x)
    return torch.where(at("Equalize"), _equalize(x), x)


def rand_augment(images, num_ops, magnitude, generator, choices=None):
    """A fresh op and sign per image and round, drawn from `generator` (on images.device); `choices` fixes them."""
    B, _, H, W = images.shape
    ops, negate = choices if choices is not None else sample(B, num_ops, generator, images.device)
    table, signed = op_values(magnitude, (H, W), images.device)
    x = images.float()
    for k in range(num_ops):
        v = table[ops[k]]
        x = _apply(x, ops[k], torch.where(signed[ops[k]] & negate[k], -v, v))
    return x.to(torch.uint8)
