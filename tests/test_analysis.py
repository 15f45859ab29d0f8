"""What the model learned (kernels, patch filters, attention, position embeddings): the measures are
checked against hand-computed values, the figures against the weights they draw."""
import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from einops import rearrange, repeat
from matplotlib.lines import Line2D

from src import analysis
from src.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_VIT = dict(dim=32, depth=2, heads=2, dim_head=16, mlp_dim=32)
IMAGES = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def vit():
    torch.manual_seed(0)
    return create_model("vit_seed", **TINY_VIT)


@pytest.fixture
def mixer():
    torch.manual_seed(0)
    return create_model("convmixer_256_8", dim=16, depth=2)


def drawn(fig):
    """The one image a mosaic figure draws, as an array (masked cells as NaN)."""
    try:
        return np.ma.filled(fig.axes[0].images[0].get_array().astype(float), np.nan)
    finally:
        plt.close(fig)


def depthwise_kernels(model):
    """(depth, dim, k, k): each block's k x k spatial filters, one per channel."""
    return torch.stack([rearrange(block[0].fn[0].weight.detach(), "d 1 k l -> d k l") for block in model.blocks])


def position_similarity(model):
    """(P, P) cosine similarity of the patch tokens' learned position embeddings."""
    positions = torch.nn.functional.normalize(model.pos_embedding.detach()[0, 1:], dim=-1)
    return positions @ positions.T


def tile(mosaic, index, cols, size):
    row, col = divmod(index, cols)
    return mosaic[row * (size + 1):row * (size + 1) + size, col * (size + 1):col * (size + 1) + size]


def test_recorded_attention_is_the_softmax_of_each_block_and_rows_sum_to_one(vit):
    _, attentions = analysis.record_attention(vit, IMAGES)
    assert len(attentions) == 2 and all(a.shape == (3, 2, 65, 65) for a in attentions)
    assert all((a >= 0).all() and torch.allclose(a.sum(-1), torch.ones(3, 2, 65), atol=1e-5) for a in attentions)
    attn = vit.transformer.layers[0][0]
    with torch.no_grad():
        x = torch.cat((repeat(vit.cls_token, "1 1 d -> b 1 d", b=3), vit.to_patch_embedding(IMAGES)), 1)
        q, k, _ = (rearrange(t, "b n (h d) -> b h n d", h=2)
                   for t in attn.to_qkv(attn.norm(x + vit.pos_embedding)).chunk(3, -1))
        assert torch.allclose(attentions[0], (q @ k.transpose(-1, -2) * attn.scale).softmax(-1), atol=1e-6)
    assert not torch.allclose(attentions[0], attentions[1], atol=1e-3)


def test_recording_leaves_the_logits_mode_and_model_unchanged(vit):
    with torch.no_grad():
        expected = vit.eval()(IMAGES)
    logits, _ = analysis.record_attention(vit.train(), IMAGES)
    assert torch.equal(logits, expected) and vit.training
    assert all(not attn.attend._forward_hooks for attn, _ in vit.transformer.layers)
    with pytest.raises(RuntimeError):  # 28x28: 49 patches, not the 64 its position embedding has
        analysis.record_attention(vit, IMAGES[:, :, :28, :28])
    assert all(not attn.attend._forward_hooks for attn, _ in vit.transformer.layers) and vit.training


def test_rollout_averages_heads_adds_the_residual_and_multiplies_later_blocks_on_the_left():
    first = torch.tensor([[[1., 0], [1, 0]], [[1, 0], [0, 1]]])[None]   # heads average to [[1, 0], [.5, .5]]
    second = torch.tensor([[[0., 1], [0, 1]], [[0, 1], [0, 1]]])[None]
    # (mean + I) / 2: [[1, 0], [.25, .75]] then [[.5, .5], [0, 1]]; the second times the first:
    expected = torch.tensor([[[0.625, 0.375], [0.25, 0.75]]])
    assert torch.allclose(analysis.attention_rollout([first, second]), expected)


def brute_force_mean_distance(grid, patch_size):
    centres = [(r, c) for r in range(grid) for c in range(grid)]
    return sum(math.dist(a, b) for a in centres for b in centres) * patch_size / len(centres) ** 2


@pytest.mark.parametrize("grid, patch_size", [(8, 4), (3, 2)])
def test_mean_distance_of_uniform_attention_is_the_mean_distance_between_patches(grid, patch_size):
    uniform = torch.full((2, 3, grid * grid + 1, grid * grid + 1), 1 / (grid * grid + 1))
    expected = brute_force_mean_distance(grid, patch_size)
    assert analysis.uniform_distance(SimpleNamespace(image_size=grid * patch_size, patch_size=patch_size)) == \
        pytest.approx(expected)
    assert torch.allclose(analysis.mean_attention_distance(uniform, grid, patch_size), torch.full((3,), expected))


def test_mean_distance_is_zero_looking_at_oneself_and_a_patch_size_looking_at_a_neighbour():
    grid, n = 4, 17
    self_only = repeat(torch.eye(n), "n m -> 1 2 n m")
    assert torch.allclose(analysis.mean_attention_distance(self_only, grid, 4), torch.zeros(2))
    right = torch.zeros(1, 1, n, n)
    for r in range(grid):
        for c in range(grid):  # the patch to the right, or to the left in the last column
            right[0, 0, 1 + r * grid + c, 1 + r * grid + (c + 1 if c < grid - 1 else c - 1)] = 1
    right[0, 0, :, 0] = 5  # the class token's column is left out, whatever it holds
    assert analysis.mean_attention_distance(right, grid, 4).item() == pytest.approx(4)


