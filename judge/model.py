"""The learned reference-free judge: (mixture, estimate, text prompt) -> four 1..5 scores.

Architecture (see ``docs/JUDGE.md``)::

    mixture, estimate [B, 1, N] --joint gain: mixture RMS to -20 dBFS--> frozen DAC-VAE encoder
        -> latents [B, T, C] each -> Linear + stream embedding + sinusoid positions
        -> shared transformer (``depth_audio`` layers, padding mask) -> h_mix, h_est [B, T, D]
    hand features [B, T, H] (per codec frame: energies, estimate/mixture ratios, band ratios, cosine)
    concat [h_mix | h_est | hand] -> Linear -> [B, T, D]
    text prompt -> frozen TextEncoder memory [B, L, Dt] -> Linear -> cross-attention in every
        layer of the second transformer (``fusion="cross_attention"``), or the pooled sentence
        embedding -> FiLM (``fusion="film"``)
    second transformer (``depth_fusion`` layers) -> masked mean over frames [B, D]
    optional text grounding (``clap_path``): the frozen audio-text embedding (embeddings.clap) of
        the estimate, of the rest (mixture - estimate) and of the mixture, each against the
        prompt's text embedding (and against each other) -> 5 cosines [B, 5] beside the pool
    -> MLP -> [B, 4] (+ [B, 1] presence logit with ``presence_head``)
    raw outputs are normalised scores u = (score - 3) / 2; :meth:`Judge.forward` returns
    3 + 2 clamp(u, -1, 1), i.e. 1..5, in the order precision, recall, faithfulness, overall,
    and with ``presence_head`` a fifth column: the probability (sigmoid of the logit) that the
    prompted sound is in the mixture at all (trained with BCE on ``target_present``).
    Releases saved before the presence head (no ``presence_head`` in their config) load as
    before and return four columns (``JudgeScores.presence`` is None).

The codec (and the audio-text embedding, when used) is frozen. A judge built from a codec release folder (``codec_path``) does not
copy the codec weights into its own release: ``config.json`` keeps the path (relative to
the judge folder when saved) and the SHA-256 of the codec weights, checked on load. A
judge built from a bare :class:`~separation.codec.CodecConfig` (tests) gets a seeded random
codec whose encoder weights are saved with the judge. The audio-text embedding is referenced
the same way (``clap_path`` + ``clap_sha256``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prompts.text import TextEncoderConfig, build_text_encoder
from promptsep import release
from promptsep.errors import AudioError, PromptError
from separation.codec import DACVAE, CodecConfig, build_codec

logger = logging.getLogger(__name__)

FORMAT_VERSION = release.FORMAT_VERSION
MODEL_KIND = "promptsep_judge"
AXES = ("precision", "recall", "faithfulness", "overall")
#: Seed of the random codec of a judge built without a codec release (tests, debug).
CODEC_SEED = 0
#: Relative length difference between mixture and estimate (after resampling) that is refused.
LENGTH_TOLERANCE = 0.01
#: Level the mixture is brought to (RMS, dBFS) before feature extraction; the estimate gets the same gain.
REF_DB = -20.0
#: Largest gain applied by that normalisation (keeps near-silent mixtures from blowing up).
MAX_GAIN_DB = 40.0
#: Number of text-grounding cosines (see :meth:`Judge.grounding`) and their scale into the head.
GROUND_DIM = 5
GROUND_SCALE = 4.0


@dataclass
class JudgeConfig(release.JsonConfig):
    """Everything needed to rebuild a :class:`Judge`.

    Attributes:
        codec: the DAC-VAE layout (with its latent statistics); filled from ``codec_path``.
        codec_path: a codec release folder (``DACVAE.save_pretrained``) whose encoder gives
            the audio features; None builds a seeded random codec from ``codec`` (saved with
            the judge).
        codec_sha256: SHA-256 of the codec weights file (set when built from ``codec_path``;
            checked on load).
        text: the frozen text encoder.
        width: model width ``D``.
        heads: attention heads.
        depth_audio: layers of the shared per-stream transformer.
        depth_fusion: layers of the second (fused, text-conditioned) transformer.
        ff_mult: feed-forward expansion.
        dropout: dropout in the transformers.
        fusion: ``"cross_attention"`` (text token memory) or ``"film"`` (pooled sentence embedding).
        hand_features: add the cheap per-frame hand features (energies, ratios, band ratios).
        bands: frequency bands of the band-ratio hand features.
        max_frames: longest input in codec frames (longer inputs are scored in windows).
        frame_pool: average this many codec frames (mask-aware) before the transformers
            (2 halves the cost: 25 frames/s for ``tiny16k``).
        clap_path: a :class:`embeddings.clap.ClapTiny` release folder for text grounding (does
            the estimate, or the rest of the mixture, sound like the prompt?); None: no grounding.
        clap_sha256: SHA-256 of its weights file (set when built; checked on load).
        presence_head: add a fifth output, the probability that the prompted sound is in the
            mixture (False for releases that predate it).
    """

    codec: CodecConfig = field(default_factory=CodecConfig)
    codec_path: str | None = None
    codec_sha256: str | None = None
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    width: int = 128
    heads: int = 4
    depth_audio: int = 2
    depth_fusion: int = 2
    ff_mult: int = 2
    dropout: float = 0.1
    fusion: str = "cross_attention"
    hand_features: bool = True
    bands: int = 16
    max_frames: int = 1000
    frame_pool: int = 1
    clap_path: str | None = None
    clap_sha256: str | None = None
    presence_head: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        d = dataclasses.asdict(self)
        d["codec"] = self.codec.to_dict()
        return d



@dataclass
class JudgeScores:
    """Scores of one estimate, each on 1..5 (5 best).

    Attributes:
        precision: nothing but the prompted sound (no interference leaked in).
        recall: all of the prompted sound kept.
        faithfulness: no artefacts or distortion.
        overall: overall quality.
        presence: probability (0..1) that the prompted sound is in the mixture at all (None for
            a judge without a presence head). For an absent prompt the right estimate is silence:
            the grades then measure how quiet the estimate is, and ``presence`` says "not there".
    """

    precision: float
    recall: float
    faithfulness: float
    overall: float
    presence: float | None = None

    def to_dict(self) -> dict[str, float]:
        d = dataclasses.asdict(self)
        if d["presence"] is None:
            del d["presence"]
        return d

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> JudgeScores:
        """From a ``[4]`` (scores) or ``[5]`` (scores + presence probability) tensor."""
        v = [float(x) for x in t.detach().cpu().reshape(-1)]
        if len(v) not in (4, 5):
            raise ValueError(f"judge scores need 4 or 5 values, got {len(v)}")
        return cls(*v)


_sha256 = release.sha256_file


def sinusoid(length: int, dim: int, device=None) -> torch.Tensor:
    """Sinusoidal positions ``[length, dim]``."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(1, half))
    ang = pos * freq[None]
    out = torch.zeros(length, dim, device=device)
    out[:, 0 : 2 * half : 2] = torch.sin(ang)
    out[:, 1 : 2 * half : 2] = torch.cos(ang)
    return out


