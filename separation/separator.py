"""Inference API: :class:`Separator` turns a recording and prompts into target and residual stems.

- Any input rate and channel count: audio is resampled to the model rate and each
  channel is separated (``channels="per_channel"``) or the channels are averaged
  (``channels="mono"``); outputs come back at the input rate, trimmed to the input length.
- Long audio is processed in latent chunks with overlap. Chunks share one global noise
  tensor, and the frames a chunk shares with the previous one are pinned to the previous
  result along the straight flow path (their velocity is the known ``x1 - x0``), so
  neighbouring chunks agree and the result does not drift. Encoding and decoding are
  chunked too, so memory stays flat in length.
- ``candidates=K`` draws K results with different noise and keeps the best by a ranker
  (``"judge"``: a learned judge's overall score; ``"activity"``: agreement of the
  target's sound activity with the span prompt).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prompts.span import parse_span
from promptsep.audio import load_audio, resample, to_channels_first, validate_audio
from promptsep.errors import AudioError, NonFiniteOutputError, OptionError, PromptError
from separation.flow import PROMPT_KINDS, SAMPLERS
from separation.model import SeparationModel
from separation.refine import REFINE_MODES, wiener_refine

#: Largest gain (dB, either way) of the input level normalisation (:class:`Separator` ``input_level_db``).
MAX_LEVEL_GAIN_DB = 40.0
#: Largest classifier-free guidance scale accepted (0 removes a prompt kind's effect, 1 = no guidance).
MAX_GUIDANCE = 20.0

logger = logging.getLogger(__name__)


@dataclass
class SeparationResult:
    """Output of :meth:`Separator.separate`.

    Attributes:
        target: the prompted sound ``[C, N]`` at ``sample_rate``.
        residual: everything else ``[C, N]``.
        sample_rate: rate of both stems (the input's rate).
        info: timings, candidate scores and settings.
        raw: with ``keep_raw=True``, the generated ``(target, residual)`` ``[C, N]`` at the input's rate
            and level, before refinement and before the residual is made ``input - target``
            (these two do not add up to the input); else None.
    """

    target: torch.Tensor
    residual: torch.Tensor
    sample_rate: int
    info: dict[str, Any] = field(default_factory=dict)
    raw: tuple[torch.Tensor, torch.Tensor] | None = None


Ranker = Callable[..., torch.Tensor]


def activity_ranker(
    mixture: torch.Tensor, candidates: torch.Tensor, sample_rate: int, spans=None, frame_s: float = 0.02, **_
) -> torch.Tensor:
    """Score candidates by how well their sound activity follows the span prompt.

    Score = mean frame level (dB) on '+' spans minus mean level on '-' spans; higher is better.
    Without spans every candidate scores 0.

    Args:
        mixture: ``[1, N]`` (unused, part of the ranker signature).
        candidates: target candidates ``[K, 1, N]``.
        sample_rate: rate of the audio.
        spans: list of ``(sign, start_s, end_s)``.
    """
    k, _, n = candidates.shape
    if not spans:
        return torch.zeros(k)
    hop = max(1, int(frame_s * sample_rate))
    frames = n // hop
    if frames == 0:
        return torch.zeros(k)
    x = candidates[:, 0, : frames * hop].reshape(k, frames, hop)
    level = 10 * torch.log10(x.pow(2).mean(-1) + 1e-10)
    t = (torch.arange(frames) + 0.5) * hop / sample_rate
    pos = torch.zeros(frames, dtype=torch.bool)
    neg = torch.zeros(frames, dtype=torch.bool)
    for sign, s, e in spans:
        sel = (t >= s) & (t < e)
        (pos if sign == "+" else neg)[sel] = True
    score = torch.zeros(k)
    if pos.any():
        score += level[:, pos].mean(-1)
    if neg.any():
        score -= level[:, neg].mean(-1)
    return score


class Separator:
    """Prompted separation with a trained :class:`SeparationModel`.

    Args:
        model: the separation model (put in eval mode).
        device: where to run.
        chunk_s: longest piece processed at once, in seconds.
        overlap_s: overlap between neighbouring chunks, in seconds.
        judge: optional judge (an object with ``score(mixture, estimate, text, sample_rate)``
            returning scores with an ``overall`` field) used by ``ranker="judge"``.
        input_level_db: each input row is brought to this RMS level (dBFS; the median level of
            the training mixtures is about -20) before encoding, and the stems are scaled back,
            so the result does not depend on the recording's level (gain at most
            :data:`MAX_LEVEL_GAIN_DB` either way). None separates the audio at its own level.
    """

    def __init__(
        self,
        model: SeparationModel,
        device: str | torch.device = "cpu",
        chunk_s: float = 10.0,
        overlap_s: float = 2.0,
        judge: Any | None = None,
        input_level_db: float | None = -20.0,
    ):
        device = check_device(device)
        chunk_s, overlap_s = _finite("chunk_s", chunk_s), _finite("overlap_s", overlap_s)
        if overlap_s < 0 or chunk_s <= overlap_s:
            raise OptionError(f"need 0 <= overlap_s < chunk_s, got overlap_s {overlap_s}, chunk_s {chunk_s}")
        if input_level_db is not None:
            input_level_db = _finite("input_level_db", input_level_db)
            if not -100.0 <= input_level_db <= 0.0:
                raise OptionError(f"input_level_db must be between -100 and 0 dBFS, got {input_level_db}")
        self.model = model.eval().to(device)
        self.device = device
        self.chunk_s = chunk_s
        self.overlap_s = overlap_s
        self.judge = judge
        self.input_level_db = input_level_db

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", **kwargs) -> Separator:
        """Load a release folder (``config.json`` + ``model.safetensors``) or a hub id."""
        device = check_device(device)
        return cls(SeparationModel.from_pretrained(path, map_location=device), device=device, **kwargs)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    def sampling(self, steps: int | None = None, method: str | None = None) -> tuple[int, str]:
        """``(steps, method)`` with the release's recommended settings filling what is None."""
        rec = self.model.cfg.sampling
        steps = _count("steps", rec.steps if steps is None else steps, 1)
        method = rec.method if method is None else method
        if method not in SAMPLERS:
            raise OptionError(f"unknown sampler method {method!r}; choose from {sorted(SAMPLERS)}")
        return steps, method

    def wiener(
        self, mixture: torch.Tensor, target: torch.Tensor, residual: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The release's Wiener refinement (its ``sampling.refine_power`` and ``refine_n_fft``).

        Args:
            mixture: ``[..., N]`` waveform.
            target: generated target ``[..., N]``.
            residual: generated residual ``[..., N]``.

        Returns:
            ``(target, residual)`` with ``target + residual == mixture``.
        """
        rec = self.model.cfg.sampling
        n_fft = int(rec.refine_n_fft)
        return wiener_refine(mixture, target, residual, n_fft=n_fft, hop_length=n_fft // 4, power=float(rec.refine_power))

    # ----------------------------------------------------------------- public
    def separate(
        self,
        audio: torch.Tensor | np.ndarray | str | Path,
        sample_rate: int | None = None,
        text: str | None = None,
        spans: Sequence[tuple[str, float, float] | str] | None = None,
        video: Any | None = None,
        steps: int | None = None,
        method: str | None = None,
        candidates: int = 1,
        guidance: Mapping[str, float] | None = None,
        seed: int = 0,
        ranker: str | Ranker | None = None,
        channels: str = "per_channel",
        refine: str = "wiener",
        keep_raw: bool = False,
    ) -> SeparationResult:
        """Separate one recording.

        Args:
            audio: waveform ``[C, N]`` / ``[N]`` (tensor or array) or a path to an audio file.
            sample_rate: rate of ``audio`` (required unless it is a path).
            text: what to isolate, e.g. ``"dog barking"``.
            spans: ``('+' | '-', start_s, end_s)`` tuples or strings like ``"+1.0:2.5"``.
            video: a :class:`prompts.types.VideoPrompt` (frames + masks or box), or None.
            steps: function evaluations of the ODE sampler (None: the release's recommended
                ``sampling.steps``).
            method: ``midpoint``, ``euler`` or ``diffusers`` (None: the release's ``sampling.method``).
            candidates: draw this many results and keep the best by ``ranker``.
            guidance: classifier-free guidance scale per prompt kind (1 = none).
            seed: noise seed (results are deterministic given the seed).
            ranker: ``"judge"``, ``"activity"``, a callable, or None (default: judge if one
                is loaded, else activity when spans are given, else the first candidate).
            channels: ``"per_channel"`` separates each channel, ``"mono"`` averages them first.
            refine: ``"wiener"`` soft-masks the mixture with the generated stems' magnitudes
                (see :mod:`separation.refine`; the mask exponent and STFT size are the release's
                ``sampling.refine_power`` / ``refine_n_fft``), ``"none"`` keeps the decoded generated
                target as it is.
            keep_raw: also return the generated stems before refinement (``result.raw``).

        Both modes return ``residual = input - target`` at the input's rate and channels, so the
        stems add up to the input exactly (to float rounding). The model works at
        :attr:`sample_rate` (16 kHz): the target holds at most the band below half that rate
        (8 kHz); everything above it is in the residual.

        Returns:
            :class:`SeparationResult` with stems at the input rate and length.

        Raises:
            AudioError: unreadable, empty, non-finite or silent audio.
            PromptError: no prompt, bad spans, a video that does not cover the audio.
            OptionError: steps, candidates, guidance, seed or method out of range or not finite.
            NonFiniteOutputError: the model produced NaN/Inf (e.g. corrupted weights).

        Warns:
            UserWarning: a text prompt longer than the text encoder's token limit (it is cut).
        """
        return self.separate_batch(
            [audio], [sample_rate], [text], [spans], [video], steps=steps, method=method,
            candidates=candidates, guidance=guidance, seed=seed, ranker=ranker, channels=channels,
            refine=refine, keep_raw=keep_raw,
        )[0]

    def separate_batch(
        self,
        audios: Sequence[Any],
        sample_rates: Sequence[int | None],
        texts: Sequence[str | None],
        spans: Sequence[Any] | None = None,
        videos: Sequence[Any] | None = None,
        steps: int | None = None,
        method: str | None = None,
        candidates: int = 1,
        guidance: Mapping[str, float] | None = None,
        seed: int = 0,
        ranker: str | Ranker | None = None,
        channels: str = "per_channel",
        refine: str = "wiener",
        keep_raw: bool = False,
    ) -> list[SeparationResult]:
        """Separate several recordings in one batch (padded to the longest; same settings for all)."""
        if refine not in REFINE_MODES:
            raise OptionError(f"refine must be one of {REFINE_MODES}, got {refine!r}")
        steps, method = self.sampling(steps, method)
        candidates = _count("candidates", candidates, 1)
        seed = _count("seed", seed, 0)
        guidance = check_guidance(guidance)
        t_start = time.perf_counter()
        n_items = len(audios)
        spans = list(spans) if spans is not None else [None] * n_items
        videos = list(videos) if videos is not None else [None] * n_items
        if not (len(sample_rates) == len(texts) == len(spans) == len(videos) == n_items):
            raise ValueError("audios, sample_rates, texts, spans and videos need one entry per item")
        sr_model = self.sample_rate
        rows: list[torch.Tensor] = []  # model-rate mono rows
        owners: list[int] = []
        metas = []
        for i, (a, sr) in enumerate(zip(audios, sample_rates)):
            wav, sr_in = self._read(a, sr, name=f"input {i}" if n_items > 1 else "input audio")
            norm_spans = self._check_prompts(texts[i], spans[i], videos[i], wav.shape[-1] / sr_in)
            spans[i] = norm_spans
            self._warn_long_text(texts[i])
            if channels == "mono":
                wav_rows = [wav.mean(0, keepdim=True)]
            elif channels == "per_channel":
                wav_rows = [wav[c : c + 1] for c in range(wav.shape[0])]
            else:
                raise ValueError(f"channels must be 'per_channel' or 'mono', got {channels!r}")
            metas.append((sr_in, wav.shape[-1], len(wav_rows), wav))
            for r in wav_rows:
                rows.append(resample(r, sr_in, sr_model)[0])
                owners.append(i)
        lengths = [r.shape[-1] for r in rows]
        n_max = max(lengths)
        mix = torch.zeros(len(rows), 1, n_max)
        for j, r in enumerate(rows):
            mix[j, 0, : r.shape[-1]] = r
        mix = mix.to(self.device)

        gain = self._level_gain(mix, lengths)  # [R, 1, 1]
        mix = mix * gain  # everything below works at the normalised level; the stems are scaled back at the end
        z_mix = self._encode(mix)  # [R, T, C]
        num_frames = z_mix.shape[1]
        frame_valid = torch.tensor(
            [[k < self.model.codec.num_frames(n) for k in range(num_frames)] for n in lengths], device=self.device
        )
        audio_mask = None if bool(frame_valid.all()) else frame_valid
        cond = self.model.encode_prompts(
            [texts[o] for o in owners], [spans[o] for o in owners], [videos[o] for o in owners],
            num_frames, [n / sr_model for n in lengths],
        )
        # K candidates per row, adjacent.
        k = candidates
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(len(rows) * k, num_frames, 2 * self.model.latent_dim, generator=gen).to(self.device)
        with torch.no_grad():
            x1 = self.model.generate(
                z_mix.repeat_interleave(k, 0), cond.repeat(k), noise, nfe=steps, method=method, guidance=guidance,
                audio_mask=None if audio_mask is None else audio_mask.repeat_interleave(k, 0),
                chunks=self._chunk_bounds(num_frames, self.model.frame_rate),
            )
        c = self.model.latent_dim
        tgt = self._decode(x1[..., :c], n_max)  # [R*K, 1, N]
        res = self._decode(x1[..., c:], n_max)

        best, scores = self._rank(mix, tgt, k, owners, texts, spans, ranker, lengths)
        tgt = tgt.view(len(rows), k, 1, n_max)[torch.arange(len(rows)), best]
        res = res.view(len(rows), k, 1, n_max)[torch.arange(len(rows)), best]
        _check_finite(tgt, res, "generated stems")
        raw = (tgt / gain, res / gain) if keep_raw else None
        t_refine = time.perf_counter()
        if refine == "wiener":
            tgt, res = self.wiener(mix, tgt, res)
        t_refine = time.perf_counter() - t_refine
        tgt = tgt / gain  # back to the input's level
        elapsed = time.perf_counter() - t_start

        results = []
        j = 0
        for i, (sr_in, n_in, n_rows, wav) in enumerate(metas):
            t_rows, raw_rows = [], []
            for _ in range(n_rows):
                n = lengths[j]
                t_rows.append(_fit(resample(tgt[j, :, :n].cpu(), sr_model, sr_in), n_in))
                if raw is not None:
                    raw_rows.append(tuple(_fit(resample(x[j, :, :n].cpu(), sr_model, sr_in), n_in) for x in raw))
                j += 1
            # residual = input - target at the input's rate and channels (``mono``: the channel average)
            target, residual = _complement(wav if channels == "per_channel" else wav.mean(0, keepdim=True), torch.cat(t_rows))
            _check_finite(target, residual, "output stems")
            info = {
                "steps": steps, "method": method, "refine": refine, "candidates": k, "seed": seed, "guidance": dict(guidance or {}),
                "seconds": elapsed / n_items, "refine_seconds": t_refine / n_items, "audio_seconds": n_in / sr_in,
                "candidate_scores": None if scores is None else scores[owners.index(i)].tolist(),
                "model_band_hz": [0.0, sr_model / 2],
            }
            raw_i = None
            if raw is not None:
                raw_i = (torch.cat([r[0] for r in raw_rows]), torch.cat([r[1] for r in raw_rows]))
            results.append(SeparationResult(target, residual, sr_in, info, raw_i))
        return results

    # --------------------------------------------------------------- internals
    def _warn_long_text(self, text: str | None) -> None:
        """Warn when a text prompt has more tokens than the text encoder keeps (it is cut)."""
        enc = getattr(self.model, "text_encoder", None)
        tok, limit = getattr(enc, "tokenizer", None), getattr(getattr(enc, "cfg", None), "max_length", None)
        if not text or tok is None or limit is None:
            return
        n = len(tok(str(text), truncation=False, verbose=False)["input_ids"])
        if n > int(limit):
            warnings.warn(
                f"the text prompt ({len(str(text))} characters, {n} tokens) is cut to {int(limit)} tokens: "
                "only its beginning is used", UserWarning, stacklevel=4,
            )

    def _level_gain(self, mix: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
        """Per-row gains ``[R, 1, 1]`` that bring the RMS of ``mix [R, 1, N]`` (over each row's
        real samples) to :attr:`input_level_db`; ones when that is None."""
        if self.input_level_db is None:
            return torch.ones(mix.shape[0], 1, 1, device=mix.device)
        n = torch.as_tensor(lengths, device=mix.device).clamp_min(1)
        ms = mix[:, 0].pow(2).sum(-1) / n
        db = (float(self.input_level_db) - 10 * torch.log10(ms.clamp_min(1e-20)))
        db = db.clamp(-MAX_LEVEL_GAIN_DB, MAX_LEVEL_GAIN_DB)
        return (10 ** (db / 20)).view(-1, 1, 1).to(mix.dtype)

    def _read(self, audio, sample_rate, name) -> tuple[torch.Tensor, int]:
        if isinstance(audio, (str, Path)):
            wav, sr = load_audio(audio)
        else:
            if sample_rate is None:
                raise AudioError(f"{name}: sample_rate is required for an in-memory waveform")
            wav, sr = to_channels_first(audio), int(sample_rate)
            validate_audio(wav, sr, name=name)
        if float(wav.abs().max()) == 0.0:
            raise AudioError(f"{name} is silent (all samples are zero): there is nothing to separate")
        return wav, sr

    def _check_prompts(self, text, spans, video, duration_s: float):
        if text is not None and not str(text).strip():
            raise PromptError("the text prompt is empty")
        norm = None
        if spans:
            norm = []
            for s in spans:
                sign, a, b = parse_span(s) if isinstance(s, str) else (s[0], float(s[1]), float(s[2]))
                if sign not in ("+", "-"):
                    raise PromptError(f"span sign must be '+' or '-', got {sign!r}")
                if not a < b:
                    raise PromptError(f"span {sign}{a}:{b} has start >= end")
                if a < 0 or b > duration_s + 1e-6:
                    raise PromptError(f"span {sign}{a}:{b} is outside the audio (0 to {duration_s:.3f} s)")
                norm.append((sign, a, b))
        if video is not None:
            from prompts.video import check_video_covers_audio

            if video.masks is None and getattr(video, "box", None) is None:
                raise PromptError("the video prompt needs a box or per-frame masks that select the target")
            check_video_covers_audio(video, duration_s)
        if not text and not norm and video is None:
            raise PromptError("give at least one prompt: text, spans or video")
        return norm

    def _chunk_bounds(self, total: int, rate: float) -> list[tuple[int, int]]:
        size = max(1, int(round(self.chunk_s * rate)))
        if total <= size:
            return [(0, total)]
        hop = max(1, size - int(round(self.overlap_s * rate)))
        starts = list(range(0, total - size, hop)) + [total - size]
        return [(s, s + size) for s in starts]

    def _encode(self, mix: torch.Tensor) -> torch.Tensor:
        """Chunked codec encoding ``[R, 1, N] -> [R, T, C]`` (exact when N fits one chunk)."""
        codec = self.model.codec
        hop = codec.hop_length
        total = codec.num_frames(mix.shape[-1])
        bounds = self._chunk_bounds(total, codec.frame_rate)
        if len(bounds) == 1:
            return self.model.encode_audio(mix)
        margin = int(round(self.overlap_s / 2 * codec.frame_rate))
        out = []
        for s, e in _tiles(total, bounds[0][1] - bounds[0][0]):
            a, b = max(0, s - margin), min(total, e + margin)
            z = self.model.encode_audio(mix[..., a * hop : b * hop])
            out.append(z[:, s - a : s - a + (e - s)])
        return torch.cat(out, dim=1)

    def _decode(self, z: torch.Tensor, length: int) -> torch.Tensor:
        """Chunked decoding ``[R, T, C] -> [R, 1, length]``."""
        codec = self.model.codec
        hop = codec.hop_length
        total = z.shape[1]
        bounds = self._chunk_bounds(total, codec.frame_rate)
        if len(bounds) == 1:
            return self.model.decode_latents(z, length)
        margin = int(round(self.overlap_s / 2 * codec.frame_rate))
        out = []
        for s, e in _tiles(total, bounds[0][1] - bounds[0][0]):
            a, b = max(0, s - margin), min(total, e + margin)
            wav = self.model.decode_latents(z[:, a:b], (b - a) * hop)
            out.append(wav[..., (s - a) * hop : (e - a) * hop])
        return torch.cat(out, dim=-1)[..., :length]

    def _rank(self, mix, tgt, k, owners, texts, spans, ranker, lengths):
        """Pick the best of ``k`` candidates per row; returns (indices [R], scores [R, K] or None)."""
        rows = len(owners)
        if k == 1:
            return torch.zeros(rows, dtype=torch.long), None
        if ranker is None:
            ranker = "judge" if self.judge is not None else ("activity" if any(spans) else None)
        if ranker is None:
            return torch.zeros(rows, dtype=torch.long), None
        scores = torch.zeros(rows, k)
        tgt = tgt.view(rows, k, 1, -1).cpu()
        mix = mix.cpu()
        sr = self.sample_rate
        for j, o in enumerate(owners):
            n = lengths[j]
            cands = tgt[j, :, :, :n]
            if ranker == "judge":
                if self.judge is None:
                    raise ValueError("ranker='judge' needs a Separator with a judge (judge=...)")
                scores[j] = torch.tensor(
                    [float(self.judge.score(mix[j, :, :n], cands[i], texts[o] or "", sr).overall) for i in range(k)]
                )
            elif ranker == "activity":
                scores[j] = activity_ranker(mix[j, :, :n], cands, sr, spans=spans[o])
            elif callable(ranker):
                scores[j] = torch.as_tensor(ranker(mix[j, :, :n], cands, sr, spans=spans[o], text=texts[o]))
            else:
                raise ValueError(f"unknown ranker {ranker!r}; use 'judge', 'activity' or a callable")
        return scores.argmax(dim=1), scores


def check_device(device: str | torch.device) -> torch.device:
    """A usable torch device, or :class:`OptionError` naming the problem (unknown name, CUDA/MPS absent)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise OptionError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(f"device {device!r}: CUDA is not available on this machine (use cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise OptionError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise OptionError(f"device {device!r}: MPS is not available on this machine (use cpu)")
    elif dev.type != "cpu":
        raise OptionError(f"device {device!r} is not supported: use cpu, cuda, cuda:N or mps")
    return dev


def check_guidance(guidance: Mapping[str, float] | None) -> dict[str, float]:
    """Guidance scales per prompt kind, each finite and in ``[0, MAX_GUIDANCE]``; :class:`OptionError` otherwise."""
    if guidance is None:
        return {}
    if not isinstance(guidance, Mapping):
        raise OptionError(f"guidance must map prompt kinds {PROMPT_KINDS} to scales, got {type(guidance).__name__}")
    out = {}
    for kind, w in guidance.items():
        if kind not in PROMPT_KINDS:
            raise OptionError(f"unknown guidance kind {kind!r}; use one of {PROMPT_KINDS}")
        w = _finite(f"guidance[{kind}]", w)
        if not 0.0 <= w <= MAX_GUIDANCE:
            raise OptionError(f"guidance[{kind}] must be between 0 and {MAX_GUIDANCE:g}, got {w:g}")
        out[kind] = w
    return out


def _finite(name: str, value: Any) -> float:
    """``float(value)``, or :class:`OptionError` when it is not a finite number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise OptionError(f"{name} must be a finite number, got {value!r}")
    return v


def _count(name: str, value: Any, minimum: int) -> int:
    """A whole number ``>= minimum`` (``2.0`` is accepted, ``2.5``/NaN/True are not)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float, np.floating)):
        raise OptionError(f"{name} must be a whole number, got {value!r}")
    if not isinstance(value, numbers.Integral) and not (math.isfinite(value) and float(value).is_integer()):
        raise OptionError(f"{name} must be a whole number, got {value!r}")
    v = int(value)
    if v < minimum:
        raise OptionError(f"{name} must be >= {minimum}, got {v}")
    return v


def _check_finite(target: torch.Tensor, residual: torch.Tensor, what: str) -> None:
    """:class:`NonFiniteOutputError` when either stem has NaN/Inf samples."""
    bad = int((~torch.isfinite(target)).sum()) + int((~torch.isfinite(residual)).sum())
    if bad:
        raise NonFiniteOutputError(
            f"the {what} have {bad} non-finite (NaN/Inf) samples: the checkpoint may be corrupted or a "
            "setting is extreme; nothing is returned"
        )


def _complement(wav: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(target, wav - target)`` in float32 with ``target + residual == wav`` to float rounding.

    Args:
        wav: the input ``[C, N]`` at its own rate.
        target: the target ``[C, N]`` at the same rate.
    """
    target = target.to(torch.float32).contiguous()
    residual = (wav.double() - target.double()).to(torch.float32)
    return target, residual


def _tiles(total: int, size: int) -> list[tuple[int, int]]:
    """Non-overlapping ``[s, e)`` tiles of ``size`` covering ``[0, total)``."""
    return [(s, min(total, s + size)) for s in range(0, total, size)]


def _fit(wav: torch.Tensor, n: int) -> torch.Tensor:
    """Trim or zero-pad ``[C, M]`` to exactly ``n`` samples."""
    if wav.shape[-1] >= n:
        return wav[..., :n]
    return torch.nn.functional.pad(wav, (0, n - wav.shape[-1]))


__all__ = ["Separator", "SeparationResult", "activity_ranker"]
