"""Train a model, e.g. `python -m src.train --model vit_seed --data ../shared/cifar10-jpeg` (the notebooks use the
same src.run): OUT/metrics.json and OUT/checkpoint.pt every epoch (--resume continues), OUT/model.pt at the end."""
from .cli import command, config_from_args, parser
from .config import resolve
from .run import RunFolder, run


def main(argv=None):
    cfg, folder = config_from_args(argv, parser(description=__doc__)), None
    with command(lambda: folder.interrupted() if folder else "interrupted before the run started: nothing was done"):
        folder = RunFolder(resolve(cfg))  # every value checked before any data is read
        run(folder.cfg, folder)


if __name__ == "__main__":
    main()
