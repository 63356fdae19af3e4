"""Embedding-fidelity benchmark: evaluators with known answers, registry, cache, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.embedding import tasks as T


def separable(n_per=20, classes=4, dim=16, noise=0.01, seed=0):
    """Embeddings where class c sits near the unit vector e_c."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per)
    x = np.eye(dim)[y] + noise * rng.standard_normal((len(y), dim))
    return x.astype(np.float32), y


def random_emb(n=200, classes=4, dim=16, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32), rng.integers(0, classes, n)


# ----------------------------------------------------------------- evaluators
def test_probe_separable_is_perfect_and_random_is_chance():
    x, y = separable()
    p = T.prepare_classification({"reference": x}, y, folds=5)
    assert p.score("reference", np.arange(len(y)))["accuracy"] == 1.0
    xr, yr = random_emb()
    pr = T.prepare_classification({"reference": xr}, yr, folds=5)
    acc = pr.score("reference", np.arange(len(yr)))["accuracy"]
    assert 0.1 < acc < 0.45  # 4 classes: chance 0.25


def test_clustering_v_measure():
    x, y = separable()
    assert T.prepare_clustering({"c": x}, y).score("c", np.arange(len(y)))["v_measure"] > 0.99
    xr, yr = random_emb()
    assert T.prepare_clustering({"c": xr}, yr).score("c", np.arange(len(yr)))["v_measure"] < 0.2


def test_zero_shot_and_text_to_audio_on_constructed_space():
    x, y = separable(n_per=10, classes=4, dim=8)
    text = np.eye(8)[:4]
    idx = np.arange(len(y))
    assert T.prepare_zero_shot({"c": x}, y, text).score("c", idx)["accuracy"] == 1.0
    t2a = T.prepare_text_to_audio({"c": x}, y, text, k=5)
    s = t2a.score("c", idx)
    assert s["recall_at_5"] == 1.0 and s["map"] == pytest.approx(1.0)
    assert t2a.chance == pytest.approx(0.25)  # 10 of 40 relevant per query, capped at 5
    # text vectors that point at the wrong class: recall 0
    wrong = np.roll(text, 1, axis=0)
    assert T.prepare_text_to_audio({"c": x}, y, wrong, k=5).score("c", idx)["recall_at_5"] == 0.0


def test_recall_at_k_and_mrr_constructed():
    scores = np.array([[0.9, 0.1, 0.2],    # own (0) first  -> rank 1
                       [0.8, 0.5, 0.1],    # own (1) second -> rank 2
                       [0.9, 0.8, 0.1]])   # own (2) third  -> rank 3
    ranks = T.target_ranks(scores, np.arange(3))
    assert ranks.tolist() == [1, 2, 3]
    assert T.recall_at_k_single(ranks, 1) == pytest.approx(1 / 3)
    assert T.recall_at_k_single(ranks, 2) == pytest.approx(2 / 3)
    assert T.mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    rel = np.array([[True, False, True, False], [False, False, False, True]])
    sc = np.array([[0.9, 0.8, 0.1, 0.0], [0.9, 0.8, 0.7, 0.1]])
    assert T.capped_recall_at_k(sc, rel, 2).tolist() == [0.5, 0.0]
    assert T.average_precision_rows(sc, rel).tolist() == pytest.approx([(1 + 2 / 3) / 2, 1 / 4])


def test_audio_to_reference_and_pair_and_cosine():
    x, y = separable(n_per=5, classes=4, dim=32, noise=0.05, seed=3)
    rng = np.random.default_rng(0)
    emb = {"reference": x, "separated": x.copy(), "mixture": rng.standard_normal(x.shape).astype(np.float32)}
    idx = np.arange(len(y))
    a2r = T.prepare_audio_to_reference(emb)
    assert a2r.score("separated", idx) == {"recall_at_1": 1.0, "mrr": 1.0, "recall_at_5": 1.0}
    assert a2r.score("mixture", idx)["mrr"] < 0.5
    pair = T.prepare_pair_classification(emb, y)
    assert pair.score("reference", idx)["ap"] > 0.95
    cos = T.prepare_paired_cosine(emb)
    assert cos.score("separated", idx)["cosine"] == pytest.approx(1.0)


