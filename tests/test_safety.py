"""Safe by default (issue 11): validated options, no non-finite output, stems that add up at
every rate, a writer that neither follows planted links nor clobbers, a benchmark that refuses
to mix runs and samples like the release."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import pytest
import soundfile as sf
import torch

from promptsep.errors import InputError
from tests.conftest import tiny_model_config

SR = 16000


@pytest.fixture(scope="module")
def model():
    from separation.model import build_separation_model

    torch.manual_seed(0)
    m = build_separation_model(tiny_model_config(video=False)).eval()
    torch.nn.init.normal_(m.dit.out_proj.weight, std=0.05)  # a non-trivial random model
    return m


@pytest.fixture(scope="module")
def sep(model):
    from separation.separator import Separator

    return Separator(model)


def noise(seconds=0.4, channels=1, sr=SR, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(channels, int(seconds * sr), generator=g)


# ---------------------------------------------------------------------- item 1: options and non-finite output
@pytest.mark.parametrize("guidance", [{"text": float("nan")}, {"text": float("inf")}, {"text": -3.0}, {"text": 1e9},
                                      {"colour": 2.0}])
def test_bad_guidance_is_refused_before_separating(sep, guidance):
    # Before: `--guidance nan` returned NaN stems (written as full-scale -1.0) without a word.
    with pytest.raises(InputError, match="guidance"):
        sep.separate(noise(), SR, text="tone", steps=1, guidance=guidance)


@pytest.mark.parametrize(("kw", "match"), [
    ({"steps": 0}, "steps"), ({"steps": -2}, "steps"), ({"steps": float("nan")}, "steps"), ({"steps": 2.5}, "steps"),
    ({"candidates": 0}, "candidates"), ({"candidates": float("nan")}, "candidates"),
    ({"seed": float("nan")}, "seed"), ({"seed": -1}, "seed"), ({"method": "rk45"}, "method"),
])
def test_bad_numeric_options_give_clear_errors(sep, kw, match):
    with pytest.raises(InputError, match=match):
        sep.separate(noise(), SR, text="tone", **{"steps": 1, **kw})


@pytest.mark.parametrize(("kw", "match"), [
    ({"device": "tpu9"}, "device"), ({"chunk_s": float("nan")}, "chunk_s"), ({"overlap_s": float("inf")}, "overlap_s"),
    ({"input_level_db": float("nan")}, "input_level_db"),
])
def test_bad_separator_settings_give_clear_errors(model, kw, match):
    from separation.separator import Separator

    with pytest.raises(InputError, match=match):
        Separator(model, **kw)


def test_unavailable_cuda_device_is_a_clear_error(model):
    from separation.separator import Separator

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(InputError, match="cuda"):
        Separator(model, device="cuda")


def test_corrupted_weights_fail_loudly_instead_of_returning_nan(model):
    """A bit-flipped weight (here: one Inf) makes NaN stems; they must never be returned."""
    from promptsep.errors import NonFiniteOutputError
    from separation.separator import Separator

    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.dit.out_proj.weight[0, 0] = float("inf")
    sep = Separator(broken)
    for refine in ("wiener", "none"):
        with pytest.raises(NonFiniteOutputError, match="non-finite"):
            sep.separate(noise(), SR, text="tone", steps=1, refine=refine)


def test_save_audio_refuses_non_finite_audio(tmp_path):
    from promptsep.audio import save_audio

    x = noise()
    x[0, 10] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        save_audio(tmp_path / "t.wav", x, SR)
    assert not any(tmp_path.iterdir())  # nothing written, no temporary left


def test_long_prompt_warns_that_it_is_cut(sep):
    limit = sep.model.text_encoder.cfg.max_length
    with pytest.warns(UserWarning, match=rf"cut to {limit} tokens"):
        sep.separate(noise(), SR, text="a dog barking " * 715, steps=1)  # 10,010 characters
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sep.separate(noise(), SR, text="dog", steps=1)  # a short prompt: no warning


# ---------------------------------------------------------------------- item 3: stems add up
@pytest.mark.parametrize("sr", [8000, 16000, 44100, 96000])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("refine", ["wiener", "none"])
def test_stems_add_up_to_the_input_at_its_rate_and_channels(sep, sr, channels, refine):
    x = noise(0.25, channels=channels, sr=sr, seed=sr + channels)
    res = sep.separate(x, sr, text="tone", steps=1, refine=refine)
    assert res.sample_rate == sr and res.target.shape == x.shape == res.residual.shape
    err = (res.target + res.residual - x).abs().max()
    assert float(err) <= 1e-6, f"target + residual differs from the input by {float(err):.2e}"


def test_mono_mode_stems_add_up_to_the_channel_average(sep):
    x = noise(0.25, channels=2, sr=48000, seed=9)
    res = sep.separate(x, 48000, text="tone", steps=1, channels="mono")
    assert res.target.shape == (1, x.shape[-1])
    assert float((res.target + res.residual - x.mean(0, keepdim=True)).abs().max()) <= 1e-6


def test_band_above_the_model_rate_goes_to_the_residual(sep):
    sr = 44100
    t = torch.arange(int(0.3 * sr)) / sr
    high = 0.3 * torch.sin(2 * math.pi * 12_000 * t)[None]  # above the model's 8 kHz band
    low = noise(0.3, sr=sr, seed=5)
    x = low + high
    res = sep.separate(x, sr, text="tone", steps=1)

    def band_energy(w, lo, hi):
        spec = torch.fft.rfft(w[0].double())
        f = torch.fft.rfftfreq(w.shape[-1], 1 / sr)
        return float(spec[(f >= lo) & (f < hi)].abs().pow(2).sum())

    assert band_energy(res.target, 10_000, 14_000) < 1e-4 * band_energy(x, 10_000, 14_000)
    assert band_energy(res.residual, 10_000, 14_000) == pytest.approx(band_energy(x, 10_000, 14_000), rel=1e-3)


def test_raw_generated_stems_stay_available(sep):
    res = sep.separate(noise(), SR, text="tone", steps=1, refine="none", keep_raw=True)
    raw_t, raw_r = res.raw
    torch.testing.assert_close(raw_t, res.target)
    assert not torch.allclose(raw_r, res.residual)  # the generated residual, not input - target


def test_float_input_above_full_scale_is_written_as_float_not_clipped(tmp_path):
    from promptsep.audio import load_audio, save_audio

    x = noise(scale=1.0)
    x[0, 100] = 1.75
    with pytest.warns(UserWarning, match="full scale"):
        p = save_audio(tmp_path / "t.wav", x, SR)
    assert sf.info(str(p)).subtype == "FLOAT"
    back, _ = load_audio(p)
    torch.testing.assert_close(back, x)
    quiet = save_audio(tmp_path / "q.wav", 0.5 * x / x.abs().max(), SR)
    assert sf.info(str(quiet)).subtype == "PCM_16"  # within full scale: 16-bit as before
    kept = save_audio(tmp_path / "f.wav", 0.5 * x / x.abs().max(), SR, subtype="FLOAT")
    assert sf.info(str(kept)).subtype == "FLOAT"  # the caller keeps a float input float
    with pytest.warns(UserWarning, match="clipped"):
        save_audio(tmp_path / "c.flac", x, SR)  # FLAC has no float: clipping is said out loud


def test_stems_of_a_float_input_stay_float(tmp_path):
    from promptsep.audio import stem_subtype

    x = noise().numpy().T
    sf.write(str(tmp_path / "f.wav"), x, SR, subtype="FLOAT")
    sf.write(str(tmp_path / "p.wav"), x, SR, subtype="PCM_16")
    assert stem_subtype(tmp_path / "f.wav") == "FLOAT"
    assert stem_subtype(tmp_path / "p.wav") is None


# ---------------------------------------------------------------------- item 4: safe writer
def test_writer_does_not_follow_a_planted_temporary_symlink(tmp_path):
    from promptsep.audio import save_audio

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "target.wav.tmp").symlink_to(victim)  # the old fixed temporary name
    save_audio(out / "target.wav", noise(), SR)
    assert victim.read_text() == "precious"
    assert sf.info(str(out / "target.wav")).frames == noise().shape[-1]
    assert sorted(p.name for p in out.iterdir()) == ["target.wav", "target.wav.tmp"]  # no temporary left


def test_writer_refuses_to_overwrite_unless_asked(tmp_path):
    from promptsep.audio import save_audio
    from promptsep.errors import OutputExistsError

    p = save_audio(tmp_path / "target.wav", noise(seed=1), SR)
    before = p.read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite"):
        save_audio(p, noise(seed=2), SR)
    assert p.read_bytes() == before
    assert isinstance(OutputExistsError("x"), FileExistsError)
    save_audio(p, noise(seed=2), SR, overwrite=True)
    assert p.read_bytes() != before
    assert [q.name for q in tmp_path.iterdir()] == ["target.wav"]


def test_overwrite_replaces_a_planted_destination_link_not_its_target(tmp_path):
    from promptsep.audio import save_audio
    from promptsep.errors import OutputExistsError

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "target.wav").symlink_to(victim)
    with pytest.raises(OutputExistsError):
        save_audio(tmp_path / "target.wav", noise(), SR)
    save_audio(tmp_path / "target.wav", noise(), SR, overwrite=True)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "target.wav").is_symlink()


# ---------------------------------------------------------------------- items 5 and 8: benchmark
@pytest.fixture(scope="module")
def bench_ckpt(model, tmp_path_factory):
    from separation.model import SamplingDefaults

    m = copy.deepcopy(model)
    m.cfg.sampling = SamplingDefaults(steps=1, method="euler", refine_power=1.0, refine_n_fft=512)
    return m.save_pretrained(tmp_path_factory.mktemp("bench_ckpt") / "rel")


@pytest.fixture(scope="module")
def bench_manifest(tiny_corpus, tmp_path_factory):
    from bench.cli import main

    path = tmp_path_factory.mktemp("bench_manifest") / "items.jsonl"
    assert main(["manifest", "--corpus", tiny_corpus, "--split", "test", "--n", "2", "--n-pairs", "0",
                 "--segment-s", "0.5", "--seed", "0", "--absent-prob", "0", "--out", str(path)]) == 0
    return path


def _bench(manifest, ckpt, out, **kw):
    from bench.separation import run_benchmark

    cfg = {"manifest": str(manifest), "checkpoint": str(ckpt), "out_dir": str(out), "batch_size": 2, "threads": 1,
           "baselines": ["mixture"], "refine": ["wiener"], "plots": False, "use_lightning": False,
           "bootstrap": {"samples": 20, "seed": 0}, **kw}
    return run_benchmark(cfg)


def _rows(out):
    return [json.loads(line) for line in (Path(out) / "results.jsonl").read_text().splitlines()]


def test_bench_samples_like_the_release_by_default_and_says_so(bench_manifest, bench_ckpt, tmp_path):
    _bench(bench_manifest, bench_ckpt, tmp_path / "a")
    rows = [r for r in _rows(tmp_path / "a") if r["system"].startswith("separator")]
    assert {r["system"] for r in rows} == {"separator_nfe1"}  # the release's 1 step
    assert {(r["method"], r["steps"]) for r in rows} == {("euler", 1)}
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["samplers"]["separator_nfe1"] == "euler, 1 step (release default)"
    assert summary["samplers"]["mixture"] is None
    report = (tmp_path / "a" / "report.md").read_text()
    assert "euler, 1 step (release default)" in report
    # overrides still work and are labelled as such
    _bench(bench_manifest, bench_ckpt, tmp_path / "b", nfe=[2], method="midpoint")
    rows = [r for r in _rows(tmp_path / "b") if r["system"].startswith("separator")]
    assert {(r["system"], r["method"], r["steps"]) for r in rows} == {("separator_nfe2", "midpoint", 2)}
    assert "midpoint, 2 steps (override)" in (tmp_path / "b" / "report.md").read_text()


def test_bench_refuses_to_mix_rows_of_another_checkpoint_or_sampler(bench_manifest, bench_ckpt, model, tmp_path, capsys):
    from bench.separation import FingerprintMismatchError

    out = tmp_path / "run"
    _bench(bench_manifest, bench_ckpt, out)
    first = _rows(out)
    assert len({r["fingerprint"] for r in first}) == 1
    # same checkpoint, same sampling: resumes (nothing recomputed)
    _bench(bench_manifest, bench_ckpt, out)
    assert _rows(out) == first
    # other weights (same config) -> refused, rows untouched
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.dit.out_proj.weight.mul_(0.5)
    other.cfg.sampling = json_sampling(bench_ckpt)
    ckpt2 = other.save_pretrained(tmp_path / "other")
    with pytest.raises(FingerprintMismatchError, match="checkpoint"):
        _bench(bench_manifest, ckpt2, out)
    with pytest.raises(FingerprintMismatchError, match="method"):
        _bench(bench_manifest, bench_ckpt, out, method="midpoint")
    assert _rows(out) == first
    # the CLI says so in one line (exit 2), before loading any model
    from bench.cli import main

    capsys.readouterr()
    assert main(["separation", "--manifest", str(bench_manifest), "--checkpoint", str(ckpt2), "--out", str(out),
                 "--plain", "bench.baselines=[mixture]", "bench.refine=[wiener]", "bench.batch_size=2"]) == 2
    err = capsys.readouterr().err
    assert "holds results of another setup (checkpoint weights/config" in err and "Traceback" not in err
    assert _rows(out) == first
    assert issubclass(FingerprintMismatchError, ValueError)


def json_sampling(ckpt):
    from separation.model import SamplingDefaults

    return SamplingDefaults(**json.loads((Path(ckpt) / "config.json").read_text())["config"]["sampling"])


def test_bench_counts_non_finite_output_as_failed(bench_manifest, model, tmp_path):
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.dit.out_proj.weight[0, 0] = float("inf")
    ckpt = broken.save_pretrained(tmp_path / "broken")
    res = _bench(bench_manifest, ckpt, tmp_path / "out", nfe=[1])
    rows = [r for r in _rows(tmp_path / "out") if r["system"] == "separator_nfe1"]
    assert rows and all(r["status"] == "failed" and "non-finite" in r["reason"] for r in rows)
    summary = json.loads(Path(res["summary"]).read_text())
    assert {f["system"] for f in summary["failed"]} == {"separator_nfe1"}
    assert res["failed_rows"] == len(rows)
    assert f"{len(rows)} result rows failed" in Path(res["report"]).read_text()


def test_item_metrics_refuse_non_finite_estimates():
    from bench.manifest import LoadedItem
    from bench.separation import item_metrics
    from promptsep.errors import NonFiniteOutputError

    x = noise()
    li = LoadedItem(item={"id": "a"}, mixture=x, target=0.5 * x, sample_rate=SR, text="t", spans=None, video=None,
                    present=True, judge_text="t")
    est = 0.5 * x
    est[0, 3] = float("nan")
    with pytest.raises(NonFiniteOutputError):
        item_metrics(est, 0.5 * x, li, 0.0)

