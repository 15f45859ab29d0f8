"""Train a model from the command line (the notebooks use the same src.run), e.g. `python -m src.train --model
vit_seed --data ../shared/cifar10-jpeg`: OUT/metrics.json and OUT/checkpoint.pt every epoch (--resume continues),
OUT/model.pt at the end."""
from .cli import command, config_from_args, parser
from .config import resolve
from .run import RunFolder, run


def main(argv=None):
    cfg, folder = config_from_args(argv, parser(description=__doc__)), None
    with command(lambda: folder.interrupted() if folder else "interrupted before the run started: nothing was done"):
        cfg = resolve(cfg)  # every value checked before any data is read
        folder = RunFolder(cfg)
        run(cfg, folder)


if __name__ == "__main__":
    main()
