"""The two model families, and `build_model(name, **hyper_parameters)` for the command line."""
from .conv_vit import ConvViT
from .convmixer import MixerModel, convmixer

MODELS = ("convmixer", "vit")


def build_model(name, **kw):
    if name == "convmixer":
        return convmixer(kw.get("dim", 256), kw.get("depth", 8), kw.get("kernel_size", 5),
                         kw.get("patch_size", 2), kw.get("num_classes", 10))
    if name == "vit":
        return ConvViT(**kw)
    raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")


__all__ = ["ConvViT", "MixerModel", "convmixer", "build_model", "MODELS"]
