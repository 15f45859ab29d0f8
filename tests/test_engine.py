"""The engine's loop against a plain PyTorch loop: the speed work (host reads every N batches, fused and
foreach kernels, the host-side EMA) must not change what is learned (fp32, CPU); clipping, label smoothing
and the test-time views do what they say; the divergence guard stops a run in one line, before any step on
a bad loss; a run resumed from its state_dict ends exactly as one never stopped."""
import copy
import math
import random
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from src import io
from src.data import CIFAR10Array, loaders
from src.gpu_loader import GPULoader
from src.models import create_model
from src.trainers import Engine, History, Step
from src.trainers.engine import Diverged

pytestmark = pytest.mark.usefixtures("one_thread")
MIXER = dict(dim=16, depth=2, kernel_size=3, patch_size=4)


def model_and_batches(n=7, batch=8, seed=0):
    torch.manual_seed(seed)
    model = create_model("convmixer_256_8", **MIXER)
    g = torch.Generator().manual_seed(seed + 1)
    batches = [(torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g))
               for _ in range(n)]
    return model, batches


def optimizer_and_schedule(model, lr=0.01):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    return opt, LambdaLR(opt, lambda k: 1 - k / 20)


def plain_loop(model, batches, epochs, grad_clip=0.0, ema=0.0, label_smoothing=0.0):
    """What the engine replaces, written the obvious way (torch's AveragedModel for the EMA)."""
    opt, sched = optimizer_and_schedule(model)
    average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True) if ema else None
    losses, norms = [], []
    for _ in range(epochs):
        model.train()
        for x, y in batches:
            loss = nn.functional.cross_entropy(model(x), y, label_smoothing=label_smoothing)
            opt.zero_grad()
            loss.backward()
            if grad_clip:
                norms.append(nn.utils.clip_grad_norm_(model.parameters(), grad_clip).item())
            opt.step()
            sched.step()
            if average is not None:
                average.update_parameters(model)
            losses.append(loss.item())
    assert not grad_clip or max(norms) > grad_clip  # the clipping did clip
    return losses, (average.module if average is not None else model)


@pytest.mark.parametrize("sync_every", [1, 3, 32])
@pytest.mark.parametrize("options", [{}, {"grad_clip": 0.5}, {"ema": 0.8}, {"label_smoothing": 0.1}],
                         ids=["plain", "clip", "ema", "smoothing"])
