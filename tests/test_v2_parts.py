"""Separator v2 parts: the MDCT codec, the wider mask, the waveform loss, pooled text conditioning."""

from __future__ import annotations

import math

import pytest
import torch

from separation.mdct_codec import MDCTCodec, MDCTCodecConfig


def _band_energy_db(x: torch.Tensor, sr: int, lo: float, hi: float) -> float:
    spec = torch.fft.rfft(x.double()).abs().pow(2)
    f = torch.fft.rfftfreq(x.shape[-1], 1 / sr)
    return 10 * math.log10(float(spec[..., (f >= lo) & (f < hi)].sum()) + 1e-30)


@pytest.mark.parametrize("n", [1, 7, 160, 320, 321, 16000, 16123])
def test_mdct_round_trip_is_exact_at_every_length(n):
    codec = MDCTCodec(MDCTCodecConfig()).double()
    x = torch.randn(2, 1, n, dtype=torch.float64)
    z = codec.encode(x)
    assert z.shape == (2, 320, codec.num_frames(n)) == (2, 320, -(-n // 320))
    y = codec.decode(z, n)
    assert y.shape == x.shape
    assert float((y - x).abs().max()) < 1e-6  # float32 basis


def test_mdct_keeps_the_whole_band_and_overlaps():
    torch.manual_seed(0)
    codec = MDCTCodec(MDCTCodecConfig())
    noise = torch.randn(1, 1, 32000)
    y = codec.decode(codec.encode(noise), 32000)
    for lo, hi in [(0, 4000), (4000, 8000), (7000, 8000)]:
        assert abs(_band_energy_db(y, 16000, lo, hi) - _band_energy_db(noise, 16000, lo, hi)) < 0.01
    # overlapped analysis: a click in one frame's span reaches its neighbours' coefficients too
    click = torch.zeros(1, 1, 3200)
    click[..., 1600 + 10] = 1.0  # in frame 5's own samples [1600, 1920), inside frame 4's window
    energy = codec.analyse(click).pow(2).sum(1)[0]
    assert energy[4] > 0 and energy[5] > 0 and energy[3] == 0 and energy[6] == 0


def test_mdct_normalisation_and_release_round_trip(tmp_path):
    codec = MDCTCodec(MDCTCodecConfig())
    codec.set_latent_stats(torch.full((320,), 0.1), torch.linspace(0.5, 2.0, 320))
    x = torch.randn(1, 1, 4000)
    z = codec.encode(x)
    assert torch.allclose(z * codec.latent_std[:, None] + 0.1, codec.analyse(x), atol=1e-5)
    codec.save_pretrained(tmp_path / "c")
    back = MDCTCodec.from_pretrained(tmp_path / "c")
    assert torch.equal(back.encode(x), z)
    from separation.codec import load_codec_release

    assert isinstance(load_codec_release(tmp_path / "c"), MDCTCodec)


def test_codec_config_dispatch_is_strict():
    from promptsep.release import ReleaseError
    from separation.codec import CodecConfig, build_codec, codec_config_from_dict

    assert isinstance(codec_config_from_dict({"kind": "mdct", "hop": 160}), MDCTCodecConfig)
    assert isinstance(codec_config_from_dict({"latent_dim": 32}), CodecConfig)
    assert isinstance(build_codec(MDCTCodecConfig(hop=160)), MDCTCodec)
    with pytest.raises(ReleaseError, match="hopp"):
        codec_config_from_dict({"kind": "mdct", "hopp": 160})
    with pytest.raises(ValueError, match="even"):
        MDCTCodec(MDCTCodecConfig(hop=161))


def test_wide_mask_keeps_the_stems_summing_to_the_mixture():
    from separation.flow import mask_split

    torch.manual_seed(0)
    z = torch.randn(2, 5, 4)
    offset = torch.tensor([0.1, -0.2, 0.0, 0.3])
    logits = torch.randn(2, 5, 8) * 4
    x = mask_split(logits, z, offset, (-1.0, 2.0))
    raw_t, raw_r = x[..., :4] + offset, x[..., 4:] + offset
    assert torch.allclose(raw_t + raw_r, z + offset, atol=1e-6)
    m = raw_t / (z + offset)
    assert float(m.min()) < 0 and float(m.max()) > 1 and float(m.min()) >= -1 and float(m.max()) <= 2
    # [0, 1] is the first release's softmax split, unchanged
    old = torch.softmax(torch.stack([logits[..., :4], logits[..., 4:]], -1), -1)[..., 0] * (z + offset) - offset
    assert torch.allclose(mask_split(logits, z, offset)[..., :4], old, atol=1e-6)


def test_thresholded_snr_loss_orders_estimates_and_handles_silence():
    from separation.flow import thresholded_snr_loss

    torch.manual_seed(0)
    s = torch.randn(3, 1000)
    n = torch.randn(3, 1000)
    mix = s + n
    perfect = thresholded_snr_loss(s, s, mix, floor_db=30.0)
    assert abs(float(perfect) + 3.0) < 1e-3  # the floor: 30 dB under the mixture
    assert float(thresholded_snr_loss(s + 0.1 * n, s, mix)) < float(thresholded_snr_loss(mix, s, mix))
    silent = thresholded_snr_loss(torch.zeros(3, 1000), torch.zeros(3, 1000), mix)
    assert torch.isfinite(silent)


def test_pooled_text_and_log_power_change_the_output():
    from separation.dit import DiT, DiTConfig

    torch.manual_seed(0)
    cfg = DiTConfig(latent_dim=4, width=32, depth=1, heads=2, text_dim=8, video_dim=0, pooled_text=True,
                    log_power_input=True)
    dit = DiT(cfg)
    for p in dit.parameters():  # leave the zero-initialised output: perturb every weight
        p.data.add_(torch.randn_like(p) * 0.1)
    x, z = torch.randn(2, 6, 8), torch.randn(2, 6, 4)
    text = torch.randn(2, 3, 8)
    t = torch.zeros(2)
    a = dit(x, t, z, text, torch.ones(2, 3, dtype=torch.bool))
    dit.text_pool.weight.data.zero_()
    dit.text_pool.bias.data.zero_()
    b = dit(x, t, z, text, torch.ones(2, 3, dtype=torch.bool))
    assert not torch.allclose(a, b)  # the pooled prompt drives the modulation
    assert dit.in_proj.in_features == 16  # [x (2C) | mixture (C) | log power (C)]


def test_v2_training_loss_has_a_waveform_term_that_backpropagates():
    from prompts.text import TextEncoderConfig
    from separation.dit import DiTConfig
    from separation.flow import FlowConfig
    from separation.model import SeparationModelConfig, build_separation_model

    torch.manual_seed(0)
    cfg = SeparationModelConfig(
        codec=MDCTCodecConfig(hop=160),
        dit=DiTConfig(width=32, depth=1, heads=2, pooled_text=True, log_power_input=True),
        flow=FlowConfig(prior="mixture", prediction="mask", mask_range=(-1.0, 2.0), wave_loss_weight=1.0),
        text=TextEncoderConfig(kind="tiny_t5"),
        video=None,
    )
    model = build_separation_model(cfg)
    n = 1600
    tgt, res = torch.randn(2, 1, n), torch.randn(2, 1, n)
    batch = {"mixture": tgt + res, "target": tgt, "residual": res, "text": ["dog barking", "violin"],
             "spans": [None, None], "use_text": [True, True], "use_span": [False, False]}
    out = model.training_loss(batch, generator=torch.Generator().manual_seed(0))
    assert {"loss", "latent_loss", "wave_loss"} <= set(out)
    assert torch.allclose(out["loss"], out["latent_loss"] + out["wave_loss"], atol=1e-5)
    out["loss"].backward()
    assert model.dit.out_proj.weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def v2_model():
    """A tiny seeded model with every v2 part (MDCT latent, [-1, 2] masks, pooled text, log power)."""
    from prompts.text import TextEncoderConfig
    from separation.dit import DiTConfig
    from separation.flow import FlowConfig
    from separation.model import SeparationModelConfig, build_separation_model

    torch.manual_seed(0)
    cfg = SeparationModelConfig(
        codec=MDCTCodecConfig(hop=160),
        dit=DiTConfig(width=32, depth=1, heads=2, pooled_text=True, log_power_input=True),
        flow=FlowConfig(prior="mixture", prediction="mask", mask_range=(-1.0, 2.0)),
        text=TextEncoderConfig(kind="tiny_t5"),
        video=None,
    )
    m = build_separation_model(cfg).eval()
    torch.nn.init.normal_(m.dit.out_proj.weight, std=0.05)
    return m


def test_v2_release_round_trip_and_streaming_match(v2_model, tmp_path):
    import soundfile as sf

    from separation.model import SeparationModel
    from separation.separator import Separator

    path = v2_model.save_pretrained(tmp_path / "v2")
    back = SeparationModel.from_pretrained(path)
    assert isinstance(back.codec, MDCTCodec) and back.cfg.flow.mask_range == (-1.0, 2.0)
    x = 0.3 * torch.randn(1, 27000, generator=torch.Generator().manual_seed(1))
    a = Separator(v2_model).separate(x, 16000, text="dog", steps=1, method="euler", seed=0)
    b = Separator(back).separate(x, 16000, text="dog", steps=1, method="euler", seed=0)
    assert torch.equal(a.target, b.target)
    assert float((a.target - x).abs().max()) > 1e-3  # a real split, not the mixture back
    torch.testing.assert_close(a.target + a.residual, x, rtol=0, atol=1e-5)
    # streamed through the MDCT codec's tiles (overlapping windows across tile edges) = in memory
    src = tmp_path / "in.wav"
    sf.write(src, x.numpy().T, 16000, subtype="FLOAT")
    sep = Separator(back, chunk_s=0.5, overlap_s=0.2)
    ref = sep.separate(str(src), text="dog", steps=2, seed=0)
    sep.separate_file(src, tmp_path / "t.wav", tmp_path / "r.wav", text="dog", steps=2, seed=0, block_s=0.23)
    t, _ = sf.read(tmp_path / "t.wav", dtype="float32", always_2d=True)
    torch.testing.assert_close(torch.from_numpy(t.T), ref.target, rtol=0, atol=1e-5)
