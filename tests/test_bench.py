"""Batch separation benchmark: metric cross-checks, outputs, kill-and-resume, bad items, speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import tiny_model_config

ROOT = Path(__file__).resolve().parent.parent
NFE = ["2"]
SYSTEMS = ["mixture", "oracle_irm", "oracle_codec", "oracle_codec_wiener", "separator_nfe2", "separator_raw_nfe2"]
N_ITEMS = 4  # 2 main items + 1 two-source pair prompted with text and with text+span


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random separator (no video tower) saved as a release folder."""
    from separation.model import build_separation_model

    torch.manual_seed(0)
    model = build_separation_model(tiny_model_config(video=False)).eval()
    torch.nn.init.normal_(model.dit.out_proj.weight, std=0.05)  # a non-trivial random model
    return str(model.save_pretrained(tmp_path_factory.mktemp("bench_ckpt") / "tiny"))


@pytest.fixture(scope="module")
def manifest(tiny_corpus, tmp_path_factory):
    """4 items from the tiny corpus's test split (2 main, 1 two-source pair x 2 prompt kinds), via the CLI."""
    from bench.cli import main

    path = tmp_path_factory.mktemp("bench_manifest") / "items.jsonl"
    rc = main(["manifest", "--corpus", tiny_corpus, "--split", "test", "--n", "2", "--n-pairs", "1",
               "--pair-kinds", "text", "text+span", "--segment-s", "0.5", "--seed", "0", "--absent-prob", "0",
               "--out", str(path)])
    assert rc == 0
    return str(path)


def _settings(manifest, checkpoint, out, **kw):
    return {"manifest": manifest, "checkpoint": checkpoint, "out_dir": str(out), "nfe": [2], "batch_size": 2,
            "threads": 1, "bootstrap": {"samples": 50, "seed": 0}, **kw}


@pytest.fixture(scope="module")
def full_run(manifest, checkpoint, tmp_path_factory):
    """An uninterrupted run through ``promptsep bench separation`` (Hydra config + Lightning predict loop)."""
    from bench.cli import main

    out = tmp_path_factory.mktemp("bench_full")
    rc = main(["separation", "--manifest", manifest, "--checkpoint", checkpoint, "--out", str(out), "--nfe", *NFE,
               "--batch-size", "2", "trainer.threads=1", "bench.bootstrap.samples=50"])
    assert rc == 0
    return out


def _tiny_judge(path) -> str:
    from judge.model import JudgeConfig, build_judge
    from prompts.text import TextEncoderConfig

    torch.manual_seed(0)
    cfg = JudgeConfig(codec=tiny_model_config(video=False).codec, text=TextEncoderConfig(kind="tiny_t5", max_length=16),
                      width=32, heads=2, depth_audio=1, depth_fusion=1, dropout=0.0, bands=4)
    return str(build_judge(cfg).eval().save_pretrained(path))


