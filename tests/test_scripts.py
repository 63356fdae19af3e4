"""Maintenance scripts run on real (tiny) releases."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_separator_codec_linearises_the_means_and_measures_mixture_statistics(tiny_corpus, tmp_path, capsys):
    from separation.codec import DACVAE, CodecConfig, build_codec, compute_latent_stats
    from separation.data.mixing import MixConfig, MixtureDataset

    torch.manual_seed(0)
    cfg = CodecConfig(sample_rate=16000, encoder_dim=4, encoder_rates=(4, 8), latent_dim=16, decoder_dim=16,
                      decoder_rates=(8, 4), linear_path=True, dac_mean=True)
    src = build_codec(cfg).eval()
    for p in src.parameters():
        torch.nn.init.normal_(p, std=0.05)  # a DAC encoder that adds to the means
    src.save_pretrained(tmp_path / "src")
    main = _script("separator_codec").main
    args = ["--corpus", tiny_corpus, "--check-items", "4", "--items", "6", "--segment-s", "1.0", "--seed", "3"]
    assert main([str(tmp_path / "src"), str(tmp_path / "dst"), *args]) == 0
    report = json.loads(capsys.readouterr().out.rsplit("wrote", 1)[0])
    assert set(report["round_trip"]) == {"dac_mean", "linear_mean"} and "old_variance" in report["mixture_stats"]
    dst = DACVAE.from_pretrained(tmp_path / "dst")
    assert not dst.dac_mean
    sd_src, sd_dst = src.state_dict(), dst.state_dict()
    assert all(torch.equal(sd_src[k], sd_dst[k]) for k in sd_src if "latent_" not in k)
    # the statistics are those of the train mixtures, targets and residuals
    ds = MixtureDataset(tiny_corpus, "train", MixConfig(segment_s=1.0, p_video=0.0, video=False), seed=3, length=6)
    mean, std = compute_latent_stats(dst, (torch.stack([ds[i]["mixture"], ds[i]["target"], ds[i]["residual"]])
                                           for i in range(6)))
    torch.testing.assert_close(dst.latent_mean, mean)
    torch.testing.assert_close(dst.latent_std, std)
    # a codec with linear means already: only the statistics step runs
    assert main([str(tmp_path / "dst"), str(tmp_path / "again"), *args]) == 0
    assert "round_trip" not in json.loads(capsys.readouterr().out.rsplit("wrote", 1)[0])


def test_choose_sampling_takes_the_cheapest_sampler_within_the_tolerance():
    pick = _script("choose_sampling").pick
    rows = [{"steps": 1, "method": "euler", "si_sdri_wiener": 5.50}, {"steps": 2, "method": "euler", "si_sdri_wiener": 5.63},
            {"steps": 4, "method": "euler", "si_sdri_wiener": 5.66}, {"steps": 4, "method": "midpoint", "si_sdri_wiener": 5.64}]
    assert (pick(rows, 0.05)["steps"], pick(rows, 0.05)["method"]) == (2, "euler")
    assert (pick(rows, 0.0)["steps"], pick(rows, 0.0)["method"]) == (4, "euler")  # the best
    # steps are model evaluations for every method: at 4 evaluations the higher score wins
    assert (pick(rows, 0.025)["steps"], pick(rows, 0.025)["method"]) == (4, "euler")
    assert pick(rows, 0.2)["steps"] == 1
    with pytest.raises(ValueError, match="tolerance"):
        pick(rows, -0.1)


def test_mosaic_pooling_probes_every_pooling_of_a_real_tower(tiny_corpus, tmp_path, capsys):
    from embeddings.mosaic import MosaicConfig, MosaicTiny

    torch.manual_seed(0)
    cfg = MosaicConfig()
    cfg.audio.width, cfg.audio.depth, cfg.audio.channels = 16, 1, [16, 16]
    MosaicTiny(cfg).save_pretrained(tmp_path / "enc")
    mod = _script("mosaic_pooling")
    assert mod.main([str(tmp_path / "enc"), "--corpus", tiny_corpus, "--split", "train"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["clips"] == 16 and out["labels"] == 4
    assert all(0.0 <= out[k] <= 1.0 for k in mod.POOLINGS)
    # the poolings are different features of the same tower: max is not the mean, CLS+mean is wider
    mel = torch.randn(2, cfg.audio.mel.n_mels, 120)
    model = MosaicTiny(cfg).eval()
    f = mod.pooled_features(model.audio_tower, mel, torch.tensor([120, 60]))
    assert f["cls+mean"].shape[1] == 2 * f["cls"].shape[1] and not torch.allclose(f["max"], f["mean"])
    torch.testing.assert_close(f["cls_unit"].norm(dim=-1), torch.ones(2))
    with torch.no_grad():  # "cls_unit" and "stages" are what releases declaring them return
        torch.testing.assert_close(f["cls_unit"], model.audio_from_mel(mel, torch.tensor([120, 60])))
        model.cfg.embedding = "stages"
        torch.testing.assert_close(f["stages"], model.audio_from_mel(mel, torch.tensor([120, 60])))
    assert f["stem"].shape[1] == 2 * model.audio_tower.stem_dim
    with pytest.raises(SystemExit):
        mod.main([str(tmp_path), "--corpus", tiny_corpus])   # not a release


def test_separator_probes_pairs_every_variant_with_the_recommended_setting(tiny_corpus, tmp_path, capsys):
    from separation.data.mixing import MixConfig, MixtureDataset
    from separation.refine import wiener_refine
    from separation.separator import Separator
    from tests.conftest import random_tiny_separation_model

    ckpt = random_tiny_separation_model(video=False).save_pretrained(tmp_path / "sep")
    mod = _script("separator_probes")
    out = tmp_path / "probe.json"
    args = [str(ckpt), "--corpus", tiny_corpus, "--split", "train", "--items", "3", "--absent", "2",
            "--bias", "1", "2", "--guidance", "2", "--shifts", "2", "--two-pass", "--out", str(out)]
    assert mod.main(args) == 0
    assert "| bias=2 |" in capsys.readouterr().out
    res = json.loads(out.read_text())
    names = ["recommended", "bias=1", "bias=2", "guidance=2", "shift=2", "two_pass"]
    assert list(res["summary"]) == names and len(res["rows"]) == 5
    s = res["summary"]
    assert s["recommended"]["si_sdri_minus_recommended"]["mean"] == 0.0
    assert abs(s["bias=1"]["si_sdri_minus_recommended"]["mean"]) < 1e-4   # bias 1 is the release's refinement
    assert s["bias=2"]["level_db"]["mean"] > s["bias=1"]["level_db"]["mean"]  # a target bias makes the target louder
    assert s["recommended"]["absent_db"]["n"] == 2 and "si_sdri" not in res["rows"][-1]["recommended"]
    # the variants are what they say: the bias is the Wiener mask of B x the generated target
    sep = Separator.from_pretrained(ckpt)
    it = MixtureDataset(tiny_corpus, "train", MixConfig(segment_s=4.0, p_text=1.0, p_span=0.0, p_text_span=0.0,
                                                         p_video=0.0, absent_prob=0.0), seed=5, length=1)[0]
    got = mod.separate_variants(sep, it, ["recommended", "bias=2", "shift=2"])
    raw = sep.separate(it["mixture"].reshape(1, -1), sep.sample_rate, text=it["text"], keep_raw=True).raw
    rec = sep.model.cfg.sampling
    want = wiener_refine(it["mixture"].reshape(1, -1), 2 * raw[0].reshape(1, -1), raw[1].reshape(1, -1),
                         n_fft=rec.refine_n_fft, hop_length=rec.refine_n_fft // 4, power=rec.refine_power)[0]
    torch.testing.assert_close(got["bias=2"], want)
    assert not torch.allclose(got["shift=2"], got["recommended"])
    # shift=2: the raw stems of the input and of the input delayed by half a hop (delay undone), averaged, refined
    h = int(sep.model.codec.hop_length) // 2
    late = sep.separate(torch.nn.functional.pad(it["mixture"].reshape(1, -1), (h, 0)), sep.sample_rate,
                        text=it["text"], keep_raw=True).raw
    avg = [(a.reshape(1, -1) + b.reshape(1, -1)[:, h:]) / 2 for a, b in zip(raw, late)]
    want = wiener_refine(it["mixture"].reshape(1, -1), avg[0], avg[1], n_fft=rec.refine_n_fft,
                         hop_length=rec.refine_n_fft // 4, power=rec.refine_power)[0]
    torch.testing.assert_close(got["shift=2"], want)
    for bad in (["--shifts", "1"], ["--guidance", "0"], ["--items", "-1"]):
        with pytest.raises(SystemExit):
            mod.main([str(ckpt), "--corpus", tiny_corpus, *bad])


def test_judge_sweep_scores_judges_and_interpolations_on_one_candidate_set(tiny_corpus, tmp_path, capsys, monkeypatch):
    """scripts/judge_sweep.py: a judge scored directly and as WiSE-FT alpha 0 of itself give the same bars
    (same candidates, generated once per mode); the variants mode is reported beside the seeds mode."""
    from judge.model import JudgeConfig, build_judge
    from prompts.text import TextEncoderConfig
    from tests.conftest import random_tiny_separation_model, tiny_model_config

    sep = random_tiny_separation_model(video=False).save_pretrained(tmp_path / "sep")
    torch.manual_seed(0)
    cfg = JudgeConfig(codec=tiny_model_config(video=False).codec, text=TextEncoderConfig(kind="tiny_t5", max_length=16),
                      width=32, heads=2, depth_audio=1, depth_fusion=1, dropout=0.0, bands=4)
    base = build_judge(cfg).eval().save_pretrained(tmp_path / "j0")
    torch.manual_seed(1)
    other = build_judge(cfg).eval().save_pretrained(tmp_path / "j1")
    mod = _script("judge_sweep")
    import judge.evaluate as ev

    calls = []
    real = ev.separator_outputs
    monkeypatch.setattr(ev, "separator_outputs", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tmp_path / "sweep.json"
    assert mod.main(["--separator", str(sep), "--judges", str(base), "--base", str(base), "--tuned", str(other),
                     "--alphas", "0", "--corpus", tiny_corpus, "--split", "valid", "--groups", "3", "--seeds", "2",
                     "--segment-s", "0.5", "--bootstrap", "20", "--variants", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    j0 = str(base)  # judges are named by the path given (two releases may share a folder name)
    assert set(res) == {f"{j0} | seeds", f"{j0} | variants", "wise-ft 0 | seeds", "wise-ft 0 | variants"}
    assert mod.summary(res[f"{j0} | seeds"]) == mod.summary(res["wise-ft 0 | seeds"])
    assert res[f"{j0} | variants"]["candidates_from"] != res[f"{j0} | seeds"]["candidates_from"]
    assert "wise-ft 0 variants" in capsys.readouterr().out
    assert len(calls) == 2  # the candidates are generated once per mode and shared by both judges
    with pytest.raises(SystemExit):
        mod.main(["--separator", str(sep), "--alphas", "0.5", "--out", str(out)])
