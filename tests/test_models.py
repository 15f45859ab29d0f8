"""The two architectures, the registry and the recipes: shapes, exact parameter counts, and that the
conv-only ViT computes exactly what the same ViT written with nn.Linear computes."""
import re

import pytest
import torch
from einops import rearrange, repeat
from torch import nn

from src.io import UserError
from src.models import MODELS, ConvViT, MixerModel, convmixer, create_model, hyper_parameters, label
from src.models.conv_vit import linear_twin
from src.plots import model_summary
from src.recipes import RECIPES, recipe

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL_VIT = dict(dim=32, depth=2, heads=2, dim_head=16, mlp_dim=32)  # on top of vit_seed


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def seed_vit():
    torch.manual_seed(0)
    return create_model("vit_seed").eval()


def test_output_shapes():
    models = {10: (convmixer(16, 2), create_model("vit_seed", **SMALL_VIT)),
              7: (convmixer(16, 1, kernel_size=3, patch_size=4, num_classes=7),
                  create_model("vit_seed", num_classes=7, **SMALL_VIT))}
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32)
        assert all(model.eval()(x).shape == (batch, n) for n, pair in models.items() for model in pair)


def test_convmixer_parameter_count_and_one_implementation():
    model, registered = MixerModel(256, 8, kernel_size=5, patch_size=2).get_model(), create_model("convmixer_256_8")
    assert count(model) == count(registered) == 594_186 and type(registered) is type(model)
    assert [name for name, _ in model.named_children()] == ["stem", "blocks", "head"] and len(model.blocks) == 8
    assert [type(m) for m in model.modules()] == [type(m) for m in registered.modules()]


def test_convvit_parameter_counts_match_the_users_table(seed_vit, capsys):
    assert count(seed_vit) == 9_513_994  # with the position embedding and class token
    assert model_summary(seed_vit) == 9_480_202  # torchsummary counts module weights and biases only
    assert "Total params: 9,480,202" in capsys.readouterr().out


def test_registry_names_sizes_and_overrides():
    assert hyper_parameters("vit_seed") == dict(image_size=32, patch_size=4, dim=512, depth=6, heads=8, dim_head=64,
                                                 mlp_dim=512, dropout=0.1, emb_dropout=0.1, emb_init_std=1.0)
    assert hyper_parameters("convmixer_256_8", dim=128, depth=None) == dict(dim=128, depth=8, kernel_size=5,
                                                                           patch_size=2)
    assert label("convmixer_256_8") == "ConvMixer-256/8" and label("vit_seed", depth=2) == "ConvViT-512/2"
    assert count(create_model("convmixer_256_8", dim=16, depth=1)) < 10_000
    assert {name: v.family for name, v in MODELS.items()} == {"convmixer_256_8": "convmixer", "vit_seed": "vit"}
    with pytest.raises(ValueError, match="unknown model 'resnet': expected one of convmixer_256_8, vit_seed"):
        create_model("resnet")


def test_no_linear_layer_in_the_transformer_or_patch_embedding(seed_vit):
    assert [name for name, m in seed_vit.named_modules() if isinstance(m, nn.Linear)] == ["mlp_head.1"]
    convs = [m for m in seed_vit.transformer.modules() if isinstance(m, nn.Conv1d)]
    assert len(convs) == 6 * 4 and all(c.kernel_size == (1,) and c.bias is None for c in convs)


class LinearViT(nn.Module):
    """The same network with nn.Linear projections (vit-pytorch's layout), written out as the oracle."""

    def __init__(self, conv):
        super().__init__()
        self.conv, self.p = conv, conv.to_patch_embedding[0].axes_lengths["p1"]

    @staticmethod
    def lin(conv1x1):
        return lambda x: nn.functional.linear(x, conv1x1.weight.squeeze(-1))

    def forward(self, img):
        c = self.conv
        x = rearrange(img, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=self.p, p2=self.p)
        x = self.lin(c.to_patch_embedding[1])(x)
        x = torch.cat((repeat(c.cls_token, "1 1 d -> b 1 d", b=len(x)), x), 1) + c.pos_embedding
        for attn, ff in c.transformer.layers:
            q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=attn.heads)
                       for t in self.lin(attn.to_qkv)(attn.norm(x)).chunk(3, -1))
            a = (q @ k.transpose(-1, -2) * attn.scale).softmax(-1)
            x = self.lin(attn.to_out[0])(rearrange(a @ v, "b h n d -> b n (h d)")) + x
            f = ff.net
            x = self.lin(f[4])(nn.functional.gelu(self.lin(f[1])(f[0](x)))) + x
        return c.mlp_head(x[:, 0])