def hand_features(mixture: torch.Tensor, estimate: torch.Tensor, hop: int, num_frames: int,
                  bands: int = 16) -> torch.Tensor:
    """Cheap per-frame features of a (mixture, estimate) pair.

    Per codec frame (``hop`` samples): log energies of the estimate, the mixture and the
    remainder ``mixture - estimate`` (dB / 20), the estimate/mixture and remainder/mixture
    energy ratios (dB, clamped to [-60, 10], / 20), the time-domain cosine of estimate and
    mixture, and per band (``bands`` linear-in-mel bands of a ``2 hop``-point STFT) the
    estimate/mixture ratio and the estimate's level relative to the mixture frame (dB / 20).

    Args:
        mixture: ``[B, 1, N]`` (already level-normalised).
        estimate: ``[B, 1, N]``.
        hop: samples per frame.
        num_frames: frames ``T`` wanted (``ceil(N / hop)``).
        bands: number of frequency bands.

    Returns:
        ``[B, T, 6 + 2 * bands]``.
    """
    b, _, n = mixture.shape
    pad = num_frames * hop - n
    m = nn.functional.pad(mixture[:, 0], (0, max(0, pad)))[:, : num_frames * hop]
    e = nn.functional.pad(estimate[:, 0], (0, max(0, pad)))[:, : num_frames * hop]
    r = m - e
    mf, ef, rf = (x.reshape(b, num_frames, hop) for x in (m, e, r))
    eps = 1e-8

    def db(x):
        return 10 * torch.log10(x.pow(2).mean(-1) + eps)

    em, ee, er = db(mf), db(ef), db(rf)
    cos = (mf * ef).sum(-1) / (mf.norm(dim=-1) * ef.norm(dim=-1) + 1e-6)
    feats = [ee / 20, em / 20, er / 20, (ee - em).clamp(-60, 10) / 20, (er - em).clamp(-60, 10) / 20, cos]
    if bands > 0:
        n_fft = 2 * hop
        win = torch.hann_window(n_fft, device=m.device)
        kw = {"n_fft": n_fft, "hop_length": hop, "window": win, "center": True, "return_complex": True}
        sm = torch.stft(m, **kw).abs().pow(2)[..., :num_frames]  # [B, F, T]
        se = torch.stft(e, **kw).abs().pow(2)[..., :num_frames]
        fb = _band_matrix(sm.shape[1], bands, device=m.device)  # [bands, F]
        bm = torch.einsum("kf,bft->btk", fb, sm)
        be = torch.einsum("kf,bft->btk", fb, se)
        ratio = (10 * torch.log10((be + eps) / (bm + eps))).clamp(-60, 10) / 20
        level = (10 * torch.log10((be + eps) / (bm.sum(-1, keepdim=True) + eps))).clamp(-80, 10) / 20
        feats = [f.unsqueeze(-1) for f in feats] + [ratio, level]
        return torch.cat(feats, dim=-1)
    return torch.stack(feats, dim=-1)


