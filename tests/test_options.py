"""Each training option does what it says, checked against a hand computation.

EMA, TTA flip, label smoothing, gradient clipping, no-decay parameter groups, the one-cycle
schedule, the trainers' printed lines and History, RandAugment, the recipes (and explicit values
overriding them), and precision / channels_last on CPU. Tiny models and random tensors only.
"""
import copy
import re

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from src.data import RandAugment, train_transforms
from src.models import ConvViT, convmixer
from src.harness.config import Config
from src.evaluate import predict
from src.recipes import RECIPES
from src.train import config_from_args
from src.trainers import (Engine, History, Step, Trainer, lr_schedule, param_groups, train_one_cycle, train_wrapper,
                          wrapper)

torch.set_num_threads(2)


# ---------------------------------------------------------------------------- helpers

def linear_model(seed=0, size=8):
    """Not flip-invariant, no BatchNorm/dropout: train and eval outputs are the same."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 10))


def tiny_mixer(seed=0):
    torch.manual_seed(seed)
    return convmixer(8, 1, kernel_size=3, patch_size=4)


def tiny_vit(seed=0):
    torch.manual_seed(seed)
    return ConvViT(image_size=8, patch_size=4, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=16,
                   dropout=0.0, emb_dropout=0.0)


def batches(n_batches, batch_size, size=8, seed=0, last=None):
    """A list of (x, y) batches; `last` makes the final batch smaller."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_batches):
        n = last if (last and i == n_batches - 1) else batch_size
        out.append((torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)))
    return out


