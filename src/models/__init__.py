"""The two model families, and `build_model(name, **hyper_parameters)` for the command line."""
import inspect

from .conv_vit import ConvViT
from .convmixer import MixerModel, convmixer

MODELS = ("convmixer", "vit")
FACTORIES = {"convmixer": convmixer, "vit": ConvViT}
CONVMIXER_SIZE = dict(dim=256, depth=8)  # the experiments' ConvMixer-256/8; ConvViT's defaults are the seed configuration


def hyper_parameters(name, **kw):
    """Every hyper-parameter the model is built with: kw over the defaults."""
    if name not in FACTORIES:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")
    defaults = {k: p.default for k, p in inspect.signature(FACTORIES[name]).parameters.items()
                if p.default is not p.empty}
    return {**defaults, **(CONVMIXER_SIZE if name == "convmixer" else {}), **kw}


def build_model(name, **kw):
    hp = hyper_parameters(name, **kw)  # checks the name first
    return FACTORIES[name](**hp)


def label(name, **kw):
    """'convmixer-256/8', 'vit-512/6': the family, its width and depth."""
    hp = hyper_parameters(name, **kw)
    return f"{name}-{hp['dim']}/{hp['depth']}"


__all__ = ["ConvViT", "MixerModel", "convmixer", "build_model", "hyper_parameters", "label", "MODELS"]