def test_engine_learns_exactly_what_a_plain_loop_learns(sync_every, options):
    model, batches = model_and_batches()
    reference_losses, reference = plain_loop(copy.deepcopy(model), batches, epochs=2, **options)
    engine = Engine(model, *optimizer_and_schedule(model), step=Step(**options))
    engine.sync_every = sync_every  # as on CUDA, where the host reads the device every SYNC_EVERY batches
    reads, per_epoch = [], len(batches)
    history = engine.fit(batches, batches[:2], 2, on_batch=lambda i, loss, acc: reads.append((i, loss)))
    for epoch in range(2):
        mean = sum(reference_losses[epoch * per_epoch:(epoch + 1) * per_epoch]) / per_epoch
        assert history.train_loss[epoch] == pytest.approx(mean, rel=1e-6)
    # the progress numbers are read every sync_every batches and at the last one, and are the batch's loss
    expected = [i for i in range(per_epoch) if (i + 1) % sync_every == 0 or i + 1 == per_epoch] * 2
    assert [i for i, _ in reads] == expected
    assert [loss for _, loss in reads] == pytest.approx(
        [reference_losses[e * per_epoch + i] for e in range(2) for i in expected[:len(expected) // 2]], rel=1e-6)
    for (name, a), b in zip(engine.model.state_dict().items(), reference.state_dict().values()):
        if a.is_floating_point():  # fit() ends with the weights it tested (the EMA's, with an EMA)
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def shifted(x, by):
    """x moved a pixel (by=-1: content down-right, +1: up-left), the edge reflected, by plain indexing."""
    index = torch.tensor([1, *range(31)]) if by < 0 else torch.tensor([*range(1, 32), 30])
    return x[..., index[:, None], index]


@pytest.mark.parametrize("flip, translate", [(True, False), (False, True), (True, True)])
def test_test_time_views_average_the_logits_of_the_mirrored_and_shifted_images(flip, translate):
    _, batches = model_and_batches(n=1, batch=32)
    torch.manual_seed(0)  # a ViT: its position embedding makes every view look different to it
    model = create_model("vit_seed", **RESUMABLE["vit"][1])
    engine = Engine(model, *optimizer_and_schedule(model), step=Step(tta_flip=flip, tta_translate=translate))
    x, y = batches[0]
    views = [x, x.flip(-1)] if flip else [x]
    views += [shifted(v, by) for v in views for by in (-1, 1)] if translate else []
    with torch.no_grad():
        logits = sum(model.eval()(v) for v in views) / len(views)
        alone = nn.functional.cross_entropy(model(x), y).item()
    loss, accuracy, seen = engine.evaluate([(x, y)], into=(into := History()))
    assert len(views) == (2 if flip else 1) * (3 if translate else 1) and seen == 32
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert loss != pytest.approx(alone, rel=1e-4)  # the views matter to this model
    assert accuracy == (logits.argmax(1) == y).float().mean().item()
    assert torch.equal(into.predictions[0], y) and torch.equal(into.predictions[1], logits.argmax(1))


def test_a_huge_learning_rate_stops_in_one_line_before_any_step_on_the_bad_loss():
    _, batches = model_and_batches(n=6)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e5)
    engine = Engine(model, opt, LambdaLR(opt, lambda k: 1 + k))  # batch b trains at (b + 1) * 1e5
    with pytest.raises(Diverged) as err:
        engine.fit(batches, batches[:1], 3)
    found = re.fullmatch(r"loss became (\S+) at epoch 0, batch (\d+), learning rate (\S+) \(above 10x a uniform "
                         r"guess's, or not finite\): training stopped; lower --lr-max",
                         str(err.value))
    assert found, str(err.value)
    batch = int(found[2])
    assert batch >= 1 and found[3] == f"{(batch + 1) * 1e5:.6g}"  # the bad batch's own learning rate
    assert 10 * math.log(10) < float(found[1]) < math.inf  # confidently wrong is divergence, finite or not
    assert opt.state[model[1].weight]["step"].item() == batch  # the steps before the bad batch, none after


def test_a_bad_loss_between_host_reads_is_caught_and_named():
    model, batches = model_and_batches(n=10)
    engine = Engine(model, *optimizer_and_schedule(model))
    engine.sync_every = 4
    batches[5] = (batches[5][0] * float("nan"), batches[5][1])
    with pytest.raises(Diverged, match=r"loss became nan at epoch 0, batch 5, learning rate 0\.0075"):
        engine.train_epoch(batches, 0, History())


RESUMABLE = {  # the ViT's dropout draws from torch's generator in every step
    "convmixer": ("convmixer_256_8", dict(MIXER, depth=1), Step(ema=0.9, grad_clip=1.0, label_smoothing=0.1)),
    "vit": ("vit_seed", dict(dim=16, depth=1, heads=2, dim_head=8, mlp_dim=16), Step())}
EPOCHS = 3


def training(kind, family, seed):
    """A fresh engine and loaders over 48 random images (3 batches an epoch), as a new process builds them."""
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
    name, sizes, step = RESUMABLE[family]
    model = create_model(name, **sizes)
    engine = Engine(model, *optimizer_and_schedule(model, lr=0.003), step=step)
    rng = np.random.default_rng(0)
    train = CIFAR10Array(rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 48))
    test = CIFAR10Array(train.images[:20], train.labels[:20])
    if kind == "gpu":
        return engine, GPULoader(train, 16, True), GPULoader(test, 16, False)
    return (engine, *loaders(train, test, batch_size=16, workers=0))


@pytest.mark.parametrize("family", RESUMABLE)
@pytest.mark.parametrize("kind", ["reference", "gpu"])
def test_a_run_resumed_from_its_saved_state_ends_exactly_as_one_never_stopped(kind, family, tmp_path):
    engine, train, test = training(kind, family, seed=0)
    straight = engine.fit(train, test, EPOCHS)
    expected = engine.model.state_dict()

    def save_then_die(epoch, history, state):
        io.save(tmp_path / "state.pt", state())  # weights only: what a run folder's checkpoint.pt holds
        if epoch == 1:
            raise KeyboardInterrupt  # Ctrl-C, after the epoch's state is on the disk

    engine, train, test = training(kind, family, seed=0)
    with pytest.raises(KeyboardInterrupt):
        engine.fit(train, test, EPOCHS, on_epoch=save_then_die)
    engine, train, test = training(kind, family, seed=1)  # other weights and generator states until loaded
    resumed = engine.fit(train, test, EPOCHS, resume=io.load(tmp_path / "state.pt"))
    assert len(resumed.train_loss) == EPOCHS and straight.train_loss[0] != straight.train_loss[-1]
    assert {**resumed.to_dict(), "epoch_time": 0} == {**straight.to_dict(), "epoch_time": 0}
    assert torch.equal(resumed.predictions[1], straight.predictions[1])
    for (name, weight), other in zip(engine.model.state_dict().items(), expected.values()):
        assert torch.equal(weight, other), name


@pytest.mark.parametrize("mode", ["default", "reduce-overhead", "max-autotune"])
def test_compile_mode_reaches_torch_compile_for_training_and_testing(monkeypatch, mode):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda net, mode: calls.append(mode) or net)
    model = create_model("convmixer_256_8", dim=8, depth=1, patch_size=4)
    Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), step=Step(compile=True, compile_mode=mode))
    assert calls == [mode, mode]
