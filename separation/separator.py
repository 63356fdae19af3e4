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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prompts.span import parse_span
from promptsep.audio import load_audio, resample, to_channels_first, validate_audio
from promptsep.errors import AudioError, PromptError
from separation.model import SeparationModel
from separation.refine import REFINE_MODES, wiener_refine

#: Largest gain (dB, either way) of the input level normalisation (:class:`Separator` ``input_level_db``).
MAX_LEVEL_GAIN_DB = 40.0

logger = logging.getLogger(__name__)


@dataclass
class SeparationResult:
    """Output of :meth:`Separator.separate`.

    Attributes:
        target: the prompted sound ``[C, N]`` at ``sample_rate``.
        residual: everything else ``[C, N]``.
        sample_rate: rate of both stems (the input's rate).
        info: timings, candidate scores and settings.
    """

    target: torch.Tensor
    residual: torch.Tensor
    sample_rate: int
    info: dict[str, Any] = field(default_factory=dict)


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
        if overlap_s < 0 or chunk_s <= overlap_s:
            raise ValueError(f"need 0 <= overlap_s < chunk_s, got overlap {overlap_s}, chunk {chunk_s}")
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.chunk_s = chunk_s
        self.overlap_s = overlap_s
        self.judge = judge
        self.input_level_db = input_level_db

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", **kwargs) -> Separator:
        """Load a release folder (``config.json`` + ``model.safetensors``) or a hub id."""
        return cls(SeparationModel.from_pretrained(path, map_location=device), device=device, **kwargs)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    def sampling(self, steps: int | None = None, method: str | None = None) -> tuple[int, str]:
        """``(steps, method)`` with the release's recommended settings filling what is None."""
        rec = self.model.cfg.sampling
        return (int(rec.steps) if steps is None else int(steps)), (rec.method if method is None else method)

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
                (stems sum to the mixture exactly; see :mod:`separation.refine`; the mask exponent
                and STFT size are the release's ``sampling.refine_power`` / ``refine_n_fft``), ``"none"``
                returns the decoded generative stems as they are.

        Returns:
            :class:`SeparationResult` with stems at the input rate and length.

        Raises:
            AudioError: unreadable, empty, non-finite or silent audio.
            PromptError: no prompt, bad spans, a video that does not cover the audio.
        """
        return self.separate_batch(
            [audio], [sample_rate], [text], [spans], [video], steps=steps, method=method,
            candidates=candidates, guidance=guidance, seed=seed, ranker=ranker, channels=channels,
            refine=refine,
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
    ) -> list[SeparationResult]:
        """Separate several recordings in one batch (padded to the longest; same settings for all)."""
        if refine not in REFINE_MODES:
            raise ValueError(f"refine must be one of {REFINE_MODES}, got {refine!r}")
        steps, method = self.sampling(steps, method)
        t_start = time.perf_counter()
        n_items = len(audios)
        spans = list(spans) if spans is not None else [None] * n_items
        videos = list(videos) if videos is not None else [None] * n_items
        if not (len(sample_rates) == len(texts) == len(spans) == len(videos) == n_items):
            raise ValueError("audios, sample_rates, texts, spans and videos need one entry per item")
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        sr_model = self.sample_rate
        rows: list[torch.Tensor] = []  # model-rate mono rows
        owners: list[int] = []
        metas = []
        for i, (a, sr) in enumerate(zip(audios, sample_rates)):
            wav, sr_in = self._read(a, sr, name=f"input {i}" if n_items > 1 else "input audio")
            norm_spans = self._check_prompts(texts[i], spans[i], videos[i], wav.shape[-1] / sr_in)
            spans[i] = norm_spans
            if channels == "mono":
                wav_rows = [wav.mean(0, keepdim=True)]
            elif channels == "per_channel":
                wav_rows = [wav[c : c + 1] for c in range(wav.shape[0])]
            else:
                raise ValueError(f"channels must be 'per_channel' or 'mono', got {channels!r}")
            metas.append((sr_in, wav.shape[-1], len(wav_rows)))
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
        if refine == "wiener":
            tgt, res = self.wiener(mix, tgt, res)
        tgt, res = tgt / gain, res / gain  # back to the input's level
        elapsed = time.perf_counter() - t_start

        results = []
        j = 0
        for i, (sr_in, n_in, n_rows) in enumerate(metas):
            t_rows, r_rows = [], []
            for _ in range(n_rows):
                n = lengths[j]
                t_rows.append(_fit(resample(tgt[j, :, :n].cpu(), sr_model, sr_in), n_in))
                r_rows.append(_fit(resample(res[j, :, :n].cpu(), sr_model, sr_in), n_in))
                j += 1
            info = {
                "steps": steps, "method": method, "refine": refine, "candidates": k, "seed": seed, "guidance": dict(guidance or {}),
                "seconds": elapsed / n_items, "audio_seconds": n_in / sr_in,
                "candidate_scores": None if scores is None else scores[owners.index(i)].tolist(),
            }
            results.append(SeparationResult(torch.cat(t_rows), torch.cat(r_rows), sr_in, info))
        return results

    # --------------------------------------------------------------- internals
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


def _tiles(total: int, size: int) -> list[tuple[int, int]]:
    """Non-overlapping ``[s, e)`` tiles of ``size`` covering ``[0, total)``."""
    return [(s, min(total, s + size)) for s in range(0, total, size)]


def _fit(wav: torch.Tensor, n: int) -> torch.Tensor:
    """Trim or zero-pad ``[C, M]`` to exactly ``n`` samples."""
    if wav.shape[-1] >= n:
        return wav[..., :n]
    return torch.nn.functional.pad(wav, (0, n - wav.shape[-1]))


__all__ = ["Separator", "SeparationResult", "activity_ranker"]
