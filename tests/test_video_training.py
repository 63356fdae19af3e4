"""The trained visual path: the conv tower learns with the separator, fine-tuning from a release,
same-label scenes (only the video can choose) and the video bench."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import tiny_model_config


def _conv_config():
    from prompts.video import VideoEncoderConfig

    cfg = tiny_model_config(video=True)
    return dataclasses.replace(cfg, video=VideoEncoderConfig(model_name="promptsep-conv-tower", image_size=32,
                                                             dim=64, trainable=True))


def _batch(tiny_corpus, n=4, **mix):
    from separation.data.mixing import MixConfig, MixtureDataset, collate_mixtures

    cfg = MixConfig(segment_s=1.0, min_sources=2, max_sources=2, absent_prob=0.0, video=True, **mix)
    ds = MixtureDataset(tiny_corpus, "train", cfg, seed=0, length=n)
    return [ds[i] for i in range(n)], collate_mixtures([ds[i] for i in range(n)])


def test_conv_tower_is_trained_through_the_separator_loss(tiny_corpus):
    from separation.model import build_separation_model

    torch.manual_seed(0)
    model = build_separation_model(_conv_config()).train()
    with torch.no_grad():  # open the gate and the zero-initialised output layer, as after some training
        model.dit.video_gate.fill_(0.5)
        model.dit.out_proj.weight.normal_(std=0.05)
    tower = model.video_encoder
    assert all(p.requires_grad for p in tower.parameters())
    assert not any(p.requires_grad for p in model.text_encoder.parameters())  # the rest stays frozen
    _, batch = _batch(tiny_corpus, p_text=0.0, p_span=0.0, p_text_span=0.0, p_video=1.0)
    model.training_loss(batch, generator=torch.Generator().manual_seed(0))["loss"].backward()
    grads = [p.grad for p in tower.parameters()]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)
    # inference: no gradients anywhere, frozen or not
    with torch.no_grad():
        cond = model.encode_prompts([None], [None], [batch["video"][0]], 5, [1.0])
    assert not cond.video.requires_grad and bool(cond.has_video[0])


def test_frozen_tower_gets_no_gradient(tiny_corpus):
    from separation.model import build_separation_model

    torch.manual_seed(0)
    model = build_separation_model(tiny_model_config(video=True)).train()
    with torch.no_grad():
        model.dit.video_gate.fill_(0.5)
        model.dit.out_proj.weight.normal_(std=0.05)
    assert not any(p.requires_grad for p in model.video_encoder.parameters())
    _, batch = _batch(tiny_corpus, p_text=0.0, p_span=0.0, p_text_span=0.0, p_video=1.0)
    model.training_loss(batch, generator=torch.Generator().manual_seed(0))["loss"].backward()
    assert all(p.grad is None for p in model.video_encoder.parameters())


def test_init_from_release_keeps_the_backbone_and_starts_a_new_tower(tmp_path):
    from promptsep.release import ReleaseError
    from separation.model import build_separation_model

    torch.manual_seed(0)
    old = build_separation_model(tiny_model_config(video=True))  # tiny-ViT tower
    with torch.no_grad():
        old.dit.out_proj.weight.normal_()
    path = old.save_pretrained(tmp_path / "old")
    torch.manual_seed(1)
    new = build_separation_model(_conv_config())
    fresh_tower = {k: v.clone() for k, v in new.video_encoder.state_dict().items()}
    report = new.init_from_release(path)
    assert report["skipped_video"] > 0 and report["new_video"] > 0
    assert torch.equal(new.dit.out_proj.weight, old.dit.out_proj.weight)
    assert torch.equal(new.null_text, old.null_text)
    assert all(torch.equal(v, fresh_tower[k]) for k, v in new.video_encoder.state_dict().items())
    # anything outside the video tower must match
    wider = dataclasses.replace(_conv_config(), dit=dataclasses.replace(tiny_model_config().dit, width=48))
    with pytest.raises(ReleaseError, match="cannot initialise"):
        build_separation_model(wider).init_from_release(path)


def test_same_label_scenes_mix_two_clips_of_one_label_with_a_video(tiny_corpus):
    from separation.data.mixing import MixConfig, MixtureDataset

    items, _ = _batch(tiny_corpus, n=6, p_text=1.0, p_video=0.5, p_text_video=0.5, p_same_label=1.0)
    for it in items:
        assert it["same_label"] and it["source_labels"] == [it["label"], it["label"]]
        assert it["prompt_kind"] in ("video", "text+video") and it["video"] is not None
        assert it["use_text"] == (it["prompt_kind"] == "text+video")
        # two different clips: the residual is not a copy of the target
        assert float((it["residual"] - it["target"]).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="need video prompts"):
        MixtureDataset(tiny_corpus, "train", MixConfig(p_same_label=0.5, video=False), length=2)
    # off (the default), the item stream of an existing configuration is unchanged by the new kind
    base = MixConfig(segment_s=1.0, video=True)
    a = MixtureDataset(tiny_corpus, "train", base, seed=3, length=4)[2]
    b = MixtureDataset(tiny_corpus, "train", dataclasses.replace(base, p_text_video=0.0, p_same_label=0.0),
                       seed=3, length=4)[2]
    assert torch.equal(a["mixture"], b["mixture"]) and a["prompt_kind"] == b["prompt_kind"]


def test_video_bench_scenes_share_frames_and_box_each_source(tiny_corpus):
    from bench.video_eval import build_scenes, summarise

    for same in (False, True):
        scenes = build_scenes(tiny_corpus, "train", 2, same_label=same, segment_s=1.0)
        for s in scenes:
            m0, m1 = s["masks"]
            assert m0.sum() > 0 and m1.sum() > 0 and float((m0 * m1).sum()) < float(m0.sum())
            assert torch.allclose(s["sources"].sum(0), s["mixture"], atol=1e-6)
    summary = summarise({"text": [1.0, 2.0], "text+video": [4.0, 6.0], "wrong_box_follow_db": [3.0, -1.0],
                         "wrong_box_follow_db_mixture": [-2.0, -1.0]}, samples=100)
    assert summary["gain[text+video - text]"]["mean"] == pytest.approx(3.5)
    assert summary["wrong_box_follows_share"]["mean"] == pytest.approx(0.5)
    assert summary["wrong_box_follows_share_mixture"]["mean"] == pytest.approx(0.0)


def test_init_from_refuses_a_release_at_another_sample_rate(tiny_corpus, tmp_path):
    from hydra import compose, initialize_config_dir

    from separation.model import build_separation_model
    from separation.train import CONF_DIR, train

    path = build_separation_model(tiny_model_config(video=False)).save_pretrained(tmp_path / "rel16k")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=debug", "codec=sam48k", f"data.root={tiny_corpus}",
                                                      f"out_dir={tmp_path / 'run'}", f"init_from={path}"])
    with pytest.raises(ValueError, match="16000 Hz codec"):
        train(cfg)


def test_a_fine_tune_exports_the_sampling_its_init_release_chose(tiny_corpus, tmp_path):
    import json

    from hydra import compose, initialize_config_dir

    from separation.model import SamplingDefaults, build_separation_model
    from separation.train import CONF_DIR, train

    model = build_separation_model(tiny_model_config(video=True))
    chosen = SamplingDefaults(steps=1, method="euler", refine_power=1.5, refine_n_fft=2048)
    assert chosen != SamplingDefaults()  # not the never-chosen defaults
    model.cfg.sampling = chosen
    path = model.save_pretrained(tmp_path / "rel")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=debug", f"data.root={tiny_corpus}", "trainer.max_steps=1",
                                                      f"out_dir={tmp_path / 'run'}", f"init_from={path}",
                                                      f"export_dir={tmp_path / 'export'}"])
    train(cfg)
    exported = json.loads((tmp_path / "export" / "config.json").read_text())["config"]["sampling"]
    assert exported == {"steps": 1, "method": "euler", "refine_power": 1.5, "refine_n_fft": 2048}
