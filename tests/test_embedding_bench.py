"""Embedding-fidelity benchmark: evaluators with known answers, registry, cache, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


def separable(n_per=20, classes=4, dim=16, noise=0.01, seed=0):
    """Embeddings where class c sits near the unit vector e_c."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per)
    x = np.eye(dim)[y] + noise * rng.standard_normal((len(y), dim))
    return x.astype(np.float32), y


def random_emb(n=200, classes=4, dim=16, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32), rng.integers(0, classes, n)


# ------------------------------------------------------------- mteb tasks
def tone_items(n_per=4, labels=3, sr=16000, seed=0):
    """Items whose label is a tone frequency; mixture = tone + loud noise, separated = reference."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(sr // 4) / sr
    y = [f"tone{c}" for c in range(labels) for _ in range(n_per)]
    ref = [0.3 * torch.sin(2 * torch.pi * (300 + 500 * int(lab[4:])) * t) + 0.01 * torch.randn(len(t), generator=g)
           for lab in y]
    mix = [r + 0.5 * torch.randn(len(t), generator=g) for r in ref]
    return {"reference": ref, "separated": [r.clone() for r in ref], "mixture": mix}, y, sr


def test_fidelity_formula():
    from bench.embedding.fidelity import fidelity

    assert fidelity(0.8, 1.0, 0.6) == pytest.approx(0.5)
    assert fidelity(1.0, 1.0, 0.6) == pytest.approx(1.0)
    assert fidelity(0.6, 1.0, 0.6) == pytest.approx(0.0)
    assert fidelity(0.5, 1.0, 0.6) == pytest.approx(-0.25)
    assert np.isnan(fidelity(0.7, 0.6, 0.6))


def test_mteb_tasks_known_answers_and_bootstrap(tmp_path):
    """Every task runs through mteb.evaluate: clean tones are separable, separated == reference gives
    fidelity 1 with an interval from mteb's predictions."""
    from bench.embedding.models import mteb_model
    from bench.embedding.run import run_mteb
    from bench.embedding.tasks import build_task

    conds, y, sr = tone_items()
    tasks = [build_task(t, conds, sr, y, "rev", folds=3, clustering_boot=5)
             for t in ("classification", "clustering", "audio_to_reference", "pair_classification")]
    encoder, _ = mteb_model("logmel-stats")
    res = run_mteb(encoder, tasks, tmp_path, "promptsep/logmel-stats", n_boot=20, seed=0, alpha=0.05)
    assert encoder.calls > 0  # mteb called the encoder
    for task, r in res.items():
        e = r["evaluation"]["all"]
        ref = e["scores"]["reference"][r["main"]]
        assert ref > 0.9 if task == "clustering" else ref == pytest.approx(1.0), task  # k-means on resamples
        assert e["scores"]["separated"][r["main"]] == pytest.approx(ref), task  # identical stems, paired draws
        assert e["fidelity"] == pytest.approx(1.0) or np.isnan(e["fidelity"]), task
        lo, hi = e["ci"]["mixture"]
        assert lo <= e["scores"]["mixture"][r["main"]] <= hi
    a2r = res["audio_to_reference"]["evaluation"]["all"]
    assert a2r["scores"]["mixture"]["recall_at_1"] < 1.0 and a2r["fidelity_stable"]
    files = sorted(p.name for p in (tmp_path / "mteb").rglob("PromptSep*.json"))
    assert "PromptSepStemToReferenceRetrieval.json" in files
    with pytest.raises(ValueError, match="label texts"):
        build_task("zero_shot", conds, sr, y, "rev")
    pair_info = tasks[3].info["subsets"]["all"]
    i, j = pair_info["pairs"]
    assert len(i) == 4 * len(y) and (i != j).all()
    same = np.asarray(y)[i] == np.asarray(y)[j]
    assert same.mean() == pytest.approx(0.5)  # half positives: each label has 3 other items here