def concat(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def tensor_loader(n, batch_size, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def sgd(model, lr):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def float_state(module):
    """Parameters and floating buffers (BatchNorm running stats), by name."""
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


# ---------------------------------------------------------------------------- EMA

def ema_recurrence(snapshots, decay):
    """get_ema_multi_avg_fn's rule: the first update copies, then ema = d*ema + (1-d)*w."""
    ema = {k: v.clone() for k, v in snapshots[0].items()}
    for snap in snapshots[1:]:
        ema = {k: decay * ema[k] + (1 - decay) * snap[k] for k in ema}
    return ema


def ema_closed_form(snapshots, decay):
    """Same thing unrolled: d^(k-1) w_1 + sum_{j>=2} (1-d) d^(k-j) w_j."""
    k = len(snapshots)
    return {name: decay ** (k - 1) * snapshots[0][name]
            + sum((1 - decay) * decay ** (k - 1 - j) * snapshots[j][name] for j in range(1, k))
            for name in snapshots[0]}


@pytest.mark.parametrize("make_model", [linear_model, tiny_mixer], ids=["linear", "convmixer"])
def test_ema_weights_follow_the_recurrence(make_model):
    decay, size = 0.8, (8 if make_model is linear_model else 32)
    model = make_model()
    engine = Engine(model, sgd(model, 0.5), step=Step(ema=decay))
    snapshots = []
    train = batches(3, 4, size=size)
    engine.fit(train, batches(1, 4, size=size, seed=1), epochs=2,
               on_batch=lambda *_: snapshots.append(float_state(model)))
    assert len(snapshots) == 6 and engine.ema.updates == 6
    got = float_state(engine.ema.module)
    assert set(got) == set(snapshots[0])  # BatchNorm running stats are averaged too (use_buffers=True)
    for expected in (ema_recurrence(snapshots, decay), ema_closed_form(snapshots, decay)):
        for name in got:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    # it really is an average: not the last weights, not the first
    assert any(not torch.allclose(got[k], snapshots[-1][k]) for k in got)
    assert any(not torch.allclose(got[k], snapshots[0][k]) for k in got)


def test_ema_first_update_copies_the_weights():
    model = linear_model()
    engine = Engine(model, sgd(model, 0.5), step=Step(ema=0.999))
    snapshots = []
    engine.train_epoch(batches(1, 4), 0, History(), on_batch=lambda *_: snapshots.append(float_state(model)))
    for name, value in float_state(engine.ema.module).items():
        torch.testing.assert_close(value, snapshots[0][name], rtol=0, atol=0)


def test_evaluate_with_ema_uses_the_ema_weights():
    model = tiny_mixer()
    engine = Engine(model, sgd(model, 0.5), step=Step(ema=0.7))
    test = batches(2, 5, size=32, seed=1)
    engine.train_epoch(batches(4, 4, size=32), 0, History())  # fit() would end with the EMA weights
    loss, acc, n = engine.evaluate(test)
    preds = predict(engine.ema.module, test).predictions[1]
    x, y = concat(test)
    ema_net = engine.ema.module.eval()
    raw = copy.deepcopy(model).eval()
    with torch.no_grad():
        ema_out, raw_out = ema_net(x), raw(x)
    assert loss == pytest.approx(nn.functional.cross_entropy(ema_out, y).item(), rel=1e-5)
    assert acc == pytest.approx((ema_out.argmax(1) == y).float().mean().item())
    assert torch.equal(preds, ema_out.argmax(1)) and n == len(y)
    raw_loss = nn.functional.cross_entropy(raw_out, y).item()
    assert abs(loss - raw_loss) > 1e-4, "evaluate() gave the raw model's loss, not the EMA's"
    # without an EMA the same engine setup evaluates the raw model
    plain = Engine(copy.deepcopy(model), sgd(model, 0.0))
    assert plain.evaluate(test)[0] == pytest.approx(raw_loss, rel=1e-5)


def test_fit_with_ema_ends_with_the_ema_weights_that_were_tested():
    model = tiny_mixer()
    engine = Engine(model, sgd(model, 0.5), step=Step(ema=0.7))
    test = batches(2, 5, size=32, seed=1)
    history = engine.fit(batches(4, 4, size=32), test, epochs=2)
    for name, value in float_state(engine.ema.module).items():
        torch.testing.assert_close(float_state(model)[name], value, rtol=0, atol=0, msg=name)
    assert Engine(model, sgd(model, 0.0)).evaluate(test)[0] == pytest.approx(history.test_loss[-1], rel=1e-5)


# ---------------------------------------------------------------------------- TTA flip

def test_tta_flip_is_flip_invariant_and_averages_logits():
    model = linear_model()
    x, y = concat(batches(2, 6, seed=3))
    engine = Engine(model, sgd(model, 0.0), step=Step(tta_flip=True))
    loss, acc, _ = engine.evaluate([(x, y)])
    loss_f, acc_f, _ = engine.evaluate([(x.flip(-1), y)])
    assert loss == pytest.approx(loss_f, rel=1e-6, abs=1e-7)
    assert acc == acc_f
    preds = predict(model, [(x, y)], step=Step(tta_flip=True)).predictions[1]
    preds_f = predict(model, [(x.flip(-1), y)], step=Step(tta_flip=True)).predictions[1]
    assert torch.equal(preds, preds_f)

    model.eval()
    with torch.no_grad():
        logits = (model(x) + model(x.flip(-1))) / 2
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert torch.equal(preds, logits.argmax(1))

    # the model itself is not flip-invariant: without TTA the two inputs give different losses
    plain = Engine(model, sgd(model, 0.0), step=Step(tta_flip=False))
    assert abs(plain.evaluate([(x, y)])[0] - plain.evaluate([(x.flip(-1), y)])[0]) > 1e-4


def test_tta_translate_averages_six_views_shifted_a_pixel_with_reflected_edges():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    views = Step(tta_flip=True, tta_translate=True).views(x)
    assert len(views) == 6 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x) and torch.equal(views[1], x.flip(-1))
    down_right, up_left = views[2], views[3]  # of the image; views[4:] the same of its mirror
    assert torch.equal(down_right[..., 1:, 1:], x[..., :-1, :-1])
    assert torch.equal(up_left[..., :-1, :-1], x[..., 1:, 1:])
    assert torch.equal(down_right[..., 0, 1:], x[..., 1, :-1])  # the row above the image is its second row
    assert torch.equal(up_left[..., -1, :-1], x[..., -2, 1:])
    assert torch.equal(views[4][..., 1:, 1:], x.flip(-1)[..., :-1, :-1])
    assert len(Step(tta_translate=True).views(x)) == 3 and len(Step().views(x)) == 1

    model = linear_model()  # on 3x8x8 images
    images, y = concat(batches(2, 6, seed=3))
    engine = Engine(model, sgd(model, 0.0), step=Step(tta_flip=True, tta_translate=True))
    loss, acc, _ = engine.evaluate([(images, y)])
    model.eval()
    with torch.no_grad():
        logits = sum(model(v) for v in Step(tta_flip=True, tta_translate=True).views(images)) / 6
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())