def _rows(out):
    return [json.loads(line) for line in (Path(out) / "results.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------- metrics
def test_si_sdr_and_sdr_match_mir_eval():
    """The project's SI-SDR and SDR agree with mir_eval's BSS-eval on a few signals."""
    import warnings

    from mir_eval.separation import _bss_decomp_mtifilt, _bss_source_crit, bss_eval_sources

    from separation import metrics as M

    rng = np.random.default_rng(0)
    n = 2000
    ref = np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode="same")
    estimates = [
        ref + 0.3 * rng.standard_normal(n),
        0.5 * ref + 0.1 * rng.standard_normal(n),
        np.convolve(ref, [0.6, 0.3, 0.1], mode="same") + 0.2 * rng.standard_normal(n),
        rng.standard_normal(n),
    ]
    for est in estimates:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sdr_ref = bss_eval_sources(ref[None], est[None])[0][0]
        # SI-SDR is BSS-eval with a 1-tap distortion filter (projection on the scaled reference).
        si_ref = _bss_source_crit(*_bss_decomp_mtifilt(ref[None], est, 0, 1))[0]
        t_est, t_ref = torch.from_numpy(est), torch.from_numpy(ref)
        assert float(M.sdr(t_est, t_ref)) == pytest.approx(sdr_ref, abs=1e-3)
        assert float(M.si_sdr(t_est, t_ref, zero_mean=False)) == pytest.approx(si_ref, abs=1e-3)


def test_item_metrics_baselines_and_oracle_mask():
    from bench.manifest import LoadedItem
    from bench.oracles import ideal_ratio_mask
    from bench.separation import item_metrics
    from separation import metrics as M

    g = torch.Generator().manual_seed(0)
    t = torch.arange(8000) / 16000
    target = (0.5 * torch.sin(2 * torch.pi * 440 * t))[None]
    noise = 0.3 * torch.randn(1, 8000, generator=g)
    li = LoadedItem({"id": "x"}, target + noise, target, 16000, True, "tone", None, None, "tone")
    mix_si = float(M.si_sdr(li.mixture, target))
    m = item_metrics(li.mixture, torch.zeros_like(target), li, mix_si)
    assert m["si_sdri"] == pytest.approx(0.0, abs=1e-4) and m["consistency_db"] == 100.0
    est, res = ideal_ratio_mask(li.mixture, target)
    irm = item_metrics(est, res, li, mix_si)
    assert irm["si_sdri"] > 10 and irm["consistency_db"] > 60 and irm["mrstft"] < m["mrstft"]
    # the level of the estimate against the reference, and the residual against the true interferers
    half = item_metrics(0.5 * target, li.mixture - 0.5 * target, li, mix_si)
    assert half["level_db"] == pytest.approx(-6.02, abs=0.01)
    assert irm["residual_si_sdr"] > 10 > half["residual_si_sdr"]
    absent = LoadedItem({"id": "y"}, noise, torch.zeros_like(noise), 16000, False, "tone", None, None, "tone")
    a = item_metrics(0.1 * noise, None, absent, None)
    assert a["si_sdr"] is None and a["absent_energy_db"] == pytest.approx(-20.0, abs=1e-4)


def test_bootstrap_ci():
    from bench.report import bootstrap_ci

    st = bootstrap_ci([1.0, 2.0, 3.0, 4.0, None, float("nan")], samples=200, seed=0)
    assert st["n"] == 4 and st["mean"] == 2.5 and st["lo"] <= 2.5 <= st["hi"] and st["lo"] >= 1.0
    assert bootstrap_ci([])["mean"] is None


# ---------------------------------------------------------------------- runs
def test_manifest_items(manifest):
    from bench.manifest import load_manifest, read_item

    items = load_manifest(manifest)
    assert [it.get("subset") for it in items] == ["main", "main", "pair_cross", "pair_cross"]
    pair = read_item(items[2])
    assert len(items[2]["sources"]) == 2 and pair.present
    assert items[2]["source_labels"][0] != items[2]["source_labels"][1]
    # One pair, two prompt kinds, the same stems: a paired comparison of span prompts over text.
    assert [it["prompt_kind"] for it in items[2:]] == ["text", "text+span"]
    assert items[2]["scene"] == items[3]["scene"] and items[2]["sources"] == items[3]["sources"]
    assert pair.spans is None and read_item(items[3]).spans
    for it in items:
        li = read_item(it)
        assert li.mixture.shape == li.target.shape and li.sample_rate == 16000
        assert it["prompt_kind"] in ("text", "span", "text+span") and it["split"] == "test"


def test_manifest_is_deterministic_and_held_out(tiny_corpus, manifest, tmp_path, monkeypatch):
    """The same seed gives the same manifest and audio; train is refused (builder, CLI and benchmark)."""
    from bench.cli import main
    from bench.manifest import build_manifest
    from promptsep.errors import InputError
    from separation.data import mixing

    splits = []
    orig = mixing.MixtureDataset.__init__

    def spy(self, root, split, *a, **kw):
        splits.append(split)
        orig(self, root, split, *a, **kw)

    monkeypatch.setattr(mixing.MixtureDataset, "__init__", spy)
    again = tmp_path / "items.jsonl"
    build_manifest(tiny_corpus, again, "test", n=2, seed=0, n_pairs=1, segment_s=0.5, absent_prob=0.0,
                   pair_kinds=("text", "text+span"))
    assert set(splits) == {"test"}
    assert again.read_text() == Path(manifest).read_text()
    audio = sorted(p.name for p in (Path(manifest).parent / "items_audio").iterdir())
    assert audio == sorted(p.name for p in (tmp_path / "items_audio").iterdir()) and audio
    for name in audio:  # same audio (to the last PCM step: resampling may round differently across runs)
        a, sr_a = sf.read(tmp_path / "items_audio" / name, dtype="float32")
        b, sr_b = sf.read(Path(manifest).parent / "items_audio" / name, dtype="float32")
        assert sr_a == sr_b and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=2.0 / 32768)
    with pytest.raises(InputError, match="never from the train split"):
        build_manifest(tiny_corpus, tmp_path / "train.jsonl", "train", n=1)
    with pytest.raises(SystemExit):
        main(["manifest", "--corpus", tiny_corpus, "--split", "train", "--out", str(tmp_path / "t.jsonl")])
    assert not (tmp_path / "train.jsonl").exists()
    # A manifest whose items say they come from train is refused by the benchmark.
    from bench.separation import run_benchmark

    bad = tmp_path / "from_train.jsonl"
    first = json.loads(Path(manifest).read_text().splitlines()[0])
    base = Path(manifest).parent
    bad.write_text(json.dumps({**first, "split": "train", "mixture": str(base / first["mixture"]),
                               "target": str(base / first["target"])}) + "\n")
    with pytest.raises(ValueError, match="train split"):
        run_benchmark({"manifest": str(bad), "checkpoint": "unused", "out_dir": str(tmp_path / "o")})


