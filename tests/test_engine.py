"""The engine's loop against a plain PyTorch loop: the speed work (host reads every N batches,
fused/foreach kernels, the host-side EMA) must not change what is learned (fp32, CPU)."""
import copy

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from src.harness.errors import Diverged
from src.models import create_model
from src.trainers import Engine, History, Step

pytestmark = pytest.mark.usefixtures("one_thread")


def model_and_batches(n=7, batch=8, seed=0):
    torch.manual_seed(seed)
    model = create_model("convmixer_256_8", dim=16, depth=2, kernel_size=3, patch_size=4)
    g = torch.Generator().manual_seed(seed + 1)
    batches = [(torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g))
               for _ in range(n)]
    return model, batches


def optimizer_and_schedule(model):
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.05)
    return opt, LambdaLR(opt, lambda k: 1 - k / 20)


def plain_loop(model, batches, epochs, grad_clip=0.0, ema=0.0):
    """What the engine replaces, written the obvious way (torch's AveragedModel for the EMA)."""
    opt, sched = optimizer_and_schedule(model)
    average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True) if ema else None
    losses = []
    for _ in range(epochs):
        model.train()
        for x, y in batches:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
            if average is not None:
                average.update_parameters(model)
            losses.append(loss.item())
    return losses, (average.module if average is not None else model)


@pytest.mark.parametrize("sync_every", [1, 3, 32])
@pytest.mark.parametrize("options", [{}, {"grad_clip": 0.5}, {"ema": 0.8}], ids=["plain", "clip", "ema"])
def test_engine_learns_exactly_what_a_plain_loop_learns(sync_every, options):
    model, batches = model_and_batches()
    reference_losses, reference = plain_loop(copy.deepcopy(model), batches, epochs=2, **options)
    opt, sched = optimizer_and_schedule(model)
    engine = Engine(model, opt, sched, step=Step(**options))
    engine.sync_every = sync_every  # as on CUDA, where the host reads the device every SYNC_EVERY batches
    reads = []
    history = engine.fit(batches, batches[:2], 2, on_batch=lambda i, loss, acc: reads.append((i, loss)))
    per_epoch = len(batches)
    for epoch in range(2):
        mean = sum(reference_losses[epoch * per_epoch:(epoch + 1) * per_epoch]) / per_epoch
        assert history.train_loss[epoch] == pytest.approx(mean, rel=1e-6)
    # the progress numbers are read every sync_every batches and at the last one, and are the batch's loss
    expected = [i for i in range(per_epoch) if (i + 1) % sync_every == 0 or i + 1 == per_epoch] * 2
    assert [i for i, _ in reads] == expected
    assert [loss for _, loss in reads] == pytest.approx(
        [reference_losses[e * per_epoch + i] for e in range(2) for i in expected[:len(expected) // 2]], rel=1e-6)
    tested = engine.model  # fit() ends with the weights it tested (the EMA's, with an EMA)
    for (name, a), b in zip(tested.state_dict().items(), reference.state_dict().values()):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_a_bad_loss_between_host_reads_is_caught_and_named(monkeypatch):
    model, batches = model_and_batches(n=10)
    opt, sched = optimizer_and_schedule(model)
    engine = Engine(model, opt, sched)
    engine.sync_every = 4
    batches[5] = (batches[5][0] * float("nan"), batches[5][1])
    with pytest.raises(Diverged, match=r"loss became nan at epoch 0, batch 5, learning rate 0\.0075"):
        engine.train_epoch(batches, 0, History())


def test_a_huge_finite_loss_is_divergence_too():
    _, batches = model_and_batches(n=2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))  # no BatchNorm to absorb the scale
    opt, sched = optimizer_and_schedule(model)
    engine = Engine(model, opt, sched)
    batches[1] = (batches[1][0] * 1e6, batches[1][1])  # confidently wrong: loss far above ln(10)
    with pytest.raises(Diverged, match=r"loss became 1\.\d+e\+06 at epoch 0, batch 1, .*above 10x a uniform guess"):
        engine.train_epoch(batches, 0, History())