# ---------------------------------------------------------------------------- label smoothing

@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_train_loss_is_the_smoothed_cross_entropy(smoothing):
    train = batches(3, 4, last=2)  # unequal batches: the epoch loss is a per-image mean
    test = batches(1, 6, seed=2)
    model = linear_model()
    history = Engine(model, sgd(model, 0.0), step=Step(label_smoothing=smoothing)).fit(train, test, 1)
    x, y = concat(train)
    with torch.no_grad():
        out = model(x)
        smoothed = nn.CrossEntropyLoss(label_smoothing=smoothing)(out, y).item()
        plain = nn.CrossEntropyLoss()(out, y).item()
    assert history.train_loss[0] == pytest.approx(smoothed, rel=1e-5)
    if smoothing:
        assert abs(smoothed - plain) > 1e-3 and abs(history.train_loss[0] - plain) > 1e-3
    # the reported test loss stays the plain cross-entropy, comparable across recipes
    tx, ty = concat(test)
    with torch.no_grad():
        assert history.test_loss[0] == pytest.approx(nn.functional.cross_entropy(model(tx), ty).item(), rel=1e-5)


def test_label_smoothing_reaches_the_wrapper_trainer():
    train, test = tensor_loader(10, 4), tensor_loader(6, 6, seed=2)
    model = linear_model()
    history = Trainer(model, sgd(model, 0.0), step=Step(label_smoothing=0.2)).fit(train, test, 1)
    x, y = train.dataset.tensors
    with torch.no_grad():
        assert history.train_loss[0] == pytest.approx(
            nn.CrossEntropyLoss(label_smoothing=0.2)(model(x), y).item(), rel=1e-5)


# ---------------------------------------------------------------------------- gradient clipping

def hand_gradient(model, x, y):
    m = copy.deepcopy(model)
    nn.functional.cross_entropy(m(x), y).backward()
    return torch.cat([p.grad.reshape(-1) for p in m.parameters()])


def one_step_change(grad_clip, model, batch):
    model = copy.deepcopy(model)
    before = flat(model)
    Engine(model, sgd(model, 1.0), step=Step(grad_clip=grad_clip or 0.0)).train_epoch([batch], 0, History())
    return flat(model) - before


def test_grad_clip_bounds_the_step_norm():
    model, batch = linear_model(), batches(1, 8)[0]
    g = hand_gradient(model, *batch)
    clip = 0.1 * g.norm().item()
    delta = one_step_change(clip, model, batch)
    assert delta.norm().item() <= clip + 1e-6
    assert delta.norm().item() == pytest.approx(clip, rel=1e-4)  # clipped to c, not below
    torch.testing.assert_close(delta, -g * clip / g.norm(), rtol=1e-4, atol=1e-7)  # same direction
    unclipped = one_step_change(None, model, batch)
    torch.testing.assert_close(unclipped, -g, rtol=1e-4, atol=1e-6)
    assert unclipped.norm().item() > 5 * clip


def test_grad_clip_leaves_small_gradients_alone():
    model, batch = linear_model(), batches(1, 8)[0]
    g = hand_gradient(model, *batch)
    delta = one_step_change(10 * g.norm().item(), model, batch)
    torch.testing.assert_close(delta, one_step_change(None, model, batch), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(delta, -g, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------- weight decay groups

def classify(model):
    """Expected split by module type: norms' weights, biases, pos_embedding and cls_token are not
    decayed; convolution and linear weights are."""
    no_decay, decay = set(), set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if p_name == "bias" or isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                no_decay.add(full)
            elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)) and p_name == "weight":
                decay.add(full)
            elif full in ("pos_embedding", "cls_token"):
                no_decay.add(full)
            else:
                raise AssertionError(f"unexpected parameter {full}")
    return decay, no_decay


