"""lucidrains' vit-pytorch `ViT` with every token projection a 1x1 convolution (nn.Linear only in the head):
    patches: b c (h p1) (w p2) -> b (h w) (p1 p2 c), Conv1x1    tokens: [cls; patches] + pos_embedding, dropout
    depth x: x + Attention(LN(x)), x + FeedForward(LN(x))     head: LN, Linear(dim -> num_classes) on the class token"""
import copy

import torch
from einops import rearrange, repeat
from einops.layers.torch import Rearrange
from torch import nn


class Conv1x1(nn.Conv1d):
    """What a bias-free nn.Linear does to a (batch, tokens, dim) sequence, as a 1x1 convolution over the tokens."""

    def __init__(self, in_dim, out_dim):
        super().__init__(in_dim, out_dim, kernel_size=1, bias=False)

    def forward(self, x):
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class FeedForward(nn.Module):
    def __init__(self, dim, hidden_dim, dropout=0.0):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), Conv1x1(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                 Conv1x1(hidden_dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class Attention(nn.Module):
    def __init__(self, dim, heads=8, dim_head=64, dropout=0.0):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = Conv1x1(dim, heads * dim_head * 3)
        self.attend = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(dropout)
        self.to_out = nn.Sequential(Conv1x1(heads * dim_head, dim), nn.Dropout(dropout))

    def forward(self, x):
        x = self.norm(x)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn = self.dropout(self.attend(q @ k.transpose(-1, -2) * self.scale))
        return self.to_out(rearrange(attn @ v, "b h n d -> b n (h d)"))


class Transformer(nn.Module):
    def __init__(self, dim, depth, heads, dim_head, mlp_dim, dropout=0.0):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(dim, heads, dim_head, dropout), FeedForward(dim, mlp_dim, dropout)])
            for _ in range(depth))

    def forward(self, x):
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


class ConvViT(nn.Module):
    """Sizes are keyword-only, without defaults: the seed configuration is written once, as `vit_seed`."""

    def __init__(self, *, image_size, patch_size, dim, depth, heads, dim_head, mlp_dim, num_classes=10,
                 channels=3, dropout=0.0, emb_dropout=0.0, emb_init_std=1.0):
        super().__init__()
        if image_size % patch_size:  # --patch-size 5 gets this line, not einops' error
            raise ValueError(f"ConvViT: image_size {image_size} is not divisible by patch_size {patch_size}")
        self.image_size, self.patch_size, self.channels = image_size, patch_size, channels
        num_patches = (image_size // patch_size) ** 2
        self.to_patch_embedding = nn.Sequential(
            Rearrange("b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size),
            Conv1x1(patch_size * patch_size * channels, dim))
        # vit-pytorch starts both at std 1, the ViT paper and timm at 0.02 (--emb-init-std)
        self.pos_embedding = nn.Parameter(emb_init_std * torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(emb_init_std * torch.randn(1, 1, dim))
        self.dropout = nn.Dropout(emb_dropout)
        self.transformer = Transformer(dim, depth, heads, dim_head, mlp_dim, dropout)
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def no_weight_decay(self):
        """Not decayed by a ViT trained from scratch, besides norms and biases."""
        return {"pos_embedding", "cls_token"}

    def forward(self, img):
        x = self.to_patch_embedding(img)
        cls = repeat(self.cls_token, "1 1 d -> b 1 d", b=x.shape[0])
        x = torch.cat((cls, x), dim=1) + self.pos_embedding
        x = self.transformer(self.dropout(x))
        return self.mlp_head(x[:, 0])


def linear_twin(model):
    """`model` with nn.Linear for each Conv1x1, the same weights: what the convolutions cost is measured against."""
    twin = copy.deepcopy(model)
    for parent in list(twin.modules()):
        for name, conv in list(parent.named_children()):
            if isinstance(conv, Conv1x1):
                linear = nn.Linear(conv.in_channels, conv.out_channels, bias=False, device=conv.weight.device,
                                   dtype=conv.weight.dtype)
                linear.weight = nn.Parameter(rearrange(conv.weight.detach(), "o i 1 -> o i").clone())
                setattr(parent, name, linear.train(conv.training))
    return twin
