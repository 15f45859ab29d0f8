"""What a batch needs besides forward and backward, decided once for the engine and src.evaluate; and AdamW."""
from dataclasses import dataclass, fields

import torch

AMP = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Step:
    precision: str = "fp32"      # autocast dtype on CUDA: fp32, fp16 (with a grad scaler) or bf16; CPU: fp32
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"  # torch.compile's mode: default, reduce-overhead (CUDA graphs), max-autotune
    label_smoothing: float = 0.0
    grad_clip: float = 0.0       # clip the gradient norm to this; 0: no clipping
    ema: float = 0.0             # evaluate an EMA of the weights with this decay; 0: none
    tta_flip: bool = False       # average the logits of each test image and its mirror
    tta_translate: bool = False  # and of each view shifted a pixel up-left and down-right

    @classmethod
    def of(cls, cfg):
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})

    def views(self, x):
        """The test-time views whose logits are averaged (with both options, airbench's six), edges reflected."""
        views = [x, x.flip(-1)] if self.tta_flip else [x]
        if self.tta_translate:
            h, w = x.shape[-2:]
            padded = [torch.nn.functional.pad(v, (1, 1, 1, 1), mode="reflect") for v in views]
            views += [p[..., d:d + h, d:d + w] for p in padded for d in (0, 2)]
        return views

    def amp_dtype(self, device):
        """Autocast applies on CUDA only: a CPU run is fp32."""
        return AMP[self.precision] if torch.device(device).type == "cuda" else None

    def autocast(self, device):
        dtype = self.amp_dtype(device)
        return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def param_groups(model, weight_decay, decay_norms=True):
    """decay_norms=False spares norms, biases and model.no_weight_decay() (a ViT's embeddings): shrinking them hurts."""
    if decay_norms:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    skip = getattr(model, "no_weight_decay", set)()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(model, lr, weight_decay, decay_norms=True, beta2=0.999, device="cpu"):
    fused = torch.device(device).type == "cuda" or None  # on CUDA one kernel updates every parameter
    return torch.optim.AdamW(param_groups(model, weight_decay, decay_norms), lr=lr, betas=(0.9, beta2), fused=fused)
