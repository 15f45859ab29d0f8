"""Named training recipes: the user's original one, and an "improved" one built from what fast
CIFAR-10 recipes use. Every option is a plain keyword of the trainers; a recipe only picks values.

The "improved" values are a first choice, not yet validated by a 25-epoch GPU run (see README).
"""

RECIPES = {
    "user": {
        # The user's experiments: pad-crop, flip, one 16x16 hole; no extra tricks.
        "convmixer": dict(lr_max=0.01, wd=0.01),
        "vit": dict(lr_max=0.001, wd=0.05),
    },
    "improved": {
        # ConvMixer authors' learning rate and decay, label smoothing, an EMA of the weights (a
        # horizon of about one epoch, so it does not lag the annealed end) and flip averaging at
        # test time; clipping keeps the higher learning rate stable.
        "convmixer": dict(lr_max=0.05, wd=0.005, label_smoothing=0.1, ema_decay=0.99,
                          tta_flip=True, grad_clip=1.0),
        # The ViT underfits in 25 epochs (../shared/REFERENCE.md: RandAugment made it worse), so
        # no extra augmentation or dropout; instead a shorter warm-up, a higher peak, no decay on
        # norms, biases and embeddings.
        "vit": dict(lr_max=0.002, wd=0.05, warmup=0.2, decay_all=False, label_smoothing=0.1,
                    ema_decay=0.99, tta_flip=True, grad_clip=1.0, dropout=0.0, emb_dropout=0.0),
    },
}


def recipe(name, model):
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: expected one of {', '.join(RECIPES)}")
    return dict(RECIPES[name][model])
