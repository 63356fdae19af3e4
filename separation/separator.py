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
  target's sound activity with the span prompt). With ``refine="wiener"`` every candidate is
  refined before it is ranked (the ranker scores what the user gets); ``variants=True`` also
  prompts candidates 2..K with other wordings of a known label's text
  (:mod:`separation.prompt_variants`).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prompts.span import parse_span
from promptsep.audio import load_audio, resample, to_channels_first, validate_audio
from promptsep.errors import AudioError, NonFiniteOutputError, OptionError, PromptError
from separation.flow import PROMPT_KINDS, SAMPLERS, rms_from_sums
from separation.model import SeparationModel
from separation.prompt_variants import PromptVariants, candidate_texts
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
        self._prompt_variants: PromptVariants | None = None

    @property
    def prompt_variants(self) -> PromptVariants:
        """The label table that gives candidates other wordings of a text (loaded on first use)."""
        if self._prompt_variants is None:
            self._prompt_variants = PromptVariants.from_file()
        return self._prompt_variants

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
        **options: Any,
    ) -> SeparationResult:
        """Separate one recording: :meth:`separate_batch` of one item, with the same keyword options.

        Args:
            audio: waveform ``[C, N]`` / ``[N]`` (tensor or array) or a path to an audio file.
            sample_rate: rate of ``audio`` (required unless it is a path).
            text: what to isolate, e.g. ``"dog barking"``.
            spans: ``('+' | '-', start_s, end_s)`` tuples or strings like ``"+1.0:2.5"``.
            video: a :class:`prompts.types.VideoPrompt` (frames + masks or box), or None.
            **options: keyword options of :meth:`separate_batch`, listed here (an unknown name is a
                ``TypeError``):
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
            variants: opt-in; with ``candidates > 1``, prompt the candidates with other wordings of the text
                (:mod:`separation.prompt_variants`: the first candidate keeps the text, the others take
                its label's other prompts from the packaged label table; a text with no unique label
                keeps seed-only candidates). The ranker always scores against the user's text;
                ``result.info["candidate_texts"]`` lists what each candidate was prompted with.
            progress: called as ``progress(chunks_done, chunks_total)`` after each generation chunk.

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
        return self.separate_batch([audio], [sample_rate], [text], [spans], [video], **options)[0]

    def separate_batch(
        self,
        audios: Sequence[Any],
        sample_rates: Sequence[int | None],
        texts: Sequence[str | None],
        spans: Sequence[Any] | None = None,
        videos: Sequence[Any] | None = None,
        *,
        steps: int | None = None,
        method: str | None = None,
        candidates: int = 1,
        guidance: Mapping[str, float] | None = None,
        seed: int = 0,
        ranker: str | Ranker | None = None,
        channels: str = "per_channel",
        refine: str = "wiener",
        keep_raw: bool = False,
        variants: bool = False,
        progress: Callable[[int, int], None] | None = None,
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
        # K candidates per row, adjacent; with prompt variants each candidate has its own wording
        k = candidates
        cand_texts = candidate_texts(self.prompt_variants if variants and k > 1 else None, texts, k)
        if any(len(set(ct)) > 1 for ct in cand_texts):
            cond = self.model.encode_prompts(
                [cand_texts[o][i] for o in owners for i in range(k)], [spans[o] for o in owners for _ in range(k)],
                [videos[o] for o in owners for _ in range(k)], num_frames,
                [n / sr_model for n in lengths for _ in range(k)],
            )
        else:
            cond = self.model.encode_prompts(
                [texts[o] for o in owners], [spans[o] for o in owners], [videos[o] for o in owners],
                num_frames, [n / sr_model for n in lengths],
            ).repeat(k)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(len(rows) * k, num_frames, 2 * self.model.latent_dim, generator=gen).to(self.device)
        with torch.no_grad():
            x1 = self.model.generate(
                z_mix.repeat_interleave(k, 0), cond, noise, nfe=steps, method=method, guidance=guidance,
                audio_mask=None if audio_mask is None else audio_mask.repeat_interleave(k, 0),
                chunks=self._chunk_bounds(num_frames, self.model.frame_rate), progress=progress,
            )
        c = self.model.latent_dim
        tgt = self._decode(x1[..., :c], n_max)  # [R*K, 1, N]
        res = self._decode(x1[..., c:], n_max)

        _check_finite(tgt, res, "generated stems")
        # every candidate is refined before ranking: the ranker scores what the user gets
        t_refine = time.perf_counter()
        out_t, out_r = self.wiener(mix.repeat_interleave(k, 0), tgt, res) if refine == "wiener" else (tgt, res)
        t_refine = time.perf_counter() - t_refine
        best, scores = self._rank(mix, out_t, k, owners, texts, spans, ranker, lengths)
        pick = torch.arange(len(rows)) * k + best
        raw = (tgt[pick] / gain, res[pick] / gain) if keep_raw else None
        tgt, res = out_t[pick], out_r[pick]
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
                "candidate_texts": cand_texts[i],
                "model_band_hz": [0.0, sr_model / 2],
            }
            raw_i = None
            if raw is not None:
                raw_i = (torch.cat([r[0] for r in raw_rows]), torch.cat([r[1] for r in raw_rows]))
            results.append(SeparationResult(target, residual, sr_in, info, raw_i))
        return results

    def separate_file(
        self,
        in_path: str | Path,
        target_path: str | Path,
        residual_path: str | Path,
        text: str | None = None,
        spans: Sequence[tuple[str, float, float] | str] | None = None,
        video: Any | None = None,
        steps: int | None = None,
        method: str | None = None,
        guidance: Mapping[str, float] | None = None,
        seed: int = 0,
        channels: str = "per_channel",
        refine: str = "wiener",
        block_s: float = 30.0,
        subtype: str | None = None,
        overwrite: bool = False,
        comment: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Separate an audio file into two files, streaming: memory does not grow with the length.

        The input is read in blocks of ``block_s`` seconds (three passes: its level, the latent
        level of the mixture prior, then separation), resampled, encoded, generated chunk by chunk
        with pinned overlaps (:meth:`SeparationModel.generate_iter`), decoded, refined and written
        block by block. The result equals :meth:`separate` on the same file (to float rounding):
        ``residual = input - target`` at the input's rate and channels. Each stem goes to a temporary
        file in its folder that takes its name only when the whole stem is written and finite
        (:class:`promptsep.audio.AudioWriter`); nothing replaces an existing file without
        ``overwrite``. There is no size cap: a 2-hour file takes the memory of a 2-minute one.

        Args:
            in_path: audio file (anything libsndfile reads).
            target_path / residual_path: where the stems go (the extension picks the container).
            text / spans / video / steps / method / guidance / seed / channels / refine: as in
                :meth:`separate` (one candidate: ranking needs the whole recording in memory).
            block_s: seconds of input read (and written) at a time.
            subtype: libsndfile subtype of the stems (None: ``FLOAT`` WAV when the input holds float
                samples, else ``PCM_16`` for WAV, the format's default otherwise).
            overwrite: replace existing stems.
            comment: text stored in the stems' metadata (as ``"target; <comment>"`` and ``"residual; <comment>"``).
            progress: ``progress(chunks_done, chunks_total)`` after each generation chunk.

        Returns:
            the ``info`` dict of :class:`SeparationResult` (plus ``target``/``residual`` paths).

        Raises:
            AudioError, PromptError, OptionError, NonFiniteOutputError: as :meth:`separate`.
            OutputExistsError: a stem exists and ``overwrite`` is False.
        """
        import soundfile as sf

        from promptsep.audio import FLOAT_SUBTYPES, AudioWriter

        if refine not in REFINE_MODES:
            raise OptionError(f"refine must be one of {REFINE_MODES}, got {refine!r}")
        if channels not in ("per_channel", "mono"):
            raise ValueError(f"channels must be 'per_channel' or 'mono', got {channels!r}")
        steps, method = self.sampling(steps, method)
        seed = _count("seed", seed, 0)
        guidance = check_guidance(guidance)
        block_s = _finite("block_s", block_s)
        if block_s <= 0:
            raise OptionError(f"block_s must be > 0, got {block_s}")
        t_start = time.perf_counter()
        in_path = Path(in_path)
        if not in_path.is_file():
            raise AudioError(f"audio file not found: {in_path}")
        try:
            info = sf.info(str(in_path))
        except Exception as exc:  # libsndfile raises several types
            raise AudioError(f"cannot read audio file {in_path.name}: {exc}") from exc
        sr_in, n_in, n_ch = int(info.samplerate), int(info.frames), int(info.channels)
        if n_in <= 0:
            raise AudioError(f"{in_path.name} is empty (0 samples)")
        spans = self._check_prompts(text, spans, video, n_in / sr_in)
        self._warn_long_text(text)
        if subtype is None and Path(target_path).suffix.lower() in ("", ".wav"):
            subtype = "FLOAT" if info.subtype in FLOAT_SUBTYPES else "PCM_16"
        sr = self.sample_rate
        block_in = max(1, int(block_s * sr_in))
        block = max(1, int(block_s * sr))
        rows = n_ch if channels == "per_channel" else 1

        def inputs() -> Iterator[torch.Tensor]:  # [C', n] rows of the input, in blocks
            for x in _read_blocks(in_path, block_in):
                yield x if channels == "per_channel" else x.mean(0, keepdim=True)

        def model_rate() -> Iterator[torch.Tensor]:  # [R, n] at the model rate
            return _resample_stream(_Window(inputs()), n_in, sr_in, sr, block)

        # pass 1: level (and silence / non-finite checks)
        n, sum_sq, peak = 0, torch.zeros(rows, dtype=torch.float64), 0.0
        for x in model_rate():
            n += x.shape[-1]
            sum_sq += x.double().pow(2).sum(-1)
            peak = max(peak, float(x.abs().max()))
        if peak == 0.0:
            raise AudioError("input audio is silent (all samples are zero): there is nothing to separate")
        gain = self._level_gain_from(sum_sq, n).view(rows, 1)

        def mix_at(win: _Window) -> Callable[[int, int], torch.Tensor]:
            return lambda a, b: (win.get(a, b) * gain)[:, None].to(self.device)

        codec = self.model.codec
        total = codec.num_frames(n)
        # pass 2: latent level for the mixture prior
        rms = None
        if self.model.cfg.flow.prior == "mixture":
            zsq, count = torch.zeros(rows, dtype=torch.float64), 0
            for z in self._encode_iter(mix_at(_Window(model_rate())), n):
                zsq += z.double().pow(2).sum(dim=(1, 2)).cpu()
                count += z.shape[1] * z.shape[2]
            rms = rms_from_sums(zsq, count).to(self.device)
        # pass 3: separate and write
        cond = self.model.encode_prompts([text] * rows, [spans] * rows, [video] * rows, total, [n / sr] * rows)
        z_win = _Window(self._encode_iter(mix_at(_Window(model_rate())), n), dim=1)
        noise_win = _Window(_noise_stream(seed, rows, total, 2 * self.model.latent_dim), dim=1)
        x1 = self.model.generate_iter(
            z_win.get, cond, lambda s, e: noise_win.get(s, e).to(self.device), total, steps, method, guidance,
            None, self._chunk_bounds(total, self.model.frame_rate), rms, progress)
        x1_win = _Window((x for _, x in x1), dim=1)
        c = self.model.latent_dim

        gen = _Window(self._decode_pairs(x1_win, total, n, c))
        t_refine = 0.0

        def refined() -> Iterator[torch.Tensor]:  # [R, n] target at the input's level, model rate
            nonlocal t_refine
            mix_win = _Window(model_rate())
            n_fft = int(self.model.cfg.sampling.refine_n_fft)
            hop = n_fft // 4
            step = max(hop, block // hop * hop)
            margin = -(-2 * n_fft // hop) * hop if refine == "wiener" else 0
            for s0 in range(0, n, step):
                lo, hi, e0 = max(0, s0 - margin), min(n, s0 + step + margin), min(n, s0 + step)
                g = gen.get(lo, hi)
                tgt, res = g[:, 0:1], g[:, 1:2]
                _check_finite(tgt, res, "generated stems")
                if refine == "wiener":
                    t0 = time.perf_counter()
                    tgt, _ = self.wiener(mix_at(mix_win)(lo, hi), tgt, res)
                    t_refine += time.perf_counter() - t0
                yield (tgt[:, 0, s0 - lo : e0 - lo] / gain.to(tgt.device)).cpu()

        out = _resample_stream(_Window(refined()), n, sr, sr_in, block_in)
        in_win = _Window(inputs())
        done = 0
        notes = {k: None if comment is None else f"{k}; {comment}" for k in ("target", "residual")}
        with AudioWriter(target_path, sr_in, rows, subtype=subtype, comment=notes["target"], overwrite=overwrite) as wt, \
                AudioWriter(residual_path, sr_in, rows, subtype=subtype, comment=notes["residual"],
                            overwrite=overwrite) as wr:
            for piece in out:
                piece = piece[:, : n_in - done]
                if piece.shape[-1] == 0:
                    continue
                target, residual = _complement(in_win.get(done, done + piece.shape[-1]), piece)
                _check_finite(target, residual, "output stems")
                wt.write(target)
                wr.write(residual)
                done += piece.shape[-1]
            if done < n_in:  # the resampled target came up short: zeros, as _fit pads
                zeros = torch.zeros(rows, n_in - done)
                target, residual = _complement(in_win.get(done, n_in), zeros)
                wt.write(target)
                wr.write(residual)
        return {
            "steps": steps, "method": method, "refine": refine, "candidates": 1, "seed": seed,
            "guidance": dict(guidance or {}), "seconds": time.perf_counter() - t_start, "refine_seconds": t_refine,
            "audio_seconds": n_in / sr_in, "candidate_scores": None, "model_band_hz": [0.0, sr / 2],
            "target": str(target_path), "residual": str(residual_path), "streamed": True,
        }

    def _decode_pairs(self, x1_win: _Window, total: int, length: int, c: int) -> Iterator[torch.Tensor]:
        """Decoded ``[R, 2, n]`` (target, residual) pieces of the generated latents in ``x1_win``."""
        tgt = self._decode_iter(lambda a, b: x1_win.peek(a, b)[..., :c], total, length)
        res = self._decode_iter(lambda a, b: x1_win.get(a, b)[..., c:], total, length)
        for t, r in zip(tgt, res):
            yield torch.cat([t, r], dim=1).cpu()

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
        n = torch.as_tensor(lengths, device=mix.device).clamp_min(1)
        return self._level_gain_from(mix[:, 0].pow(2).sum(-1), n).view(-1, 1, 1).to(mix.dtype)

    def _level_gain_from(self, sum_sq: torch.Tensor, count: torch.Tensor | int) -> torch.Tensor:
        """Gains ``[R]`` (float32) from each row's sum of squares ``[R]`` over ``count`` samples."""
        if self.input_level_db is None:
            return torch.ones(sum_sq.shape[0], device=sum_sq.device)
        ms = sum_sq / count
        db = (float(self.input_level_db) - 10 * torch.log10(ms.clamp_min(1e-20)))
        db = db.clamp(-MAX_LEVEL_GAIN_DB, MAX_LEVEL_GAIN_DB)
        return (10 ** (db / 20)).float()

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
        return torch.cat(list(self._encode_iter(lambda a, b: mix[..., a:b], mix.shape[-1])), dim=1)

    def _decode(self, z: torch.Tensor, length: int) -> torch.Tensor:
        """Chunked decoding ``[R, T, C] -> [R, 1, length]``."""
        return torch.cat(list(self._decode_iter(lambda a, b: z[:, a:b], z.shape[1], length)), dim=-1)

    def _tile_plan(self, total: int) -> tuple[list[tuple[int, int]], int]:
        """Codec tiles ``[s, e)`` over ``total`` latent frames and their context margin (frames);
        one tile without margin when ``total`` fits one chunk."""
        codec = self.model.codec
        bounds = self._chunk_bounds(total, codec.frame_rate)
        if len(bounds) == 1:
            return [(0, total)], 0
        return _tiles(total, bounds[0][1] - bounds[0][0]), int(round(self.overlap_s / 2 * codec.frame_rate))

    def _encode_iter(self, get: Callable[[int, int], torch.Tensor], length: int) -> Iterator[torch.Tensor]:
        """Chunked codec encoding, tile by tile: ``get(a, b)`` returns the audio ``[R, 1, b-a]`` of
        samples ``[a, b)`` (clipped at ``length``); yields latents ``[R, e-s, C]`` of consecutive tiles."""
        hop = self.model.codec.hop_length
        total = self.model.codec.num_frames(length)
        tiles, margin = self._tile_plan(total)
        for s, e in tiles:
            a, b = max(0, s - margin), min(total, e + margin)
            z = self.model.encode_audio(get(a * hop, min(length, b * hop) if margin else length))
            yield z[:, s - a : s - a + (e - s)]

    def _decode_iter(self, get: Callable[[int, int], torch.Tensor], total: int, length: int) -> Iterator[torch.Tensor]:
        """Chunked decoding, tile by tile: ``get(s, e)`` returns latents ``[R, e-s, C]``; yields
        audio ``[R, 1, n]`` of consecutive pieces, ``length`` samples in all."""
        hop = self.model.codec.hop_length
        tiles, margin = self._tile_plan(total)
        if not margin:
            yield self.model.decode_latents(get(0, total), length)
            return
        done = 0
        for s, e in tiles:
            a, b = max(0, s - margin), min(total, e + margin)
            wav = self.model.decode_latents(get(a, b), (b - a) * hop)
            piece = wav[..., (s - a) * hop : (e - a) * hop][..., : max(0, length - done)]
            done += piece.shape[-1]
            yield piece

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
                if hasattr(self.judge, "score_batch"):  # the K candidates in padded batches, one at a time when long
                    per = k if n <= 30 * sr else 1
                    got = self.judge.score_batch([mix[j, :, :n]] * k, list(cands), [texts[o] or ""] * k, sr, batch_size=per)
                else:
                    got = [self.judge.score(mix[j, :, :n], cands[i], texts[o] or "", sr) for i in range(k)]
                scores[j] = torch.tensor([float(g.overall) for g in got])
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


class _Window:
    """A forward-only window on a stream of pieces (time along ``dim``): :meth:`get` returns any
    range at or after the last one asked for, reading pieces as needed and dropping what lies
    before it, so memory holds only the span in use, whatever the stream's length."""

    def __init__(self, pieces: Iterator[torch.Tensor], dim: int = -1):
        self._it = iter(pieces)
        self._dim = dim
        self._buf: torch.Tensor | None = None
        self._start = self._end = 0
        self._done = False

    def _fill(self, b: int) -> None:
        while self._end < b and not self._done:
            try:
                piece = next(self._it)
            except StopIteration:
                self._done = True
                break
            self._buf = piece if self._buf is None else torch.cat([self._buf, piece], dim=self._dim)
            self._end += piece.shape[self._dim]

    def peek(self, a: int, b: int) -> torch.Tensor:
        """Items ``[a, b)`` (cut at the stream's end) without dropping anything."""
        self._fill(b)
        if a < self._start:
            raise RuntimeError(f"stream window: [{a}, {b}) asked after {self._start} was dropped")
        if self._buf is None:
            raise RuntimeError("stream window: the stream is empty")
        hi = max(a, min(b, self._end))
        return self._buf.narrow(self._dim % self._buf.dim(), a - self._start, hi - a)

    def get(self, a: int, b: int) -> torch.Tensor:
        """Items ``[a, b)`` (cut at the stream's end); everything before ``a`` is dropped."""
        out = self.peek(a, b)
        if a > self._start:
            d = self._dim % self._buf.dim()
            self._buf = self._buf.narrow(d, a - self._start, self._buf.shape[d] - (a - self._start)).clone()
            self._start = a
        return out


def _read_blocks(path: Path, frames: int) -> Iterator[torch.Tensor]:
    """Blocks ``[C, n]`` (float32) of an audio file; :class:`AudioError` on NaN/Inf samples."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        for data in f.blocks(blocksize=frames, dtype="float32", always_2d=True):
            x = torch.from_numpy(np.ascontiguousarray(data.T))
            if not bool(torch.isfinite(x).all()):
                raise AudioError(f"{path.name} has {int((~torch.isfinite(x)).sum())} NaN/Inf samples")
            yield x


def _resample_stream(win: _Window, n_in: int, sr_in: int, sr_out: int, block: int) -> Iterator[torch.Tensor]:
    """:func:`promptsep.audio.resample` of a long signal, piece by piece: yields ``[..., n]`` pieces of
    ``resample(x, sr_in, sr_out)`` (``ceil(n_in * sr_out / sr_in)`` samples in all) from the window
    ``win`` on ``x`` (``n_in`` samples). Each piece is resampled from input that starts on the
    filter's period with enough context that it matches the whole-signal result."""
    if sr_in == sr_out:
        for a in range(0, n_in, block):
            yield win.get(a, min(n_in, a + block))
        return
    g = math.gcd(sr_in, sr_out)
    o, m = sr_in // g, sr_out // g  # every o input samples give m output samples
    n_out = -(-m * n_in // o)
    width = math.ceil(6 * o / (0.99 * min(o, m)))  # torchaudio's sinc kernel half-width (its defaults)
    margin = (width // o + 2) * o
    step = max(1, block // m) * m
    for m0 in range(0, n_out, step):
        m1 = min(n_out, m0 + step)
        lo = max(0, m0 // m * o - margin)
        hi = min(n_in, (m1 // m + 1) * o + margin)
        y = resample(win.get(lo, hi), sr_in, sr_out)
        off = lo // o * m
        yield y[..., m0 - off : m1 - off]


def _noise_stream(seed: int, rows: int, total: int, dim: int, block: int = 4096) -> Iterator[torch.Tensor]:
    """The noise ``torch.randn(rows, total, dim, generator=seeded)`` of :meth:`Separator.separate_batch`,
    in pieces ``[rows, n, dim]`` along the frames (each row from its own generator, advanced past the
    rows before it; the CPU generator draws the same numbers whether asked at once or in pieces of
    whole frames when ``dim`` is a multiple of 16)."""
    gens = []
    for r in range(rows):
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        skip = r * total
        while skip > 0:
            k = min(skip, block)
            torch.randn(k, dim, generator=g)
            skip -= k
        gens.append(g)
    for s in range(0, total, block):
        k = min(block, total - s)
        yield torch.stack([torch.randn(k, dim, generator=g) for g in gens])


def _tiles(total: int, size: int) -> list[tuple[int, int]]:
    """Non-overlapping ``[s, e)`` tiles of ``size`` covering ``[0, total)``."""
    return [(s, min(total, s + size)) for s in range(0, total, size)]


def _fit(wav: torch.Tensor, n: int) -> torch.Tensor:
    """Trim or zero-pad ``[C, M]`` to exactly ``n`` samples."""
    if wav.shape[-1] >= n:
        return wav[..., :n]
    return torch.nn.functional.pad(wav, (0, n - wav.shape[-1]))


__all__ = ["Separator", "SeparationResult", "activity_ranker"]