@pytest.mark.parametrize("kw", [None, dict(patch_size=8, dim=96, depth=2, heads=3, dim_head=32, mlp_dim=128)])
def test_conv_vit_and_its_linear_twin_equal_the_linear_vit_with_the_same_weights(kw, seed_vit):
    torch.manual_seed(0)
    model = seed_vit if kw is None else create_model("vit_seed", **kw).eval()
    twin = linear_twin(model).eval()
    assert not any(isinstance(m, nn.Conv1d) for m in twin.modules())
    assert any(isinstance(m, nn.Conv1d) for m in model.modules())  # the original is left as it was
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = LinearViT(model)(x)
        assert expected.shape == (4, 10)
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(twin(x), expected, atol=1e-5, rtol=1e-4)


def test_linear_twin_trains_like_the_conv_model():
    torch.manual_seed(0)  # no dropout: a seed gives other masks on the conv's transposed outputs
    vit = create_model("vit_seed", **SMALL_VIT, dropout=0.0, emb_dropout=0.0)
    twin = linear_twin(vit)
    images = torch.randn(3, 3, 32, 32)
    for model in (vit.train(), twin.train()):
        nn.functional.cross_entropy(model(images), torch.tensor([1, 2, 3])).backward()
    for (name, parameter), conv in zip(twin.named_parameters(), vit.parameters()):
        assert conv.grad.abs().sum() > 0
        torch.testing.assert_close(parameter.grad, conv.grad.reshape(parameter.shape), atol=1e-6, rtol=1e-5, msg=name)


def test_emb_init_std_scales_the_embeddings_and_the_default_keeps_the_old_randn_init():
    torch.manual_seed(0)
    default = ConvViT(image_size=32, patch_size=4, dim=256, depth=1, heads=1, dim_head=8, mlp_dim=8)
    torch.manual_seed(0)
    nn.Conv1d(4 * 4 * 3, 256, 1, bias=False)  # the patch embedding draws first, then the two embeddings
    assert torch.equal(default.pos_embedding, torch.randn(1, 65, 256))
    assert torch.equal(default.cls_token, torch.randn(1, 1, 256))
    torch.manual_seed(0)
    small = create_model("vit_seed", dim=256, depth=1, emb_init_std=0.02)
    assert torch.equal(small.pos_embedding, 0.02 * default.pos_embedding)
    assert torch.equal(small.cls_token, 0.02 * default.cls_token)
    assert small.pos_embedding.std().item() == pytest.approx(0.02, rel=0.03)
    assert small.cls_token.std().item() == pytest.approx(0.02, rel=0.15)


# a size out of its range (depth 0, dropout 1.5) is refused by src/config.py's declarations: test_config.py
@pytest.mark.parametrize("build, message", [
    (lambda: create_model("vit_seed", **{**SMALL_VIT, "patch_size": 5}), "not divisible")])
def test_invalid_sizes_and_images_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_recipes_the_authors_flags_and_a_family_without_values():
    # locuslab/convmixer-cifar10: --lr-max=0.05 --ra-n=2 --ra-m=12 --wd=0.005 --scale=1.0 (no crop) --reprob=0
    assert recipe("authors", "convmixer") == dict(lr_max=0.05, wd=0.005, randaugment=(2, 12), pad=0, hole_p=0.0)
    recipe("authors", "convmixer")["lr_max"] = 1.0
    assert recipe("authors", "convmixer")["lr_max"] == 0.05  # a copy: the table stays as it is
    assert all(set(RECIPES[name]) == {"convmixer", "vit"} for name in ("baseline", "improved"))
    with pytest.raises(UserError) as err:
        recipe("authors", "vit")
    assert "\n" not in str(err.value) and re.match(r"--recipe authors: .*\bvit\b", str(err.value))
