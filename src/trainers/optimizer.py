"""Both trainers' optimizer: AdamW over parameter groups that may spare some parameters from decay."""
import torch


def param_groups(model, weight_decay, decay_norms=True):
    """With decay_norms=False, norms, biases and anything in model.no_weight_decay() (a ViT's
    position embedding and class token) are not decayed: shrinking them only hurts."""
    if decay_norms:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    skip = getattr(model, "no_weight_decay", set)()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(model, lr, weight_decay, decay_norms=True, beta2=0.999, device="cpu"):
    """On CUDA the fused kernel updates every parameter in one launch."""
    fused = torch.device(device).type == "cuda" or None
    return torch.optim.AdamW(param_groups(model, weight_decay, decay_norms), lr=lr, betas=(0.9, beta2),
                             fused=fused)