def test_run_writes_all_outputs(full_run):
    rows = _rows(full_run)
    assert len(rows) == N_ITEMS * len(SYSTEMS) and all(r["status"] == "ok" for r in rows)
    assert [r["system"] for r in rows[: len(SYSTEMS)]] == SYSTEMS
    for r in rows:
        for key in ("si_sdr", "si_sdri", "sdr", "snr", "mrstft", "consistency_db", "seconds", "rtf"):
            assert r[key] is not None, (r["id"], r["system"], key)
    summary = json.loads((full_run / "summary.json").read_text())
    assert summary["n_items"] == N_ITEMS and summary["n_failed_items"] == 0 and summary["systems"] == SYSTEMS
    assert any(g.startswith("category=") for g in summary["groups"])
    assert any(g.startswith("prompt_kind=") for g in summary["groups"])
    st = summary["groups"]["all"]["oracle_irm"]["present"]["si_sdri"]
    assert st["n"] == N_ITEMS and st["lo"] <= st["mean"] <= st["hi"]
    assert [(c["nfe"], c["refine"]) for c in summary["nfe_curve"]] == [(2, "wiener"), (2, "none")]
    by = {(r["id"], r["system"]): r for r in rows}
    for iid in {r["id"] for r in rows}:
        # The refined output and the oracle codec + Wiener add back up to the mixture exactly.
        assert by[(iid, "separator_nfe2")]["consistency_db"] > 60 and by[(iid, "oracle_codec_wiener")]["consistency_db"] > 60
        assert by[(iid, "separator_nfe2")]["refine"] == "wiener" and by[(iid, "separator_raw_nfe2")]["refine"] == "none"
        assert by[(iid, "separator_raw_nfe2")]["si_sdr"] != by[(iid, "separator_nfe2")]["si_sdr"]
    report = (full_run / "report.md").read_text()
    assert "per category" in report and "oracle_codec" in report and "promptsep bench separation" in report
    for name in ("plot_category.png", "plot_nfe.png"):
        assert (full_run / name).read_bytes()[:4] == b"\x89PNG"
    # Model-card figures: per category / prompt kind beside the mixture and the oracle codec, the pair text bar,
    # the paired span gain, absent targets, codec round trip.
    card = json.loads((full_run / "model_card.json").read_text())
    assert card["nfe"] == 2 and card["systems"]["separator"] == "separator_nfe2"
    assert card["systems"]["separator_raw"] == "separator_raw_nfe2"
    assert sum(c["n"] for c in card["per_category"].values()) == 2 == sum(c["n"] for c in card["per_prompt_kind"].values())
    for cell in card["per_category"].values():
        assert cell["mixture_si_sdr"]["mean"] is not None and cell["oracle_codec_si_sdri"]["mean"] is not None
        assert cell["separator_si_sdri"]["mean"] is not None and cell["separator_raw_si_sdri"]["mean"] is not None
    assert set(card["pair_cross"]) == {"text", "text+span"} and card["pair_cross"]["text"]["n"] == 1
    gain = card["span_gain"]["separator"]["text+span - text"]
    assert gain["n"] == 1 and gain["mean"] == pytest.approx(
        by[(f"{card_scene(rows)}.text+span", "separator_nfe2")]["si_sdri"] - by[(f"{card_scene(rows)}.text", "separator_nfe2")]["si_sdri"])
    assert "text_si_sdri_pair_cross" in card["bar"]["separator"] and card["codec_round_trip"]["si_sdr"]["n"] == N_ITEMS
    md = (full_run / "model_card.md").read_text()
    assert "Per category" in md and "oracle codec" in md and "Absent targets" in md and "promptsep bench separation" in md