@pytest.mark.parametrize("make_model", [tiny_vit, tiny_mixer], ids=["vit", "convmixer"])
def test_param_groups_spare_norms_biases_and_embeddings(make_model):
    model = make_model()
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, 0.05, decay_norms=False)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    decay = {names[id(p)] for p in groups[0]["params"]}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    expected_decay, expected_no_decay = classify(model)
    assert decay == expected_decay and no_decay == expected_no_decay
    if make_model is tiny_vit:
        assert {"pos_embedding", "cls_token"} <= no_decay
    all_ids = [id(p) for g in groups for p in g["params"]]
    assert len(all_ids) == len(set(all_ids)) == len(list(model.parameters()))  # each exactly once

    (only,) = param_groups(model, 0.05, decay_norms=True)
    assert only["weight_decay"] == 0.05
    assert [id(p) for p in only["params"]] == [id(p) for p in model.parameters()]


def test_adamw_with_zero_gradient_shrinks_only_decayed_parameters():
    lr, wd = 0.1, 0.2
    for decay_norms in (False, True):
        model = tiny_vit()
        names = {id(p): n for n, p in model.named_parameters()}
        groups = param_groups(model, wd, decay_norms)
        opt = torch.optim.AdamW(groups, lr=lr)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        for group in groups:
            for p in group["params"]:
                name = names[id(p)]
                factor = 1 - lr * group["weight_decay"]
                torch.testing.assert_close(p.detach(), before[name] * factor, rtol=1e-6, atol=0, msg=name)
        pos = dict(model.named_parameters())["pos_embedding"].detach()
        if decay_norms:
            assert not torch.equal(pos, before["pos_embedding"])
        else:
            assert torch.equal(pos, before["pos_embedding"])


# ---------------------------------------------------------------------------- one-cycle schedule

def test_lr_schedule_knots_and_linear_segments():
    lr_max, epochs = 0.01, 25
    s = lr_schedule(lr_max, epochs)
    knots = {0: 0.0, 2 / 5: lr_max, 4 / 5: lr_max / 20, 1: 0.0}
    for frac, value in knots.items():
        assert s(frac * epochs) == pytest.approx(value, abs=1e-12)
    # linear in between: midpoints are the means of the knots
    assert s(0.2 * epochs) == pytest.approx(lr_max / 2)
    assert s(0.6 * epochs) == pytest.approx((lr_max + lr_max / 20) / 2)
    assert s(0.9 * epochs) == pytest.approx(lr_max / 40)
    ts = np.linspace(0, 0.4 * epochs, 9)
    assert np.allclose(np.diff([s(t) for t in ts]), lr_max / 8)


def test_lr_schedule_warmup_moves_the_peak():
    lr_max, epochs = 0.002, 10
    s = lr_schedule(lr_max, epochs, warmup=0.2)
    ts = np.linspace(0, epochs, 201)
    values = [s(t) for t in ts]
    assert ts[int(np.argmax(values))] == pytest.approx(0.2 * epochs)
    assert s(0.2 * epochs) == pytest.approx(lr_max)
    assert s(0.1 * epochs) == pytest.approx(lr_max / 2)
    assert s(0.8 * epochs) == pytest.approx(lr_max / 20)
    assert s(0.5 * epochs) == pytest.approx((lr_max + lr_max / 20) / 2)
    assert s(epochs) == 0.0


@pytest.mark.parametrize("warmup", [0.0, -0.1, 0.8, 0.9, 1.0, 1.5])
def test_lr_schedule_rejects_invalid_warmup(warmup):
    with pytest.raises(ValueError, match="warmup"):
        lr_schedule(0.01, 10, warmup=warmup)


EPOCH_LINE = re.compile(r"^\[ConvMixer\] Epoch: \d+ \| Train Acc: \d\.\d{4}, Test Acc: \d\.\d{4}, "
                        r"Time: \d+\.\d, lr: \d\.\d{6}$")


def assert_history_shape(history, epochs, n_batches):
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_time", "lr"):
        assert len(getattr(history, key)) == epochs, key
    assert len(history.batch_lr) == epochs * n_batches
    for e in range(epochs):  # an epoch's lr is its last batch's
        assert history.lr[e] == history.batch_lr[(e + 1) * n_batches - 1]
    assert all(0 <= a <= 1 for a in history.train_acc + history.test_acc)
    assert all(t > 0 for t in history.epoch_time)


