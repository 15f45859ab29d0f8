"""Train a model, e.g. `python -m src.train --model vit_seed --data ../shared/cifar10-jpeg` (the notebooks use the
same src.run): OUT/metrics.json and OUT/checkpoint.pt every epoch (--resume continues), OUT/model.pt at the end."""
from .cli import command, config_from_args, parser
from .config import resolve
from .run import RunFolder, run
from .trainers import Diverged


def main(argv=None):
    cfg, folder = config_from_args(argv, parser(description=__doc__)), None
    with command(lambda: folder.interrupted() if folder else "interrupted before the run started: nothing was done"):
        folder = RunFolder(resolve(cfg))  # every value checked before any data is read
        try:
            run(folder.cfg, folder)
        except Diverged as err:  # the same command again, with a lower rate, replaces the epochs it saved
            raise Diverged(f"{err} (with --overwrite)") from None


if __name__ == "__main__":
    main()
