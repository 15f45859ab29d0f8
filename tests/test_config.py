"""Every option is declared once (src/config.py OPTIONS): the parser, Config, the resume fingerprint and
the range checks derive from it. The range rows below are generated from the declarations themselves:
each bound is accepted (or, open, refused) and the value just outside it refused in one line naming the flag."""
import math
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from src import config
from src.cli import config_from_args, parser
from src.config import BY_NAME, OPTIONS, Allowed, Config, fingerprint, resolve
from src.io import UserError
from src.models import MODELS


def _model_with(option):
    """A model that has this option (a size only some models have), else the default model."""
    return next(name for name, v in MODELS.items() if option.group != "model" or option.name in v.hyper_parameters)


def _edges(allowed):
    """(value, accepted) at each finite bound of an Allowed, just outside it and (open bound) just inside."""
    def beside(v, direction):
        return v + direction if allowed.integer else math.nextafter(v, v + direction)
    rows = []
    for bound, is_open, outward in ((allowed.low, allowed.low_open, -1), (allowed.high, allowed.high_open, 1)):
        if math.isfinite(bound):
            bound = int(bound) if allowed.integer else float(bound)
            rows += [(bound, not is_open), (beside(bound, outward), False)]
            rows += [(beside(bound, -outward), True)] if is_open else []
    rows += [(math.nan, False), (True, False)] + [(1.5, False)] * allowed.integer  # not a number of its kind
    return rows


def _range_rows():
    for o in OPTIONS:
        if isinstance(o.allowed, Allowed):
            yield from (pytest.param(o.name, value, ok, id=f"{o.name}={value!r}") for value, ok in _edges(o.allowed))
        elif o.nargs:  # one Allowed per value: vary each while the others sit at their low bound
            low = [int(a.low) for a in o.allowed]
            for i, allowed in enumerate(o.allowed):
                for value, ok in _edges(allowed):
                    values = tuple(low[:i] + [value] + low[i + 1:])
                    yield pytest.param(o.name, values, ok, id=f"{o.name}={values!r}")
            yield pytest.param(o.name, tuple(low[:-1]), False, id=f"{o.name}:too-few-values")
        elif isinstance(o.allowed, tuple):
            yield pytest.param(o.name, "bogus", False, id=f"{o.name}=bogus")
        elif (o.type or type(o.default)) is bool:
            yield pytest.param(o.name, "yes", False, id=f"{o.name}='yes'")


@pytest.mark.parametrize("name, value, accepted", list(_range_rows()))
def test_every_declared_range_is_checked_at_its_bounds(name, value, accepted, monkeypatch):
    monkeypatch.setattr(config, "_check_sizes", lambda values: None)  # building depth 1000 takes seconds
    option = BY_NAME[name]
    cfg = Config(**{"model": _model_with(option), "device": "cpu", name: value})
    if accepted:
        assert getattr(resolve(cfg), name) == value
        return
    with pytest.raises(UserError) as err:
        resolve(cfg)
    message = str(err.value)
    assert message.startswith(f"{option.flag} ") and "\n" not in message, message


def test_every_option_has_one_flag_and_the_parser_defaults_are_configs():
    assert [f.name for f in fields(Config)] == [o.name for o in OPTIONS]
    flags = {a.dest: a.option_strings for a in parser()._actions if a.dest != "help"}
    assert set(flags) == set(BY_NAME) and all(o.flag in flags[o.name] for o in OPTIONS)
    assert config_from_args([]) == Config()


@pytest.mark.parametrize("given, said", [
    (dict(heads=2), "--heads: --model convmixer_256_8 has no heads"),
    (dict(patch_size=64), "--model convmixer_256_8: these sizes cannot take a 32x32 image"),
    (dict(model="vit_seed", patch_size=3), "--model vit_seed: ConvViT: image_size 32 is not divisible by patch_size 3: "
                                           "give sizes that fit it"),
    (dict(precision="bf16"), "--precision bf16: mixed precision runs on CUDA only"),
    (dict(compile_mode="max-autotune"), "--compile-mode max-autotune: the model is not compiled here"),
    (dict(resume=True, overwrite=True), "--resume and --overwrite contradict each other"),
    (dict(loader="gpu", workers=0), "--workers 0: the gpu loader has no DataLoader workers"),
    (dict(model="vit_seed", recipe="authors"), "--recipe authors"),
    (dict(device="tpu"), "--device 'tpu': expected cpu, cuda, cuda:N or auto"),
    (dict(data="  "), "--data '  ': give a folder"),
    (dict(out=""), "--out '': give a folder"),  # not the default folder
    (dict(out="DATA/run"), "--out DATA/run: inside --data DATA;"),
    (dict(download=True), "--download: --data DATA holds class folders"),
])
def test_settings_that_cannot_go_together_are_refused_in_one_line(given, said, tiny_cifar):
    given, said = {k: v.replace("DATA", str(tiny_cifar)) if k == "out" else v for k, v in given.items()}, \
        said.replace("DATA", str(tiny_cifar))
    with pytest.raises(UserError) as err:
        resolve(Config(**{"device": "cpu", "data": str(tiny_cifar), **given}))
    assert str(err.value).startswith(said) and "\n" not in str(err.value), err.value


def test_resume_fingerprint_holds_what_a_run_is_and_its_data_as_an_absolute_path():
    cfg = resolve(Config(device="cpu", data="somewhere"))
    keys = set(fingerprint(cfg))
    assert {"model", "trainer", "epochs", "batch_size", "dim", "depth", "lr_max", "seed", "data", "tta_flip",
            "loader", "workers"} <= keys  # the loader and its workers draw the batches and their augmentation
    assert not keys & {"out", "device", "resume", "overwrite", "precision"}
    assert fingerprint(cfg)["data"] == str(Path("somewhere").resolve())
    recorded = fingerprint(cfg)
    del recorded["tta_translate"]  # a metrics.json written before the option existed ran with its default
    assert fingerprint(recorded) == fingerprint(cfg) != fingerprint(resolve(Config(device="cpu", data="somewhere",
                                                                                    tta_translate=True)))


def test_auto_values_on_a_cpu():
    cfg = resolve(Config(device="cpu"))
    assert (cfg.precision, cfg.loader, cfg.workers, cfg.channels_last, cfg.compile) == ("fp32", "reference", 2,
                                                                                         False, False)
    assert cfg.out == "runs/convmixer_256_8-onecycle-baseline" and cfg.download  # ./data: torchvision downloads it
    assert resolve(Config(device="cpu", data="/somewhere")).download is False


@pytest.mark.parametrize("capability, precision", [((7, 5), "fp16"), ((8, 0), "bf16")])
def test_auto_values_on_a_gpu(capability, precision, monkeypatch):
    """A T4 (Colab) gets fp16; Ampere and newer bf16; and the gpu loader, channels-last and compile."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    cfg = resolve(Config())
    assert (cfg.device, cfg.precision, cfg.loader, cfg.channels_last, cfg.compile) == ("cuda", precision, "gpu",
                                                                                       True, True)
    assert resolve(Config(workers=0)).loader == "reference"  # workers asked for: the loader that has them
