"""The model registry, named sizes as timm names its variants: `--model` picks one, `--dim`, `--depth` ... resize it."""
from collections import namedtuple

from .conv_vit import ConvViT
from .convmixer import MixerModel as MixerModel, convmixer

# family: which recipes apply; title: how printed lines name it ("[ConvMixer] Epoch: ..."); build(**sizes, num_classes)
Variant = namedtuple("Variant", "family title build hyper_parameters")

MODELS = {
    # the experiments' ConvMixer-256/8 with 5x5 depth-wise kernels and 2x2 patches (594,186 parameters)
    "convmixer_256_8": Variant("convmixer", "ConvMixer", convmixer,
                               dict(dim=256, depth=8, kernel_size=5, patch_size=2)),
    # the conv-only ViT's seed configuration (torchsummary: 9,480,202 parameters)
    "vit_seed": Variant("vit", "ConvViT", ConvViT, dict(image_size=32, patch_size=4, dim=512, depth=6, heads=8,
                                                        dim_head=64, mlp_dim=512, dropout=0.1, emb_dropout=0.1,
                                                        emb_init_std=1.0)),
}


def variant(name):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")
    return MODELS[name]


def hyper_parameters(name, **overrides):
    """The variant's sizes with `overrides` (None: the variant's) on top; src/config.py refuses unknown ones."""
    return {**variant(name).hyper_parameters, **{k: v for k, v in overrides.items() if v is not None}}


def create_model(name, num_classes=10, **overrides):
    return variant(name).build(**hyper_parameters(name, **overrides), num_classes=num_classes)


def label(name, **overrides):
    """'ConvMixer-256/8', 'ConvViT-512/6': the family's title, its width and depth."""
    hp = hyper_parameters(name, **overrides)
    return f"{variant(name).title}-{hp['dim']}/{hp['depth']}"
