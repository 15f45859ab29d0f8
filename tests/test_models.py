"""The two architectures: shapes, exact parameter counts, and that the conv-only ViT computes
exactly what the same ViT written with nn.Linear computes."""
import pytest
import torch
from einops import rearrange, repeat
from torch import nn

from src.models import ConvViT, MixerModel, build_model, convmixer
from src.plots import model_summary


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_output_shapes(batch):
    x = torch.randn(batch, 3, 32, 32)
    assert convmixer(32, 2).eval()(x).shape == (batch, 10)
    assert ConvViT(dim=64, depth=1, heads=2, dim_head=16, mlp_dim=64).eval()(x).shape == (batch, 10)
    assert convmixer(16, 1, kernel_size=3, patch_size=4, n_classes=7).eval()(x).shape == (batch, 7)


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_convmixer_parameter_count_and_one_implementation():
    model = MixerModel(256, 8, kernel_size=5, patch_size=2).get_model()
    assert count(model) == 594_186
    assert type(convmixer(256, 8)) is type(model)
    assert [name for name, _ in model.named_children()] == ["stem", "blocks", "head"]
    assert len(model.blocks) == 8


def test_convvit_parameter_counts_match_the_users_table(capsys):
    model = ConvViT()
    assert count(model) == 9_513_994  # with the position embedding and class token
    assert model_summary(model) == 9_480_202  # torchsummary counts module weights and biases only
    assert "Total params: 9,480,202" in capsys.readouterr().out


def test_no_linear_layer_in_the_transformer_or_patch_embedding():
    model = ConvViT()
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


@pytest.mark.parametrize("kw", [{}, dict(image_size=32, patch_size=8, dim=96, depth=2, heads=3,
                                         dim_head=32, mlp_dim=128)])
def test_conv_vit_equals_linear_vit_with_the_same_weights(kw):
    torch.manual_seed(0)
    model = ConvViT(**kw).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), LinearViT(model)(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kw, message", [
    (dict(image_size=32, patch_size=5), "not divisible"),
    (dict(depth=0), "depth"),
    (dict(heads=-1), "heads"),
    (dict(dropout=1.5), "dropout"),
])
def test_invalid_vit_configuration_raises(kw, message):
    with pytest.raises(ValueError, match=message):
        ConvViT(**kw)


def test_invalid_convmixer_configuration_and_unknown_model_raise():
    with pytest.raises(ValueError, match="dim"):
        convmixer(0, 8)
    with pytest.raises(ValueError, match="kernel_size"):
        MixerModel(256, 8, kernel_size=2.5)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet")


def test_wrong_image_size_for_the_vit_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(3, 32, 32\)"):
        ConvViT(dim=32, depth=1, heads=1, dim_head=8, mlp_dim=32)(torch.randn(1, 3, 28, 28))