@pytest.mark.parametrize("warmup", [2 / 5, 0.2])
def test_train_one_cycle_lines_history_and_batch_lr(capsys, warmup):
    epochs, lr_max = 3, 0.01
    train, test = batches(3, 4, size=32), batches(1, 4, size=32, seed=1)
    history = train_one_cycle(tiny_mixer(), train, test, epochs, lr_max, 0.01, warmup=warmup)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == epochs
    for e, line in enumerate(lines):
        assert EPOCH_LINE.match(line), line
        assert line.startswith(f"[ConvMixer] Epoch: {e} |")
    assert lines[-1].endswith("lr: 0.000000")
    assert_history_shape(history, epochs, len(train))
    schedule = lr_schedule(lr_max, epochs, warmup)
    expected = [schedule((k + 1) / len(train)) for k in range(epochs * len(train))]
    assert history.batch_lr == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert history.lr[-1] == 0.0
    assert 0 < max(history.batch_lr) <= lr_max


def test_wrapper_trainer_bar_test_lines_and_history(capsys):
    epochs = 2
    train, test = tensor_loader(12, 4, size=32), tensor_loader(7, 4, size=32, seed=1)
    model = tiny_mixer()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, epochs=epochs, steps_per_epoch=len(train),
                                                pct_start=0.4, anneal_strategy="linear")
    history = Trainer(model, opt, scheduler=sched).fit(train, test, epochs)
    captured = capsys.readouterr()
    bar = re.compile(r"Loss=\d+\.\d{4} Batch_id=(\d+) Accuracy=\d+\.\d{2}")
    ids = {int(m.group(1)) for m in bar.finditer(captured.err)}
    assert ids == set(range(len(train))), captured.err
    test_line = re.compile(r"^Epoch (\d+) \| Test set: Average loss: \d+\.\d{4}, "
                           r"Accuracy: (\d+)/(\d+) \((\d+\.\d{2})%\)$")
    lines = [line for line in captured.out.splitlines() if line.strip()]
    assert len(lines) == epochs
    for e, line in enumerate(lines):
        m = test_line.match(line)
        assert m, line
        assert int(m.group(1)) == e and int(m.group(3)) == len(test.dataset)
        assert int(m.group(2)) == round(history.test_acc[e] * len(test.dataset))
        assert float(m.group(4)) == pytest.approx(100 * history.test_acc[e], abs=0.005)
    assert_history_shape(history, epochs, len(train))


def test_train_wrapper_runs_through_the_knots_the_settings_table_shows():
    epochs, lr_max, warmup = 5, 0.02, 0.3
    train, test = tensor_loader(8, 4, size=32), tensor_loader(2, 4, size=32, seed=1)
    history = train_wrapper(tiny_mixer(), train, test, epochs, lr_max, warmup=warmup)
    (_, start), (peak_epoch, peak), (_, end) = wrapper.knots(lr_max, epochs, warmup)
    steps = epochs * len(train)
    assert history.batch_lr[0] == pytest.approx(start) and max(history.batch_lr) == pytest.approx(peak)
    assert history.batch_lr.index(max(history.batch_lr)) == round(peak_epoch / epochs * steps) - 1
    assert history.batch_lr[-1] == pytest.approx(end, rel=1e-6)


# ---------------------------------------------------------------------------- RandAugment

def random_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def run_pipeline(pipeline, images, seed):
    pipeline.set_random_seed(seed)
    torch.manual_seed(seed)  # torchvision's RandAugment draws from torch's RNG
    return torch.stack([pipeline(image=img)["image"] for img in images])


def test_randaugment_step_is_first_and_keeps_the_output_format():
    pipeline = train_transforms(randaugment=(2, 9))
    first = pipeline.transforms[0]
    assert isinstance(first, RandAugment)
    assert (first.op.num_ops, first.op.magnitude) == (2, 9)
    out = run_pipeline(pipeline, random_images(8), seed=0)
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert not any(isinstance(t, RandAugment) for t in train_transforms(randaugment=None).transforms)
    assert not any(isinstance(t, RandAugment) for t in train_transforms().transforms)