def pool_frames(feats: Mapping[str, torch.Tensor], pool: int) -> dict[str, torch.Tensor]:
    """Mask-aware average of ``pool`` consecutive frames of ``mix``/``est``/``hand`` ``[B, T, *]``;
    a pooled frame is real when any of its frames is."""
    out = dict(feats)
    if pool <= 1:
        return out
    mask = feats["mask"]
    b, t = mask.shape
    pad = (-t) % pool
    m = nn.functional.pad(mask.float(), (0, pad)).reshape(b, -1, pool)
    count = m.sum(-1)
    for k in ("mix", "est", "hand"):
        if k in feats:
            x = nn.functional.pad(feats[k].float(), (0, 0, 0, pad)).reshape(b, -1, pool, feats[k].shape[-1])
            out[k] = (x * m[..., None]).sum(2) / count.clamp_min(1.0)[..., None]
    out["mask"] = count > 0
    return out


def _band_matrix(num_bins: int, bands: int, device=None) -> torch.Tensor:
    """Rectangular bands equally spaced on a mel-like scale, ``[bands, num_bins]`` (rows sum to 1 or 0)."""
    mel = torch.log1p(torch.linspace(0, 1, num_bins, device=device) * 20.0)
    edges = torch.linspace(0, float(mel[-1]) + 1e-6, bands + 1, device=device)
    idx = torch.bucketize(mel, edges[1:-1], right=True)
    fb = nn.functional.one_hot(idx, bands).T.float()
    return fb / fb.sum(-1, keepdim=True).clamp_min(1.0)


