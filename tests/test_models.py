"""The two architectures and the registry: shapes, exact parameter counts, and that the conv-only
ViT computes exactly what the same ViT written with nn.Linear computes."""
import pytest
import torch
from einops import rearrange, repeat
from torch import nn

from src.models import MODELS, ConvViT, MixerModel, convmixer, create_model, hyper_parameters, label
from src.models.conv_vit import linear_twin
from src.plots import model_summary


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_output_shapes(batch):
    x = torch.randn(batch, 3, 32, 32)
    assert convmixer(32, 2).eval()(x).shape == (batch, 10)
    assert create_model("vit_seed", dim=64, depth=1, heads=2, dim_head=16, mlp_dim=64).eval()(x).shape == (batch, 10)
    assert convmixer(16, 1, kernel_size=3, patch_size=4, num_classes=7).eval()(x).shape == (batch, 7)
    assert create_model("vit_seed", num_classes=7, dim=32, depth=1).eval()(x).shape == (batch, 7)


def test_convmixer_parameter_count_and_one_implementation():
    model = MixerModel(256, 8, kernel_size=5, patch_size=2).get_model()
    assert count(model) == 594_186
    registered = create_model("convmixer_256_8")
    assert type(registered) is type(model) and count(registered) == 594_186
    assert [name for name, _ in model.named_children()] == ["stem", "blocks", "head"]
    assert len(model.blocks) == 8
    assert [type(m) for m in model.modules()] == [type(m) for m in registered.modules()]


def test_convvit_parameter_counts_match_the_users_table(capsys):
    model = create_model("vit_seed")
    assert count(model) == 9_513_994  # with the position embedding and class token
    assert model_summary(model) == 9_480_202  # torchsummary counts module weights and biases only
    assert "Total params: 9,480,202" in capsys.readouterr().out


def test_registry_names_sizes_and_overrides():
    assert hyper_parameters("vit_seed") == dict(image_size=32, patch_size=4, dim=512, depth=6, heads=8, dim_head=64,
                                                 mlp_dim=512, dropout=0.1, emb_dropout=0.1)
    assert hyper_parameters("convmixer_256_8", dim=128, depth=None) == dict(dim=128, depth=8, kernel_size=5,
                                                                           patch_size=2)
    assert label("convmixer_256_8") == "ConvMixer-256/8" and label("vit_seed", depth=2) == "ConvViT-512/2"
    assert count(create_model("convmixer_256_8", dim=16, depth=1)) < 10_000
    for name, variant in MODELS.items():
        assert set(variant.hyper_parameters) <= set(hyper_parameters(name))
    with pytest.raises(ValueError, match=r"convmixer_256_8 has no hyper-parameter dropout \(it has dim, depth"):
        hyper_parameters("convmixer_256_8", dropout=0.1)
    with pytest.raises(ValueError, match="unknown model 'resnet': expected one of convmixer_256_8, vit_seed"):
        create_model("resnet")


def test_no_linear_layer_in_the_transformer_or_patch_embedding():
    model = create_model("vit_seed")
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linears == ["mlp_head.1"]
    convs = [m for m in model.transformer.modules() if isinstance(m, nn.Conv1d)]
    assert len(convs) == 6 * 4 and all(c.kernel_size == (1,) and c.bias is None for c in convs)


class LinearViT(nn.Module):
    """The same network with nn.Linear projections (vit-pytorch's layout), as the oracle."""

    def __init__(self, conv):
        super().__init__()
        self.conv, self.p = conv, conv.to_patch_embedding[0].axes_lengths["p1"]

    @staticmethod
    def lin(conv1x1):
        linear = nn.Linear(conv1x1.in_channels, conv1x1.out_channels, bias=False)
        linear.weight.data.copy_(conv1x1.weight.squeeze(-1))
        return linear

    def forward(self, img):
        c = self.conv
        x = rearrange(img, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=self.p, p2=self.p)
        x = self.lin(c.to_patch_embedding[1])(x)
        x = torch.cat((repeat(c.cls_token, "1 1 d -> b 1 d", b=len(x)), x), 1) + c.pos_embedding
        for attn, ff in c.transformer.layers:
            h = attn.norm(x)
            q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=attn.heads)
                       for t in self.lin(attn.to_qkv)(h).chunk(3, -1))
            a = (q @ k.transpose(-1, -2) * attn.scale).softmax(-1)
            x = self.lin(attn.to_out[0])(rearrange(a @ v, "b h n d -> b n (h d)")) + x
            f = ff.net
            x = self.lin(f[4])(nn.functional.gelu(self.lin(f[1])(f[0](x)))) + x
        return c.mlp_head(x[:, 0])


@pytest.mark.parametrize("kw", [{}, dict(patch_size=8, dim=96, depth=2, heads=3, dim_head=32, mlp_dim=128)])
def test_conv_vit_equals_linear_vit_with_the_same_weights(kw):
    torch.manual_seed(0)
    model = create_model("vit_seed", **kw).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), LinearViT(model)(x), atol=1e-5, rtol=1e-4)


def test_linear_twin_equals_the_linear_vit_oracle():
    torch.manual_seed(0)
    model = create_model("vit_seed", patch_size=8, dim=96, depth=2, heads=3, dim_head=32, mlp_dim=128).eval()
    twin = linear_twin(model).eval()
    assert not any(isinstance(m, nn.Conv1d) for m in twin.modules())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(twin(x), LinearViT(model)(x), atol=1e-5, rtol=1e-4)


SMALL_VIT = dict(image_size=32, patch_size=4, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=16)


@pytest.mark.parametrize("kw, message", [
    (dict(patch_size=5), "not divisible"),
    (dict(depth=0), "depth"),
    (dict(heads=-1), "heads"),
    (dict(dropout=1.5), "dropout"),
])
def test_invalid_vit_configuration_raises(kw, message):
    with pytest.raises(ValueError, match=message):
        ConvViT(**{**SMALL_VIT, **kw})


def test_invalid_convmixer_configuration_raises():
    with pytest.raises(ValueError, match="dim"):
        convmixer(0, 8)
    with pytest.raises(ValueError, match="kernel_size"):
        MixerModel(256, 8, kernel_size=2.5)


def test_wrong_image_size_for_the_vit_names_the_expected_shape():
    vit = ConvViT(**SMALL_VIT)
    with pytest.raises(ValueError, match=r"expects images of shape \(3, 32, 32\), got \(3, 28, 28\)"):
        vit(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"\(3, 32, 32\), got \(1, 32, 32\)"):
        vit(torch.zeros(2, 1, 32, 32))
    assert vit(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
