"""Check a saved model, e.g. `python -m src.evaluate RUN/model.pt --data PATH`: test accuracy alone, with flip
averaging and with six views, per class, the confusion matrix (the model rebuilt from its run's metrics.json)."""
import argparse
from pathlib import Path

import torch

from . import analysis, data, io
from .cli import command, result_file
from .config import device_of
from .io import UserError
from .models import create_model
from .run import hold
from .trainers import Engine, History, Step


def load_model(weights):
    """The model a run saved (a Path), rebuilt from the metrics.json beside its weights; (model, metrics)."""
    folder = weights if weights.is_dir() else weights.parent
    kept, done = (folder / "checkpoint.pt").is_file(), (folder / "model.pt").is_file()  # --resume finishes or mends
    if not weights.is_file() or weights.suffix != ".pt":
        if (folder / ".lock").is_file():
            hold(folder, "").release()  # a run training there right now: its model.pt comes at its end
        raise UserError(f"no weights at {weights}: " + ("a folder; give the model.pt in it" if done and weights.is_dir()
                        else "its run is not finished: its command with --resume finishes it" if kept and not done
                        else "give a finished run's model.pt"))
    again = ("delete it: the run's command with --resume writes it again from its checkpoint.pt" if kept else
             "the run's command with --overwrite trains the run again")
    if not (weights.parent / "metrics.json").is_file():
        raise UserError(f"no metrics.json beside {weights}: the model is rebuilt from its run's; " +
                        (again.removeprefix("delete it: ") if kept else "give a run's model.pt"))
    metrics = io.read_json(weights.parent / "metrics.json", again)
    try:
        model = create_model(metrics["model"]["name"], **metrics["model"]["hyper_parameters"])
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{weights.parent / 'metrics.json'} names no model of this project ({err}): {again}") from None
    state = io.load(weights, mend=again)
    if isinstance(state, dict) and "optimizer" in state:
        raise UserError(f"{weights} is a checkpoint, not weights: give the run's model.pt (--resume writes it)")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise UserError(f"{weights} does not fit the model its metrics.json names ("
                        f"{(str(err).splitlines()[1:] or [str(err)])[0].strip()}): give a model.pt beside its own "
                        f"run's metrics.json") from None
    return model, metrics


def evaluate(model, data_root, device="cpu", batch_size=1000):
    """Each number from one test pass computed as a run's last epoch computes it, so the two can be compared."""
    test = data.cifar10(data_root, train=False, transform=data.test_transforms())
    loader = torch.utils.data.DataLoader(test, batch_size=batch_size)
    accuracy = {}
    for key, step in (("accuracy", Step()), ("accuracy_flip", Step(tta_flip=True)),
                      ("accuracy_six_views", Step(tta_flip=True, tta_translate=True))):
        record = History()
        Engine(model, None, step=step, device=device).evaluate(loader, into=record)
        accuracy[key] = (record.predictions[0] == record.predictions[1]).double().mean().item()  # as a run counts
        if key == "accuracy":
            matrix = analysis.confusion_matrix(*record.predictions)
    return {"data": data.source(data_root), "test_images": len(test), **accuracy,
            "per_class": {name: matrix[i, i] / max(matrix[i].sum(), 1) for i, name in enumerate(data.CLASSES)},
            "confusion_matrix": matrix.tolist()}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m src.evaluate", description=__doc__)
    p.add_argument("weights", help="a model.pt written by a run (metrics.json beside it)")
    p.add_argument("--data", required=True, help="CIFAR-10: class folders or torchvision's folder")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N; auto: cuda when there is one")
    p.add_argument("--json", help="also write the result to this file")
    p.add_argument("--figures", help="also draw what the model learned as PNGs into this folder")
    args = p.parse_args(argv)
    written = []  # what a stop (Ctrl-C, a pipe's reader gone) leaves behind
    with command(lambda: f"interrupted before the evaluation ended: {' and '.join(written) or 'nothing'} written"):
        device = device_of(args.device)
        figures = args.figures is not None and Path(args.figures)
        if figures:  # made now, so that a path that can be no folder is refused before the evaluation
            if figures.is_file() or Path(args.data).resolve() in (figures.resolve(), *figures.resolve().parents):
                raise UserError(f"--figures {figures}: a file, or inside --data {args.data}; give another folder")
            figures.mkdir(parents=True, exist_ok=True)
        out = args.json is not None and result_file("--json", args.json, [args.weights, args.data])
        model, metrics = load_model(Path(args.weights))  # said first: three test passes take minutes on a CPU
        print(f"evaluating {args.weights} ({metrics['model']['label']}) on the test images of {args.data}, {device}")
        result, recorded = evaluate(model, args.data, device), metrics.get("final_test_acc")
        if out:  # before the printing, which a pipe's reader gone (`| head -1`) stops
            io.write_json(out, {"weights": args.weights, **result, "recorded_test_acc": recorded})
            written.append(str(out))
        print(f"{args.weights} on {result['test_images']:,} test images ({result['data']}): accuracy "
              f"{100 * result['accuracy']:.2f}%, with flip averaging {100 * result['accuracy_flip']:.2f}%, with flips "
              f"and one-pixel shifts (6 views) {100 * result['accuracy_six_views']:.2f}%",
              *([f"the run recorded {100 * recorded:.2f}% on its {metrics['data']['test_images']:,} test images (with "
                 f"its own test-time settings)"] if recorded is not None else []),
              "per class: " + ", ".join(f"{name} {100 * acc:.1f}%" for name, acc in result["per_class"].items()),
              "confusion matrix (rows: true class, columns: predicted):",
              *(f"{name:>{max(map(len, data.CLASSES))}} " + " ".join(f"{n:5d}" for n in row)
                for name, row in zip(data.CLASSES, result["confusion_matrix"])), sep="\n")
        if figures:
            written.append(f"the figures drawn so far in {figures}")  # whole, one by one: a stop may come between
            paths = analysis.save_figures(model.eval(), analysis.test_images(args.data), figures)
            print("figures:", *paths, sep="\n  ")


if __name__ == "__main__":
    main()