def test_text_tasks_through_mteb_with_a_text_model(tmp_path):
    """zero-shot and text-to-audio run with a text tower (tiny untrained clap-tiny as an mteb model)."""
    from bench.embedding.models import ClapTinyEmbedder, _mteb_encoder_class
    from bench.embedding.run import run_mteb
    from bench.embedding.tasks import build_task

    conds, y, sr = tone_items()
    texts = {lab: f"a {lab} sound" for lab in set(y)}
    tasks = [build_task(t, conds, sr, y, "rev", texts) for t in ("zero_shot", "text_to_audio")]
    encoder = _mteb_encoder_class()(ClapTinyEmbedder(model=tiny_clap()))
    assert encoder.mteb_model_meta.modalities == ["audio", "text"]
    res = run_mteb(encoder, tasks, tmp_path, "promptsep/clap-tiny", n_boot=5, seed=0, alpha=0.05)
    for task in ("zero_shot", "text_to_audio"):
        e = res[task]["evaluation"]["all"]
        assert set(e["scores"]) == {"reference", "separated", "mixture"}
        assert all(0.0 <= v[res[task]["main"]] <= 1.0 for v in e["scores"].values())
        assert e["fidelity_ci"] is None or len(e["fidelity_ci"]) == 2


def test_mteb_models_and_tasks_by_name_fail_clearly_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from bench.embedding.models import mteb_model, mteb_model_metas
    from bench.embedding.run import run_named_mteb_tasks

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    metas = {m.name: m for m in mteb_model_metas()}
    assert {"promptsep/clap-tiny", "promptsep/logmel-stats", "promptsep/resemblyzer"} <= set(metas)
    enc = metas["promptsep/logmel-stats"].load_model()  # ModelMeta.loader builds the mteb encoder
    assert enc.embedder.dim == 128 and enc.mteb_model_meta.name == "promptsep/logmel-stats"
    with pytest.raises(KeyError, match="not an mteb model"):
        mteb_model("no/such-model")
    res = run_named_mteb_tasks(["ESC50"], ["logmel-stats"], {}, tmp_path)
    assert "error" in res["logmel-stats"]  # the hub dataset cannot be fetched: recorded, not raised


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


def test_stage_pooling_ignores_what_padding_holds():
    from embeddings.mosaic import stage_pooling

    g = torch.Generator().manual_seed(0)
    stages = [torch.randn(2, 7, 5, generator=g), torch.randn(2, 7, 3, generator=g)]
    valid = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    out = stage_pooling(stages, valid)
    assert out.shape == (2, 2 * (5 + 3))
    garbage = [s.clone() for s in stages]
    for s in garbage:
        s[1, 3:] = float("nan")
    torch.testing.assert_close(stage_pooling(garbage, valid), out)
    # = pooling the valid prefix alone; blocks [mean_0, max_0, mean_1, max_1], each unit norm / 2
    alone = stage_pooling([s[1:, :3] for s in stages], torch.ones(1, 3, dtype=torch.bool))
    torch.testing.assert_close(out[1:], alone)
    f = torch.nn.functional.normalize
    torch.testing.assert_close(out[1, 5:10] * 2, f(stages[0][1, :3].amax(0), dim=0))
    one = stage_pooling([s[:, :1] for s in stages], torch.ones(2, 1, dtype=torch.bool))
    assert torch.isfinite(one).all()
    with pytest.raises(ValueError, match="valid token"):
        stage_pooling(stages, torch.zeros(2, 7, dtype=torch.bool))
    # with the standard deviation as a third statistic: the population std over valid tokens only
    three = stage_pooling(garbage, valid, ("mean", "max", "std"))
    assert three.shape == (2, 3 * (5 + 3)) and torch.isfinite(three).all()
    torch.testing.assert_close(three[1, 10:15] * 6 ** 0.5, f(stages[0][1, :3].std(0, unbiased=False), dim=0))
    torch.testing.assert_close(three[0, 10:15] * 6 ** 0.5, f(stages[0][0].std(0, unbiased=False), dim=0))
    with pytest.raises(ValueError, match="mean/max/std"):
        stage_pooling(stages, valid, ("median",))


def test_shipped_mosaic_release_declares_the_stages_embedding():
    from embeddings.mosaic import MosaicTiny

    m = MosaicTiny.from_pretrained()
    assert m.cfg.embedding == "stages" and m.dim == 768
    wav = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        e = m.embed_audio(wav, torch.tensor([16000, 6000]))
        fr, _, valid = m.embed_frames(wav, torch.tensor([16000, 6000]))
    assert e.shape == (2, 768) and fr.shape[-1] == 768
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))
    assert not valid[1].all() and fr[1][~valid[1]].abs().max() == 0