def test_fidelity_formula_and_bootstrap():
    assert T.fidelity(0.8, 1.0, 0.6) == pytest.approx(0.5)
    assert T.fidelity(1.0, 1.0, 0.6) == pytest.approx(1.0)
    assert T.fidelity(0.6, 1.0, 0.6) == pytest.approx(0.0)
    assert T.fidelity(0.5, 1.0, 0.6) == pytest.approx(-0.25)
    assert np.isnan(T.fidelity(0.7, 0.6, 0.6))
    # separated == reference: fidelity 1 for every task, CIs around the estimate
    x, y = separable(n_per=10, classes=3, dim=8, noise=0.2, seed=5)
    mix = x + np.random.default_rng(1).standard_normal(x.shape).astype(np.float32) * 1.5
    emb = {"reference": x, "separated": x.copy(), "mixture": mix}
    cats = {"all": np.arange(len(y)), "half": np.arange(len(y) // 2)}
    for name, prep in T.prepare_tasks(emb, y, tasks=("classification", "audio_to_reference", "paired_cosine")).items():
        res = T.evaluate(prep, cats, n_boot=20, seed=0)
        e = res["all"]
        assert e["fidelity"] == pytest.approx(1.0), name
        lo, hi = e["ci"]["mixture"]
        assert lo <= e["scores"]["mixture"][prep.main] + 1e-9 and e["scores"]["mixture"][prep.main] <= hi + 1e-9
        assert res["half"]["n"] == len(y) // 2
        assert e["fidelity_stable"] is True  # mixture is far from the reference


# ------------------------------------------------------------- models/cache
def tiny_clap():
    from embeddings.clap import AudioTowerConfig, ClapTiny, ClapTinyConfig

    cfg = ClapTinyConfig(audio=AudioTowerConfig(channels=(4, 8), width=16, depth=1, heads=2), embed_dim=16,
                         text_kind="tiny_t5", text_dim=32, text_hidden=32)
    torch.manual_seed(0)
    return ClapTiny(cfg).eval()


def test_registry_self_check_logmel_and_tiny_clap(tmp_path):
    from bench.embedding.models import EMBEDDERS, ClapTinyEmbedder, LogMelStats, build_embedder, self_check
    from embeddings.clap import ClapTiny

    assert {"clap-tiny", "resemblyzer", "codec-mean", "logmel-stats", "mosaic-tiny", "clap-hub"} <= set(EMBEDDERS)
    rep = self_check(build_embedder("logmel-stats"))
    assert rep["dim"] == 128 and rep["frames"] and not rep["text"]
    model = tiny_clap()
    rep = self_check(ClapTinyEmbedder(model=model))
    assert rep == {"name": "clap-tiny", "dim": 16, "sample_rate": 16000, "frames": True, "text": True}
    # release round trip is exact and strict
    path = model.save_pretrained(tmp_path / "clap", extra={"training": {"dataset_revision": "abc123"}})
    loaded = ClapTinyEmbedder(path=path)
    assert loaded.training_revision == "abc123"  # the run warns when it differs from the eval corpus
    wav = [0.1 * torch.randn(8000)]
    torch.testing.assert_close(loaded.embed_audio(wav), ClapTinyEmbedder(model=model).embed_audio(wav))
    assert ClapTiny.from_pretrained(path).cfg == model.cfg
    with pytest.raises(KeyError, match="unknown embedding model"):
        build_embedder("nope")
    with pytest.raises(FileNotFoundError):
        build_embedder("mosaic-tiny", path=tmp_path / "missing")
    with pytest.raises(ValueError, match="mono"):
        LogMelStats().embed_audio([torch.zeros(2, 100)])


def test_mosaic_model_self_check_and_loss():
    from bench.embedding.models import MosaicEmbedder, self_check
    from embeddings.clap import AudioTowerConfig
    from embeddings.mosaic import MosaicConfig, MosaicTiny

    torch.manual_seed(0)
    m = MosaicTiny(MosaicConfig(audio=AudioTowerConfig(channels=(4, 8), width=16, depth=1, heads=2), head_dim=8))
    assert self_check(MosaicEmbedder(model=m))["dim"] == 16
    mel = torch.randn(4, 64, 100)
    out = m.loss(mel, mel.clone(), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad


def test_cache_hits_and_keys(tmp_path):
    from bench.embedding.cache import EmbeddingCache
    from bench.embedding.models import LogMelStats

    class Counting(LogMelStats):
        calls = 0

        def _embed(self, wavs):
            Counting.calls += len(wavs)
            return super()._embed(wavs)

    emb = Counting()
    cache = EmbeddingCache(tmp_path)
    wavs = [0.1 * torch.randn(4000, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    a = cache.embed(emb, wavs, 16000, progress=False)
    assert Counting.calls == 3 and cache.misses == 3 and cache.hits == 0
    b = cache.embed(emb, wavs, 16000, progress=False)
    assert Counting.calls == 3 and cache.hits == 3
    np.testing.assert_array_equal(a, b)
    cache.embed(emb, [wavs[0] * 0.5], 16000, progress=False)  # new content -> new key
    assert Counting.calls == 4
    off = EmbeddingCache(None)
    off.embed(emb, wavs[:1], 16000, progress=False)
    off.embed(emb, wavs[:1], 16000, progress=False)
    assert off.hits == 0 and Counting.calls == 6


# ------------------------------------------------------------- end to end
def test_run_benchmark_end_to_end_with_oracle(tiny_corpus, tmp_path):
    from bench.embedding.run import run_benchmark

    cfg = {
        "corpus": tiny_corpus, "split": "train", "allow_train_split": True, "separator": "oracle:0.5",
        "models": ["logmel-stats", "nope"],
        "out_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "progress": False, "seed": 0,
        "items": {"n": 16, "seed": 3, "stratify": True,
                  "mix": {"segment_s": 1.0, "min_sources": 2, "max_sources": 2, "absent_prob": 0.0}},
        "eval": {"folds": 2, "bootstrap": 3, "min_category_items": 4},
        "clean_clips": {"enabled": True, "max_seconds": 1.0, "exclude_groups": ["gen:tone_0"]},
        "long_audio": {"enabled": True, "duration_s": 3.0, "per_label": 3, "max_labels": 4, "segment_s": [1.0],
                       "aggregations": ["mean", "max", "concat", "attention"], "whole": True,
                       "attention_steps": 10},
    }
    summary = run_benchmark(cfg)
    out = tmp_path / "out"
    assert "unknown embedding model" in summary["models"]["nope"]["skipped"]
    assert summary["meta"]["category_counts"] == {"instrument": 6, "sfx": 5, "speech": 5}  # stratified 16 items
    m = summary["models"]["logmel-stats"]
    cos = m["tasks"]["paired_cosine"]["evaluation"]["all"]
    assert cos["scores"]["reference"]["cosine"] == pytest.approx(1.0)
    assert cos["fidelity"] is not None
    assert {"classification", "clustering", "audio_to_reference", "pair_classification"} <= set(m["tasks"])
    assert "zero_shot" not in m["tasks"]  # no text tower
    assert summary["meta"]["clean_clips"]["excluded"] == 1 and m["clean"]["n"] == 15  # 16 train clips, one group left out
    res = json.loads((out / "results" / "logmel-stats" / "PromptSepStemPairedCosine.json").read_text())
    assert res["task_name"] == "PromptSepStemPairedCosine"
    assert {"reference", "separated", "mixture", "fidelity"} <= set(res["scores"])
    assert all("main_score" in e and "hf_subset" in e for e in res["scores"]["separated"])
    assert {r["aggregation"] for r in m["long_audio"]} == {"mean", "max", "concat", "attention", "whole"}
    assert (out / "report.md").read_text().startswith("# Embedding-fidelity benchmark")
    assert (out / "fidelity.png").is_file() and (out / "long_audio.png").is_file()
    # second run: every embedding comes from the cache
    cfg["long_audio"]["enabled"] = False
    summary2 = run_benchmark(cfg)
    assert summary2["meta"]["cache"]["misses"] == 0 and summary2["meta"]["cache"]["hits"] > 0
    # the train split is refused unless explicitly allowed
    with pytest.raises(ValueError, match="train split"):
        run_benchmark({**cfg, "allow_train_split": False})


def test_separate_items_with_a_real_tiny_separator(tiny_corpus, tmp_path):
    from bench.embedding.data import make_mixture_items, separate_items
    from separation.model import build_separation_model
    from tests.conftest import tiny_model_config

    torch.manual_seed(0)
    ckpt = build_separation_model(tiny_model_config(video=False)).save_pretrained(tmp_path / "sep")
    items = make_mixture_items(tiny_corpus, "train", 3, seed=1, mix={"segment_s": 0.5, "absent_prob": 0.0})
    separate_items(items, str(ckpt), steps=2, batch_size=2, cache_dir=tmp_path / "c", progress=False)
    assert len(items.separated) == 3
    assert all(s.shape == r.shape and torch.isfinite(s).all() for s, r in zip(items.separated, items.reference))
    again = separate_items(make_mixture_items(tiny_corpus, "train", 3, seed=1, mix={"segment_s": 0.5, "absent_prob": 0.0}),
                           str(ckpt), steps=2, batch_size=2, cache_dir=tmp_path / "c", progress=False)
    assert again.info["separator"]["cached"] == 3
    torch.testing.assert_close(again.separated[0], items.separated[0])
    # the refine mode is part of the cache key
    raw = separate_items(make_mixture_items(tiny_corpus, "train", 3, seed=1, mix={"segment_s": 0.5, "absent_prob": 0.0}),
                         str(ckpt), steps=2, batch_size=2, cache_dir=tmp_path / "c", progress=False, refine="none")
    assert raw.info["separator"]["cached"] == 0 and raw.info["separator"]["refine"] == "none"
    assert not torch.allclose(raw.separated[0], items.separated[0])


def test_category_filter_keeps_the_streams_items(tiny_corpus):
    from bench.embedding.data import make_mixture_items

    mix = {"segment_s": 0.5, "absent_prob": 0.0}
    every = make_mixture_items(tiny_corpus, "train", 24, seed=2, mix=mix, progress=False)
    speech = make_mixture_items(tiny_corpus, "train", 3, seed=2, mix=mix, categories=["speech"], progress=False)
    assert set(speech.categories) == {"speech"}
    first = [i for i, c in zip(every.ids, every.categories) if c == "speech"][:3]
    assert speech.ids == first  # the cheap label peek skips nothing it should keep
    k = every.ids.index(first[0])
    torch.testing.assert_close(speech.mixture[0], every.mixture[k])


def test_cli_errors_and_list(tiny_corpus, tmp_path, capsys):
    from bench.embedding.cli import main

    assert main(["list"]) == 0
    assert "clap-tiny" in capsys.readouterr().out
    rc = main(["--corpus", tiny_corpus, "--separator", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
               "--models", "logmel-stats", "--quiet"])
    assert rc == 2
    assert "separator checkpoint not found" in capsys.readouterr().err


def test_train_clap_tiny_steps_and_export(tiny_corpus, tmp_path):
    from hydra import compose, initialize_config_dir

    from bench.embedding.models import ClapTinyEmbedder, self_check
    from bench.embedding.train import CONF_DIR, train_embedding

    overrides = [
        f"corpus={tiny_corpus}", f"out_dir={tmp_path / 'run'}", f"export_dir={tmp_path / 'export'}",
        "model.text_kind=tiny_t5", "model.text_dim=32", "model.text_hidden=32", "model.embed_dim=16",
        "model.audio.channels=[4,8]", "model.audio.width=16", "model.audio.depth=1", "model.audio.heads=2",
        "data.batch_size=4", "data.crop_s=0.5", "trainer.max_steps=2", "trainer.val_every=2", "trainer.ckpt_every=2",
        "trainer.log_every=1", "progress=false", "final_eval.split=test",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train_clap", overrides=overrides)
    result = train_embedding(cfg)
    assert result["global_step"] == 2
    assert "zero_shot_acc" in result["evaluation"]["test"]
    export = tmp_path / "export"
    assert (export / "MODEL_CARD.md").is_file()
    meta = json.loads((export / "config.json").read_text())
    assert meta["kind"] == "promptsep_clap" and meta["training"]["steps"] == 2
    assert len(meta["training"]["train_groups"]) == 16  # tiny corpus: 4 labels x 4 train clips, one group each
    emb = ClapTinyEmbedder(path=export)
    assert self_check(emb)["text"] and emb.training_groups == frozenset(meta["training"]["train_groups"])


def test_fast_v_measure_and_ap_match_sklearn():
    from sklearn.metrics import average_precision_score, v_measure_score

    rng = np.random.default_rng(0)
    for n, k in ((50, 3), (200, 7), (30, 1)):
        a, b = rng.integers(0, k, n), rng.integers(0, max(k, 2), n)
        assert T.v_measure(a, b) == pytest.approx(v_measure_score(a, b), abs=1e-10)
        lab = rng.random(n) < 0.3
        lab[0] = True
        sc = np.round(rng.standard_normal(n), 1)  # with ties
        assert T.average_precision(lab, sc) == pytest.approx(average_precision_score(lab, sc), abs=1e-10)


def test_resemblyzer_speaker_encoder_ships_its_weights():
    pytest.importorskip("resemblyzer")
    from bench.embedding.models import build_embedder, self_check

    emb = build_embedder("resemblyzer")
    rep = self_check(emb)
    assert rep["name"] == "resemblyzer" and rep["dim"] == 256 and not rep["text"]
    # speaker embeddings are unit-norm and the same voice is closer to itself than to noise
    g = torch.Generator().manual_seed(0)
    t = torch.arange(32000) / 16000
    voiced = 0.2 * torch.sin(2 * torch.pi * 140 * t) * (1 + torch.sin(2 * torch.pi * 3 * t))
    e = emb.embed_audio([voiced, voiced * 0.5, 0.1 * torch.randn(32000, generator=g)])
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3), atol=1e-4, rtol=0)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2])
