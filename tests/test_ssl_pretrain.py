"""SSL pretraining set (corpus_build.ssl_set), mosaic pretraining on it, clap init from its tower."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

SR = 16000


def _tone(seconds: float, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def ssl_corpus(tmp_path_factory):
    """A corpus manifest (train sources pkga, pkgb:music; valid pkgc; test pkgd) with extracted packages."""
    root = tmp_path_factory.mktemp("sslcorpus")
    rows = []
    for i, (split, source, pkg) in enumerate([("train", "pkga", "pkga"), ("train", "pkgb:music", "pkgb"),
                                              ("valid", "pkgc", "pkgc"), ("test", "pkgd", "pkgd"),
                                              ("test_in", "pkga", "pkga")]):
        key = "held" if split == "test_in" else f"c{i}"
        rel = f"clips/sfx/{pkg}/dir__{key}_s0.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, _tone(2.5, 300 + 100 * i), SR)
        rows.append({"id": f"sfx/{pkg}/dir__{key}_s0", "path": rel, "label": "tone", "category": "sfx",
                     "source": source, "package": pkg, "split": split, "duration": 2.5})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = root / "_src"
    files = {
        "pkga/usr/share/dir/long.wav": _tone(9.0),           # 3 windows of 4, 4, 1 s
        "pkga/usr/share/dir/held.wav": _tone(5.0),           # the test_in clip's file: skipped
        "pkga/usr/share/dir/silent.wav": np.zeros(SR * 5, np.float32),  # no usable window
        "pkgb/usr/share/music/track.wav": _tone(4.0),        # pkgb:music, a train source
        "pkgb/usr/share/sfx/boom.wav": _tone(4.0),           # pkgb (no such train source): skipped
        "pkgc/usr/share/dir/val.wav": _tone(4.0),            # valid source: skipped
        "openttd-opensfx/usr/share/x.wav": _tone(4.0),       # reserved package: never read
    }
    for rel, x in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(src / rel, x, SR)
    return root


def test_ssl_set_keeps_only_train_sources(ssl_corpus, tmp_path, monkeypatch):
    import corpus_build.sources as sources
    from corpus_build.ssl_set import build_ssl_set

    monkeypatch.setitem(sources.MUSIC_RULES, "pkgb", [(r"/music/[^/]+\.wav$", "music")])
    m = build_ssl_set(ssl_corpus, tmp_path / "ssl", window_s=4.0, min_s=1.0, progress=False)
    ws = [json.loads(line) for line in (tmp_path / "ssl" / "windows.jsonl").read_text().splitlines()]
    paths = {w["path"] for w in ws}
    assert {w["source"] for w in ws} == {"pkga", "pkgb:music"}
    for bad in ("held.wav", "silent.wav", "boom.wav", "val.wav", "openttd", "pkgc", "pkgd", "dir__held"):
        assert not any(bad in p for p in paths), bad
    long = sorted((w["start_s"], w["dur_s"]) for w in ws if w["path"].endswith("long.wav"))
    assert long == [(0.0, 4.0), (4.0, 4.0), (8.0, 1.0)]
    assert sum(w["origin"] == "corpus" for w in ws) == 2  # the two TRAIN clips, one window each
    assert m["windows"] == len(ws) and m["skipped"]["reserved package"] == 1
    assert m["skipped"]["held-out clip's file"] == 1 and m["skipped"]["no usable window"] == 1
    assert m["hours_per_source"]["pkga"] == pytest.approx((2.5 + 9.0) / 3600, abs=1e-4)
    assert "pkgc" in m["excluded_eval_sources"] and m["build_s"] >= 0


def _tiny_overrides(corpus, tmp_path, name, objective):
    return [
        f"corpus={corpus}", f"out_dir={tmp_path / name}", f"export_dir={tmp_path / (name + '_export')}",
        f"objective={objective}", "model.text_kind=tiny_t5", "model.text_dim=32", "model.text_hidden=32",
        "model.embed_dim=16", "model.audio.channels=[4,8]", "model.audio.width=16", "model.audio.depth=1",
        "model.audio.heads=2", "data.batch_size=4", "data.crop_s=0.5", "trainer.max_steps=2",
        "trainer.val_every=2", "trainer.ckpt_every=2", "trainer.log_every=1", "progress=false",
        "final_eval=null", "mosaic.patch_mels=4", "mosaic.patch_frames=8",
    ]


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from bench.embedding.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train_clap", overrides=overrides)


def test_mosaic_on_ssl_windows_then_clap_init_from_its_tower(ssl_corpus, tiny_corpus, tmp_path, monkeypatch):
    from bench.embedding.train import init_audio_tower, train_embedding
    from corpus_build.ssl_set import build_ssl_set
    from embeddings.clap import ClapTiny
    from embeddings.mosaic import MosaicTiny

    build_ssl_set(ssl_corpus, tmp_path / "ssl", progress=False)
    windows = tmp_path / "ssl" / "windows.jsonl"
    res = train_embedding(_compose(_tiny_overrides(tiny_corpus, tmp_path, "mosaic", "mosaic")
                                   + [f"data.ssl_windows={windows}"]))
    assert res["global_step"] == 2
    meta = json.loads((tmp_path / "mosaic_export" / "config.json").read_text())
    assert meta["training"]["ssl_windows"] == str(windows) and meta["training"]["train_hours"] > 0
    assert "SSL pretraining set" in (tmp_path / "mosaic_export" / "MODEL_CARD.md").read_text()
    enc = MosaicTiny.from_pretrained(tmp_path / "mosaic_export")
    # conf/embedding/train_clap.yaml's mosaic releases declare the stages embedding, and say so
    assert enc.cfg.embedding == "stages" and meta["dim"] == enc.dim > enc.cfg.audio.width
    assert "`embedding: stages`" in (tmp_path / "mosaic_export" / "MODEL_CARD.md").read_text()

    # clap trained from that tower: the tower starts as the encoder's, the run records it
    cfg = _compose(_tiny_overrides(tiny_corpus, tmp_path, "clap", "clap")
                   + [f"init_audio_from={tmp_path / 'mosaic_export'}", "trainer.max_steps=1"])
    from bench.embedding.train import clap_config_from

    fresh = ClapTiny(clap_config_from(cfg))
    info = init_audio_tower(fresh, tmp_path / "mosaic_export")
    assert info["kind"] == "promptsep_mosaic" and info["tensors"] == len(enc.audio_tower.state_dict())
    for k, v in enc.audio_tower.state_dict().items():
        assert torch.equal(fresh.audio_tower.state_dict()[k], v), k
    res = train_embedding(cfg)
    meta = json.loads((tmp_path / "clap_export" / "config.json").read_text())
    assert meta["training"]["init_audio_from"]["kind"] == "promptsep_mosaic"
    # which weights: the tower release's checksum (its folder's weights may be replaced later)
    tower_meta = json.loads((tmp_path / "mosaic_export" / "config.json").read_text())
    assert meta["training"]["init_audio_from"]["weights_sha256"] == tower_meta["weights_sha256"]
    assert "audio tower initialised from" in (tmp_path / "clap_export" / "MODEL_CARD.md").read_text()


def test_init_audio_from_refuses_a_mismatched_encoder(tiny_corpus, tmp_path):
    from bench.embedding.train import clap_config_from, init_audio_tower, mosaic_config_from
    from embeddings.clap import ClapTiny
    from embeddings.mosaic import MosaicTiny

    small = _tiny_overrides(tiny_corpus, tmp_path, "x", "mosaic")
    enc = MosaicTiny(mosaic_config_from(_compose(small)))
    enc.save_pretrained(tmp_path / "enc")
    wide = ClapTiny(clap_config_from(_compose(small + ["model.audio.width=32", "model.audio.heads=4"])))
    before = {k: v.clone() for k, v in wide.audio_tower.state_dict().items()}
    with pytest.raises(ValueError, match="audio tower config differs"):
        init_audio_tower(wide, tmp_path / "enc")
    assert all(torch.equal(before[k], v) for k, v in wide.audio_tower.state_dict().items())  # untouched
    with pytest.raises(FileNotFoundError):
        init_audio_tower(wide, tmp_path / "nowhere")
    # a release whose tower tensors do not match its own config is refused too
    from promptsep import release

    bad = {k: v for k, v in enc.state_dict().items() if not k.endswith("to_tokens.weight")}

    release.save_release(tmp_path / "broken", {k: v for k, v in bad.items() if not k.startswith("frontend.")},
                         enc.cfg.to_dict(), "promptsep_mosaic")
    same = ClapTiny(clap_config_from(_compose(small)))
    with pytest.raises(ValueError, match="tower tensors do not match"):
        init_audio_tower(same, tmp_path / "broken")


def test_clap_eval_metrics_and_bootstrap():
    from bench.clap_eval import _ci, probe_predictions, recall_ci_over_clips, t2a_recall

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    sims = np.eye(3)[:, y] + 0.01 * rng.standard_normal((3, 30))  # every clip closest to its own label
    assert (np.argmax(sims, axis=0) == y).mean() == 1.0 and t2a_recall(sims, y) == 1.0
    shuffled = sims[[1, 2, 0]]  # every label query points at another label's clips
    assert (np.argmax(shuffled, axis=0) == y).mean() == 0.0 and t2a_recall(shuffled, y) == 0.0
    v = (rng.random(200) < 0.3).astype(float)
    lo, hi = _ci(v, 500, 0, 0.05)
    assert lo < v.mean() < hi and hi - lo < 0.2
    lo, hi = recall_ci_over_clips(sims, y, 5, 50, 0, 0.05)
    assert lo == hi == 1.0
    noisy = sims + 0.6 * rng.standard_normal((3, 30))
    lo, hi = recall_ci_over_clips(noisy, y, 5, 200, 0, 0.05)
    assert lo <= t2a_recall(noisy, y) <= hi and lo < hi
    x = np.eye(3)[y] + 0.05 * rng.standard_normal((30, 3))
    assert (probe_predictions(x, y) == y).mean() == 1.0
    assert probe_predictions(x[:3], y[::10]) is None  # one clip per label: no probe


def test_window_bank_partial_and_whole_reads_agree(tmp_path):
    from bench.embedding.train import WindowBank
    from embeddings.logmel import MelConfig

    x = np.concatenate([_tone(4.0, 300), _tone(4.0, 1200), _tone(4.0, 2500)])
    sf.write(tmp_path / "a.wav", x, SR)
    w = {"path": str(tmp_path / "a.wav"), "dur_s": 4.0, "source": "s", "origin": "unlabelled"}
    one = tmp_path / "one.jsonl"   # one window of three: read on its own
    one.write_text(json.dumps({**w, "start_s": 4.0}) + "\n")
    all3 = tmp_path / "all.jsonl"  # every window: the file is decoded once and sliced
    all3.write_text("".join(json.dumps({**w, "start_s": s}) + "\n" for s in (0.0, 4.0, 8.0)))
    part, whole = WindowBank(one, MelConfig(), progress=False), WindowBank(all3, MelConfig(), progress=False)
    assert len(part) == 1 and len(whole) == 3 and whole.label_names == ["s"]
    a, b = part.mels[0].float(), whole.mels[1].float()
    n = min(a.shape[-1], b.shape[-1])
    assert abs(a.shape[-1] - b.shape[-1]) <= 1
    # the 1200 Hz window: same spectrum away from the edges; louder near 1200 Hz than near 300 Hz
    assert torch.allclose(a[:, 3 : n - 3], b[:, 3 : n - 3], atol=0.05)
    assert a.mean(-1).argmax() != whole.mels[0].float().mean(-1).argmax()


class _Bank:
    """A stand-in mel bank (the data structure ContrastiveClips reads): 6 labels x 5 clips."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.label_names = [f"src{k}" for k in range(6)]
        self.mels, self.labels = [], []
        for lab in self.label_names:
            for _ in range(5):
                self.mels.append(torch.randn(16, 80, generator=g))
                self.labels.append(lab)
        self.by_label = {}
        for i, lab in enumerate(self.labels):
            self.by_label.setdefault(lab, []).append(i)