def test_mosaic_stages_embedding_pools_every_stage_over_valid_tokens_only(tmp_path):
    from bench.embedding.models import MosaicEmbedder, self_check
    from embeddings.clap import AudioTowerConfig
    from embeddings.mosaic import MosaicConfig, MosaicTiny

    torch.manual_seed(0)
    audio = AudioTowerConfig(channels=(4, 8), width=16, depth=2, heads=2)
    m = MosaicTiny(MosaicConfig(audio=audio, head_dim=8, embedding="stages")).eval()
    assert m.dim == 2 * (m.audio_tower.stem_dim + 2 * 16)
    assert self_check(MosaicEmbedder(model=m))["dim"] == m.dim
    mel = torch.randn(2, 64, 96)
    with torch.no_grad():
        cls, tok, valid = m.audio_tower(mel, torch.tensor([96, 40]))
        stem, layers, valid2 = m.audio_tower.hidden_states(mel, torch.tensor([96, 40]))
        assert len(layers) == 2 and stem.shape[-1] == m.audio_tower.stem_dim
        torch.testing.assert_close(layers[-1][:, 0], cls)  # the last stage is forward()'s output
        torch.testing.assert_close(layers[-1][:, 1:], tok)
        assert torch.equal(valid, valid2)
        e = m.audio_from_mel(mel, torch.tensor([96, 40]))
        assert e.shape == (2, m.dim)
        torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))
        # only valid tokens are pooled: the same clip read whole embeds differently, the full one alike
        whole = m.audio_from_mel(mel, torch.tensor([96, 96]))
        torch.testing.assert_close(whole[0], e[0])
        assert (whole[1] - e[1]).abs().max() > 1e-3
        # mean and max of the stem are the first two blocks
        n_blocks = 2 * (1 + 2)
        s = stem[0, : int(valid[0].sum())]
        torch.testing.assert_close(e[0, : m.audio_tower.stem_dim] * n_blocks ** 0.5,
                                   torch.nn.functional.normalize(s.mean(0), dim=0))
        # a frame's embedding is stage_pooling of that token alone
        from embeddings.mosaic import stage_pooling

        wav = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(2))
        fr, _, fvalid = m.embed_frames(wav)
        fmel, fframes = m.mel(wav)
        fstem, flayers, _ = m.audio_tower.hidden_states(fmel, fframes)
        toks = [fstem] + [h[:, 1:] for h in flayers]
        torch.testing.assert_close(fr[0, 3], stage_pooling([t[:, 3:4] for t in toks], torch.ones(1, 1, dtype=torch.bool))[0])
    with pytest.raises(ValueError, match="embedding"):
        MosaicConfig(embedding="attention")
    cls_model = MosaicTiny(MosaicConfig(audio=audio, head_dim=8))
    assert cls_model.dim == 16  # cls, a release without the key
    # the same weights declared with another embedding are another model to the embedding cache
    m.save_pretrained(tmp_path / "stages")
    cls_model.load_state_dict(m.state_dict())
    cls_model.save_pretrained(tmp_path / "cls")
    fps = {MosaicEmbedder(tmp_path / k).fingerprint() for k in ("stages", "cls")}
    assert len(fps) == 2

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
def test_run_benchmark_end_to_end_with_oracle(tiny_corpus, tmp_path, monkeypatch):
    import mteb

    from bench.embedding.run import run_benchmark

    calls = []
    real_evaluate = mteb.evaluate

    def spy(*args, **kwargs):  # the benchmark's scores must come from mteb.evaluate
        calls.append(args[1])
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(mteb, "evaluate", spy)
    cfg = {
        "corpus": tiny_corpus, "split": "train", "allow_train_split": True, "separator": "oracle:0.5",
        "models": ["logmel-stats", "nope"],
        "out_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "progress": False, "seed": 0,
        "items": {"n": 16, "seed": 3, "stratify": True,
                  "mix": {"segment_s": 1.0, "min_sources": 2, "max_sources": 2, "absent_prob": 0.0}},
        "eval": {"folds": 2, "bootstrap": 3, "clustering_boot": 3, "min_category_items": 5},
        "clean_clips": {"enabled": True, "max_seconds": 1.0, "exclude_groups": ["gen:tone_0"]},
        "long_audio": {"enabled": True, "duration_s": 3.0, "per_label": 3, "max_labels": 4, "segment_s": [1.0],
                       "aggregations": ["mean", "max", "concat", "attention"], "whole": True,
                       "attention_steps": 10, "distractor_fraction": 0.5, "clip_s": 1.0},
    }
    summary = run_benchmark(cfg)
    out = tmp_path / "out"
    assert "unknown embedding model" in summary["models"]["nope"]["skipped"]
    assert summary["meta"]["category_counts"] == {"instrument": 6, "sfx": 5, "speech": 5}  # stratified 16 items
    m = summary["models"]["logmel-stats"]
    assert {"classification", "clustering", "audio_to_reference", "pair_classification"} == set(m["tasks"])
    assert "zero_shot" not in m["tasks"]  # no text tower
    a2r = m["tasks"]["audio_to_reference"]["evaluation"]["all"]
    assert a2r["scores"]["reference"]["recall_at_1"] == pytest.approx(1.0) and a2r["fidelity"] is not None
    assert summary["meta"]["clean_clips"]["excluded"] == 1 and m["clean"]["n"] == 15  # 16 train clips, one group left out
    assert len(calls) == 2  # mixture tasks and clean-clip tasks
    # mteb's own TaskResult files, and the summary's scores are theirs
    files = {p.stem: p for p in (out / "mteb" / "results").rglob("PromptSep*.json")}
    assert {"PromptSepStemClassification", "PromptSepStemToReferenceRetrieval", "PromptSepStemClassificationClean"} <= set(files)
    tr = mteb.TaskResult.from_disk(files["PromptSepStemToReferenceRetrieval"])
    assert tr.mteb_version == mteb.__version__ and set(tr.scores) == {"reference", "separated", "mixture"}
    # one mteb subset per category with enough items, next to all items
    assert {r["hf_subset"] for r in tr.scores["separated"]} == {"all", "instrument", "sfx", "speech"}
    assert m["tasks"]["audio_to_reference"]["evaluation"]["speech"]["n"] == 5
    # the tiny corpus has one speech and one instrument label: no probe / clusters / pairs for those subsets
    assert set(m["tasks"]["classification"]["evaluation"]) == {"all", "sfx"}
    for cond in ("reference", "separated", "mixture"):
        row = next(r for r in tr.scores[cond] if r["hf_subset"] == "all")
        assert a2r["scores"][cond]["recall_at_1"] == pytest.approx(row["main_score"])
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


