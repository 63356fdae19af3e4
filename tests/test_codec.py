"""DAC-VAE codec: lengths, determinism, normalisation, release format, training signal."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import torch

from promptsep.errors import InputError
from separation.codec import (
    DACVAE,
    CodecConfig,
    build_codec,
    codec_preset,
    compute_latent_stats,
)
from separation.codec_losses import (
    CodecLossConfig,
    codec_train_step,
    mel_loss,
    stft_loss,
)

# Odd decoder stride (5) exercises DAC's transposed-conv length quirk.
TINY = CodecConfig(sample_rate=16000, encoder_dim=4, encoder_rates=(2, 5), latent_dim=8,
                   decoder_dim=16, decoder_rates=(5, 2))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads; one thread avoids oversubscribing shared CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def codec() -> DACVAE:
    torch.manual_seed(0)
    return build_codec(TINY).eval()


def _wav(n: int, b: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(b, 1, n, generator=g)


@pytest.mark.parametrize("rates", [((2, 4), (4, 2)), ((2, 5), (5, 2)), ((3, 5), (5, 3))])
@pytest.mark.parametrize("n", [1, 319, 1000, 16001])
@torch.no_grad()
def test_round_trip_lengths(rates, n):
    cfg = CodecConfig(encoder_dim=2, encoder_rates=rates[0], latent_dim=4, decoder_dim=8, decoder_rates=rates[1])
    m = build_codec(cfg).eval()
    x = _wav(n)
    z = m.encode(x)
    assert z.shape == (2, 4, math.ceil(n / m.hop_length)) == (2, 4, m.num_frames(n))
    assert m.decode(z).shape == (2, 1, z.shape[-1] * m.hop_length)
    assert m.decode(z, length=n).shape == (2, 1, n)
    assert not m._length_warned  # exact T * hop without the fallback pad/crop


@torch.no_grad()
def test_encode_shapes_and_determinism(codec):
    x = _wav(1234)
    z1, z2 = codec.encode(x), codec.encode(x)
    assert z1.shape == (2, codec.latent_dim, math.ceil(1234 / codec.hop_length))
    assert torch.equal(z1, z2)
    mean, logvar = codec.encode_dist(x)
    assert mean.shape == logvar.shape == z1.shape
    assert torch.equal(mean, z1)  # identity normalisation by default
    out = codec(x)  # eval mode: decoded from the mean
    assert torch.equal(out["recon"], codec.decode(z1, length=1234))
    assert out["kl"].dim() == 0 and out["kl"] >= 0


def test_training_forward_samples(codec):
    m = copy.deepcopy(codec).train()  # parametrized weight norm deep-copies
    x = _wav(400)
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(2)
    b = m(x)
    assert a["recon"].shape == x.shape
    assert not torch.equal(a["recon"], b["recon"])
    assert torch.equal(a["mean"], b["mean"])


@torch.no_grad()
def test_normalisation_round_trip():
    torch.manual_seed(0)
    m = build_codec(TINY).eval()
    x = _wav(500)
    raw_mean, _ = m.encode_dist(x)
    y_raw = m.decode(m.encode(x), length=500)
    mu, std = compute_latent_stats(m, [x, _wav(700, seed=1)])
    assert mu.shape == std.shape == (m.latent_dim,)
    m.set_latent_stats(mu, std)
    z = m.encode(x)
    torch.testing.assert_close(z, (raw_mean - mu[:, None]) / std[:, None])
    torch.testing.assert_close(m.decode(z, length=500), y_raw, atol=1e-5, rtol=1e-4)
    assert m.cfg.latent_mean == pytest.approx(mu.tolist()) and m.cfg.latent_std == pytest.approx(std.tolist())
    with pytest.raises(ValueError):
        m.set_latent_stats(torch.zeros(3), torch.ones(3))


def test_save_load_bit_exact(tmp_path):
    torch.manual_seed(0)
    m = build_codec(TINY).eval()
    m.set_latent_stats(torch.linspace(-1, 1, 8), torch.linspace(0.5, 2, 8))
    out_dir = m.save_pretrained(tmp_path / "codec")
    meta = json.loads((out_dir / "config.json").read_text())
    assert meta["format_version"] == 1 and meta["kind"] == "dac_vae"
    assert meta["config"]["encoder_rates"] == [2, 5]
    loaded = DACVAE.from_pretrained(out_dir)
    assert loaded.cfg == m.cfg
    sa, sb = m.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any("parametrizations.weight.original" in k for k in sa)
    x = _wav(777)
    with torch.no_grad():
        assert torch.equal(m.encode(x), loaded.encode(x))
        z = m.encode(x)
        assert torch.equal(m.decode(z, 777), loaded.decode(z, 777))
    assert DACVAE.from_pretrained(out_dir / "model.safetensors").param_count() == m.param_count()


def test_from_pretrained_errors(tmp_path, codec):
    with pytest.raises(FileNotFoundError, match="not found"):
        DACVAE.from_pretrained(tmp_path / "missing")
    d = codec.save_pretrained(tmp_path / "c")
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        DACVAE.from_pretrained(d)
    d = codec.save_pretrained(tmp_path / "v")
    meta = json.loads((d / "config.json").read_text())
    meta["format_version"] = 99
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version"):
        DACVAE.from_pretrained(d)
    meta["format_version"], meta["kind"] = 1, "promptsep_judge"
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="kind"):
        DACVAE.from_pretrained(d)


def test_bad_inputs(codec):
    with pytest.raises(InputError):
        codec.encode(torch.zeros(2, 100))
    with pytest.raises(InputError):
        codec.encode(torch.zeros(1, 1, 0))
    with pytest.raises(InputError):
        codec.decode(torch.zeros(1, 8, 3), length=31)
    with pytest.raises(ValueError, match="decoder_rates"):
        CodecConfig(encoder_rates=(2, 4), decoder_rates=(4, 4)).validate()


def test_losses_zero_on_identity():
    x = _wav(3000)
    assert float(stft_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(mel_loss(x, x, 16000)) == pytest.approx(0.0, abs=1e-6)
    assert float(stft_loss(x, torch.zeros_like(x))) > 0.5


def test_overfit_one_clip_loss_decreases():
    torch.manual_seed(0)
    m = build_codec(TINY).train()
    t = torch.arange(800) / 16000
    x = (0.5 * torch.sin(2 * math.pi * 440 * t) + 0.2 * torch.sin(2 * math.pi * 1250 * t)).reshape(1, 1, -1)
    cfg = CodecLossConfig(stft_windows=(512, 128), mel_windows=(256, 64), mel_bins=(40, 10))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss, logs = codec_train_step(m, x, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(logs["loss"]))
        assert set(logs) >= {"loss", "wave", "stft", "mel", "kl"}
    assert min(losses[-5:]) < 0.8 * losses[0], losses


def test_presets():
    tiny = codec_preset("tiny16k")
    assert tiny == CodecConfig(latent_dim=128, linear_path=True, dac_mean=False)
    assert (tiny.hop_length, tiny.frame_rate, tiny.latent_dim, tiny.linear_path) == (320, 50.0, 128, True)
    sam = codec_preset("sam48k")
    assert (sam.hop_length, sam.frame_rate, sam.latent_dim, sam.encoder_out_dim) == (1920, 25.0, 128, 1024)
    sam.validate()
    m = build_codec(tiny)
    assert (m.hop_length, m.frame_rate, m.num_frames(16000), m.num_frames(16001)) == (320, 50.0, 50, 51)
    with torch.no_grad():
        z = m.eval().encode(_wav(16001, b=1))
        assert z.shape == (1, 128, 51)
        assert m.decode(z, length=16001).shape == (1, 1, 16001)
    with pytest.raises(ValueError, match="known presets"):
        codec_preset("nope")


def test_sam48k_builds():
    m = build_codec(codec_preset("sam48k"))
    assert (m.sample_rate, m.hop_length, m.frame_rate, m.latent_dim) == (48000, 1920, 25.0, 128)
    assert (m.in_proj.in_channels, m.in_proj.out_channels) == (1024, 256)
    assert (m.out_proj.in_channels, m.out_proj.out_channels) == (128, 1024)
    assert 50_000_000 < m.param_count() < 150_000_000


def test_pca_linear_path_is_a_working_codec_before_training():
    import numpy as np

    from separation.metrics import si_sdr

    cfg = CodecConfig(sample_rate=16000, encoder_dim=4, encoder_rates=(4, 8), latent_dim=16, decoder_dim=16,
                      decoder_rates=(8, 4), linear_path=True)
    codec = build_codec(cfg).eval()
    t = torch.arange(16000) / 16000
    rng = np.random.default_rng(0)

    def tones(n):  # harmonic tones with random low fundamentals: energy in few frame components
        f0 = torch.tensor(rng.uniform(60, 300, size=(n, 1)), dtype=torch.float32)
        return sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in (1, 2, 3))[:, None]

    with torch.no_grad():
        z = torch.randn(2, 16, 10)
        assert codec.decoder(codec.out_proj(z)).abs().max() == 0  # the DAC decoder starts as a zero term
        kept = codec.init_linear_path(tones(32))
        x = tones(4)
        after = codec.decode(codec.encode(x), length=x.shape[-1])
    assert 0.5 < float(kept) <= 1.0
    assert float(si_sdr(after[:, 0], x[:, 0]).mean()) > 10.0
    with pytest.raises(ValueError, match="linear_path"):
        build_codec(dataclasses.replace(cfg, linear_path=False)).init_linear_path(x)


def test_linear_means_skip_the_dac_encoder():
    cfg = CodecConfig(sample_rate=16000, encoder_dim=4, encoder_rates=(4, 8), latent_dim=16, decoder_dim=16,
                      decoder_rates=(8, 4), linear_path=True, dac_mean=False)
    codec = build_codec(cfg).eval()
    x = _wav(1000, b=2)
    with torch.no_grad():
        mean, _ = codec.encode_dist(x)
        assert torch.allclose(codec.encode(x), mean, atol=1e-6)  # stats are 0/1 here
        assert torch.allclose(mean, codec.lin_enc(codec._pad(x)), atol=1e-6)
    with pytest.raises(ValueError, match="linear_path"):
        CodecConfig(dac_mean=False).validate()
