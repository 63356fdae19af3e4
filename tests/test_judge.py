"""The judge: reference targets, model shapes and errors, release round trip, data, training, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from judge.targets import reference_targets
from promptsep.errors import AudioError, PromptError
from tests.conftest import random_tiny_separation_model, tiny_model_config

SR = 16000
TINY_CODEC = dict(encoder_dim=8, encoder_rates=(4, 8), latent_dim=8, decoder_dim=16, decoder_rates=(8, 4))


def tiny_judge_config(**kw):
    from judge.model import JudgeConfig
    from prompts.text import TextEncoderConfig
    from separation.codec import CodecConfig

    base = dict(codec=CodecConfig(**TINY_CODEC), text=TextEncoderConfig(kind="tiny_t5", max_length=16), width=32,
                heads=2, depth_audio=1, depth_fusion=1, dropout=0.0, bands=4)
    base.update(kw)
    return JudgeConfig(**base)


@pytest.fixture(scope="module")
def judge():
    from judge.model import build_judge

    torch.manual_seed(0)
    return build_judge(tiny_judge_config()).eval()


def _signals(n=SR * 2, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    s = 0.4 * torch.sin(2 * math.pi * 440 * t) * (1 + 0.5 * torch.sin(2 * math.pi * 3 * t))
    s = s + 0.05 * torch.randn(n, generator=g)
    i = 0.3 * torch.randn(n, generator=g) + 0.3 * torch.sin(2 * math.pi * 130 * t)
    return s[None], i[None]


# ----------------------------------------------------------------------------- targets
def test_targets_perfect_estimate_scores_five():
    s, i = _signals()
    t = reference_targets(s, s, i, SR)[0]
    torch.testing.assert_close(t, torch.full((4,), 5.0), atol=0.02, rtol=0)


def test_targets_mixture_has_lower_precision_full_recall():
    s, i = _signals()
    perfect = reference_targets(s, s, i, SR)[0]
    mix = reference_targets(s + i, s, i, SR)[0]
    assert mix[0] < perfect[0] - 2  # precision
    assert mix[1] > 4.9  # everything of the target is there
    assert mix[3] < perfect[3] - 2


def test_targets_silence_has_low_recall():
    s, i = _signals()
    t = reference_targets(torch.zeros_like(s), s, i, SR)[0]
    assert t[1] == pytest.approx(1.0)  # recall
    assert t[3] == pytest.approx(1.0)  # overall
    assert t[0] == pytest.approx(5.0)  # nothing leaked


def test_recipe_3_grades_do_not_tie_below_zero_db():
    """Recipe 2 gives the mixture (at <= 0 dB) and a worse separation the grade of silence (1);
    recipe 3 orders them: silence < worse than the mixture < the mixture < a real separation."""
    s, i = _signals()
    s = s * (i.norm() / s.norm())                      # the target at 0 dB in the mixture
    mix, worse, good, zero = s + i, 0.4 * s + i, s + 0.1 * i, torch.zeros_like(s)
    est = torch.cat([zero, worse, mix, good])
    ref, res = s.expand_as(est), i.expand_as(est)
    r2 = reference_targets(est, ref, res, SR, recipe=2)[:, 3]
    r3 = reference_targets(est, ref, res, SR, recipe=3)[:, 3]
    assert r2[0] == pytest.approx(1.0) and r2[1] == pytest.approx(1.0) and r2[2] < 1.05   # ties at 1
    assert r3[0] == pytest.approx(1.0)                                                    # silence still 1
    assert r3[0] < r3[1] - 0.05 < r3[2] - 0.1 < r3[3] - 0.5
    # absent target: precision (the output's level) and recall do not depend on the recipe
    z = torch.zeros_like(s)
    torch.testing.assert_close(reference_targets(0.1 * i, z, i, SR, recipe=2)[..., :2],
                               reference_targets(0.1 * i, z, i, SR, recipe=3)[..., :2])
    with pytest.raises(ValueError, match="recipe"):
        reference_targets(s, s, i, SR, recipe=9)


def test_targets_leak_is_monotonic():
    s, i = _signals()
    prec, overall = [], []
    for db in (-40, -25, -15, -8, 0, 6):
        t = reference_targets(s + 10 ** (db / 20) * i, s, i, SR)[0]
        prec.append(float(t[0]))
        overall.append(float(t[3]))
        assert t[1] > 4.9  # recall unaffected by leakage
    assert all(a >= b for a, b in zip(prec, prec[1:])) and prec[0] > prec[-1] + 3
    assert all(a >= b for a, b in zip(overall, overall[1:]))


def test_targets_gating_lowers_recall_and_artefacts_lower_faithfulness():
    from judge.data import lowpass

    s, i = _signals()
    gated = s.clone()
    gated[:, s.shape[-1] // 2 :] = 0
    g = reference_targets(gated, s, i, SR)[0]
    assert 2.0 < g[1] < 4.0 and g[0] > 4.9
    lp = reference_targets(lowpass(s, SR, 300.0), s, i, SR)[0]
    assert lp[2] < 3.0 and lp[0] > 4.9
    noisy = reference_targets(s + 0.3 * torch.randn_like(s), s, i, SR)[0]
    assert noisy[2] < 4.0


def test_targets_absent_target():
    s, i = _signals()
    z = torch.zeros_like(s)
    silence = reference_targets(z, z, i, SR)[0]
    torch.testing.assert_close(silence, torch.full((4,), 5.0))
    mix = reference_targets(i, z, i, SR)[0]
    assert mix[0] == pytest.approx(1.0) and mix[3] == pytest.approx(1.0)
    quiet = reference_targets(0.1 * i, z, i, SR)[0]  # -20 dB leftover
    assert 1.0 < quiet[0] < 5.0


def test_targets_batched_and_range():
    s, i = _signals()
    est = torch.stack([s, s + i, torch.zeros_like(s), 0.5 * s])[:, 0]
    t = reference_targets(est, s.expand_as(est), i.expand_as(est), SR)
    assert t.shape == (4, 4) and bool(((t >= 1) & (t <= 5)).all())
    with pytest.raises(ValueError):
        reference_targets(s, s[:, :100], i, SR)


# ------------------------------------------------------------------------------ model
def test_forward_shapes_and_range(judge):
    mix = torch.randn(3, 1, 4000) * 0.1
    est = mix * torch.tensor([1.0, 0.5, 0.0])[:, None, None]
    out = judge(mix, est, ["tone", "noise", "a steady tone"], lengths=[4000, 3000, 2500])
    assert out.shape == (3, 4)
    assert bool(torch.isfinite(out).all()) and bool(((out >= 1) & (out <= 5)).all())


def test_score_any_rate_and_layout(judge):
    from judge.model import JudgeScores

    mix = torch.randn(2, 22050) * 0.1  # stereo at 22.05 kHz
    est = mix.mean(0) * 0.5             # mono [N]
    s = judge.score(mix, est, "tone", 22050)
    assert isinstance(s, JudgeScores)
    for v in s.to_dict().values():
        assert 1.0 <= v <= 5.0
    # estimate at another rate than the mixture
    est16 = torch.randn(1, 16000) * 0.1
    s2 = judge.score(mix, est16, "tone", 22050, estimate_sample_rate=16000)
    assert 1.0 <= s2.overall <= 5.0
    batch = judge.score_batch([mix, mix], [est, est], ["tone", "tone"], 22050)
    assert len(batch) == 2 and batch[0].overall == pytest.approx(s.overall, abs=1e-5)


def test_silent_estimate_is_defined(judge):
    mix = torch.randn(1, 8000) * 0.1
    s = judge.score(mix, torch.zeros(1, 8000), "tone", SR)
    assert all(1.0 <= v <= 5.0 and math.isfinite(v) for v in s.to_dict().values())


def test_bad_inputs(judge):
    mix = torch.randn(1, 16000) * 0.1
    with pytest.raises(AudioError, match="lengths differ"):
        judge.score(mix, mix[:, :15000], "tone", SR)
    judge.score(mix, mix[:, :15900], "tone", SR)  # within 1 %: trimmed
    with pytest.raises(PromptError):
        judge.score(mix, mix, "  ", SR)
    with pytest.raises(PromptError):
        judge.score(mix, mix, None, SR)
    bad = mix.clone()
    bad[0, 10] = float("nan")
    with pytest.raises(AudioError, match="NaN"):
        judge.score(mix, bad, "tone", SR)
    with pytest.raises(AudioError):
        judge.score(mix, torch.zeros(1, 0), "tone", SR)
    with pytest.raises(AudioError):
        judge(mix[None], mix[None, :, :100], ["tone"])


def test_save_load_bit_exact(judge, tmp_path):
    from judge.model import Judge

    path = judge.save_pretrained(tmp_path / "j")
    meta = json.loads((path / "config.json").read_text())
    assert meta["kind"] == "promptsep_judge" and meta["format_version"] == 1
    loaded = Judge.from_pretrained(path)
    mix = torch.randn(2, 1, 3000) * 0.1
    est = mix * 0.3
    # weights are compared bit for bit below; the outputs only to float precision, because the module
    # fixture's text cache may hold "tone" from a batch padded to another length (MiniLM's numerics
    # depend on the padded length in the last bits)
    torch.testing.assert_close(judge(mix, est, ["tone", "noise"]), loaded(mix, est, ["tone", "noise"]),
                               rtol=1e-5, atol=1e-5)
    a, b = judge.state_dict(), loaded.state_dict()
    for k in judge.saved_state_keys():
        assert torch.equal(a[k], b[k]), k
    # strict: an extra tensor is refused
    from safetensors.torch import load_file, save_file

    t = load_file(str(path / "model.safetensors"))
    t["extra.weight"] = torch.zeros(1)
    save_file(t, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match="corrupt or was modified"):  # the checksum catches it first
        Judge.from_pretrained(path)
    from promptsep.release import stamp_weights_sha256

    stamp_weights_sha256(path)
    with pytest.raises(ValueError, match="mismatch"):
        Judge.from_pretrained(path)
    (path / "config.json").write_text(json.dumps({**meta, "kind": "promptsep_separator"}))
    with pytest.raises(ValueError, match="not 'promptsep_judge'"):
        Judge.from_pretrained(path)


def test_codec_release_is_referenced_not_copied(tmp_path):
    from safetensors import safe_open

    from judge.model import Judge, build_judge
    from separation.codec import CodecConfig, build_codec

    codec_dir = build_codec(CodecConfig(**TINY_CODEC)).save_pretrained(tmp_path / "rel" / "codec")
    j = build_judge(tiny_judge_config(codec_path=str(codec_dir))).eval()
    out = j.save_pretrained(tmp_path / "rel" / "judge")
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["codec_path"] == "../codec" and len(meta["config"]["codec_sha256"]) == 64
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert not any(k.startswith("codec.") for k in f.keys())
    loaded = Judge.from_pretrained(out)
    mix = torch.randn(1, 1, 2000) * 0.1
    assert torch.equal(j(mix, mix * 0.5, ["tone"]), loaded(mix, mix * 0.5, ["tone"]))
    with torch.random.fork_rng():
        torch.manual_seed(123)
        build_codec(CodecConfig(**TINY_CODEC)).save_pretrained(codec_dir)  # another codec in its place
    with pytest.raises(ValueError, match="not the one"):
        Judge.from_pretrained(out)


def test_film_fusion_variant():
    from judge.model import build_judge

    j = build_judge(tiny_judge_config(fusion="film", hand_features=False, frame_pool=2)).eval()
    out = j(torch.randn(2, 1, 2000) * 0.1, torch.randn(2, 1, 2000) * 0.1, ["a", "b"], lengths=[2000, 700])
    assert out.shape == (2, 4) and bool(torch.isfinite(out).all())


# ------------------------------------------------------------------------------- data
def test_dataset_groups_are_graded_and_deterministic(tiny_corpus):
    from judge.data import KINDS, CandidateConfig, JudgeDataset, collate_groups
    from separation.data.mixing import MixConfig

    mix_cfg = MixConfig(segment_s=0.5, min_sources=1, max_sources=2, p_text=1, p_span=0, p_text_span=0, p_video=0)
    weights = {k: 1.0 for k in KINDS if k not in ("codec", "separator", "wrong_prompt")}
    ds = JudgeDataset(tiny_corpus, "train", mix_cfg, CandidateConfig(per_mixture=len(weights), weights=weights),
                      seed=0, length=4)
    it = ds[1]
    m = it["estimates"].shape[0]
    assert it["estimates"].shape == (m, 1, 8000) and it["targets"].shape == (m, 4)
    assert bool(((it["targets"] >= 1) & (it["targets"] <= 5)).all())
    again = ds[1]
    assert torch.equal(it["estimates"], again["estimates"]) and it["kinds"] == again["kinds"]
    b = collate_groups([ds[0], ds[1]])
    assert b["mixture"].shape == b["estimate"].shape and len(b["text"]) == b["targets"].shape[0]
    # every kind is produced and graded as documented
    for kind in weights:
        est = ds.candidate(kind, ds.mix[0], np.random.default_rng(0), 0)
        assert est.shape == (1, 8000) and bool(torch.isfinite(est).all()), kind


def test_anchor_candidates_join_every_group_and_leave_the_drawn_ones_alone(tiny_corpus):
    """candidates.anchors puts the mixture and silence in every group (the pairs the ranking loss
    orders for bars (d) and (e)) after the drawn candidates, which stay exactly as without anchors."""
    from judge.data import CandidateConfig, JudgeDataset
    from separation.data.mixing import MixConfig

    mix_cfg = MixConfig(segment_s=0.5, min_sources=1, max_sources=2, p_text=1, p_span=0, p_text_span=0, p_video=0)
    weights = {"perfect": 1.0, "leak": 1.0, "gain": 1.0}
    plain = JudgeDataset(tiny_corpus, "train", mix_cfg, CandidateConfig.from_dict({"per_mixture": 3, "weights": weights}),
                         seed=0, length=3)
    anch = JudgeDataset(tiny_corpus, "train", mix_cfg, CandidateConfig.from_dict(
        {"per_mixture": 3, "weights": weights, "anchors": ["mixture", "silence"]}), seed=0, length=3)
    for i in range(3):
        a, b = plain[i], anch[i]
        assert b["kinds"] == a["kinds"] + ["mixture", "silence"] and b["estimates"].shape[0] == 5
        assert torch.equal(b["estimates"][:3], a["estimates"]) and torch.equal(b["targets"][:3], a["targets"])
        assert torch.equal(b["estimates"][3], b["mixture"]) and not bool(b["estimates"][4].any())
        assert b["targets"].shape == (5, 4) and len(b["details"]) == 5
    with pytest.raises(ValueError, match="anchors"):
        CandidateConfig.from_dict({"anchors": ["separator"]})
    with pytest.raises(ValueError, match="anchors"):
        CandidateConfig.from_dict({"anchors": ["mixtrue"]})


# ---------------------------------------------------------------------- training, CLI
def _train_cfg(tiny_corpus, tmp_path, steps=3, separators=()):
    from hydra import compose, initialize_config_dir

    from separation.train import CONF_DIR

    codec = [f"codec.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in TINY_CODEC.items()]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train_judge", overrides=[
            "judge=debug", "codec_checkpoint=null", *codec, f"data.root={tiny_corpus}", "data.segment_s=0.5",
            "data.max_sources=2", "data.groups=4", "data.chunk_groups=2", "data.batch_size=4",
            "candidates.per_mixture=3", "val.groups=2", "val.every=2", f"trainer.max_steps={steps}",
            "trainer.ckpt_every=2", "trainer.log_every=1", "trainer.threads=1", f"out_dir={tmp_path / 'run'}",
            f"export_dir={tmp_path / 'release'}", f"separator_checkpoints=[{','.join(map(str, separators))}]",
        ])


def train_judge_export(tiny_corpus, tmp_path) -> str:
    """A one-step judge release (for fine-tuning tests)."""
    from judge.train import train_judge

    return train_judge(_train_cfg(tiny_corpus, tmp_path / "base", steps=1))["export_dir"]


def test_train_judge_runs_resumes_and_exports(tiny_corpus, tmp_path):
    from judge.model import Judge
    from judge.train import train_judge

    result = train_judge(_train_cfg(tiny_corpus, tmp_path, steps=3))
    assert result["global_step"] == 3 and result["train_pairs"] == 12
    assert set(result["val"]) == {"pcc_precision", "pcc_recall", "pcc_faithfulness", "pcc_overall"}
    j = Judge.from_pretrained(result["export_dir"])
    assert 1.0 <= j.score(torch.randn(1, 4000) * 0.1, torch.randn(1, 4000) * 0.1, "tone", SR).overall <= 5.0
    chunks = {f: f.stat().st_mtime_ns for f in (tmp_path / "run" / "cache").rglob("chunk_*.safetensors")}
    more = train_judge(_train_cfg(tiny_corpus, tmp_path, steps=5))  # resume=auto, cache reused
    assert more["global_step"] == 5
    # the second run kept every chunk the first one wrote (its metadata reads back equal from index.json)
    assert chunks and {f: f.stat().st_mtime_ns for f in chunks if f.exists()} == chunks


def test_fine_tuning_starts_from_a_release_and_records_it(tiny_corpus, tmp_path):
    """init_from loads a judge release (its architecture and weights, not the judge: node) and
    trains on from there; train_result.json names the release and its weights hash."""
    from judge.model import Judge
    from judge.train import train_judge
    from promptsep.release import sha256_file

    first = train_judge(_train_cfg(tiny_corpus, tmp_path / "a", steps=2))
    base = Judge.from_pretrained(first["export_dir"])
    cfg = _train_cfg(tiny_corpus, tmp_path / "b", steps=0)
    cfg.init_from = first["export_dir"]
    cfg.judge.width = 48  # ignored: the release's architecture is used
    cfg.candidates.anchors = ["mixture", "silence"]
    zero = train_judge(cfg)
    tuned0 = Judge.from_pretrained(zero["export_dir"])
    assert tuned0.cfg.width == base.cfg.width
    sd0, sdb = tuned0.state_dict(), base.state_dict()
    assert all(torch.equal(sd0[k], sdb[k]) for k in base.saved_state_keys())  # no step: the release's weights
    assert zero["init_from"]["weights_sha256"] == sha256_file(Path(first["export_dir"]) / "model.safetensors")
    assert zero["anchors"] == ["mixture", "silence"] and zero["train_pairs"] == 4 * 5  # 3 drawn + 2 anchors
    cfg = _train_cfg(tiny_corpus, tmp_path / "c", steps=2)
    cfg.init_from = first["export_dir"]
    moved = Judge.from_pretrained(train_judge(cfg)["export_dir"]).state_dict()
    assert any(not torch.equal(moved[k], sdb[k]) for k in base.saved_state_keys())


def test_wise_ft_interpolation_of_a_judge_and_its_fine_tuned_copy(tiny_corpus, tmp_path):
    """judge.soup: alpha 0 / 1 give the two parents' weights, 0.5 their mean; judges of another
    architecture are refused; the CLI writes a release that records both parents and alpha."""
    from judge.model import Judge
    from judge.soup import interpolate_judges, main
    from judge.train import train_judge

    first = train_judge(_train_cfg(tiny_corpus, tmp_path / "a", steps=1))
    cfg = _train_cfg(tiny_corpus, tmp_path / "b", steps=3)
    cfg.init_from = first["export_dir"]
    tuned_dir = train_judge(cfg)["export_dir"]
    base, tuned = Judge.from_pretrained(first["export_dir"]), Judge.from_pretrained(tuned_dir)
    keys = base.saved_state_keys()
    sb, st = base.state_dict(), tuned.state_dict()
    moved = [k for k in keys if sb[k].is_floating_point() and not torch.equal(sb[k], st[k])]
    assert moved
    for alpha, want in ((0.0, lambda k: sb[k]), (1.0, lambda k: st[k]), (0.5, lambda k: (sb[k] + st[k]) / 2)):
        got = interpolate_judges(base, tuned, alpha).state_dict()
        for k in moved:
            torch.testing.assert_close(got[k], want(k), rtol=1e-6, atol=1e-7)
    assert all(torch.equal(base.state_dict()[k], sb[k]) for k in keys)  # the parents are untouched
    with pytest.raises(ValueError, match="alpha"):
        interpolate_judges(base, tuned, 1.5)
    cfg = _train_cfg(tiny_corpus, tmp_path / "c", steps=1)
    cfg.judge.width = 48
    other = Judge.from_pretrained(train_judge(cfg)["export_dir"])
    with pytest.raises(ValueError, match="configuration"):
        interpolate_judges(base, other, 0.5)
    assert main(["--base", first["export_dir"], "--tuned", tuned_dir, "--alpha", "0.25", "--out", str(tmp_path / "soup")]) == 0
    rec = json.loads((tmp_path / "soup" / "train_result.json").read_text())["interpolated"]
    assert rec["alpha"] == 0.25 and len(rec["base_sha256"]) == 64 and rec["tuned"] == tuned_dir
    soup = Judge.from_pretrained(tmp_path / "soup").state_dict()
    torch.testing.assert_close(soup[moved[0]], 0.75 * sb[moved[0]] + 0.25 * st[moved[0]], rtol=1e-6, atol=1e-7)


def test_distillation_keeps_the_starting_judges_scores(tiny_corpus, tmp_path):
    """loss.distill_weight (fine-tuning only): with the grade and rank terms off, training on the
    distillation term alone leaves the starting judge's scores where they were; without init_from it
    is an error."""
    from judge.model import Judge
    from judge.train import FeatureCache, predict_cached, train_judge

    first = train_judge(_train_cfg(tiny_corpus, tmp_path / "a", steps=1))
    cfg = _train_cfg(tiny_corpus, tmp_path / "b", steps=6)
    cfg.init_from = first["export_dir"]
    cfg.loss.grade_weight = 0.0
    cfg.loss.rank_weight = 0.0
    cfg.loss.distill_weight = 1.0
    cfg.loss.distill_kinds = ["perfect", "leak", "gate", "gain", "lowpass", "clip", "noise", "wrong_residual",
                              "wrong_source", "silence", "mixture", "combo"]
    cfg.optim.lr = 1e-2
    out = train_judge(cfg)
    assert out["loss"]["distill_weight"] == 1.0
    pairs = FeatureCache(tmp_path / "b" / "run" / "cache" / "train").all_pairs()
    before = predict_cached(Judge.from_pretrained(first["export_dir"]), pairs, raw=True)
    after = predict_cached(Judge.from_pretrained(out["export_dir"]), pairs, raw=True)
    cfg.loss.distill_weight = 0.0
    cfg.loss.grade_weight = 1.0
    cfg.out_dir = str(tmp_path / "c")
    cfg.export_dir = str(tmp_path / "c_rel")
    graded = predict_cached(Judge.from_pretrained(train_judge(cfg)["export_dir"]), pairs, raw=True)
    assert (after - before).abs().mean() < 0.5 * (graded - before).abs().mean()
    cfg = _train_cfg(tiny_corpus, tmp_path / "d", steps=1)
    cfg.loss.distill_weight = 1.0
    with pytest.raises(ValueError, match="init_from"):
        train_judge(cfg)
    for kinds in ([], ["mixtrue"]):  # an empty or misspelt kind list would silently turn distillation off
        cfg = _train_cfg(tiny_corpus, tmp_path / "e", steps=1)
        cfg.init_from = first["export_dir"]
        cfg.loss.distill_weight = 1.0
        cfg.loss.distill_kinds = kinds
        with pytest.raises(ValueError, match="distill_kinds"):
            train_judge(cfg)
    assert not (tmp_path / "d" / "run" / "cache").exists() and not (tmp_path / "e" / "run" / "cache").exists()


def test_fine_tuning_only_the_head(tiny_corpus, tmp_path):
    """finetune_only=[head]: the head moves, every other stored tensor stays the release's; an unknown
    part, or finetune_only without init_from, is an error before any work."""
    from judge.model import Judge
    from judge.train import train_judge

    first = train_judge(_train_cfg(tiny_corpus, tmp_path / "a", steps=1))
    cfg = _train_cfg(tiny_corpus, tmp_path / "b", steps=3)
    cfg.init_from = first["export_dir"]
    cfg.finetune_only = ["head"]
    cfg.optim.lr = 1e-2
    out = train_judge(cfg)
    assert out["init_from"]["finetune_only"] == ["head"]
    base, tuned = Judge.from_pretrained(first["export_dir"]).state_dict(), Judge.from_pretrained(out["export_dir"]).state_dict()
    keys = Judge.from_pretrained(first["export_dir"]).saved_state_keys()
    moved = {k for k in keys if not torch.equal(base[k], tuned[k])}
    assert moved and all(k.startswith("head.") for k in moved)
    cfg = _train_cfg(tiny_corpus, tmp_path / "c", steps=1)
    cfg.init_from = first["export_dir"]
    cfg.finetune_only = ["hed"]
    with pytest.raises(ValueError, match="finetune_only"):
        train_judge(cfg)
    cfg = _train_cfg(tiny_corpus, tmp_path / "d", steps=1)
    cfg.finetune_only = ["head"]
    with pytest.raises(ValueError, match="init_from"):
        train_judge(cfg)
    cfg = _train_cfg(tiny_corpus, tmp_path / "f", steps=1)
    cfg.init_from = first["export_dir"]
    cfg.finetune_only = ["text_encoder"]  # frozen already: nothing left to train
    with pytest.raises(ValueError, match="nothing left to train"):
        train_judge(cfg)


def test_frozen_parts_run_without_dropout_while_the_head_trains(tiny_corpus, tmp_path):
    """With finetune_only the frozen layers are in eval mode during training steps (no dropout on the
    features the head learns from), the trained part in train mode."""
    from judge.model import Judge
    from judge.train import JudgeModule

    first = train_judge_export(tiny_corpus, tmp_path)
    judge = Judge.from_pretrained(first)
    for n, p in judge.named_parameters():
        p.requires_grad_(n.startswith("head."))
    module = JudgeModule(judge, _train_cfg(tiny_corpus, tmp_path / "x", steps=1))
    module.train()
    module.on_train_batch_start(None, 0)
    assert judge.head.training and not judge.audio_blocks.training and not judge.fusion_blocks.training
    # in a real fine-tuning run: the trained part has dropout on (a release loads in eval mode), the frozen part off
    from judge.train import train_judge

    seen = []
    step = JudgeModule.training_step

    def spy(self, batch, batch_idx):
        seen.append((self.judge.head.training, self.judge.audio_blocks.training))
        return step(self, batch, batch_idx)

    JudgeModule.training_step = spy
    try:
        cfg = _train_cfg(tiny_corpus, tmp_path / "y", steps=2)
        cfg.init_from = first
        cfg.finetune_only = ["head"]
        train_judge(cfg)
        cfg = _train_cfg(tiny_corpus, tmp_path / "z", steps=1)
        cfg.init_from = first
        train_judge(cfg)
    finally:
        JudgeModule.training_step = step
    assert seen == [(True, False), (True, False), (True, True)]


def test_cli_scores_files_and_refuses_bad_input(judge, tmp_path, capsys):
    from promptsep.judge_cli import main

    ckpt = judge.save_pretrained(tmp_path / "judge")
    x = (np.random.default_rng(0).standard_normal(8000) * 0.1).astype(np.float32)
    sf.write(tmp_path / "mix.wav", x, SR)
    sf.write(tmp_path / "est.wav", x * 0.5, SR)
    sf.write(tmp_path / "short.wav", x[:4000], SR)
    assert main([str(tmp_path / "mix.wav"), str(tmp_path / "est.wav"), "--text", "tone", "--checkpoint", str(ckpt)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"precision", "recall", "faithfulness", "overall"}
    assert main([str(tmp_path / "mix.wav"), str(tmp_path / "short.wav"), "--text", "tone", "--checkpoint", str(ckpt)]) == 2
    assert "lengths differ" in capsys.readouterr().err
    assert main([str(tmp_path / "mix.wav"), str(tmp_path / "est.wav"), "--text", " ", "--checkpoint", str(ckpt)]) == 2
    assert main([str(tmp_path / "mix.wav"), str(tmp_path / "nope.wav"), "--text", "x", "--checkpoint", str(ckpt)]) == 2
    assert main([str(tmp_path / "mix.wav"), str(tmp_path / "est.wav"), "--text", "x",
                 "--checkpoint", str(tmp_path / "missing")]) == 2


def test_separator_reranks_with_judge(judge):
    from separation.model import build_separation_model
    from separation.separator import Separator

    torch.manual_seed(0)
    sep = Separator(build_separation_model(tiny_model_config(video=False)), judge=judge)
    res = sep.separate(torch.randn(1, 4000) * 0.1, SR, text="tone", steps=2, candidates=2, ranker="judge")
    assert res.target.shape == (1, 4000)


def test_evaluate_reports_correlations(judge, tiny_corpus, tmp_path):
    from judge.data import CandidateConfig
    from judge.evaluate import evaluate_judge, write_report
    from separation.data.mixing import MixConfig

    mix_cfg = MixConfig(segment_s=0.5, min_sources=1, max_sources=2, p_text=1, p_span=0, p_text_span=0, p_video=0)
    cand = CandidateConfig(per_mixture=4)
    cand.weights["codec"] = 0.0
    res = evaluate_judge(judge, tiny_corpus, "test", groups=2, mix_cfg=mix_cfg, cand_cfg=cand, clap=None,
                         progress=False)
    assert res["items"] == 8 and set(res["correlations"]) == {"precision", "recall", "faithfulness", "overall"}
    assert res["correlations"]["overall"]["text_audio"] is None
    j, m = write_report(res, tmp_path)
    assert Path(j).is_file() and "energy-ratio PCC" in Path(m).read_text()


def test_reranking_gain_is_measured(judge, tiny_corpus):
    from judge.evaluate import evaluate_reranking, reranking_table
    from separation.data.mixing import MixConfig
    from separation.model import build_separation_model
    from separation.separator import Separator

    torch.manual_seed(0)
    sep = Separator(build_separation_model(tiny_model_config(video=False)))
    mix_cfg = MixConfig(segment_s=0.5, min_sources=1, max_sources=2, p_text=1, p_span=0, p_text_span=0, p_video=0,
                        absent_prob=0.0)
    r = evaluate_reranking(judge, sep, tiny_corpus, "test", groups=1, ks=(1, 2), steps=2, mix_cfg=mix_cfg,
                           progress=False)
    assert r["items"] == 1 and set(r["ks"]) == {1, 2}
    assert all(math.isfinite(v["si_sdr"]) and v["seconds"] > 0 for v in r["ks"].values())
    assert r["oracle"]["k"] == 2 and math.isfinite(r["oracle"]["si_sdr"])
    assert sep.judge is None  # restored
    assert "oracle" in reranking_table(r)


def test_time_budgets(judge, tiny_corpus, tmp_path):
    import datetime

    from omegaconf import OmegaConf

    from judge.data import CandidateConfig, JudgeDataset
    from judge.train import FeatureCache, _training_time_limit, build_feature_cache
    from separation.data.mixing import MixConfig

    cfg = OmegaConf.create({"time_budget_s": 600, "trainer": {"max_time": "00:00:05:00"}})
    assert _training_time_limit(cfg, 100.0) == datetime.timedelta(minutes=5)
    assert _training_time_limit(cfg, 400.0) == datetime.timedelta(seconds=155)
    with pytest.raises(RuntimeError, match="used up"):
        _training_time_limit(cfg, 590.0)
    assert _training_time_limit(OmegaConf.create({"trainer": {"max_time": None}}), 1e6) is None
    mix_cfg = MixConfig(segment_s=0.5, min_sources=1, max_sources=2, p_text=1, p_span=0, p_text_span=0, p_video=0)
    ds = JudgeDataset(tiny_corpus, "train", mix_cfg, CandidateConfig(per_mixture=2, weights={"perfect": 1.0}), length=4)
    folder = build_feature_cache(judge, ds, tmp_path / "c", 4, 2, progress=False, deadline=0.0)  # past: nothing built
    with pytest.raises(RuntimeError, match="empty"):
        FeatureCache(folder)
    build_feature_cache(judge, ds, folder, 2, 2, progress=False)
    assert FeatureCache(folder).num_pairs == 4
    build_feature_cache(judge, ds, folder, 4, 2, progress=False)  # extends the cache
    assert FeatureCache(folder).num_pairs == 8


def test_silent_probe_and_report(judge, tiny_corpus, tmp_path):
    from judge.evaluate import markdown_table, silent_probe
    from separation.data.mixing import MixConfig

    mix_cfg = MixConfig(segment_s=0.5, min_sources=1, max_sources=2, p_text=1, p_span=0, p_text_span=0, p_video=0)
    sp = silent_probe(judge, tiny_corpus, "test", groups=2, mix_cfg=mix_cfg)
    assert sp["target_present"]["target"] == pytest.approx([5.0, 1.0, 5.0, 1.0], abs=0.01)
    assert sp["target_absent"]["target"] == pytest.approx([5.0] * 4, abs=0.01)
    assert 0.0 <= sp["overall_auc"] <= 1.0
    res = {"split": "test", "groups": 0, "items": 0, "present_share": 1.0, "correlations": {}, "per_kind": {},
           "silent_probe": sp}
    assert "Silent-estimate probe" in markdown_table(res)


def _tiny_clap_release(path):
    from embeddings.clap import AudioTowerConfig, ClapTiny, ClapTinyConfig

    cfg = ClapTinyConfig(audio=AudioTowerConfig(channels=(4, 8), width=16, depth=1, heads=2), embed_dim=16,
                         text_kind="tiny_t5", text_dim=32, text_hidden=32)
    torch.manual_seed(1)
    return ClapTiny(cfg).eval().save_pretrained(path)


def test_grounded_judge_features_release_and_tamper_check(tmp_path):
    from judge.model import GROUND_DIM, Judge, build_judge

    clap_dir = _tiny_clap_release(tmp_path / "clap")
    torch.manual_seed(0)
    j = build_judge(tiny_judge_config(clap_path=str(clap_dir))).eval()
    assert j.cfg.clap_sha256 and j.ground_dim == GROUND_DIM
    tgt, other = _signals()
    mix = tgt + other
    feats = j.audio_features(mix[None], tgt[None])
    assert feats["clap"].shape == (1, 3, 16)
    torch.testing.assert_close(feats["clap"].norm(dim=-1), torch.ones(1, 3))
    g = j.grounding(feats["clap"], ["tone"])
    assert g.shape == (1, GROUND_DIM) and bool((g.abs() <= 1 + 1e-5).all())
    # the prompt reaches the scores through the grounding too (here: different texts, different scores)
    out = j(mix[None].expand(2, -1, -1), tgt[None].expand(2, -1, -1), ["tone", "noise"])
    assert out.shape == (2, 4)
    # release: the embedding is referenced (path + sha256), not copied
    path = j.save_pretrained(tmp_path / "judge")
    meta = json.loads((path / "config.json").read_text())
    assert meta["config"]["clap_path"] == "../clap" and meta["config"]["clap_sha256"] == j.cfg.clap_sha256
    from safetensors.torch import load_file, save_file

    assert not any(k.startswith("clap.") for k in load_file(str(path / "model.safetensors")))
    loaded = Judge.from_pretrained(path)
    torch.testing.assert_close(loaded(mix[None], tgt[None], ["tone"]), j(mix[None], tgt[None], ["tone"]))
    # a different embedding under the same path is refused
    w = load_file(str(clap_dir / "model.safetensors"))
    k0 = next(iter(w))
    w[k0] = w[k0] + 1.0
    save_file(w, str(clap_dir / "model.safetensors"))
    with pytest.raises(ValueError, match="corrupt or was modified"):  # the clap release's own checksum
        Judge.from_pretrained(path)
    from promptsep.release import stamp_weights_sha256

    stamp_weights_sha256(clap_dir)  # a consistent, but different, clap release under the same path
    with pytest.raises(ValueError, match="not the one this judge was trained with"):
        Judge.from_pretrained(path)


def test_grounded_judge_trains_from_its_feature_cache(tiny_corpus, tmp_path):
    from judge.model import Judge
    from judge.train import FeatureCache, train_judge

    clap_dir = _tiny_clap_release(tmp_path / "clap")
    cfg = _train_cfg(tiny_corpus, tmp_path, steps=2)
    cfg.judge.clap_path = str(clap_dir)
    result = train_judge(cfg)
    assert result["global_step"] == 2
    cache = FeatureCache(tmp_path / "run" / "cache" / "train")
    assert cache.clap is not None and cache.clap.shape == (cache.num_pairs, 3, 16)
    j = Judge.from_pretrained(result["export_dir"])
    assert j.clap is not None
    assert 1.0 <= j.score(torch.randn(1, 4000) * 0.1, torch.randn(1, 4000) * 0.1, "tone", SR).overall <= 5.0


# ------------------------------------------------- separator candidates, presence, perceptual grade, ranking, bars
@pytest.fixture(scope="module")
def two_separator_releases(tmp_path_factory):
    """Two different tiny separator releases (seeded random models; the second's output layer redrawn)."""
    a = random_tiny_separation_model(video=False)
    b = random_tiny_separation_model(video=False)
    torch.manual_seed(1)
    torch.nn.init.normal_(b.dit.out_proj.weight, std=0.05)
    root = tmp_path_factory.mktemp("seps")
    return [str(a.save_pretrained(root / "rel_a")), str(b.save_pretrained(root / "rel_b"))]


def test_separator_candidates_come_from_several_releases(tiny_corpus, two_separator_releases):
    from judge.data import CandidateConfig, JudgeDataset
    from separation.data.mixing import MixConfig
    from separation.separator import Separator

    mix_cfg = MixConfig(segment_s=0.5, min_sources=2, max_sources=2, p_text=1, p_span=0, p_text_span=0, p_video=0)
    cand = CandidateConfig.from_dict({"per_mixture": 6, "weights": {"separator": 3.0, "wrong_prompt": 1.0},
                                      "separator_steps": [1, 2]})
    ds = JudgeDataset(tiny_corpus, "train", mix_cfg, cand, seed=0, length=3, separator=two_separator_releases)
    it = ds[0]
    assert set(it["kinds"]) <= {"separator", "wrong_prompt"} and it["estimates"].shape == (6, 1, 8000)
    assert torch.equal(it["estimates"], ds[0]["estimates"])  # deterministic
    used = {d["release"] for i in range(3) for d in ds[i]["details"] if d}
    assert used == {0, 1}
    item = ds.mix[0]
    spec = {"steps": 2, "refine": "none", "seed": 3, "text": item["text"]}
    a, b = ds.separate(item, [{**spec, "release": 0}, {**spec, "release": 1}])
    assert not torch.allclose(a, b)
    direct = Separator.from_pretrained(two_separator_releases[1]).separate(
        item["mixture"], SR, text=item["text"], steps=2, seed=3, refine="wiener", keep_raw=True)
    torch.testing.assert_close(b, direct.raw[0][:, :8000])
    wrong = [d for i in range(3) for d in ds[i]["details"] if d and d["kind"] == "wrong_prompt"]
    assert wrong and all(d["text"] != ds.mix[d["item"]]["text"] for d in wrong)
    with pytest.raises(ValueError, match="separator_refine"):
        CandidateConfig.from_dict({"separator_refine": ["sharpen"]})
    # the grading recipe of the targets is a candidates option
    with pytest.raises(ValueError, match="grade_recipe"):
        CandidateConfig.from_dict({"grade_recipe": 7})
    r3 = JudgeDataset(tiny_corpus, "train", mix_cfg, CandidateConfig.from_dict(
        {"per_mixture": 6, "weights": {"mixture": 1.0, "leak": 1.0}, "grade_recipe": 3}), seed=0, length=1)[0]
    r2 = JudgeDataset(tiny_corpus, "train", mix_cfg, CandidateConfig.from_dict(
        {"per_mixture": 6, "weights": {"mixture": 1.0, "leak": 1.0}, "grade_recipe": 2}), seed=0, length=1)[0]
    assert torch.equal(r3["estimates"], r2["estimates"])
    assert not torch.allclose(r3["targets"][:, 0], r2["targets"][:, 0])   # precision differs


def test_presence_head_output_and_loss(tiny_corpus):
    from omegaconf import OmegaConf

    from judge.model import JudgeScores, build_judge
    from judge.train import JudgeModule

    torch.manual_seed(0)
    j = build_judge(tiny_judge_config(presence_head=True)).eval()
    s, i = _signals(8000)
    out = j(torch.stack([s + i, s + i]), torch.stack([s, torch.zeros_like(s)]), ["tone", "tone"])
    assert out.shape == (2, 5) and bool(((out[:, 4] > 0) & (out[:, 4] < 1)).all())
    sc = j.score(s + i, s, "tone", SR)
    assert isinstance(sc, JudgeScores) and 0.0 < sc.presence < 1.0 and "presence" in sc.to_dict()
    cfg = OmegaConf.create({"loss": {"axis_weights": [1, 1, 1, 1], "presence_weight": 1.0, "rank_weight": 0.0},
                            "optim": {"lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 1}, "trainer": {"max_steps": 2}})
    module = JudgeModule(j.train(), cfg)
    feats = j.audio_features(torch.stack([s + i] * 2), torch.stack([s, s]))
    batch = {**feats, "text": ["tone"] * 2, "targets": torch.full((2, 4), 3.0), "present": [True, True]}
    logits = j.forward_features(batch, batch["text"])[:, 4].detach()
    loss_yes = module.training_step(batch, 0)
    loss_no = module.training_step({**batch, "present": [False, False]}, 0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(2)) - \
        torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros(2))
    torch.testing.assert_close(loss_yes - loss_no, expected, atol=1e-5, rtol=1e-4)
    loss_yes.backward()
    assert j.presence[-1].weight.grad is not None and float(j.presence[-1].weight.grad.abs().sum()) > 0


def test_rank_loss_sign_on_a_crafted_pair():
    from judge.train import rank_loss

    target = torch.tensor([4.0, 2.0, 3.9, 2.0])
    group = torch.tensor([0, 0, 1, 2])  # only (0, 1) is a same-group pair with a 0.25+ difference
    right = rank_loss(torch.tensor([4.0, 2.0, 1.0, 5.0]), target, group)
    wrong = rank_loss(torch.tensor([2.0, 4.0, 1.0, 5.0]), target, group)
    assert float(right) < 0.01 < 1.0 < float(wrong)
    o = torch.tensor([3.0, 3.0, 3.0, 3.0], requires_grad=True)
    rank_loss(o, target, group).backward()
    assert float(o.grad[0]) < 0 < float(o.grad[1]) and float(o.grad[2]) == 0 == float(o.grad[3])
    assert float(rank_loss(o, torch.tensor([3.0, 3.1, 3.0, 3.0]), torch.zeros(4, dtype=torch.long))) == 0.0


def test_perceptual_term_lowers_a_mel_damaged_estimate_at_equal_si_sdr():
    from judge.targets import overall_target, perceptual_target
    from separation.metrics import si_sdr

    s, i = _signals()
    g = torch.Generator().manual_seed(3)
    w = torch.randn(s.shape, generator=g)

    def orth(e):  # error orthogonal to the target, at a fixed energy: same SI-SDR
        e = e - (e * s).sum() / (s * s).sum() * s
        return e * (0.1 * s.norm() / e.norm())

    t = torch.arange(s.shape[-1]) / SR
    quad = (torch.cos(2 * math.pi * 440 * t) * (1 + 0.5 * torch.sin(2 * math.pi * 3 * t)))[None]
    masked = s + orth(quad)  # error in the target's own bins (a phase error): spectrum nearly unchanged
    damaged = s + orth(w)  # same error energy spread over every band, where the target is quiet
    assert float(si_sdr(masked, s)) == pytest.approx(float(si_sdr(damaged, s)), abs=0.01)
    pm, pd = (float(perceptual_target(e, s, i, SR)[0]) for e in (masked, damaged))
    assert pd < pm
    tm, td = reference_targets(masked, s, i, SR)[0], reference_targets(damaged, s, i, SR)[0]
    assert float(td[3]) < float(tm[3])
    # the perceptual term is what lowers it: the overall without it is higher
    assert float(td[3]) < float(overall_target(td[0:1], td[1:2], td[2:3])[0]) - 0.05
    assert float(reference_targets(s, s, i, SR)[0, 3]) == pytest.approx(5.0, abs=1e-3)


def test_bars_evaluation_on_a_tiny_run(judge, tiny_corpus, two_separator_releases, tmp_path, capsys):
    from judge.evaluate import bars_table, evaluate_bars, main
    from separation.separator import Separator

    seps = {Path(p).name: Separator.from_pretrained(p) for p in two_separator_releases}
    r = evaluate_bars(judge, seps, tiny_corpus, "test", groups=4, absent_share=0.3, steps=(2, 1), seeds=(0, 1),
                      segment_s=0.5, bootstrap=50, progress=False)
    assert r["candidates"] == 4 * (2 * 2 * 2 * 2 + 2)
    assert -1.0 <= r["a_pcc"]["pcc"] <= 1.0 and r["a_pcc"]["pcc_ci"] is not None
    for key in ("c_pairs", "d_worse_than_mixture", "e_silent_present", "e_absent", "e_silent_absent"):
        v = r[key]
        assert v["n"] == 0 or 0.0 <= v["share"] <= 1.0, key
    assert r["e_silent_absent"]["n"] == r["e_silent_present"]["n"] + r["e_absent"]["n"]
    assert set(r["f_rerank"]) == {"rel_a", "rel_b"}
    f = r["f_rerank"]["rel_a"]
    assert f["k"] == 4 and f["oracle_gain_db"]["mean"] >= f["judge_gain_db"]["mean"] - 1e-9
    assert f["oracle_si_sdri"]["mean"] >= f["k1_si_sdri"]["mean"] - 1e-9
    assert "(c) same-mixture pairs" in bars_table(r)
    # the same figures with the reference grades as the score: the ceiling the grading recipe sets
    ceil = r["grade_ceiling"]
    assert set(ceil) >= {"b_srcc_si_sdr", "c_pairs", "d_worse_than_mixture", "e_absent", "f_rerank"}
    assert ceil["c_pairs"]["n"] == r["c_pairs"]["n"] and ceil["e_absent"]["n"] == r["e_absent"]["n"]
    if ceil["e_absent"]["n"]:  # silence is graded 5 when the target is absent, the mixture below it
        assert ceil["e_absent"]["share"] == 1.0
    assert "| figure | judge | grades | bar |" in bars_table(r)
    ckpt = judge.save_pretrained(tmp_path / "judge")
    assert main(["--checkpoint", str(ckpt), "--corpus", tiny_corpus, "--groups", "1", "--per-mixture", "2",
                 "--segment-s", "0.5", "--silent-groups", "0", "--bootstrap", "20", "--bars-groups", "2",
                 "--bars-separators", ",".join(two_separator_releases), "--bars-steps", "1", "--bars-seeds", "1",
                 "--threads", "1", "--out", str(tmp_path / "eval")]) == 0
    out = json.loads((tmp_path / "eval" / "judge_eval.json").read_text())
    assert out["bars"]["groups"] == 2 and set(out["bars"]["f_rerank"]) <= {"rel_a", "rel_b"}
    assert out["bars"]["grade_recipe"] == 2                      # no record: the default recipe
    from judge.evaluate import trained_recipe

    (Path(ckpt) / "train_result.json").write_text(json.dumps({"grade_recipe": 3}))
    assert trained_recipe(ckpt) == 3                              # a release graded by recipe 3 is scored on it
    assert main(["--checkpoint", str(ckpt), "--corpus", tiny_corpus, "--groups", "1", "--per-mixture", "2",
                 "--segment-s", "0.5", "--silent-groups", "0", "--bootstrap", "20", "--bars-groups", "1",
                 "--bars-separators", two_separator_releases[0], "--bars-steps", "1", "--bars-seeds", "1",
                 "--threads", "1", "--out", str(tmp_path / "eval3")]) == 0
    assert json.loads((tmp_path / "eval3" / "judge_eval.json").read_text())["bars"]["grade_recipe"] == 3
    assert "Issue-17 bars" in capsys.readouterr().out
    assert main(["--checkpoint", str(ckpt), "--corpus", tiny_corpus, "--grade-recipe", "9",
                 "--out", str(tmp_path / "eval9")]) == 2                  # unknown recipe: a clear error
    assert "--grade-recipe must be one of" in capsys.readouterr().err


def test_bars_prompt_variant_candidates(judge, tiny_corpus, two_separator_releases):
    """--bars-variants: the i-th seed prompts the separator with the i-th prompt variant of the label
    (the item's own text first), while the judge scores every candidate against the item's text."""
    from judge.evaluate import evaluate_bars, separator_outputs
    from separation.data.mixing import MixConfig, MixtureDataset
    from separation.prompt_variants import PromptVariants
    from separation.separator import Separator

    sep = Separator.from_pretrained(two_separator_releases[0])
    ds = MixtureDataset(tiny_corpus, "valid", MixConfig(segment_s=0.5, min_sources=2, max_sources=2, p_text=1.0,
                                                         p_span=0.0, p_text_span=0.0, p_video=0.0), seed=3, length=2)
    items = [ds[i] for i in range(2)]
    ds.prompts[items[0]["label"]] = [items[0]["text"], "another wording", "a third wording"]
    variants = [PromptVariants(ds.prompts).variants(it["text"]) for it in items]
    assert variants[0] == [items[0]["text"], "another wording", "a third wording"]
    outs = separator_outputs(sep, items, steps=(1,), seeds=(0, 1, 2, 3), sample_rate=16000, prompts=variants)
    texts = [o["text"] for o in outs[0] if o["refine"] == "wiener"]
    assert texts == [items[0]["text"], "another wording", "a third wording", items[0]["text"]]  # cycles
    plain = separator_outputs(sep, items[:1], steps=(1,), seeds=(0, 1), sample_rate=16000)
    assert {o["text"] for o in plain[0]} == {items[0]["text"]}
    # seed 0 keeps the item's own text: K = 1 is the same output in both modes; seed 1 differs by its prompt
    assert torch.allclose(plain[0][0]["estimate"], outs[0][0]["estimate"], atol=1e-5)
    assert not torch.allclose(plain[0][2]["estimate"], outs[0][2]["estimate"], atol=1e-3)
    r = evaluate_bars(judge, {"rel_a": sep}, tiny_corpus, "valid", groups=2, steps=(1,), seeds=(0, 1),
                      segment_s=0.5, bootstrap=20, progress=False, variants=True)
    assert r["candidates_from"] == "prompt variants x seeds" and r["f_rerank"]["rel_a"]["k"] == 2
    memo = {}
    first = evaluate_bars(judge, {"rel_a": sep}, tiny_corpus, "valid", groups=2, steps=(1,), seeds=(0, 1),
                          segment_s=0.5, bootstrap=20, progress=False, memo=memo)
    assert len(memo) == 1
    (key,) = memo
    memo[key] = [[{**o, "estimate": o["estimate"] * 0} for o in outs] for outs in memo[key]]  # reused, not recomputed
    again = evaluate_bars(judge, {"rel_a": sep}, tiny_corpus, "valid", groups=2, steps=(1,), seeds=(0, 1),
                          segment_s=0.5, bootstrap=20, progress=False, memo=memo)
    assert again["f_rerank"]["rel_a"]["oracle_si_sdri"] != first["f_rerank"]["rel_a"]["oracle_si_sdri"]


def test_train_with_two_separator_releases(tiny_corpus, tmp_path, two_separator_releases):
    from judge.model import Judge
    from judge.train import FeatureCache, train_judge

    result = train_judge(_train_cfg(tiny_corpus, tmp_path, steps=2, separators=two_separator_releases))
    assert result["global_step"] == 2
    cache = FeatureCache(tmp_path / "run" / "cache" / "train")
    assert any(k in ("separator", "wrong_prompt") for k in cache.kinds)
    assert len(cache[0]) == 3 and len({p["group"] for p in cache[0]}) == 1  # items are whole groups
    j = Judge.from_pretrained(result["export_dir"])
    assert j.cfg.presence_head and j.score(torch.randn(1, 4000) * 0.1, torch.randn(1, 4000) * 0.1, "tone",
                                            SR).presence is not None


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / "checkpoints" / "promptsep-judge-tiny"
                         / "model.safetensors").is_file(), reason="shipped judge not in this checkout")
def test_shipped_judge_without_presence_head_loads_and_scores_as_before():
    from judge.model import Judge

    j = Judge.from_pretrained(str(Path(__file__).resolve().parents[1] / "checkpoints" / "promptsep-judge-tiny"))
    assert not j.cfg.presence_head and j.presence is None
    t = torch.arange(SR * 2) / SR
    s = 0.3 * torch.sin(2 * math.pi * 440 * t)
    i = 0.2 * torch.sin(2 * math.pi * 97 * t) * torch.sin(2 * math.pi * 1.5 * t)
    mix = (s + i)[None]
    # scores of the shipped release computed with the code before the presence head (main at 8c9a05a)
    before = {"est": [3.3962, 3.1360, 4.2587, 2.8132], "mix": [1.1195, 4.8033, 4.7664, 1.0341],
              "silence": [5.0, 4.3888, 4.4108, 3.9925]}
    for name, est in (("est", s[None]), ("mix", mix), ("silence", torch.zeros_like(mix))):
        sc = j.score(mix, est, "a tone", SR)
        assert sc.presence is None and set(sc.to_dict()) == {"precision", "recall", "faithfulness", "overall"}
        assert [sc.precision, sc.recall, sc.faithfulness, sc.overall] == pytest.approx(before[name], abs=2e-3)