def test_randaugment_changes_images():
    # pad=0, no flip, no hole: the rest of the pipeline is deterministic, so any change is RandAugment's
    images = random_images(32)
    kwargs = dict(pad=0, flip_p=0.0, hole_p=0.0)
    plain = run_pipeline(train_transforms(**kwargs), images, seed=0)
    plain_again = run_pipeline(train_transforms(**kwargs), images, seed=1)
    assert torch.equal(plain, plain_again)
    augmented = run_pipeline(train_transforms(randaugment=(2, 9), **kwargs), images, seed=0)
    diff = (augmented - plain).abs().flatten(1).mean(1)
    assert (diff > 1e-3).float().mean() > 0.5, diff
    assert diff.mean() > 0.1
    # same seeds, same augmentation (runs repeat with --seed)
    again = run_pipeline(train_transforms(randaugment=(2, 9), **kwargs), images, seed=0)
    assert torch.equal(augmented, again)


def test_randaugment_reaches_the_reference_loader(tmp_path):
    from src.data import CLASSES
    from src.harness.run import make_loaders
    for split in ("train", "test"):
        for i, name in enumerate(CLASSES):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            cv2.imwrite(str(folder / "0.png"), random_images(1, seed=i)[0])
    cfg = Config(data=str(tmp_path), randaugment=(2, 9), workers=0, batch_size=4, device="cpu").resolved()
    train, _ = make_loaders(cfg)
    assert isinstance(train.dataset.transform.transforms[0], RandAugment)
    x, _ = next(iter(train))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    plain, _ = make_loaders(Config(data=str(tmp_path), workers=0, device="cpu").resolved())
    assert not any(isinstance(t, RandAugment) for t in plain.dataset.transform.transforms)
    with pytest.raises(ValueError, match="--randaugment runs in the reference loader only"):
        Config(data=str(tmp_path), randaugment=(2, 9), loader="gpu", device="cpu").resolved()


# ---------------------------------------------------------------------------- recipes

TRICKS_OFF = dict(label_smoothing=0.0, ema=0.0, tta_flip=False, tta_translate=False, grad_clip=0.0, randaugment=None,
                  decay_norms=True, warmup=2 / 5, beta2=0.999)


@pytest.mark.parametrize("model, lr_max, wd", [("convmixer_256_8", 0.01, 0.01), ("vit_seed", 0.001, 0.05)])
def test_baseline_recipe_is_the_original_settings_with_no_tricks(model, lr_max, wd):
    cfg = Config(model=model, recipe="baseline", device="cpu").resolved()
    assert (cfg.lr_max, cfg.wd) == (lr_max, wd)
    for key, value in TRICKS_OFF.items():
        assert getattr(cfg, key) == value, key
    if model == "vit_seed":  # the seed configuration's dropout is kept
        assert (cfg.dropout, cfg.emb_dropout) == (0.1, 0.1)


@pytest.mark.parametrize("model, family", [("convmixer_256_8", "convmixer"), ("vit_seed", "vit")])
def test_improved_recipe_turns_the_tricks_on(model, family):
    cfg = Config(model=model, recipe="improved", device="cpu").resolved()
    for key, value in RECIPES["improved"][family].items():
        assert getattr(cfg, key) == value, key
    assert cfg.ema and 0 < cfg.ema < 1 and cfg.tta_flip is True and cfg.grad_clip > 0
    baseline = Config(model=model, recipe="baseline", device="cpu").resolved()
    if model == "vit_seed":
        # lr 0.002 with a 0.2 warm-up diverged on a GPU: until a sweep says otherwise, the improved
        # recipe keeps the baseline's step sizes and schedule and steadies Adam instead
        assert cfg.lr_max <= baseline.lr_max and cfg.warmup >= baseline.warmup and cfg.beta2 < 0.999
    else:
        assert cfg.label_smoothing > 0 and cfg.lr_max > baseline.lr_max