def test_contrastive_clips_hard_negative_batches_and_view_colouring():
    """labels_per_batch: each batch draws from that many labels; eq_db: each view its own colouring."""
    from bench.embedding.train import ContrastiveClips, spectral_colour

    bank = _Bank()
    kw = dict(prompts={lab: [] for lab in bank.label_names}, texts=[], objective="mosaic", crop_s=0.5, hop_s=0.01,
              seed=3)
    hard = ContrastiveClips(bank, labels_per_batch=2, batch_size=8, **kw)
    per_batch = [{hard[b * 8 + j]["label"] for j in range(8)} for b in range(6)]
    assert all(len(s) <= 2 for s in per_batch)
    assert len(set().union(*per_batch)) > 2            # different batches, different labels
    free = ContrastiveClips(bank, batch_size=8, **kw)
    assert max(len({free[b * 8 + j]["label"] for j in range(8)}) for b in range(6)) > 2
    with pytest.raises(ValueError, match="labels_per_batch"):
        ContrastiveClips(bank, labels_per_batch=0, **kw)

    # the colouring is a smooth curve over the mel bands, at most +-eq_db dB (tilt + bump)
    c = spectral_colour(64, 6.0, np.random.default_rng(0)) * 10 / np.log(10)
    assert c.shape == (64,) and c.abs().max() <= 9.0 + 1e-4 and c.std() > 0.1
    plain = ContrastiveClips(bank, **kw)[5]
    col = ContrastiveClips(bank, eq_db=6.0, **kw)[5]
    assert plain["label"] == col["label"]
    assert not torch.allclose(plain["mel"], col["mel"])
    assert torch.equal(col["mel"], ContrastiveClips(bank, eq_db=6.0, **kw)[5]["mel"])  # seeded
    # the two views of one item get different colourings (crop offsets aside: a 0.8 s clip fits once)
    assert not torch.allclose(col["mel"] - col["mel"].mean(1, keepdim=True),
                              col["mel2"] - col["mel2"].mean(1, keepdim=True))
