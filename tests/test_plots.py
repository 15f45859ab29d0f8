import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from src import plots  # noqa: E402
from src.data import CIFAR10Array, train_transforms  # noqa: E402
from src.data import test_transforms as eval_transforms  # noqa: E402
from src.models import convmixer, create_model  # noqa: E402
from src.evaluate import confusion_matrix  # noqa: E402
from src.trainers.history import History  # noqa: E402


@pytest.fixture
def dataset():
    rng = np.random.default_rng(0)
    return CIFAR10Array(rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), np.arange(30) % 10)


def assert_saved(fig, path):
    """A plot the user can rely on: a Figure, and a non-empty PNG at the path given."""
    try:
        assert isinstance(fig, Figure)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 1000
    finally:
        plt.close(fig)


def test_denormalize_inverts_normalize():
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = eval_transforms()(image=image)["image"]
    np.testing.assert_allclose(plots.denormalize(x), image / 255, atol=1e-5)
    batch = plots.denormalize(torch.stack([x, x]))
    assert batch.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(batch[1], image / 255, atol=1e-5)


def test_denormalize_clips_to_unit_range():
    assert plots.denormalize(torch.full((3, 4, 4), 100.0)).min() == 1.0
    assert plots.denormalize(torch.full((3, 4, 4), -100.0)).max() == 0.0


def test_augmentation_grid(dataset, tmp_path):
    assert_saved(plots.augmentation_grid(dataset, train_transforms(), n=4, path=tmp_path / "a.png"),
                 tmp_path / "a.png")


def test_training_curves_from_history_and_dict(tmp_path):
    h = History(train_loss=[2.0, 1.5, 1.2], train_acc=[0.3, 0.5, 0.6], test_loss=[1.8, 1.4, 1.3],
                test_acc=[0.35, 0.5, 0.55], epoch_time=[1.0] * 3, lr=[0.01, 0.005, 0.001],
                batch_lr=list(np.linspace(0.01, 0.001, 12)))
    fig = plots.training_curves(h, path=tmp_path / "h.png")
    accuracy, lr = fig.axes[1].lines[0], fig.axes[2].lines[0]
    np.testing.assert_allclose(accuracy.get_ydata(), [30, 50, 60])
    assert len(lr.get_xdata()) == 12 and lr.get_xdata()[-1] == pytest.approx(3)
    assert_saved(fig, tmp_path / "h.png")
    fig = plots.training_curves({**h.to_dict(), "batch_lr": []}, path=tmp_path / "d.png")
    assert list(fig.axes[2].lines[0].get_xdata()) == [1, 2, 3]
    assert_saved(fig, tmp_path / "d.png")


@pytest.mark.parametrize("count", [0, 3, 14])
def test_misclassified_grid_any_number_of_images(tmp_path, count):
    images = torch.randn(count, 3, 32, 32)
    targets, preds = torch.arange(count) % 10, (torch.arange(count) + 1) % 10
    fig = plots.misclassified_grid(images, targets, preds, n=12, path=tmp_path / "m.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert len(titles) == min(count, 12)
    if count:
        assert titles[0] == "airplane/automobile"
    else:
        assert "no misclassified images" in texts
    assert_saved(fig, tmp_path / "m.png")


def test_plot_confusion_matrix_writes_counts(tmp_path):
    m = confusion_matrix(np.arange(50) % 10, np.arange(50) * 3 % 10)
    fig = plots.plot_confusion_matrix(m, path=tmp_path / "c.png")
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert len(cells) == 100 and cells.count("5") == 10
    assert_saved(fig, tmp_path / "c.png")


def test_mixer_diagram(tmp_path):
    assert_saved(plots.mixer_diagram(path=tmp_path / "x.png"), tmp_path / "x.png")


@pytest.mark.parametrize("make, extra", [(lambda: create_model("vit_seed", dim=32, depth=2, mlp_dim=32), "vit"),
                                         (lambda: convmixer(32, 2), None)])
def test_model_summary_counts_and_leaves_model_as_it_was(make, extra, capsys):
    """The full-size counts are in test_models.py; here: what torchsummary leaves out, and no side effects."""
    torch.manual_seed(0)
    model = make().train()
    total = sum(p.numel() for p in model.parameters())
    if extra:  # torchsummary counts module weights only, not the position embedding and class token
        total -= model.pos_embedding.numel() + model.cls_token.numel()
    list(model.modules())[-1].eval()  # a mixed state, as with frozen layers
    modes = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert plots.model_summary(model, device=torch.device("cpu")) == total
    assert "Total params" in capsys.readouterr().out
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"
