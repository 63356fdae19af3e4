"""Training: every config composes, the debug experiment trains and exports, resume is exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from separation.train import CONF_DIR

GROUPS = {g: sorted(p.stem for p in (Path(CONF_DIR) / g).glob("*.yaml")) for g in ("model", "codec", "data", "trainer")}


def _compose(name="train", overrides=()):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_config_option_composes(group, option):
    from separation.train import model_config_from

    cfg = _compose(overrides=[f"{group}={option}"])
    assert cfg[group] is not None
    mcfg = model_config_from(cfg)
    assert mcfg.dit.width > 0 and mcfg.codec.sample_rate > 0


@pytest.mark.parametrize("name", ["train_codec"] + sorted(p.stem for p in Path(CONF_DIR).glob("*.yaml") if p.stem != "train"))
def test_top_level_configs_compose(name):
    assert _compose(name) is not None


def test_experiments_compose():
    for exp in sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml")):
        cfg = _compose(overrides=[f"experiment={exp}"])
        assert cfg.trainer.max_steps > 0


def _debug_cfg(tiny_corpus, out, steps, extra=()):
    return _compose(overrides=["experiment=debug", f"data.root={tiny_corpus}", f"out_dir={out}",
                                f"trainer.max_steps={steps}", *extra])


def test_debug_experiment_trains_validates_and_exports(tiny_corpus, tmp_path):
    from separation.separator import Separator
    from separation.train import train

    cfg = _debug_cfg(tiny_corpus, tmp_path / "run", 4, [f"export_dir={tmp_path / 'release'}"])
    result = train(cfg)
    assert result["global_step"] == 4
    assert "val/si_sdri" in result["val"]
    assert Path(result["last_checkpoint"]).is_file()
    sep = Separator.from_pretrained(result["export_dir"])
    out = sep.separate(torch.randn(1, 4000) * 0.1, 16000, text="tone", steps=2)
    assert out.target.shape == (1, 4000)


def test_resume_matches_uninterrupted_run(tiny_corpus, tmp_path):
    from separation.train import train

    full = train(_debug_cfg(tiny_corpus, tmp_path / "a", 4))
    train(_debug_cfg(tiny_corpus, tmp_path / "b", 2))           # "killed" after 2 steps
    resumed = train(_debug_cfg(tiny_corpus, tmp_path / "b", 4))  # resume=auto picks up last.ckpt
    assert resumed["global_step"] == 4
    a = torch.load(full["last_checkpoint"], map_location="cpu", weights_only=False)
    b = torch.load(resumed["last_checkpoint"], map_location="cpu", weights_only=False)
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)
    for k, v in a["ema_dit"].items():
        torch.testing.assert_close(b["ema_dit"][k], v, rtol=0, atol=1e-6, msg=k)


def test_codec_training_exports_a_normalised_codec(tiny_corpus, tmp_path):
    from separation.codec import DACVAE
    from separation.train_codec import train_codec

    cfg = _compose("train_codec", [f"corpus={tiny_corpus}", f"out_dir={tmp_path / 'codec_run'}",
                                   f"export_dir={tmp_path / 'codec'}", "max_steps=3", "batch_size=2",
                                   "num_workers=0", "segment_s=0.25", "stats_batches=2", "trainer.threads=1",
                                   "codec.encoder_dim=8", "codec.encoder_rates=[4,8]", "codec.latent_dim=8",
                                   "codec.decoder_dim=16", "codec.decoder_rates=[8,4]"])
    result = train_codec(cfg)
    assert result["global_step"] == 3
    codec = DACVAE.from_pretrained(result["export_dir"])
    assert codec.cfg.latent_std is not None and len(codec.cfg.latent_std) == 8
    z = codec.encode(torch.randn(1, 1, 4000) * 0.1)
    assert z.shape == (1, 8, codec.num_frames(4000))