@pytest.mark.parametrize("key, value", [("label_smoothing", 0.2), ("tta_flip", False), ("grad_clip", 0.0),
                                        ("ema", 0.0), ("lr_max", 0.003), ("wd", 0.0), ("beta2", 0.95),
                                        ("decay_norms", False), ("warmup", 0.3), ("dropout", 0.0)])
def test_explicit_value_overrides_the_recipe(key, value):
    cfg = Config(model="vit_seed", recipe="improved", device="cpu", **{key: value}).resolved()
    assert getattr(cfg, key) == value and type(getattr(cfg, key)) is type(value)
    # the other recipe values are still filled in
    assert cfg.grad_clip == (value if key == "grad_clip" else 1.0)


def test_explicit_values_override_the_recipe_from_the_command_line():
    cfg = config_from_args(["--model", "convmixer_256_8", "--recipe", "improved", "--label-smoothing", "0",
                            "--grad-clip", "0", "--device", "cpu"]).resolved()
    assert cfg.label_smoothing == 0.0 and cfg.grad_clip == 0.0
    assert cfg.ema == 0.99 and cfg.tta_flip is True
    cfg = config_from_args(["--recipe", "baseline", "--no-decay-norms", "--tta-flip", "--ema", "0.9",
                            "--randaugment", "2", "9", "--device", "cpu"]).resolved()
    assert cfg.decay_norms is False and cfg.tta_flip is True and cfg.ema == 0.9
    assert cfg.randaugment == (2, 9)
    cfg = config_from_args(["--recipe", "improved", "--model", "vit_seed", "--no-tta-flip", "--decay-norms",
                            "--ema", "0", "--device", "cpu"]).resolved()
    assert cfg.tta_flip is False and cfg.decay_norms is True and not cfg.ema


# ---------------------------------------------------------------------------- precision, channels_last

@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cpu_precision_trains_in_fp32(precision):
    def train(precision):
        model = tiny_mixer()
        engine = Engine(model, torch.optim.AdamW(model.parameters(), lr=0.01), step=Step(precision=precision))
        history = engine.fit(batches(2, 4, size=32), batches(1, 4, size=32, seed=1), 2)
        return engine, model, history

    engine, model, history = train(precision)
    assert engine.amp_dtype is None and not engine.scaler.is_enabled()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    _, ref_model, ref_history = train("fp32")
    assert torch.equal(flat(model), flat(ref_model))
    assert history.train_loss == ref_history.train_loss and history.test_loss == ref_history.test_loss


def test_channels_last_gives_the_same_results_on_cpu():
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    models = {}
    for cl in (False, True):
        model = tiny_mixer()
        engine = Engine(model, torch.optim.AdamW(model.parameters(), lr=0.01), step=Step(channels_last=cl))
        if cl:
            assert model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
        history = engine.fit(batches(2, 4, size=32), batches(1, 4, size=32, seed=1), 1)
        model.eval()
        with torch.no_grad():
            out = model(engine._batch(x, torch.zeros(6, dtype=torch.long))[0])
        models[cl] = (out, flat(model), history)
    torch.testing.assert_close(models[True][0], models[False][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(models[True][1], models[False][1], rtol=1e-5, atol=1e-5)
    assert models[True][2].train_loss == pytest.approx(models[False][2].train_loss, rel=1e-5)
    assert models[True][2].test_loss == pytest.approx(models[False][2].test_loss, rel=1e-5)


def test_wrapper_trains_on_the_gpu_loader_too(tiny_cifar, tmp_path, capsys):
    """The device-resident loader has no .dataset: the wrapper's test summary counts the images
    the engine evaluated (here on CPU, where the loader works the same)."""
    import json

    from src.train import main
    main(["--model", "convmixer_256_8", "--dim", "16", "--depth", "1", "--patch-size", "4", "--batch-size", "16",
          "--device", "cpu", "--trainer", "wrapper", "--loader", "gpu", "--epochs", "2", "--data", str(tiny_cifar),
          "--out", str(tmp_path / "run")])
    summaries = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch ")]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["finished"] and metrics["config"]["loader"] == "gpu"
    assert len(summaries) == 2 and all("/40 (" in line for line in summaries)
    assert (metrics["data"]["train_images"], metrics["data"]["test_images"]) == (160, 40)