def card_scene(rows):
    return next(r["scene"] for r in rows if r.get("subset") == "pair_cross")


def test_bench_systems_match_the_separator(full_run, manifest, checkpoint):
    """`separator_nfeK` is what Separator(refine="wiener") returns, `separator_raw_nfeK` refine="none"."""
    from bench.manifest import load_manifest, read_item
    from separation import metrics as M
    from separation.separator import Separator

    rows = {(r["id"], r["system"]): r for r in _rows(full_run)}
    li = read_item(load_manifest(manifest)[0])
    sep = Separator.from_pretrained(checkpoint)
    for refine, system in (("wiener", "separator_nfe2"), ("none", "separator_raw_nfe2")):
        out = sep.separate(li.mixture, li.sample_rate, text=li.text, spans=li.spans, steps=2, seed=0, refine=refine)
        si = float(M.si_sdr(out.target.reshape(-1).double(), li.target.reshape(-1).double()))
        assert rows[(li.item["id"], system)]["si_sdr"] == pytest.approx(si, abs=1e-3)


def test_kill_and_resume_equals_uninterrupted_run(full_run, manifest, checkpoint, tmp_path):
    """Kill a run after its first item (and one row of the second), rerun, compare with the full run."""
    out = tmp_path / "resumed"
    settings = _settings(manifest, checkpoint, out)
    stop_after = len(SYSTEMS) + 1
    script = (
        "import json, sys, time\n"
        "import bench.separation as bs\n"
        "orig = bs.ResultWriter.append\n"
        "n = [0]\n"
        "def append(self, row):\n"
        "    orig(self, row)\n"
        "    n[0] += 1\n"
        f"    if n[0] == {stop_after}:\n"
        "        time.sleep(600)\n"
        "bs.ResultWriter.append = append\n"
        "bs.run_benchmark(json.loads(sys.argv[1]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(settings)], cwd=str(ROOT), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if results.is_file() and len(results.read_text().splitlines()) >= stop_after:
                break
            if proc.poll() is not None:
                pytest.fail(f"benchmark subprocess exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        else:
            pytest.fail("the benchmark subprocess wrote no results in time")
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    partial = _rows(out)
    assert len(partial) == stop_after and not (out / "summary.json").exists()

    from bench.separation import METRIC_FIELDS, run_benchmark

    run_benchmark(_settings(manifest, checkpoint, out))
    resumed, full = _rows(out), _rows(full_run)
    assert [(r["id"], r["system"]) for r in resumed] == [(r["id"], r["system"]) for r in full]
    for a, b in zip(resumed, full):
        assert a["status"] == b["status"] == "ok"
        for key in METRIC_FIELDS:
            if b.get(key) is None:
                assert a.get(key) is None, (a["id"], a["system"], key)
            else:
                assert a[key] == pytest.approx(b[key], abs=1e-4), (a["id"], a["system"], key)


def test_bad_items_are_recorded_and_the_run_goes_on(manifest, checkpoint, tmp_path):
    good = json.loads(Path(manifest).read_text().splitlines()[0])
    base = Path(manifest).parent
    for key in ("mixture", "target"):
        good[key] = str(base / good[key])
    short = tmp_path / "short.wav"
    sf.write(str(short), np.zeros(100, dtype=np.float32) + 0.1, 16000)
    lines = [
        json.dumps({**good, "id": "missing", "mixture": str(tmp_path / "nope.wav")}),
        json.dumps(good),
        json.dumps({**good, "id": "mismatch", "target": str(short)}),
        "{not json",
    ]
    m = tmp_path / "bad.jsonl"
    m.write_text("\n".join(lines) + "\n")
    from bench.separation import run_benchmark

    out = tmp_path / "out"
    judge = _tiny_judge(tmp_path / "judge")
    res = run_benchmark(_settings(str(m), checkpoint, out, use_lightning=False, plots=False, judge=judge))
    rows = _rows(out)
    failed = {r["id"]: r["reason"] for r in rows if r["status"] == "failed"}
    assert set(failed) == {"missing", "mismatch", "line4"}
    assert "not found" in failed["missing"] and "length mismatch" in failed["mismatch"]
    assert "not valid JSON" in failed["line4"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert sorted(r["system"] for r in ok) == sorted(SYSTEMS) and {r["id"] for r in ok} == {good["id"]}
    assert all(1.0 <= r["judge_overall"] <= 5.0 for r in ok)  # judge scores where a judge is given
    summary = json.loads(Path(res["summary"]).read_text())
    assert summary["n_failed_items"] == 3 and "## Failed (3)" in Path(res["report"]).read_text()
    # A rerun finds everything finished (failed items are recorded, not retried) and changes nothing.
    before = (out / "results.jsonl").read_text()
    run_benchmark(_settings(str(m), checkpoint, out, use_lightning=False, plots=False, judge=judge))
    assert (out / "results.jsonl").read_text() == before


def test_speed_quick(checkpoint, tmp_path):
    from bench.cli import main

    out = tmp_path / "speed"
    judge = _tiny_judge(tmp_path / "judge")
    assert main(["speed", "--checkpoint", checkpoint, "--out", str(out), "--quick", "--in-process",
                 "--threads", "1", "--candidates", "3", "--judge", judge, "--method", "euler", "--text", "trumpet",
                 "--variants"]) == 0
    rep = json.loads((out / "speed.json").read_text())
    # a known label's prompt: the re-ranking row times prompt-variant candidates
    assert rep["text"] == "trumpet" and rep["configs"][-1]["candidate_texts"] == ["trumpet", "a trumpet", "trumpet playing"]
    assert [(c["audio_s"], c["nfe"], c["candidates"]) for c in rep["configs"]] == [
        (1.0, 2, 1), (1.0, 4, 1), (2.0, 2, 1), (4.0, 2, 1), (1.0, 2, 3)]
    # the re-ranking row: three separations and three judge passes, timed against one separation
    assert rep["rerank"][0]["candidates"] == 3 and rep["rerank"][0]["time_ratio_vs_one"] > 1.0
    assert rep["configs"][-1]["method"] == "euler"  # the sampler of every row is recorded
    assert "best of 3" in (out / "speed.md").read_text()
    # a missing judge is refused before anything is timed
    assert main(["speed", "--checkpoint", checkpoint, "--out", str(tmp_path / "nojudge"), "--quick", "--in-process",
                 "--candidates", "2", "--judge", str(tmp_path / "no_judge")]) == 2
    assert not (tmp_path / "nojudge" / "speed.json").exists()
    for c in rep["configs"]:
        assert c["median_s"] > 0 and c["rtf"] > 0 and c["peak_delta_mb"] >= 0
    assert rep["configs"][3]["chunks"] > 1  # the long input is chunked
    assert rep["length_sweep"]["time_ratio"] > 0
    assert "Length sweep" in (out / "speed.md").read_text()


def test_cli_dispatch():
    from bench.cli import COMMANDS, main

    assert main(["--help"]) == 0 and main(["no-such-command"]) == 2
    assert COMMANDS["embedding"] == "bench.embedding.cli:main"


# ---------------------------------------------------------------------- source-disjoint vs in-distribution
@pytest.fixture(scope="module")
def corpus_in(tiny_corpus, tmp_path_factory):
    """The tiny corpus with its valid clips relabelled ``test_in`` (an in-distribution test split)."""
    root = tmp_path_factory.mktemp("corpus_in")
    rows = [json.loads(line) for line in (Path(tiny_corpus) / "manifest.jsonl").read_text().splitlines()]
    for r in rows:
        r["split"] = "test_in" if r["split"] == "valid" else r["split"]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "labels.json").write_text((Path(tiny_corpus) / "labels.json").read_text())
    os.symlink(Path(tiny_corpus) / "clips", root / "clips")
    return str(root)


def test_manifest_accepts_the_new_splits(corpus_in, tmp_path):
    from bench.cli import main
    from bench.manifest import EVAL_SPLITS, load_manifest

    assert set(EVAL_SPLITS) == {"valid", "test", "valid_in", "test_in"}
    out = tmp_path / "in.jsonl"
    assert main(["manifest", "--corpus", corpus_in, "--split", "test_in", "--n", "2", "--n-pairs", "1",
                 "--segment-s", "0.5", "--absent-prob", "0", "--out", str(out)]) == 0
    items = load_manifest(out)
    assert items and {it["split"] for it in items} == {"test_in"}
    assert all(it["id"].startswith("test_in-") for it in items)
    assert main(["manifest", "--corpus", corpus_in, "--split", "valid_in", "--out", str(tmp_path / "v.jsonl")]) == 2


def test_side_by_side_of_two_splits(corpus_in, manifest, checkpoint, tmp_path):
    """Two benchmark runs (test, test_in) -> one table whose cells are the runs' own figures."""
    from bench.card import side_by_side, side_by_side_md
    from bench.cli import main
    from bench.manifest import build_manifest
    from bench.report import bootstrap_ci
    from bench.separation import run_benchmark

    m_in = tmp_path / "in" / "items.jsonl"
    build_manifest(corpus_in, m_in, "test_in", n=2, seed=0, n_pairs=1, segment_s=0.5, absent_prob=0.0,
                   pair_kinds=("text", "text+span"))
    runs = {}
    for name, man in (("test", manifest), ("test_in", str(m_in))):
        runs[name] = tmp_path / f"run_{name}"
        run_benchmark(_settings(man, checkpoint, runs[name], use_lightning=False, plots=False, card_nfe=2,
                                baselines=["mixture", "oracle_irm"]))
    table = side_by_side(runs, samples=50)
    assert table["columns"] == ["test", "test_in"] and table["card_nfe"] == 2
    rows = {(r["figure"].split(" [")[0].split(",")[0], r["system"]): r for r in table["rows"]}
    text = rows[("text-prompted SI-SDRi", "separator_nfe2")]
    for name, folder in runs.items():
        want = [r["si_sdri"] for r in _rows(folder) if r["system"] == "separator_nfe2"
                and r["subset"] == "pair_cross" and r["prompt_kind"] == "text"]
        assert text["cells"][name] == bootstrap_ci(want, 50, 0, 0.05) and text["cells"][name]["n"] == 1
    assert ("text-prompted SI-SDRi", "oracle_irm") in rows
    gain = next(r for r in table["rows"] if r["figure"].startswith("span gain on pair_cross: text+span"))
    assert all(gain["cells"][c]["n"] == 1 for c in runs)
    md = side_by_side_md(table)
    assert "test (source-disjoint)" in md and "test_in (in-distribution)" in md
    out = tmp_path / "sbs"
    assert main(["side-by-side", "--run", f"test={runs['test']}", "--run", f"test_in={runs['test_in']}",
                 "--out", str(out), "--bootstrap", "50"]) == 0
    assert json.loads((out / "side_by_side.json").read_text())["columns"] == ["test", "test_in"]
    assert main(["side-by-side", "--run", f"test={tmp_path / 'missing'}", "--out", str(out)]) == 2
    assert main(["side-by-side", "--run", "no-equals-sign", "--out", str(out)]) == 2


def test_judge_evaluate_side_by_side_with_cis(corpus_in, tmp_path):
    from judge.evaluate import main

    judge = _tiny_judge(tmp_path / "judge")
    out = tmp_path / "je"
    assert main(["--checkpoint", judge, "--corpus", corpus_in, "--split", "test,test_in", "--groups", "3",
                 "--per-mixture", "3", "--segment-s", "0.5", "--silent-groups", "0", "--clap", str(tmp_path / "none"),
                 "--bootstrap", "30", "--threads", "1", "--out", str(out)]) == 0
    res = json.loads((out / "judge_eval.json").read_text())
    assert res["splits"] == ["test", "test_in"]
    for split in ("test", "test_in"):
        r = res["results"][split]
        assert r["split"] == split and r["groups"] == 3 and r["bootstrap"]["unit"] == "mixture"
        ov = r["correlations"]["overall"]["judge"]
        if ov["pcc"] == ov["pcc"]:  # defined (not a constant score)
            assert ov["pcc_ci"] is None or ov["pcc_ci"][0] <= ov["pcc_ci"][1]
        assert (out / f"judge_eval_{split}.json").is_file()
    md = (out / "judge_eval.md").read_text()
    assert "test (source-disjoint) PCC" in md and "test_in (in-distribution) PCC" in md
    assert main(["--checkpoint", judge, "--corpus", corpus_in, "--split", "train", "--out", str(out)]) == 2


def test_clap_clean_clips_side_by_side(corpus_in, tmp_path):
    from bench.clap_eval import evaluate_split, main
    from embeddings.clap import AudioTowerConfig, ClapTiny, ClapTinyConfig

    cfg = ClapTinyConfig(audio=AudioTowerConfig(channels=(4, 8), width=16, depth=1, heads=2), embed_dim=16,
                         text_kind="tiny_t5", text_dim=32, text_hidden=32)
    torch.manual_seed(1)
    ckpt = ClapTiny(cfg).eval().save_pretrained(tmp_path / "clap")
    model = ClapTiny.from_pretrained(ckpt)
    r = evaluate_split(model, corpus_in, "test_in", bootstrap=50, progress=False)
    n = sum(1 for line in (Path(corpus_in) / "manifest.jsonl").read_text().splitlines()
            if json.loads(line)["split"] == "test_in")
    assert r["clips"] == n and 0.0 <= r["zero_shot_acc"] <= 1.0
    lo, hi = r["zero_shot_acc_ci"]
    assert lo <= r["zero_shot_acc"] <= hi and r["t2a_recall_at_5_ci"] is not None
    assert sum(c["clips"] for c in r["per_category"].values()) == n
    # clips of sources a release was trained on are left out of the "unseen" figures
    assert evaluate_split(model, corpus_in, "test_in", bootstrap=0, progress=False,
                          seen_sources={"generated"})["unseen_sources"] is None
    un = evaluate_split(model, corpus_in, "test_in", bootstrap=0, progress=False, seen_sources={"other"})
    assert un["unseen_sources"]["zero_shot_acc"] == r["zero_shot_acc"] and un["unseen_sources"]["clips"] == n
    out = tmp_path / "ce"
    assert main(["--checkpoint", str(ckpt), "--corpus", corpus_in, "--split", "test,test_in", "--bootstrap", "20",
                 "--out", str(out)]) == 0
    assert set(json.loads((out / "clap_eval.json").read_text())["releases"]["clap"]["results"]) == {"test", "test_in"}
    assert "test_in (in-distribution)" in (out / "clap_eval.md").read_text()
    assert main(["--checkpoint", str(ckpt), "--corpus", corpus_in, "--split", "train", "--out", str(out)]) == 2
    assert main(["--clap", str(ckpt), "--corpus", corpus_in, "--out", str(out)]) == 2  # not NAME=DIR
    # recall@k CI over resampled clips (the recall recomputed on each resample): same point figure
    rc = evaluate_split(model, corpus_in, "test_in", bootstrap=50, progress=False, recall_ci="clips")
    assert rc["t2a_recall_at_5"] == r["t2a_recall_at_5"] and rc["zero_shot_acc_ci"] == r["zero_shot_acc_ci"]
    assert rc["t2a_recall_at_5_ci"][0] <= rc["t2a_recall_at_5"] <= rc["t2a_recall_at_5_ci"][1]


def test_clap_eval_several_named_releases_and_logmel_baseline(tiny_corpus, tmp_path):
    from bench.clap_eval import main
    from embeddings.clap import AudioTowerConfig, ClapTiny, ClapTinyConfig
    from embeddings.mosaic import MosaicConfig, MosaicTiny

    tower = AudioTowerConfig(channels=(4, 8), width=16, depth=1, heads=2)
    cfg = ClapTinyConfig(audio=tower, embed_dim=16, text_kind="tiny_t5", text_dim=32, text_hidden=32)
    torch.manual_seed(1)
    a = ClapTiny(cfg).eval().save_pretrained(tmp_path / "a")
    torch.manual_seed(2)
    b = ClapTiny(cfg).eval().save_pretrained(tmp_path / "b")
    m = MosaicTiny(MosaicConfig(audio=tower, head_dim=8)).eval().save_pretrained(tmp_path / "m")
    out = tmp_path / "o"
    assert main(["--clap", f"one={a}", "--clap", f"two={b}", "--mosaic", f"ssl={m}", "--logmel", "--corpus",
                 tiny_corpus, "--split", "valid,test", "--bootstrap", "20", "--recall-ci", "clips",
                 "--out", str(out)]) == 0
    res = json.loads((out / "clap_eval.json").read_text())
    assert list(res["releases"]) == ["one", "two", "ssl"]
    for name in ("one", "two"):
        assert set(res["releases"][name]["results"]) == {"valid", "test"}
        assert all("zero_shot_acc" in r for r in res["releases"][name]["results"].values())
    assert [r["checkpoint"] for r in res["releases"].values()] == [str(a), str(b), str(m)]
    assert all("probe_oof_acc" in r for r in res["releases"]["ssl"]["results"].values())
    assert set(res["logmel_stats"]) == {"valid", "test"}
    assert all("probe_acc" in r and "probe_oof_acc" in r for r in res["logmel_stats"].values())
    md = (out / "clap_eval.md").read_text()
    assert "### one" in md and "### two" in md and "### ssl" in md and "log-mel statistics" in md
    assert "valid (source-disjoint)" in md
    assert main(["--clap", f"one={a}", "--clap", f"one={b}", "--corpus", tiny_corpus, "--out", str(out)]) == 2


def test_clean_clip_probe_of_an_audio_only_release(corpus_in, tmp_path):
    from bench.clap_eval import main
    from embeddings.clap import AudioTowerConfig
    from embeddings.mosaic import MosaicConfig, MosaicTiny

    torch.manual_seed(0)
    ckpt = MosaicTiny(MosaicConfig(audio=AudioTowerConfig(channels=(4, 8), width=16, depth=1, heads=2),
                                   head_dim=8)).eval().save_pretrained(tmp_path / "mosaic")
    assert main(["--checkpoint", str(ckpt), "--corpus", corpus_in, "--split", "test,test_in", "--out",
                 str(tmp_path / "m")]) == 0
    res = json.loads((tmp_path / "m" / "clap_eval.json").read_text())["releases"]["mosaic"]["results"]
    # (a 1-clip-per-label toy split leaves the 5-fold probe undefined: NaN)
    assert all("probe_acc" in r and "zero_shot_acc" not in r for r in res.values())
    assert "probe accuracy" in (tmp_path / "m" / "clap_eval.md").read_text()
