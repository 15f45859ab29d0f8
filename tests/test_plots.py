"""Figures for the notebook and the run folder: each a Figure, a PNG where asked, and what it draws."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from src import plots  # noqa: E402
from src.analysis import confusion_matrix  # noqa: E402
from src.data import CIFAR10Array, train_transforms  # noqa: E402
from src.data import test_transforms as eval_transforms  # noqa: E402
from src.models import convmixer, create_model  # noqa: E402
from src.trainers.history import History  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def dataset():
    rng = np.random.default_rng(0)
    return CIFAR10Array(rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), np.arange(30) % 10)


def assert_saved(fig, path):
    """A plot the user can rely on: a Figure, and a non-empty PNG at the path given."""
    try:
        assert isinstance(fig, Figure) and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    finally:
        plt.close(fig)


def test_denormalize_inverts_normalize_and_clips_to_unit_range():
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = eval_transforms()(image=image)["image"]
    np.testing.assert_allclose(plots.denormalize(x), image / 255, atol=1e-5)
    batch = plots.denormalize(torch.stack([x, x]))
    assert batch.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(batch[1], image / 255, atol=1e-5)
    assert plots.denormalize(torch.full((3, 4, 4), 100.0)).min() == 1.0
    assert plots.denormalize(torch.full((3, 4, 4), -100.0)).max() == 0.0


def test_augmentation_grid_shows_originals_over_augmentations_repeatably(dataset, tmp_path):
    figs = [plots.augmentation_grid(dataset, train_transforms(), n=4, seed=seed) for seed in (0, 0, 1)]
    drawn = [[ax.images[0].get_array() for ax in fig.axes] for fig in figs]
    originals = [row[:4] for row in drawn]
    assert all(any(np.array_equal(a, image) for image in dataset.images) for a in originals[0])
    assert all(np.array_equal(a, b) for a, b in zip(drawn[0], drawn[1]))  # the same seed, the same figure
    assert not all(np.array_equal(a, b) for a, b in zip(originals[0], originals[2]))
    assert_saved(plots.augmentation_grid(dataset, train_transforms(), n=4, path=tmp_path / "a.png"),
                 tmp_path / "a.png")
    for fig in figs:
        plt.close(fig)


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


@pytest.mark.parametrize("count", [3, 14])
def test_misclassified_grid_any_number_of_images(tmp_path, count):
    images = torch.randn(count, 3, 32, 32)
    targets, preds = torch.arange(count) % 10, (torch.arange(count) + 1) % 10
    fig = plots.misclassified_grid(images, targets, preds, n=12, path=tmp_path / "m.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == min(count, 12)
    assert titles[0] == "airplane/automobile"
    assert_saved(fig, tmp_path / "m.png")


def test_confusion_matrix_counts_true_rows_and_predicted_columns_and_its_plot_writes_them(tmp_path):
    assert confusion_matrix([0, 0, 1, 2], torch.tensor([1, 1, 1, 0]), num_classes=3).tolist() == [
        [0, 2, 0], [0, 1, 0], [1, 0, 0]]
    rng = np.random.default_rng(0)
    targets, preds = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    m = confusion_matrix(torch.from_numpy(targets), preds)
    assert m.tolist() == [[np.sum((targets == t) & (preds == p)) for p in range(10)] for t in range(10)]
    fig = plots.plot_confusion_matrix(m, path=tmp_path / "c.png")
    assert [t.get_text() for t in fig.axes[0].texts] == [str(count) for count in m.ravel()]
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
    before, generator = {k: v.clone() for k, v in model.state_dict().items()}, torch.get_rng_state()
    assert plots.model_summary(model, device=torch.device("cpu")) == total
    assert "Total params" in capsys.readouterr().out
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu" and torch.equal(torch.get_rng_state(), generator)