class Judge(nn.Module):
    """Reference-free separation judge (see the module docstring).

    Args:
        cfg: the configuration.
        codec: an already loaded codec (optional; else from ``cfg.codec_path`` or ``cfg.codec``).
    """

    def __init__(self, cfg: JudgeConfig, codec: DACVAE | None = None):
        super().__init__()
        if cfg.fusion not in ("cross_attention", "film"):
            raise ValueError(f"unknown judge fusion {cfg.fusion!r}; use 'cross_attention' or 'film'")
        cfg = dataclasses.replace(cfg)
        if codec is not None:
            codec = copy.deepcopy(codec)  # the judge drops the decoder: never touch the caller's codec
        else:
            if cfg.codec_path:
                codec, digest = load_codec(cfg.codec_path)
                if cfg.codec_sha256 and digest != cfg.codec_sha256:
                    raise ValueError(
                        f"the codec at {cfg.codec_path} is not the one this judge was trained with "
                        f"(sha256 {digest[:12]}..., expected {cfg.codec_sha256[:12]}...)")
                cfg.codec_sha256 = digest
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(CODEC_SEED)
                    codec = build_codec(cfg.codec)
        cfg.codec = dataclasses.replace(codec.cfg)
        self.cfg = cfg
        self.codec = codec.requires_grad_(False).eval()
        # the decoder is never used by the judge: drop it (it is not part of the judge's weights)
        self.codec.decoder = None
        self.codec.out_proj = None
        self.text_encoder = build_text_encoder(cfg.text)
        self.clap = None
        if cfg.clap_path:
            self.clap, digest = load_clap(cfg.clap_path)
            if cfg.clap_sha256 and digest != cfg.clap_sha256:
                raise ValueError(
                    f"the audio-text embedding at {cfg.clap_path} is not the one this judge was trained with "
                    f"(sha256 {digest[:12]}..., expected {cfg.clap_sha256[:12]}...)")
            cfg.clap_sha256 = digest
            self.clap.requires_grad_(False).eval()
        self.ground_dim = GROUND_DIM if self.clap is not None else 0
        d = int(cfg.width)
        c = self.codec.latent_dim
        self.hand_dim = (6 + 2 * int(cfg.bands)) if cfg.hand_features else 0

        def enc_layer():
            return nn.TransformerEncoderLayer(d, cfg.heads, cfg.ff_mult * d, cfg.dropout, activation="gelu",
                                              batch_first=True, norm_first=True)

        self.in_proj = nn.Linear(c, d)
        self.stream_emb = nn.Parameter(torch.randn(2, d) * 0.02)
        self.audio_blocks = nn.ModuleList([enc_layer() for _ in range(cfg.depth_audio)])
        self.fuse = nn.Sequential(nn.Linear(2 * d + self.hand_dim, d), nn.GELU(), nn.Linear(d, d))
        dt = self.text_encoder.dim
        self.text_proj = nn.Linear(dt, d)
        if cfg.fusion == "cross_attention":
            self.fusion_blocks = nn.ModuleList([
                nn.TransformerDecoderLayer(d, cfg.heads, cfg.ff_mult * d, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
                for _ in range(cfg.depth_fusion)
            ])
            self.film = None
        else:
            self.fusion_blocks = nn.ModuleList([enc_layer() for _ in range(cfg.depth_fusion)])
            self.film = nn.Linear(d, 2 * d)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Sequential(nn.Linear(d + self.ground_dim, d), nn.GELU(), nn.Linear(d, 4))
        # a separate module (not a wider head) so that releases without it keep their exact tensors
        self.presence = nn.Sequential(nn.Linear(d + self.ground_dim, d), nn.GELU(), nn.Linear(d, 1)) \
            if cfg.presence_head else None

    # ------------------------------------------------------------------ basics
    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def hop_length(self) -> int:
        return self.codec.hop_length

    @property
    def device(self) -> torch.device:
        return self.in_proj.weight.device

    def train(self, mode: bool = True) -> Judge:
        """Train the judge's own layers; the codec and the text encoder stay in eval mode."""
        super().train(mode)
        self.codec.eval()
        self.text_encoder.eval()
        if self.clap is not None:
            self.clap.eval()
        return self

    def saved_state_keys(self) -> list[str]:
        """State-dict keys written to a release: the codec's only when it has no release folder,
        the text encoder's only for the seeded ``tiny_t5`` kind."""
        skip = []
        if self.cfg.codec_path:
            skip.append("codec.")
        if self.cfg.clap_path:
            skip.append("clap.")
        if self.cfg.text.kind in ("minilm", "t5"):
            skip.append("text_encoder.")
        return [k for k in self.state_dict() if not any(k.startswith(s) for s in skip)]

    # ---------------------------------------------------------------- features
    def _normalise_level(self, mixture: torch.Tensor, estimate: torch.Tensor, lengths: torch.Tensor):
        """Apply one gain per row to both signals so the mixture's RMS is :data:`REF_DB` dBFS."""
        n = mixture.shape[-1]
        valid = (torch.arange(n, device=mixture.device)[None] < lengths[:, None]).float()
        ms = (mixture[:, 0].pow(2) * valid).sum(-1) / lengths.clamp_min(1).float()
        gain_db = (REF_DB - 10 * torch.log10(ms + 1e-12)).clamp(max=MAX_GAIN_DB)
        g = (10 ** (gain_db / 20))[:, None, None]
        v = valid[:, None]
        return mixture * g * v, estimate * g * v

    @torch.no_grad()
    def audio_features(self, mixture: torch.Tensor, estimate: torch.Tensor,
                       lengths: torch.Tensor | Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Frozen features of (mixture, estimate) pairs (what a feature cache stores).

        Args:
            mixture: ``[B, 1, N]`` at the codec rate.
            estimate: ``[B, 1, N]``.
            lengths: real samples per row (default: all ``N``).

        Returns:
            ``mix [B, T, C]``, ``est [B, T, C]`` codec latents, ``hand [B, T, H]``,
            ``mask [B, T]`` bool (True on real frames) and, with grounding, ``clap [B, 3, E]``:
            unit-norm audio-text embeddings of the estimate, the rest (mixture - estimate) and
            the mixture.
        """
        b, _, n = mixture.shape
        lengths = self._lengths(lengths, b, n, mixture.device)
        mixture, estimate = self._normalise_level(mixture.float(), estimate.float(), lengths)
        t = self.codec.num_frames(n)
        z = self._encode_unique(torch.cat([mixture, estimate], dim=0))  # [2B, T, C]
        mask = torch.arange(t, device=mixture.device)[None] < ((lengths + self.hop_length - 1) // self.hop_length)[:, None]
        out = {"mix": z[:b], "est": z[b:], "mask": mask}
        if self.hand_dim:
            out["hand"] = hand_features(mixture, estimate, self.hop_length, t, int(self.cfg.bands))
        if self.clap is not None:
            out["clap"] = self._clap_audio(mixture, estimate, lengths)
        return out

    @torch.no_grad()
    def _clap_audio(self, mixture: torch.Tensor, estimate: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, 3, E]`` embeddings of estimate, rest and mixture (``[B, 1, N]`` inputs at the codec rate)."""
        from promptsep.audio import resample

        b = mixture.shape[0]
        wav = torch.cat([estimate, mixture - estimate, mixture], dim=0)[:, 0]
        sr = int(self.clap.cfg.audio.mel.sample_rate)
        lens = lengths.repeat(3)
        if sr != self.sample_rate:
            wav = resample(wav, self.sample_rate, sr)
            lens = (lens.float() * sr / self.sample_rate).round().long()
        e = self.clap.embed_audio(wav.float(), lens)  # [3B, E]
        return torch.stack([e[:b], e[b : 2 * b], e[2 * b :]], dim=1)

    def grounding(self, clap: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """The 5 grounding cosines ``[B, 5]`` from ``clap [B, 3, E]`` and the prompts: estimate,
        rest and mixture against the text, estimate against mixture and against rest."""
        t = self.clap.embed_text(list(texts)).to(clap.device)  # [B, E], unit norm
        est, rest, mix = clap[:, 0], clap[:, 1], clap[:, 2]
        return torch.stack([(est * t).sum(-1), (rest * t).sum(-1), (mix * t).sum(-1),
                            (est * mix).sum(-1), (est * rest).sum(-1)], dim=-1)

    @torch.no_grad()
    def _encode_unique(self, wav: torch.Tensor) -> torch.Tensor:
        """Codec latents ``[R, 1, N] -> [R, T, C]``, encoding identical rows once (a mixture shared
        by several candidates, silent or unprocessed candidates)."""
        keys = [hashlib.sha1(row.detach().cpu().numpy().tobytes()).hexdigest() for row in wav]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        uniq = list(first.values())
        z = self.codec.encode(wav[uniq]).transpose(1, 2)
        pos = {k: j for j, k in enumerate(first)}
        return z[[pos[k] for k in keys]]

    @staticmethod
    def _lengths(lengths, b: int, n: int, device) -> torch.Tensor:
        if lengths is None:
            return torch.full((b,), n, dtype=torch.long, device=device)
        return torch.as_tensor(lengths, dtype=torch.long, device=device).reshape(b)

    # ----------------------------------------------------------------- network
    def forward_features(self, feats: Mapping[str, torch.Tensor], texts: Sequence[str]) -> torch.Tensor:
        """Raw (normalised) scores from frozen features.

        Args:
            feats: output of :meth:`audio_features` (``mix``, ``est`` ``[B, T, C]``, ``mask [B, T]``,
                ``hand [B, T, H]``).
            texts: ``B`` prompt texts.

        Returns:
            ``[B, 4]`` normalised scores ``u = (score - 3) / 2`` (unbounded; training target space),
            and with a presence head ``[B, 5]``: the fifth column is the presence logit.
        """
        feats = pool_frames(feats, int(self.cfg.frame_pool))
        mask = feats["mask"].to(self.device)
        b, t = mask.shape
        pos = sinusoid(t, self.cfg.width, device=self.device)[None]
        pad = ~mask
        hs = []
        x = torch.cat([feats["mix"], feats["est"]], dim=0).to(self.device).float()
        h = self.in_proj(x) + pos
        h = h + torch.repeat_interleave(self.stream_emb, b, dim=0)[:, None, :]
        pad2 = torch.cat([pad, pad], dim=0)
        for blk in self.audio_blocks:
            h = blk(h, src_key_padding_mask=pad2)
        hs = [h[:b], h[b:]]
        if self.hand_dim:
            hs.append(feats["hand"].to(self.device).float())
        h = self.fuse(torch.cat(hs, dim=-1)) + pos
        memory, tmask = self.text_encoder(list(texts))
        memory = self.text_proj(memory.to(self.device))
        tmask = tmask.to(self.device)
        if self.film is not None:
            m = tmask.unsqueeze(-1).float()
            pooled = (memory * m).sum(1) / m.sum(1).clamp_min(1.0)
            gamma, beta = self.film(pooled).chunk(2, dim=-1)
            h = h * (1 + gamma[:, None]) + beta[:, None]
            for blk in self.fusion_blocks:
                h = blk(h, src_key_padding_mask=pad)
        else:
            for blk in self.fusion_blocks:
                h = blk(h, memory, tgt_key_padding_mask=pad, memory_key_padding_mask=~tmask)
        h = self.norm(h)
        w = mask.unsqueeze(-1).float()
        pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        if self.clap is not None:
            if "clap" not in feats:
                raise ValueError("this judge grounds the prompt with an audio-text embedding: its features "
                                 "need 'clap' (rebuild the feature cache)")
            pooled = torch.cat([pooled, GROUND_SCALE * self.grounding(feats["clap"].to(self.device).float(), texts)], -1)
        out = self.head(pooled)
        if self.presence is not None:
            out = torch.cat([out, self.presence(pooled)], dim=-1)
        return out

    @staticmethod
    def denormalise(raw: torch.Tensor) -> torch.Tensor:
        """Normalised scores ``[B, 4]`` -> 1..5 (clamped); a fifth (presence logit) column -> probability."""
        scores = 3.0 + 2.0 * raw[..., :4].clamp(-1.0, 1.0)
        if raw.shape[-1] == 5:
            return torch.cat([scores, torch.sigmoid(raw[..., 4:])], dim=-1)
        return scores

    @staticmethod
    def normalise(scores: torch.Tensor) -> torch.Tensor:
        """1..5 scores -> the normalised training space ``(score - 3) / 2``."""
        return (scores - 3.0) / 2.0

    def forward(self, mixture: torch.Tensor, estimate: torch.Tensor, texts: Sequence[str],
                lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """Scores of a batch.

        Args:
            mixture: ``[B, 1, N]`` at :attr:`sample_rate`.
            estimate: ``[B, 1, N]``.
            texts: ``B`` prompt texts.
            lengths: real samples per row (the rest is padding); default all ``N``.

        Returns:
            ``[B, 4]`` scores in 1..5: precision, recall, faithfulness, overall (``[B, 5]`` with a
            presence head: the fifth column is the presence probability, 0..1).
        """
        if mixture.shape != estimate.shape or mixture.dim() != 3 or mixture.shape[1] != 1:
            raise AudioError(f"mixture and estimate must both be [B, 1, N], got {tuple(mixture.shape)} "
                             f"and {tuple(estimate.shape)}")
        if len(texts) != mixture.shape[0]:
            raise PromptError(f"need one text per row: {len(texts)} texts for {mixture.shape[0]} rows")
        feats = self.audio_features(mixture.to(self.device), estimate.to(self.device), lengths)
        return self.denormalise(self.forward_features(feats, texts))

    # --------------------------------------------------------------- scoring
    def _prepare(self, wav, sample_rate: int, name: str) -> torch.Tensor:
        from promptsep.audio import resample, to_channels_first, to_mono, validate_audio

        if isinstance(wav, np.ndarray):
            wav = torch.from_numpy(np.ascontiguousarray(wav))
        if isinstance(wav, torch.Tensor) and wav.dim() == 3 and wav.shape[0] == 1:
            wav = wav[0]
        validate_audio(wav, sample_rate, name=name)
        wav = to_mono(to_channels_first(wav.detach().float().cpu()))
        return resample(wav, int(sample_rate), self.sample_rate)

    def _pair(self, mixture, estimate, sample_rate, estimate_sample_rate=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Validated mono ``[1, N]`` mixture and estimate at the codec rate, trimmed to a common length."""
        m = self._prepare(mixture, sample_rate, "mixture")
        e = self._prepare(estimate, estimate_sample_rate or sample_rate, "estimate")
        nm, ne = m.shape[-1], e.shape[-1]
        longest = max(nm, ne)
        if abs(nm - ne) > max(1, LENGTH_TOLERANCE * longest):
            raise AudioError(
                f"mixture and estimate lengths differ: {nm / self.sample_rate:.3f} s vs {ne / self.sample_rate:.3f} s "
                f"({nm} vs {ne} samples at {self.sample_rate} Hz); the estimate must cover the whole mixture")
        n = min(nm, ne)
        return m[:, :n], e[:, :n]

    @staticmethod
    def _check_text(text) -> str:
        if text is None or not isinstance(text, str) or not text.strip():
            raise PromptError("the judge needs a non-empty text prompt describing the target sound")
        return text.strip()

    @torch.no_grad()
    def score(self, mixture: torch.Tensor | np.ndarray, estimate: torch.Tensor | np.ndarray, text: str,
              sample_rate: int, estimate_sample_rate: int | None = None) -> JudgeScores:
        """Score one estimate.

        Args:
            mixture: ``[C, N]`` or ``[N]`` (``[1, C, N]`` also accepted) at ``sample_rate``.
            estimate: same layout, at ``estimate_sample_rate`` (default ``sample_rate``).
            text: the prompt that names the target.
            sample_rate: rate of the mixture (and of the estimate unless given) in Hz.
            estimate_sample_rate: rate of the estimate when it differs.

        Returns:
            :class:`JudgeScores` (1..5 each).

        Raises:
            AudioError: empty, non-finite or wrongly shaped audio, or lengths that differ by
                more than 1 % after resampling to the codec rate.
            PromptError: empty text.
        """
        return self.score_batch([mixture], [estimate], [text], sample_rate, estimate_sample_rate)[0]

    @torch.no_grad()
    def score_batch(self, mixtures: Sequence, estimates: Sequence, texts: Sequence[str], sample_rate: int,
                    estimate_sample_rate: int | None = None, batch_size: int = 8) -> list[JudgeScores]:
        """Score several estimates (padded into batches; same rules as :meth:`score`)."""
        if not (len(mixtures) == len(estimates) == len(texts)):
            raise ValueError("mixtures, estimates and texts must have the same length")
        texts = [self._check_text(t) for t in texts]
        pairs = [self._pair(m, e, sample_rate, estimate_sample_rate) for m, e in zip(mixtures, estimates)]
        was_training = self.training
        self.eval()
        out: list[JudgeScores] = []
        try:
            for s in range(0, len(pairs), batch_size):
                chunk = pairs[s : s + batch_size]
                scores = self._score_padded(chunk, texts[s : s + batch_size])
                out += [JudgeScores.from_tensor(r) for r in scores]
        finally:
            self.train(was_training)
        return out

    def _score_padded(self, pairs: list[tuple[torch.Tensor, torch.Tensor]], texts: list[str]) -> torch.Tensor:
        """``[B, 4]`` (``[B, 5]`` with presence) scores of mono ``[1, N_i]`` pairs; inputs longer than ``max_frames`` are
        scored in consecutive windows whose scores are averaged, weighted by length."""
        win = int(self.cfg.max_frames) * self.hop_length
        rows, owners, weights = [], [], []
        for i, (m, e) in enumerate(pairs):
            n = m.shape[-1]
            for s in range(0, n, win):
                end = min(n, s + win)
                if s > 0 and end - s < win // 4:  # a short tail: fold it into the previous window
                    continue
                rows.append((m[:, s:end], e[:, s:end]))
                owners.append(i)
                weights.append(end - s)
        n_max = max(r[0].shape[-1] for r in rows)
        mix = torch.zeros(len(rows), 1, n_max)
        est = torch.zeros(len(rows), 1, n_max)
        lengths = []
        for j, (m, e) in enumerate(rows):
            mix[j, :, : m.shape[-1]] = m
            est[j, :, : e.shape[-1]] = e
            lengths.append(m.shape[-1])
        scores = self(mix.to(self.device), est.to(self.device), [texts[o] for o in owners], lengths).cpu()
        out = torch.zeros(len(pairs), scores.shape[-1])
        tot = torch.zeros(len(pairs))
        for j, o in enumerate(owners):
            out[o] += scores[j] * weights[j]
            tot[o] += weights[j]
        return out / tot[:, None]

    # ----------------------------------------------------------------- release
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write a release folder (:func:`promptsep.release.save_release`).

        A codec given by path is referenced, not copied: the path is stored relative to
        ``path`` (so a release folder next to the codec release can be moved together with it).
        """
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        cfg = dataclasses.replace(self.cfg)
        if cfg.codec_path:
            cfg.codec_path = _relative_to(cfg.codec_path, out)
        if cfg.clap_path:
            cfg.clap_path = _relative_to(cfg.clap_path, out)
        return release.save_release(out, {k: state[k] for k in self.saved_state_keys()}, cfg.to_dict(), MODEL_KIND,
                                    extra={"axes": list(AXES)})

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu",
                        codec_path: str | os.PathLike | None = None) -> Judge:
        """Load a release folder or hub id strictly (checksum verified, every saved tensor present).

        Args:
            path: the judge release folder (or a hub id).
            map_location: device.
            codec_path: override where the codec release is (default: the stored path,
                relative to the judge folder, then relative to the working directory).

        Raises:
            FileNotFoundError: missing folder, files or codec release.
            ValueError: wrong kind or format version, a different codec, or mismatched weights.
        """
        root, meta, tensors = release.read_release(path, MODEL_KIND, "cpu")
        cfg = JudgeConfig.from_dict(meta["config"])
        if codec_path is not None:
            cfg.codec_path = str(codec_path)
        elif cfg.codec_path:
            cfg.codec_path = _find_release(root, cfg.codec_path, "codec", "codec_path")
        if cfg.clap_path:
            cfg.clap_path = _find_release(root, cfg.clap_path, "audio-text embedding", "clap_path")
        model = cls(cfg)
        release.load_state_strict(model, tensors, model.saved_state_keys(), root)
        return model.eval().to(map_location)


def _relative_to(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` (absolute when that is impossible, e.g. another drive)."""
    p = Path(path).resolve()
    try:
        return os.path.relpath(p, folder.resolve())
    except ValueError:
        return str(p)


def _find_release(root: Path, stored: str, what: str, arg: str) -> str:
    """Resolve a release folder stored in a judge config: absolute, else relative to the judge
    folder, the working directory, or a shipped checkpoint of the same name."""
    cands = [Path(stored)] if Path(stored).is_absolute() else \
        [root / stored, Path(stored), release.checkpoints_dir() / Path(stored).name]
    found = next((c for c in cands if (c / "model.safetensors").is_file()), None)
    if found is None:
        raise FileNotFoundError(f"the judge in {root} needs its {what} release {stored!r} (looked in "
                                f"{[str(c) for c in cands]}); pass {arg}=... or fix config.json")
    return str(found)


def load_clap(path: str | os.PathLike):
    """A :class:`embeddings.clap.ClapTiny` release and the SHA-256 of its weights file."""
    from embeddings.clap import ClapTiny

    root = Path(path)
    if root.is_file():
        root = root.parent
    return ClapTiny.from_pretrained(root), _sha256(root / "model.safetensors")


def load_codec(path: str | os.PathLike) -> tuple[DACVAE, str]:
    """A codec release and the SHA-256 of its weights file."""
    root = Path(path)
    if root.is_file():
        root = root.parent
    codec = DACVAE.from_pretrained(root)
    return codec, _sha256(root / "model.safetensors")


def build_judge(cfg: JudgeConfig | None = None, codec: DACVAE | None = None) -> Judge:
    """Factory: a randomly initialised :class:`Judge` (codec from ``cfg.codec_path`` or seeded random)."""
    return Judge(cfg if cfg is not None else JudgeConfig(), codec=codec)
