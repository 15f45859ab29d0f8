"""Checking a result without training: predictions, mistakes, the confusion matrix, and
`python -m src.evaluate` on a saved run."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from helpers import config_kwargs, tiny_args
from src.evaluate import accuracy, confusion_matrix, predict
from src.evaluate import main as evaluate_main
from src.train import main as train_main
from src.harness.config import Config
from src.harness.run import run
from src.trainers import Engine, Step


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    targets = [0, 0, 1, 2, 2, 2]
    preds = [0, 1, 1, 2, 0, 2]
    m = confusion_matrix(torch.tensor(targets), np.array(preds), num_classes=3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert m.sum() == len(targets)
    assert np.issubdtype(m.dtype, np.integer)


def test_confusion_matrix_rejects_labels_out_of_range():
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], num_classes=3)


def test_predict_keeps_mistakes_from_every_batch_and_both_test_time_settings():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    batches = [(torch.randn(10, 3, 8, 8), torch.full((10,), c)) for c in range(5)]  # stored class by class
    plain = predict(model, batches, keep=10)
    flip = predict(model, batches, step=Step(tta_flip=True), keep=10)
    x = torch.cat([b[0] for b in batches])
    with torch.no_grad():
        assert torch.equal(plain.predictions[1], model(x).argmax(1))
        assert torch.equal(flip.predictions[1], (model(x) + model(x.flip(-1))).argmax(1))
    assert torch.equal(plain.predictions[0], torch.cat([b[1] for b in batches]))
    images, targets, preds = plain.misclassified
    assert len(images) == 10 and (preds != targets).all()
    assert len(set(targets.tolist())) == 5  # two from each batch, not the first ten of one class
    for image, target, pred in zip(images, targets, preds):
        with torch.no_grad():
            assert model(image[None]).argmax(1).item() == pred != target
    assert accuracy(plain) == (plain.predictions[0] == plain.predictions[1]).float().mean().item()


def test_the_last_epoch_test_pass_yields_the_predictions_and_no_other_pass_is_made(tiny_cifar, tmp_path,
                                                                                   monkeypatch):
    """One test pass per epoch: the plots' predictions and mistakes come from the last one."""
    passes = []
    evaluate = Engine.evaluate

    def counted(self, loader, into=None, keep=20):
        passes.append(into is not None)
        return evaluate(self, loader, into, keep)

    monkeypatch.setattr(Engine, "evaluate", counted)
    model, history = run(Config(**config_kwargs(tiny_cifar, tmp_path / "run", epochs=2)))
    assert passes == [False, True]
    targets, predicted = history.predictions
    assert len(targets) == 40 and (targets == predicted).float().mean().item() == pytest.approx(history.test_acc[-1])
    images, wrong_targets, wrong_preds = history.misclassified
    assert (wrong_targets != wrong_preds).all() and len(images) == min(20, int((targets != predicted).sum()))


def test_evaluate_cli_reproduces_the_runs_accuracy(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    train_main(tiny_args(tiny_cifar, out, epochs=2))
    capsys.readouterr()
    evaluate_main([str(out / "model.pt"), "--data", str(tiny_cifar), "--device", "cpu", "--json",
                   str(tmp_path / "e.json"), "--figures", str(tmp_path / "figures")])
    printed = capsys.readouterr().out
    drawn = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert drawn == ["depthwise_kernels.png", "patch_filters.png"]  # what a ConvMixer learned
    assert all(str(tmp_path / "figures" / name) in printed for name in drawn)
    result = json.loads((tmp_path / "e.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert result["accuracy"] == pytest.approx(metrics["final_test_acc"])  # same weights, same test set
    matrix = np.array(result["confusion_matrix"])
    assert matrix.sum() == 40 and np.trace(matrix) / 40 == pytest.approx(result["accuracy"])
    assert set(result["per_class"]) == {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                        "ship", "truck"}
    assert f"accuracy {100 * result['accuracy']:.2f}%" in printed and "confusion matrix" in printed
    assert f"(6 views) {100 * result['accuracy_six_views']:.2f}%" in printed
    with pytest.raises(SystemExit) as missing:
        evaluate_main([str(tmp_path / "nothing.pt"), "--data", str(tiny_cifar)])
    assert missing.value.code == f"error: no weights at {tmp_path / 'nothing.pt'}: give the model.pt of a finished run"
