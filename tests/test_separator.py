"""Separation model and Separator: prompts, save/load, guidance, chunking, CLI, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from promptsep.errors import AudioError, PromptError
from tests.conftest import random_tiny_separation_model, save_random_release, tiny_model_config

SR = 16000


#: A seeded tiny random separator (tests/conftest.py), once per module, and it saved as a release.
model = pytest.fixture(scope="module", name="model")(random_tiny_separation_model)
checkpoint = pytest.fixture(scope="module", name="checkpoint")(save_random_release)


def wav(seconds=1.0, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(channels, int(seconds * SR), generator=g)


def test_prompt_encoding_shapes_and_nulls(model):
    t = model.codec.num_frames(int(0.8 * SR))
    cond = model.encode_prompts(["dog barking", None], [[("+", 0.1, 0.3)], None], [None, None], t, [0.8, 0.5])
    assert cond.text.shape[0] == 2 and cond.text_mask[1].sum() == 1  # null text is one token
    torch.testing.assert_close(cond.text[1, 0], model.null_text[0])
    assert cond.anchors.shape == (2, t)
    assert (cond.anchors[0] == 1).any()
    fr = model.frame_rate
    assert (cond.anchors[1, int(np.ceil(0.5 * fr)) :] == 3).all()  # padding past the row's duration
    assert cond.video.shape == (2, t, model.video_encoder.dim)
    assert cond.has_text.tolist() == [True, False]


def test_save_load_round_trip_is_bit_exact(model, checkpoint):
    from separation.model import SeparationModel

    loaded = SeparationModel.from_pretrained(checkpoint)
    loaded.video_tower()  # built on the first video prompt
    sd1, sd2 = model.state_dict(), loaded.state_dict()
    assert sd1.keys() == sd2.keys()
    for k in sd1:
        assert torch.equal(sd1[k], sd2[k]), k
    meta = json.loads(open(f"{checkpoint}/config.json").read())
    assert meta["format_version"] == 1 and meta["kind"] == "promptsep_separator"
    with pytest.raises(FileNotFoundError):
        SeparationModel.from_pretrained(f"{checkpoint}/missing")


def test_guidance_scale_one_equals_conditional_generation(model):
    z = torch.randn(1, 12, model.latent_dim)
    cond = model.encode_prompts(["noise"], [None], [None], 12, [12 / model.frame_rate])
    noise = torch.randn(1, 12, 2 * model.latent_dim)
    plain = model.generate(z, cond, noise, nfe=2)
    torch.testing.assert_close(model.generate(z, cond, noise, nfe=2, guidance={"text": 1.0, "span": 1.0}), plain)
    assert not torch.allclose(model.generate(z, cond, noise, nfe=2, guidance={"text": 3.0}), plain)


def test_separator_outputs_match_input_rate_channels_and_length(checkpoint):
    from separation.separator import Separator

    sep = Separator.from_pretrained(checkpoint)
    x = wav(0.77, channels=2)
    res = sep.separate(x, 22050, text="tone", steps=2)
    assert res.target.shape == x.shape and res.residual.shape == x.shape and res.sample_rate == 22050
    assert torch.isfinite(res.target).all()
    again = sep.separate(x, 22050, text="tone", steps=2)
    assert torch.equal(again.target, res.target)  # seeded
    mono = sep.separate(x, 22050, text="tone", steps=2, channels="mono")
    assert mono.target.shape == (1, x.shape[1])


def test_chunked_equals_unchunked_on_short_input(model):
    from separation.separator import Separator

    x = wav(0.5)
    whole = Separator(model, chunk_s=10.0, overlap_s=1.0).separate(x, SR, text="tone", steps=2)
    # the first chunk of a chunked run is computed exactly like an unchunked run of that piece
    chunked = Separator(model, chunk_s=0.25, overlap_s=0.1)
    short = Separator(model, chunk_s=10.0, overlap_s=1.0)
    z = model.encode_audio(x[None])
    cond = model.encode_prompts(["tone"], [None], [None], z.shape[1], [0.5])
    noise = torch.randn(1, z.shape[1], 2 * model.latent_dim, generator=torch.Generator().manual_seed(0))
    bounds = chunked._chunk_bounds(z.shape[1], model.frame_rate)
    assert len(bounds) > 1 and short._chunk_bounds(z.shape[1], model.frame_rate) == [(0, z.shape[1])]
    with torch.no_grad():  # the Separator's one generation path: SeparationModel.generate(chunks=...)
        full = model.generate(z, cond, noise, nfe=2, method="midpoint", chunks=bounds)
        n0 = int(round(0.25 * model.frame_rate))
        first = model.generate(z[:, :n0], cond.frames(0, n0), noise[:, :n0], nfe=2, method="midpoint")
        torch.testing.assert_close(full[:, :n0], first)
        # one chunk is exactly the unchunked sampler
        torch.testing.assert_close(model.generate(z, cond, noise, nfe=2, chunks=[(0, z.shape[1])]),
                                   model.generate(z, cond, noise, nfe=2), rtol=0, atol=0)
    # and with chunking the whole signal still comes back at full length without NaN
    res = chunked.separate(x, SR, text="tone", steps=2)
    assert res.target.shape == whole.target.shape and torch.isfinite(res.target).all()


def test_candidates_and_activity_ranker(checkpoint):
    from separation.separator import Separator, activity_ranker

    sep = Separator.from_pretrained(checkpoint)
    res = sep.separate(wav(1.0), SR, spans=[("+", 0.0, 0.5), ("-", 0.5, 1.0)], candidates=3, steps=2)
    assert len(res.info["candidate_scores"]) == 3
    loud_first = torch.cat([torch.ones(1, 1, 800), torch.zeros(1, 1, 800)], -1)
    loud_last = loud_first.flip(-1)
    s = activity_ranker(None, torch.cat([loud_last, loud_first]), 1600, spans=[("+", 0, 0.5), ("-", 0.5, 1.0)])
    assert int(s.argmax()) == 1


def test_prompt_variant_candidates(checkpoint):
    """With K > 1 the candidates are prompted with the label table's other wordings of the text (the
    first keeps the text); the ranker scores against the user's text; unknown or ambiguous text keeps
    seed-only candidates; it is opt-in (variants=True)."""
    from separation.prompt_variants import PromptVariants
    from separation.separator import Separator

    table = PromptVariants({"acoustic guitar": ["acoustic guitar", "guitar playing", "nylon string guitar"],
                            "electric bass": ["electric bass", "bass"], "acoustic bass": ["acoustic bass", "bass"]})
    assert table.variants("Guitar  Playing") == ["Guitar  Playing", "acoustic guitar", "nylon string guitar"]
    assert table.candidates("acoustic guitar", 4) == ["acoustic guitar", "guitar playing", "nylon string guitar",
                                                      "acoustic guitar"]
    assert table.variants("bass") == ["bass"] and table.variants("a kazoo") == ["a kazoo"]  # ambiguous, unknown
    packaged = PromptVariants.from_file()
    assert len(packaged.variants("acoustic guitar")) >= 3

    sep = Separator.from_pretrained(checkpoint)
    sep._prompt_variants = table
    seen = []

    def ranker(mix, cands, sr, spans=None, text=None):
        seen.append(text)
        return torch.arange(cands.shape[0], dtype=torch.float32)  # prefers the last candidate

    x = wav(1.0)
    res = sep.separate(x, SR, text="acoustic guitar", candidates=3, steps=1, ranker=ranker, variants=True)
    assert res.info["candidate_texts"] == ["acoustic guitar", "guitar playing", "nylon string guitar"]
    assert seen == ["acoustic guitar"]
    # the pick is the third candidate: the same as separating with its wording alone (seed row 2 of 3)
    alone = sep.separate(x, SR, text="nylon string guitar", candidates=3, steps=1, ranker=ranker, variants=False)
    assert alone.info["candidate_texts"] == ["nylon string guitar"] * 3
    torch.testing.assert_close(res.target, alone.target, rtol=1e-4, atol=1e-5)
    plain = sep.separate(x, SR, text="acoustic guitar", candidates=3, steps=1, ranker=ranker)  # default: off
    assert not torch.allclose(plain.target, res.target, atol=1e-4)
    # a batch of a stereo and a mono item (3 rows x 3 candidates): every row's pick (the last candidate) is
    # the same batch prompted with that wording throughout, at the same noise rows, raw and refined
    x2 = wav(1.0, channels=2, seed=3)
    both = sep.separate_batch([x2, x], [SR, SR], ["acoustic guitar", "guitar playing"], candidates=3, steps=1,
                              ranker=ranker, variants=True, keep_raw=True)
    assert both[1].info["candidate_texts"] == ["guitar playing", "acoustic guitar", "nylon string guitar"]
    want = sep.separate_batch([x2, x], [SR, SR], ["nylon string guitar"] * 2, candidates=3, steps=1, ranker=ranker,
                              keep_raw=True)
    for got_i, want_i in zip(both, want):
        torch.testing.assert_close(got_i.target, want_i.target, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got_i.raw[0], want_i.raw[0], rtol=1e-4, atol=1e-5)
        assert got_i.target.shape == want_i.target.shape
    assert sep.separate(x, SR, text="a kazoo", candidates=2, steps=1, ranker=ranker, variants=True).info["candidate_texts"] == \
        ["a kazoo", "a kazoo"]


def test_ranker_scores_the_refined_candidates(checkpoint):
    """With refine="wiener" and K > 1 the ranker sees the refined candidates (what the user gets)."""
    from separation.separator import Separator

    sep = Separator.from_pretrained(checkpoint)
    got = {}

    def ranker(mix, cands, sr, spans=None, text=None):
        got["cands"] = cands.clone()
        return torch.zeros(cands.shape[0])

    x = wav(1.0)
    res = sep.separate(x, SR, text="tone", candidates=2, steps=1, ranker=ranker, keep_raw=True)
    n = x.shape[-1]
    torch.testing.assert_close(got["cands"][0, :, :n] / got["cands"][0, :, :n].norm(),
                               res.target / res.target.norm(), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(res.raw[0], res.target, atol=1e-4)


def test_bad_input_raises_clear_errors(checkpoint, tmp_path):
    from separation.separator import Separator

    sep = Separator.from_pretrained(checkpoint)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="cannot read"):
        sep.separate(str(bad), text="tone")
    with pytest.raises(AudioError, match="empty"):
        sep.separate(torch.zeros(1, 0), SR, text="tone")
    with pytest.raises(AudioError, match="NaN"):
        sep.separate(torch.full((1, 1000), float("nan")), SR, text="tone")
    with pytest.raises(AudioError, match="silent"):
        sep.separate(torch.zeros(1, 1000), SR, text="tone")
    with pytest.raises(PromptError, match="start >= end"):
        sep.separate(wav(1.0), SR, spans=[("+", 0.6, 0.2)])
    with pytest.raises(PromptError, match="outside the audio"):
        sep.separate(wav(1.0), SR, spans=["+0.5:3.0"])
    with pytest.raises(PromptError, match="at least one prompt"):
        sep.separate(wav(1.0), SR)
    from prompts.types import VideoPrompt

    short_video = VideoPrompt(frames=torch.rand(3, 3, 32, 32), fps=10.0, masks=None, box=(0, 0, 16, 16))
    with pytest.raises(PromptError, match="shorter"):
        sep.separate(wav(1.0), SR, text="tone", video=short_video)


def test_video_prompt_runs(checkpoint):
    from prompts.types import VideoPrompt
    from separation.separator import Separator

    sep = Separator.from_pretrained(checkpoint)
    video = VideoPrompt(frames=torch.rand(10, 3, 32, 32), fps=10.0, masks=None, box=(4, 4, 20, 20))
    res = sep.separate(wav(1.0), SR, video=video, steps=2)
    assert res.target.shape == (1, SR)


def test_cli_end_to_end_on_a_real_wav(checkpoint, tmp_path):
    from promptsep.cli import main

    src = tmp_path / "in.wav"
    sf.write(str(src), (0.3 * np.random.default_rng(0).standard_normal((11025, 2))).astype(np.float32), 22050)
    out = tmp_path / "out"
    rc = main(["separate", str(src), "--text", "tone", "--span", "+0.1:0.3", "--checkpoint", checkpoint,
               "--out-dir", str(out), "--steps", "2"])
    assert rc == 0
    for name in ("target.wav", "residual.wav"):
        data, sr = sf.read(str(out / "in" / name))
        assert sr == 22050 and data.shape == (11025, 2)
    comment = sf.SoundFile(str(out / "in" / "target.wav")).copy_metadata()["comment"]
    assert comment.startswith("target; promptsep in.wav") and "text='tone'" in comment and "spans=+0.1:0.3" in comment
    assert main(["separate", str(src), "--span", "+0.3:0.1", "--checkpoint", checkpoint, "--out-dir", str(out)]) == 2
    assert main(["info", checkpoint]) == 0


def test_wiener_refine_sums_to_mixture_and_follows_the_stems():
    from separation.refine import wiener_refine

    g = torch.Generator().manual_seed(0)
    t = torch.sin(torch.arange(16000) * 2 * math.pi * 440 / 16000)[None]
    r = 0.5 * torch.randn(1, 16000, generator=g)
    mix = t + r
    tgt, res = wiener_refine(mix, t, r)
    assert torch.allclose(tgt + res, mix, atol=1e-6)
    from separation.metrics import si_sdr

    assert float(si_sdr(tgt, t)) > float(si_sdr(mix, t)) + 10  # the mask pulls the tone out of the noise
    silent_t, silent_r = wiener_refine(mix, torch.zeros_like(mix), mix)
    assert float(silent_t.abs().max()) < 1e-3 and torch.allclose(silent_r, mix, atol=1e-3)


def test_wiener_refine_blockwise_matches_whole_signal():
    from separation.refine import wiener_refine

    g = torch.Generator().manual_seed(1)
    mix, t, r = (torch.randn(2, 1, 50_000, generator=g) for _ in range(3))
    whole, _ = wiener_refine(mix, t, r)
    blocks, res = wiener_refine(mix, t, r, block_samples=12_000)
    assert torch.allclose(blocks + res, mix, atol=1e-6)
    assert torch.allclose(blocks, whole, atol=1e-4)


@pytest.mark.parametrize("refine", ["none", "wiener"])
def test_result_follows_the_input_level(model, refine):
    from separation.separator import Separator

    sep = Separator(model)
    x = wav(0.6, seed=3)
    loud = sep.separate(x, SR, text="tone", steps=2, refine=refine)
    quiet = sep.separate(0.01 * x, SR, text="tone", steps=2, refine=refine)  # 40 dB quieter
    torch.testing.assert_close(quiet.target, 0.01 * loud.target, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(quiet.residual, 0.01 * loud.residual, rtol=1e-4, atol=1e-7)
    # without the normalisation the model sees the raw level, and the result is not the same
    raw = Separator(model, input_level_db=None)
    assert not torch.allclose(raw.separate(0.01 * x, SR, text="tone", steps=2, refine=refine).target,
                              quiet.target, atol=1e-6)


def test_untrained_mask_model_returns_half_the_mixture():
    import dataclasses

    from separation.model import build_separation_model

    cfg = tiny_model_config()
    cfg = dataclasses.replace(cfg, flow=dataclasses.replace(cfg.flow, prior="mixture", prior_std=0.2, prediction="mask"))
    torch.manual_seed(0)
    m = build_separation_model(cfg).eval()  # the backbone's output projection starts at zero
    x = wav(0.5, seed=4)
    z = m.encode_audio(x[None])
    cond = m.encode_prompts(["tone"], [None], [None], z.shape[1], [0.5])
    noise = torch.randn(1, z.shape[1], 2 * m.latent_dim)
    for method in ("euler", "midpoint"):
        x1 = m.generate(z, cond, noise, nfe=4, method=method)
        off = m.codec.latent_mean / m.codec.latent_std
        torch.testing.assert_close(x1[..., : m.latent_dim], 0.5 * (z + off) - off, rtol=1e-4, atol=1e-5)
    # a training step runs and gives a finite loss in data space
    batch = {"mixture": x[None], "target": 0.5 * x[None], "residual": 0.5 * x[None], "text": ["tone"],
             "spans": [None], "use_text": [True], "use_span": [False]}
    loss = m.training_loss(batch)["loss"]
    wrong = m.training_loss({**batch, "target": x[None], "residual": 0 * x[None]})["loss"]
    assert torch.isfinite(loss) and float(loss) < 0.5 * float(wrong)  # half the mixture is right here (up to the test codec's non-linearity)


def test_release_recommended_sampling_is_the_default(model, tmp_path):
    import copy

    from separation.model import SamplingDefaults
    from separation.separator import Separator

    m = copy.deepcopy(model)
    m.cfg.sampling = SamplingDefaults(steps=2, method="euler", refine_power=1.0, refine_n_fft=512)
    path = m.save_pretrained(tmp_path / "rel")
    assert json.loads((path / "config.json").read_text())["config"]["sampling"] == {
        "steps": 2, "method": "euler", "refine_power": 1.0, "refine_n_fft": 512}
    sep = Separator.from_pretrained(path)
    res = sep.separate(wav(0.4), SR, text="tone")
    assert res.info["steps"] == 2 and res.info["method"] == "euler"
    explicit = sep.separate(wav(0.4), SR, text="tone", steps=4, method="midpoint")
    assert explicit.info["steps"] == 4 and explicit.info["method"] == "midpoint"
    torch.testing.assert_close(res.target, sep.separate(wav(0.4), SR, text="tone", steps=2, method="euler").target)
    # The default output is the raw stems refined with the release's Wiener settings.
    from separation.refine import wiener_refine

    raw_t, raw_r = sep.separate(wav(0.4), SR, text="tone", refine="none", keep_raw=True).raw  # the generated stems
    expected, _ = wiener_refine(wav(0.4), raw_t, raw_r, n_fft=512, hop_length=128, power=1.0)
    torch.testing.assert_close(res.target, expected, atol=1e-4, rtol=1e-3)
    other, _ = wiener_refine(wav(0.4), raw_t, raw_r)
    assert float((other - res.target).abs().max()) > 1e-3


@pytest.fixture(scope="module")
def mixture_prior_model():
    """The tiny model with the shipped release's mixture prior (its noise scales with the whole item's latent RMS)."""
    import dataclasses

    from separation.model import build_separation_model

    torch.manual_seed(0)
    cfg = tiny_model_config(video=False)
    cfg.flow = dataclasses.replace(cfg.flow, prior="mixture")
    m = build_separation_model(cfg).eval()
    torch.nn.init.normal_(m.dit.out_proj.weight, std=0.05)
    return m


@pytest.mark.parametrize("sr,channels,mode", [(22050, 2, "per_channel"), (44100, 2, "mono")])
def test_separate_file_streams_the_in_memory_result(mixture_prior_model, tmp_path, sr, channels, mode):
    """Read, separate and write in blocks (many blocks, chunks and codec tiles here) = the in-memory path."""
    from separation.separator import Separator

    x = 0.3 * torch.randn(channels, int(1.7 * sr), generator=torch.Generator().manual_seed(1))
    src = tmp_path / "in.wav"
    sf.write(src, x.numpy().T, sr, subtype="FLOAT")
    sep = Separator(mixture_prior_model, chunk_s=0.5, overlap_s=0.2)
    assert len(sep._chunk_bounds(mixture_prior_model.codec.num_frames(int(1.7 * SR)), mixture_prior_model.frame_rate)) > 2
    ref = sep.separate(str(src), text="tone", steps=2, channels=mode)
    chunks = []
    info = sep.separate_file(src, tmp_path / "t.wav", tmp_path / "r.wav", text="tone", steps=2, channels=mode,
                             block_s=0.23, progress=lambda d, n: chunks.append((d, n)))
    assert info["streamed"] and chunks[-1][0] == chunks[-1][1] > 2
    t, sr_t = sf.read(tmp_path / "t.wav", dtype="float32", always_2d=True)
    r, _ = sf.read(tmp_path / "r.wav", dtype="float32", always_2d=True)
    assert sr_t == sr and sf.info(str(tmp_path / "t.wav")).subtype == "FLOAT"  # a float input stays float
    t, r = torch.from_numpy(t.T), torch.from_numpy(r.T)
    assert t.shape == ref.target.shape
    torch.testing.assert_close(t, ref.target, rtol=0, atol=1e-5)
    torch.testing.assert_close(r, ref.residual, rtol=0, atol=1e-5)
    want = x if mode == "per_channel" else x.mean(0, keepdim=True)
    torch.testing.assert_close(t + r, want, rtol=0, atol=1e-6)  # the stems add up at the input's rate


def test_separate_file_refuses_to_clobber_and_never_writes_non_finite(mixture_prior_model, checkpoint, tmp_path):
    from promptsep.errors import NonFiniteOutputError, OutputExistsError
    from separation.model import SeparationModel
    from separation.separator import Separator

    src = tmp_path / "in.wav"
    sf.write(src, wav(0.6).numpy().T, SR)
    sep = Separator(mixture_prior_model, chunk_s=0.5, overlap_s=0.2)
    (tmp_path / "t.wav").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        sep.separate_file(src, tmp_path / "t.wav", tmp_path / "r.wav", text="tone", steps=1)
    assert (tmp_path / "t.wav").read_bytes() == b"keep me" and not (tmp_path / "r.wav").exists()
    sep.separate_file(src, tmp_path / "t.wav", tmp_path / "r.wav", text="tone", steps=1, overwrite=True, block_s=0.1)
    assert sf.info(str(tmp_path / "t.wav")).frames == int(0.6 * SR)
    broken = SeparationModel.from_pretrained(checkpoint)
    with torch.no_grad():
        broken.dit.out_proj.weight[0, 0] = float("nan")  # a bit-flipped weight
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteOutputError):
        Separator(broken, chunk_s=0.5, overlap_s=0.2).separate_file(src, out / "t.wav", out / "r.wav", text="tone",
                                                                    steps=1, block_s=0.1)
    assert not any(out.iterdir())  # neither stem nor a temporary file is left
    with pytest.raises(AudioError, match="silent"):
        sf.write(tmp_path / "zero.wav", np.zeros(1600, dtype="float32"), SR)
        sep.separate_file(tmp_path / "zero.wav", out / "t.wav", out / "r.wav", text="tone")


def test_stream_window_holds_only_the_span_in_use():
    from separation.separator import _resample_stream, _Window

    pieces = (torch.full((1, 100), float(i)) for i in range(1000))
    win = _Window(pieces)
    for a in range(0, 100_000 - 300, 250):
        got = win.get(a, a + 300)
        assert got.shape == (1, 300) and got[0, 0] == a // 100
        assert win._buf.shape[-1] <= 400  # bounded by the request plus one piece, not the stream
    x = torch.randn(2, 48_000)
    blocks = _resample_stream(_Window(iter(x.split(777, dim=-1))), 48_000, 48_000, 16_000, 1000)
    torch.testing.assert_close(torch.cat(list(blocks), -1), torchaudio_resample(x, 48_000, 16_000), rtol=0, atol=1e-5)


def torchaudio_resample(x, a, b):
    from promptsep.audio import resample

    return resample(x, a, b)


def test_video_tower_is_built_only_for_a_video_prompt(checkpoint, monkeypatch):
    """A text-only separation never constructs the open_clip tower; the first video prompt builds it with its saved weights."""
    import open_clip

    from prompts.types import VideoPrompt
    from separation.model import SeparationModel
    from separation.separator import Separator

    calls = []
    real = open_clip.create_model
    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    sep = Separator.from_pretrained(checkpoint)
    sep.separate(wav(0.5), SR, text="tone", steps=1)
    assert calls == [] and sep.model.video_encoder is None
    video = VideoPrompt(frames=torch.rand(4, 3, 16, 16), fps=8.0, box=(2, 2, 12, 12))
    sep.separate(wav(0.5), SR, text="tone", video=video, steps=1)
    assert len(calls) == 1 and sep.model.video_encoder is not None
    from safetensors.torch import load_file

    saved = {k[len("video_encoder."):]: v for k, v in load_file(f"{checkpoint}/model.safetensors").items()
             if k.startswith("video_encoder.")}
    state = sep.model.video_encoder.state_dict()
    assert saved and saved.keys() == state.keys()
    for k, v in saved.items():  # the lazily built tower holds the release's weights
        assert torch.equal(v, state[k]), k
    again = sep.model.save_pretrained(checkpoint + "-copy")  # and a lazily loaded model saves them back
    assert SeparationModel.from_pretrained(again)._video_state.keys() == {"video_encoder." + k for k in saved}
