"""Every option is declared once (src/config.py) and everything else is derived from it: the
command line, the recipes' reach, the resume check, the notebooks' echo, "auto" decisions."""
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from src.harness.config import BY_NAME, OPTIONS, Config, fingerprint, resolve
from src.harness.errors import UserError
from src.models import MODELS
from src.recipes import RECIPES
from src.train import config_from_args, parser


def test_config_fields_parser_flags_and_options_are_one_list():
    assert [f.name for f in fields(Config)] == [o.name for o in OPTIONS]
    flags = {a.dest: a.option_strings for a in parser()._actions if a.dest != "help"}
    assert set(flags) == set(BY_NAME)
    for o in OPTIONS:
        assert o.flag in flags[o.name]
    assert config_from_args([]) == Config()  # the parser's defaults are Config's


def test_recipes_set_only_options_declared_recipe_settable():
    families = {v.family for v in MODELS.values()}
    for name, per_family in RECIPES.items():
        assert set(per_family) == families, name
        for family, values in per_family.items():
            for key in values:
                assert BY_NAME[key].recipe, f"recipe {name}/{family} sets {key}, which is not recipe-settable"
            assert "lr_max" in values and "wd" in values


def test_resume_fingerprint_covers_model_schedule_and_optimizer_but_not_logistics():
    cfg = resolve(Config(device="cpu"))
    keys = set(fingerprint(cfg))
    assert {"model", "trainer", "epochs", "batch_size", "dim", "depth", "lr_max", "wd", "warmup", "ema",
            "data", "seed", "test_subset", "tta_flip"} <= keys  # the data is part of a run, as an absolute path
    assert fingerprint(cfg)["data"] == str(Path(cfg.data).resolve())
    assert not keys & {"out", "workers", "device", "resume", "overwrite", "precision"}


def test_a_run_recorded_before_an_option_existed_ran_with_its_default():
    recorded = fingerprint(resolve(Config(device="cpu")))
    del recorded["tta_translate"]  # as metrics.json files written before it was added hold it
    assert fingerprint(recorded) == fingerprint(resolve(Config(device="cpu")))
    assert fingerprint(recorded) != fingerprint(resolve(Config(device="cpu", tta_translate=True)))


def test_auto_on_cpu_and_defaults_filled_in():
    cfg = resolve(Config())
    if not torch.cuda.is_available():
        assert (cfg.device, cfg.precision, cfg.loader, cfg.channels_last, cfg.compile) == \
            ("cpu", "fp32", "reference", False, False)
    assert cfg.out == "runs/convmixer_256_8-onecycle-baseline" and cfg.download  # ./data is downloaded
    assert resolve(Config(loader="reference")).workers == 2  # the default where workers apply
    assert resolve(Config(data="/somewhere", out="mine")).download is False
    assert resolve(Config(device="cpu", precision="fp32")).precision == "fp32"
    with pytest.raises(UserError, match="--precision bf16: mixed precision runs on CUDA only"):
        resolve(Config(device="cpu", precision="bf16"))  # it would do nothing: refused


@pytest.mark.parametrize("capability, precision", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_on_cuda_picks_bf16_where_the_gpu_has_it(capability, precision, monkeypatch):
    """A T4 (7.5, Colab) gets fp16 with a grad scaler; Ampere and newer get bf16; and the fast
    path, channels_last and compile."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * 2**30, 80 * 2**30))
    cfg = resolve(Config())
    assert (cfg.device, cfg.precision, cfg.loader, cfg.channels_last, cfg.compile) == \
        ("cuda", precision, "gpu", True, True)
    assert resolve(Config(randaugment=(2, 9))).loader == "reference"  # RandAugment runs on the CPU
    quick = resolve(Config(workers=0))  # the notebooks' quick mode: "auto" picks the gpu loader, which has no workers
    assert (quick.loader, quick.workers) == ("gpu", None) and resolve(quick) == quick
    with pytest.raises(UserError, match="--workers 0: the gpu loader has no DataLoader workers"):
        resolve(Config(workers=0, loader="gpu"))  # asked for both: the workers would do nothing
    assert resolve(Config(precision="fp32", compile=False)).precision == "fp32"
