"""On-the-fly mixing dataset and synthetic audio-visual scenes (tiny synthetic corpus, CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from separation.data.av import loudness_envelope, render_av_scene
from separation.data.mixing import (
    MixConfig,
    MixtureDataset,
    activity_spans,
    collate_mixtures,
    frame_activity,
)

SR = 8000

# label -> (category, generator of one clip given rng and seconds)
_KINDS = {
    "low_tone": ("instrument", lambda r, n: 0.5 * np.sin(2 * np.pi * 220 * np.arange(n) / SR + r.uniform(0, 6))),
    "high_tone": ("instrument", lambda r, n: 0.5 * np.sin(2 * np.pi * 1300 * np.arange(n) / SR)),
    "hiss": ("sfx", lambda r, n: 0.3 * r.standard_normal(n)),
    "beeps": ("sfx", lambda r, n: 0.6 * np.sin(2 * np.pi * 700 * np.arange(n) / SR) * ((np.arange(n) // 800) % 2)),
    "murmur": ("speech", lambda r, n: 0.4 * r.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / SR))),
}


def _write_corpus(root: Path, labels: dict[str, tuple[str, object]] | None = None) -> Path:
    labels = labels or _KINDS
    rng = np.random.default_rng(0)
    rows = []
    for label, (cat, gen) in labels.items():
        for split, count in (("train", 2), ("valid", 1)):
            for j in range(count):
                n = int(SR * (0.4 if j == 1 else 1.5))  # one short clip per label: exercises looping
                wav = np.asarray(gen(rng, n), dtype=np.float32)
                rel = f"clips/{label}_{split}_{j}.wav"
                (root / "clips").mkdir(parents=True, exist_ok=True)
                sf.write(str(root / rel), wav, SR, subtype="PCM_16")
                rows.append({"id": rel[:-4], "path": rel, "label": label, "category": cat, "source": "synthetic",
                             "group": f"{label}:{j}", "license": "CC0", "duration": n / SR, "sample_rate": SR,
                             "split": split})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    info = {lab: {"category": cat, "prompts": [lab.replace("_", " "), f"the sound of {lab}"]}
            for lab, (cat, _) in labels.items()}
    (root / "labels.json").write_text(json.dumps(info))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _write_corpus(tmp_path_factory.mktemp("corpus"))


def _cfg(**kw) -> MixConfig:
    base = dict(sample_rate=SR, segment_s=1.0, min_sources=1, max_sources=4, absent_prob=0.1, cache_mb=16)
    base.update(kw)
    return MixConfig(**base)


def test_items_shapes_and_exact_residual(corpus):
    ds = MixtureDataset(corpus, "train", _cfg(), seed=1, length=30)
    n = SR
    counts = set()
    for i in range(len(ds)):
        it = ds[i]
        for key in ("mixture", "target", "residual"):
            assert it[key].shape == (1, n) and it[key].dtype == torch.float32
        assert torch.equal(it["residual"], it["mixture"] - it["target"])
        assert float(it["mixture"].abs().max()) <= 0.99 + 1e-6
        assert 1 <= it["num_sources"] <= 4
        assert len(set(it["source_labels"])) == it["num_sources"]
        assert (it["label"] in it["source_labels"]) == it["target_present"]
        assert it["use_text"] == (it["prompt_kind"] in ("text", "text+span"))
        assert it["use_span"] == (it["prompt_kind"] in ("span", "text+span"))
        assert it["video"] is None and it["prompt_kind"] != "video"
        assert it["text"] in (it["label"].replace("_", " "), f"the sound of {it['label']}")
        if it["target_present"]:
            assert float(it["target"].abs().max()) > 0
        counts.add(it["num_sources"])
    assert len(counts) >= 3


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_number_of_sources_honoured(corpus, k):
    ds = MixtureDataset(corpus, "valid", _cfg(min_sources=k, max_sources=k), seed=0, length=6)
    assert all(ds[i]["num_sources"] == k for i in range(len(ds)))


def test_valid_items_are_deterministic(corpus):
    a = MixtureDataset(corpus, "valid", _cfg(), seed=3, length=8)
    b = MixtureDataset(corpus, "valid", _cfg(), seed=3, length=8)
    for i in (0, 5):
        x, y, z = a[i], a[i], b[i]
        for key in ("mixture", "target", "residual"):
            assert torch.equal(x[key], y[key]) and torch.equal(x[key], z[key])
        for key in ("text", "spans", "prompt_kind", "label", "source_labels", "target_present"):
            assert x[key] == y[key] == z[key]
        assert x["text"] == x["label"].replace("_", " ")  # eval splits use the first prompt variant
    assert not torch.equal(a[0]["mixture"], a[1]["mixture"])
    # train items depend on (seed, epoch, i)
    t = MixtureDataset(corpus, "train", _cfg(), seed=3, length=8)
    first = t[2]["mixture"]
    assert torch.equal(first, t[2]["mixture"])
    t.set_epoch(1)
    assert not torch.equal(first, t[2]["mixture"])


def test_absent_target(corpus):
    ds = MixtureDataset(corpus, "valid", _cfg(absent_prob=1.0, max_spans=0), seed=0, length=10)
    for i in range(len(ds)):
        it = ds[i]
        assert not it["target_present"]
        assert it["label"] not in it["source_labels"]
        assert torch.count_nonzero(it["target"]) == 0
        assert torch.equal(it["residual"], it["mixture"])
        assert it["prompt_kind"] in ("text", "text+span")
        assert all(sign == "-" for sign, _, _ in it["spans"])


def test_activity_spans_constructed_case():
    n = SR * 2
    t = np.arange(n) / SR
    target = np.where((t >= 0.5) & (t < 1.2), np.sin(2 * np.pi * 300 * t), 0.0)
    others = 0.5 * np.sin(2 * np.pi * 500 * t)
    spans = activity_spans(target, others, SR, frame_s=0.02)
    assert spans == sorted(spans, key=lambda s: s[1])
    pos = [(a, b) for s, a, b in spans if s == "+"]
    neg = [(a, b) for s, a, b in spans if s == "-"]
    assert pos == [(pytest.approx(0.5), pytest.approx(1.2))]
    assert neg == [(pytest.approx(0.0), pytest.approx(0.5)), (pytest.approx(1.2), pytest.approx(2.0))]
    # nothing sounds in the last 0.4 s: no '-' span there; the target is absent: only '-' spans
    others2 = np.where(t < 1.6, others, 0.0)
    neg2 = [(a, b) for s, a, b in activity_spans(target, others2, SR) if s == "-"]
    assert neg2[-1][1] == pytest.approx(1.6)
    assert all(s == "-" for s, _, _ in activity_spans(np.zeros(n), others, SR))


def test_dataset_spans_cover_target_activity(corpus):
    cfg = _cfg(max_spans=0, p_partial=1.0, min_active_s=0.2, p_text=0, p_span=1, p_text_span=0, p_video=0)
    ds = MixtureDataset(corpus, "train", cfg, seed=7, length=12)
    hop = int(0.02 * SR)
    for i in range(len(ds)):
        it = ds[i]
        spans = it["spans"]
        assert it["prompt_kind"] == "span" or not it["target_present"]
        starts = [a for _, a, _ in spans]
        assert starts == sorted(starts)
        for sign, a, b in spans:
            assert sign in "+-" and 0.0 <= a < b <= 1.0 + 1e-9
        for (_, _, b0), (_, a1, _) in zip(spans[:-1], spans[1:]):
            assert b0 <= a1 + 1e-9
        active = frame_activity(it["target"][0].numpy(), SR)
        for k in np.flatnonzero(active):
            c = (k + 0.5) * hop / SR
            assert any(s == "+" and a <= c < b for s, a, b in spans), (i, k)
        if it["target_present"]:
            assert any(s == "+" for s, _, _ in spans)


def test_subsampled_spans(corpus):
    ds = MixtureDataset(corpus, "valid", _cfg(max_spans=2, p_partial=1.0, absent_prob=0.0), seed=0, length=12)
    for i in range(len(ds)):
        spans = ds[i]["spans"]
        assert 1 <= len(spans) <= 2 and any(s == "+" for s, _, _ in spans)


def test_video_prompts(corpus):
    cfg = _cfg(video=True, p_text=0, p_span=0, p_text_span=0, p_video=1, absent_prob=0.0, video_fps=10, video_size=32)
    ds = MixtureDataset(corpus, "valid", cfg, seed=0, length=6)
    f = math.ceil(cfg.segment_s * cfg.video_fps)
    for i in range(len(ds)):
        it = ds[i]
        assert it["prompt_kind"] == "video" and not it["use_text"] and not it["use_span"]
        v = it["video"]
        assert v["frames"].shape == (f, 3, 32, 32) and v["masks"].shape == (f, 32, 32)
        assert 0.0 <= float(v["frames"].min()) and float(v["frames"].max()) <= 1.0
        assert v["fps"] == 10
        env = loudness_envelope(it["target"][0], SR, cfg.video_fps, f)
        assert all(v["masks"][k].sum() > 0 for k in range(f) if env[k] > 0.5)


def test_render_av_scene_follows_loudness():
    n = SR * 2
    t = torch.arange(n) / SR
    target = torch.where(t >= 1.0, torch.sin(2 * math.pi * 300 * t), torch.zeros(n))  # silent, then loud
    other = 0.5 * torch.sin(2 * math.pi * 500 * t)
    out = render_av_scene([other, target], 1, SR, fps=10, size=64, rng=np.random.default_rng(0))
    assert out["frames"].shape == (20, 3, 64, 64) and out["masks"].shape == (20, 64, 64)
    area = out["masks"].sum(dim=(1, 2))
    assert bool((area > 0).all())
    assert float(area[12:].mean()) > 2 * float(area[:8].mean())  # grows when its sound is loud
    bright = (out["frames"] * out["masks"][:, None]).sum(dim=(1, 2, 3)) / area / 3
    assert float(bright[12:].mean()) > float(bright[:8].mean())
    with pytest.raises(ValueError, match="target_index"):
        render_av_scene([other], 2, SR)


def test_collate(corpus):
    cfg = _cfg(video=True, p_video=0.5)
    ds = MixtureDataset(corpus, "train", cfg, seed=0, length=4)
    batch = collate_mixtures([ds[i] for i in range(4)])
    for key in ("mixture", "target", "residual"):
        assert batch[key].shape == (4, 1, SR)
    for key in ("text", "spans", "video", "label", "use_text", "use_span", "prompt_kind", "target_present"):
        assert isinstance(batch[key], list) and len(batch[key]) == 4
    assert torch.equal(batch["residual"], batch["mixture"] - batch["target"])


def test_resampled_corpus(corpus):
    ds = MixtureDataset(corpus, "valid", _cfg(sample_rate=16000), seed=0, length=2)
    assert ds[0]["mixture"].shape == (1, 16000)


def test_clear_errors(tmp_path, corpus):
    with pytest.raises(FileNotFoundError, match="manifest"):
        MixtureDataset(tmp_path / "nowhere", "train", _cfg())
    one = _write_corpus(tmp_path / "one", {"hiss": _KINDS["hiss"]})
    with pytest.raises(ValueError, match="at least 2"):
        MixtureDataset(one, "train", _cfg())
    with pytest.raises(ValueError, match="no clips"):
        MixtureDataset(corpus, "test", _cfg())
    with pytest.raises(ValueError, match="min_sources"):
        MixtureDataset(corpus, "train", _cfg(min_sources=3, max_sources=2))
    with pytest.raises(FileNotFoundError, match="labels"):
        MixtureDataset(corpus, "train", _cfg(), labels_path=tmp_path / "missing.json")


# ------------------------------------------------------------------ augmentation
AUGS = ("speed", "pitch", "eq", "bandlimit", "reverb", "noise")


def _aug_cfg(*names: str, **kw) -> MixConfig:
    aug = {"rt60_s": (0.2, 0.4), "room_dim_m": (3.0, 5.0), "max_order": 10, "rir_bank": 4}
    for n in names:
        aug[n] = True
        aug[f"p_{n}"] = 1.0
    return _cfg(min_sources=2, max_sources=2, absent_prob=0.0, p_partial=0.0, augment=aug, **kw)


@pytest.mark.parametrize("name", AUGS)
def test_each_augmentation_applies_and_is_deterministic(corpus, name):
    clean = MixtureDataset(corpus, "train", _aug_cfg(), seed=5, length=3)
    a = MixtureDataset(corpus, "train", _aug_cfg(name), seed=5, length=3)
    b = MixtureDataset(corpus, "train", _aug_cfg(name), seed=5, length=3)
    for i in range(3):
        x, y, c = a[i], b[i], clean[i]
        # same seed + index -> the same item, bit for bit
        for key in ("mixture", "target", "residual"):
            assert torch.equal(x[key], y[key]), (name, key)
        assert x["augmentations"] == y["augmentations"]
        assert any(name in names for names in x["augmentations"]), x["augmentations"]
        assert torch.equal(x["residual"], x["mixture"] - x["target"])
        assert torch.isfinite(x["mixture"]).all() and x["mixture"].abs().max() <= 0.99 + 1e-6
        # the augmentation has its own generator: the clips and the prompt stay those of the clean item
        assert x["source_labels"] == c["source_labels"] and x["text"] == c["text"]
        assert not torch.allclose(x["mixture"], c["mixture"], atol=1e-4), name
        assert c["augmentations"] == [[], []]
    if name == "noise":  # noise goes to the residual only: the target is the clean source
        x, c = a[0], clean[0]
        scale = (x["target"].abs().max() / c["target"].abs().max()).item()
        assert torch.allclose(x["target"], c["target"] * scale, atol=1e-3)


def test_augmentation_resumes_by_epoch_and_index(corpus):
    cfg = _aug_cfg(*AUGS)
    a = MixtureDataset(corpus, "train", cfg, seed=2, length=6)
    a.set_epoch(3)
    first = [a[i]["mixture"] for i in range(4)]
    b = MixtureDataset(corpus, "train", cfg, seed=2, length=6)
    b.set_epoch(3)
    assert all(torch.equal(b[i]["mixture"], first[i]) for i in (3, 1, 0, 2))  # any order, a fresh dataset
    b.set_epoch(4)
    assert not torch.equal(b[0]["mixture"], first[0])


def test_eval_split_is_not_augmented_by_default(corpus):
    aug = MixtureDataset(corpus, "valid", _aug_cfg(*AUGS), seed=0, length=3)
    clean = MixtureDataset(corpus, "valid", _aug_cfg(), seed=0, length=3)
    assert aug.augmenter is None
    for i in range(3):
        assert torch.equal(aug[i]["mixture"], clean[i]["mixture"])


def test_augment_config_is_strict_and_matches_conf():
    from omegaconf import OmegaConf

    from separation.data.augment import AugmentConfig

    with pytest.raises(ValueError, match="augment.reverbb"):
        MixConfig(augment={"reverb": True, "reverbb": True})
    with pytest.raises(ValueError):
        AugmentConfig(p_reverb=1.5)
    with pytest.raises(ValueError):
        AugmentConfig(speed_range=(1.1, 0.9))
    conf = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parent.parent / "conf/data/corpus.yaml"))
    cfg = MixConfig(augment=conf["augment"], p_parent_prompt=conf["p_parent_prompt"])
    assert all(getattr(cfg.augment, n) for n in AUGS)


def test_room_impulse_response_decays():
    from separation.data.augment import AugmentConfig, SourceAugmenter

    aug = SourceAugmenter(AugmentConfig(reverb=True, rt60_s=(0.5, 0.5), room_dim_m=(5.0, 5.0)), 16000)
    ir = aug.simulate_room(np.random.default_rng(0))
    assert np.argmax(np.abs(ir)) == 0 and ir.shape[0] > 0.1 * 16000
    energy = np.cumsum(ir[::-1] ** 2)[::-1]
    assert energy[int(0.3 * 16000)] < 0.1 * energy[0]  # decays by > 10 dB within 0.3 s
    assert np.array_equal(ir, aug.simulate_room(np.random.default_rng(0)))
    # the bank: room j is a pure function of j, whatever was simulated before
    a = aug.room_ir(np.random.default_rng(7))
    fresh = SourceAugmenter(aug.cfg, 16000)
    fresh.room_ir(np.random.default_rng(8))
    assert np.array_equal(a, fresh.room_ir(np.random.default_rng(7)))


def test_parent_prompts_never_ambiguous(tmp_path):
    root = _write_corpus(tmp_path)
    info = json.loads((root / "labels.json").read_text())
    info["low_tone"]["parents"] = ["tone", "music"]
    info["high_tone"]["parents"] = ["tone", "music"]
    info["murmur"]["excludes"] = ["hiss"]
    (root / "labels.json").write_text(json.dumps(info))
    ds = MixtureDataset(root, "train", _cfg(p_parent_prompt=1.0, absent_prob=0.0, min_sources=3, max_sources=4),
                        seed=0, length=60)
    seen_parent = False
    for i in range(60):
        it = ds[i]
        labs = it["source_labels"]
        if it["prompt_level"] == "parent":
            seen_parent = True
            assert it["text"] in ("tone", "music") and it["label"] in ("low_tone", "high_tone")
            # no other tone in the mixture: "tone" names exactly one source
            assert not ({"low_tone", "high_tone"} - {it["label"]}) & set(labs[1:])
        if "murmur" in labs:
            assert "hiss" not in labs
    assert seen_parent
    # the evaluation splits always use the label's own first prompt
    ev = MixtureDataset(root, "valid", _cfg(p_parent_prompt=1.0), seed=0, length=5)
    assert all(ev[i]["prompt_level"] == "label" for i in range(5))