def test_splits_side_by_side(tiny_corpus, tmp_path):
    from bench.embedding.run import run_benchmark

    cfg = {"corpus": tiny_corpus, "split": ["valid", "test", "test_in"], "separator": "oracle:0.3",
           "models": ["logmel-stats"], "out_dir": str(tmp_path / "o"), "cache_dir": None, "progress": False,
           "tasks": ["audio_to_reference"],
           "items": {"n": 6, "seed": 1, "mix": {"segment_s": 0.5, "max_sources": 2, "absent_prob": 0.0}},
           "eval": {"bootstrap": 5}, "clean_clips": {"enabled": False}, "long_audio": {"enabled": False}}
    res = run_benchmark(cfg)
    assert set(res["splits"]) == {"valid", "test"} and res["missing_splits"] == ["test_in"]
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| valid | test |" in report and "audio_to_reference" in report and "skipped): test_in" in report
    assert (tmp_path / "o" / "test" / "report.md").is_file()


def test_long_recordings_with_distractors(tiny_corpus):
    from bench.embedding.data import make_long_recordings

    pure = make_long_recordings(tiny_corpus, "train", 4.0, 1, 2, seed=0)
    mixed = make_long_recordings(tiny_corpus, "train", 4.0, 1, 2, seed=0, distractor_fraction=0.5, clip_s=1.0)
    assert pure[1] == mixed[1] and all(w.shape == (4 * pure[3],) for w in mixed[0])
    assert not torch.allclose(pure[0][0], mixed[0][0])


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
