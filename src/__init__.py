"""CIFAR-10 experiments with ConvMixer and a convolution-only ViT: data, models, trainers, plots,
and the command lines `python -m src.train` and `python -m src.bench`."""