def test_position_similarity_is_one_on_the_diagonal_symmetric_and_drawn_per_patch(vit):
    with torch.no_grad():
        vit.pos_embedding[0, 2] = 3 * vit.pos_embedding[0, 1]
        vit.pos_embedding[0, 3] = -vit.pos_embedding[0, 1]
    similarity = position_similarity(vit)
    assert similarity.shape == (64, 64) and torch.allclose(similarity, similarity.T)
    assert torch.allclose(similarity.diagonal(), torch.ones(64), atol=1e-6)
    assert similarity[0, 1:3].tolist() == pytest.approx([1, -1], abs=1e-6)
    mosaic = drawn(analysis.plot_position_similarity(vit))
    assert mosaic.shape == (8 * 9 - 1, 8 * 9 - 1)
    for patch in (0, 13, 63):
        np.testing.assert_allclose(tile(mosaic, patch, 8, 8), similarity[patch].reshape(8, 8).numpy(), atol=1e-6)


def test_kernel_grid_holds_depth_times_channels_kernels_each_scaled_to_one(mixer):
    kernels = depthwise_kernels(mixer)
    assert kernels.shape == (2, 16, 5, 5)
    assert torch.equal(kernels[1, 3], mixer.blocks[1][0].fn[0].weight[3, 0].detach())
    mosaic = drawn(analysis.plot_depthwise_kernels(mixer, channels=8))
    assert mosaic.shape == (2 * 6 - 1, 8 * 6 - 1)
    assert np.isfinite(mosaic).sum() == 2 * 8 * 25
    for block, channel in ((0, 0), (1, 7)):
        kernel, shown = kernels[block, channel], tile(mosaic, block * 8 + channel, 8, 5)
        np.testing.assert_allclose(shown, (kernel / kernel.abs().max()).numpy(), atol=1e-6)
        assert np.abs(shown).max() == pytest.approx(1)


@pytest.mark.parametrize("dim, cols", [(16, 4), (256, 16)])
def test_patch_filter_grid_holds_dim_rgb_patches_each_stretched_to_0_1(dim, cols):
    torch.manual_seed(0)
    mixer = create_model("convmixer_256_8", dim=dim, depth=1)
    mosaic = drawn(analysis.plot_patch_filters(mixer))
    assert mosaic.shape == (cols * 3 - 1, cols * 3 - 1, 3)
    weight = rearrange(mixer.stem[0].weight.detach(), "n c h w -> n h w c")
    for patch, w in ((tile(mosaic, i, cols, 2), weight[i]) for i in (0, dim - 1)):
        assert patch.min() == pytest.approx(0) and patch.max() == pytest.approx(1)
        np.testing.assert_allclose(patch, ((w - w.min()) / (w.max() - w.min())).numpy(), atol=1e-6)


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_save_figures_writes_each_models_figures(mixer, vit, tmp_path):
    paths = analysis.save_figures(mixer, IMAGES, tmp_path / "mixer")
    assert [p.name for p in paths] == ["depthwise_kernels.png", "patch_filters.png"]
    paths += analysis.save_figures(vit, IMAGES, tmp_path / "vit")
    assert [p.name for p in paths[2:]] == ["class_attention.png", "attention_distance.png", "position_similarity.png"]
    assert all(p.parent.parent == tmp_path and is_png(p) for p in paths)
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == sorted(p.name for p in paths)
    assert not plt.get_fignums()


def test_class_attention_figure_has_a_row_per_image_and_a_column_per_head_and_rollout(vit):
    _, attentions = analysis.record_attention(vit, IMAGES)
    fig = analysis.plot_class_attention(IMAGES, attentions, (0.5,) * 3, (0.25,) * 3, heads=[1])
    plt.close(fig)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "head 1", "rollout"]
    assert len(fig.axes) == 3 * 3 and len(fig.axes[4].images) == 2


@pytest.mark.filterwarnings("error")
def test_attention_distance_of_a_single_patch_draws_without_a_warning(tmp_path):
    """patch_size 32 leaves one token: every distance is 0, and matplotlib warned of a 0..0 y-range (probe 6)."""
    plt.close(analysis.plot_attention_distance(np.zeros((2, 3)), path=tmp_path / "distance.png"))
    assert is_png(tmp_path / "distance.png")


@pytest.mark.parametrize("uniform", [None, "model"])
def test_attention_distance_figure_draws_each_head_and_the_uniform_reference_line(vit, uniform):
    distances = [torch.tensor([4.0, 9.0]), torch.tensor([12.5, 30.0])]
    value = analysis.uniform_distance(vit) if uniform else None
    if uniform:
        assert value == pytest.approx(brute_force_mean_distance(8, 4))  # the model's 8x8 grid of 4-pixel patches
    fig = analysis.plot_attention_distance(distances, uniform=value)
    plt.close(fig)
    ax = fig.axes[0]
    np.testing.assert_allclose(np.concatenate([c.get_offsets() for c in ax.collections]),
                               [[1, 4], [1, 9], [2, 12.5], [2, 30]])
    assert all(isinstance(line, Line2D) for line in ax.lines)
    assert [tuple(line.get_ydata()) for line in ax.lines] == ([(value, value)] if uniform else [])
    assert ax.get_ylim()[1] >= max(30, value or 0)
