"""Audio input/output and validation shared by every package.

All waveforms inside promptsep are ``float32`` tensors shaped ``[C, N]``
(channels, samples) unless a docstring says otherwise.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from promptsep.errors import AudioError, OutputExistsError

logger = logging.getLogger(__name__)

#: Default cap on the size of an audio file a user hands in (bytes).
MAX_FILE_BYTES = 200 * 1024 * 1024
#: libsndfile subtypes that hold samples above full scale.
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def load_audio(path: str | os.PathLike, max_bytes: int | None = MAX_FILE_BYTES) -> tuple[torch.Tensor, int]:
    """Read an audio file.

    Args:
        path: any format libsndfile reads (wav, flac, ogg, ...).
        max_bytes: refuse files larger than this (``None``: no cap).

    Returns:
        ``(wav [C, N] float32, sample_rate)``.

    Raises:
        AudioError: the file is missing, too large, unreadable or empty, or has
            non-finite samples.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"audio file not found: {p}")
    size = p.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise AudioError(f"audio file {p.name} is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types
        raise AudioError(f"cannot read audio file {p.name}: {exc}") from exc
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    validate_audio(wav, sr, name=p.name)
    return wav, int(sr)


def load_audio_track(path: str | os.PathLike, max_bytes: int | None = MAX_FILE_BYTES) -> tuple[torch.Tensor, int]:
    """Decode the first audio track of a media container (mp4, webm, mkv, mov, m4a, ...) with PyAV.

    The counterpart of :func:`load_audio` for files libsndfile cannot read, such as the sound of a
    video: the samples keep the track's own rate and channels (the separator resamples and mixes
    them as it does any input). Samples past the track's declared duration (the encoder's padding
    of its last block) are dropped.

    Args:
        path: a media file FFmpeg reads.
        max_bytes: refuse a track whose decoded float32 samples would exceed this many bytes
            (``None``: no cap). The container's own size does not count (a video's frames are
            not decoded here).

    Returns:
        ``(wav [C, N] float32, sample_rate)``.

    Raises:
        AudioError: missing or unreadable file, no audio track (the message names the file),
            no decodable sample, a decoded size over ``max_bytes``, or non-finite samples.
    """
    import av

    p = Path(path)
    if not p.is_file():
        raise AudioError(f"audio file not found: {p}")
    blocks: list[np.ndarray] = []
    total = 0
    try:
        with av.open(str(p)) as container:
            if not container.streams.audio:
                what = "a video without an audio track" if container.streams.video else "no audio track"
                raise AudioError(f"{p} has {what}: give the sound as a separate audio input"
                                 + (f" and this file as --video {p}" if container.streams.video else ""))
            stream = container.streams.audio[0]
            declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
            # planar float at the track's own rate and layout: [C, n] per decoded frame
            resampler = None
            rate = channels = None
            for frame in container.decode(stream):
                if resampler is None:
                    rate, channels = int(frame.sample_rate), len(frame.layout.channels)
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
                for out in resampler.resample(frame):
                    block = out.to_ndarray().reshape(channels, -1)
                    total += block.size
                    if max_bytes is not None and total * 4 > max_bytes:
                        raise AudioError(f"the audio track of {p.name} is over the {max_bytes / 2**20:.0f} MiB limit "
                                         "once decoded")
                    blocks.append(block)
            if resampler is not None:
                blocks += [out.to_ndarray().reshape(channels, -1) for out in resampler.resample(None)]
    except AudioError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"cannot read the audio track of {p}: {exc}") from exc
    if not blocks or rate is None:
        raise AudioError(f"no audio could be decoded from {p}")
    wav = torch.from_numpy(np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32))
    if declared is not None and 0 < round(declared * rate) < wav.shape[1]:
        wav = wav[:, : round(declared * rate)]  # drop the codec's padding of the last block (AAC: up to 1024)
    validate_audio(wav, rate, name=p.name)
    logger.info("decoded the audio track of %s: %d channel(s), %d samples at %d Hz", p, wav.shape[0], wav.shape[1], rate)
    return wav, rate


def validate_audio(wav: torch.Tensor, sample_rate: int, name: str = "audio", allow_silent: bool = True) -> None:
    """Check a waveform is usable.

    Args:
        wav: ``[C, N]`` or ``[N]`` waveform.
        sample_rate: its rate in Hz.
        name: what to call it in error messages.
        allow_silent: if ``False``, an all-zero waveform is an error.

    Raises:
        AudioError: empty, non-finite, wrong rank or rate, or silent when not allowed.
    """
    if not isinstance(wav, torch.Tensor):
        raise AudioError(f"{name}: expected a tensor, got {type(wav).__name__}")
    if wav.dim() not in (1, 2):
        raise AudioError(f"{name}: expected a [channels, samples] waveform, got shape {tuple(wav.shape)}")
    if sample_rate is None or int(sample_rate) <= 0:
        raise AudioError(f"{name}: invalid sample rate {sample_rate}")
    if wav.numel() == 0 or wav.shape[-1] == 0:
        raise AudioError(f"{name} is empty (0 samples)")
    finite = torch.isfinite(wav)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise AudioError(f"{name} has {bad} NaN/Inf samples out of {wav.numel()}")
    if not allow_silent and float(wav.abs().max()) == 0.0:
        raise AudioError(f"{name} is silent (all samples are zero)")


def to_channels_first(wav: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Return a float32 ``[C, N]`` tensor from ``[N]``, ``[C, N]`` or ``[N, C]`` (C <= 8) input."""
    t = torch.as_tensor(wav, dtype=torch.float32)
    if t.dim() == 1:
        return t.unsqueeze(0)
    if t.dim() == 2 and t.shape[0] > 8 and t.shape[1] <= 8:
        return t.T.contiguous()
    return t


def resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample ``[..., N]`` from ``orig_sr`` to ``new_sr`` (band-limited sinc)."""
    if int(orig_sr) == int(new_sr):
        return wav
    return AF.resample(wav, int(orig_sr), int(new_sr))


def to_mono(wav: torch.Tensor) -> torch.Tensor:
    """Average ``[C, N]`` to ``[1, N]``."""
    return wav.mean(dim=0, keepdim=True) if wav.shape[0] > 1 else wav


def provenance(
    source: str, text: str | None = None, spans=None, video: bool = False, **settings: object
) -> str:
    """One line saying what made a stem, for :func:`save_audio`'s ``comment``.

    Args:
        source: where it came from (an input file name, a request id).
        text: the text prompt, if any.
        spans: span prompts as ``"+START:END"`` strings or ``(sign, start_s, end_s)`` tuples.
        video: whether a video prompt was used.
        **settings: further ``key=value`` pairs (checkpoint, steps, sampler, ...).

    Returns:
        e.g. ``"promptsep in.wav; text='dog barking'; spans=+0.10:0.50; steps=1"``.
    """
    parts = [f"promptsep {source}"]
    if text:
        parts.append(f"text={text[:200]!r}")
    if spans:
        parts.append("spans=" + ",".join(s if isinstance(s, str) else f"{s[0]}{s[1]:.2f}:{s[2]:.2f}" for s in spans))
    if video:
        parts.append("video")
    parts += [f"{k}={v}" for k, v in settings.items()]
    return "; ".join(parts)


def stem_subtype(input_path: str | os.PathLike) -> str | None:
    """The ``subtype`` for :func:`save_audio` that keeps a float input float.

    Args:
        input_path: the audio file the stems come from.

    Returns:
        ``"FLOAT"`` when the input file holds float samples (which may exceed full scale), else
        None (the writer's default).
    """
    try:
        sub = sf.info(str(input_path)).subtype
    except Exception:  # noqa: BLE001 - not a file libsndfile reads: the default applies
        return None
    return "FLOAT" if sub in FLOAT_SUBTYPES else None


def save_audio(
    path: str | os.PathLike,
    wav: torch.Tensor,
    sample_rate: int,
    comment: str | None = None,
    *,
    subtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write audio atomically and safely: 16-bit PCM WAV by default, 32-bit float when it exceeds full scale.

    The data goes to a fresh temporary file made with :func:`tempfile.mkstemp` in the destination
    folder (an unpredictable name opened with ``O_EXCL``, so a planted symlink is never followed),
    then takes the final name in one step. An existing file (or link) at ``path`` is only replaced
    with ``overwrite=True``; a link there is replaced itself, never its target.

    Args:
        path: Output file; its extension picks the container (``.wav``, ``.flac``, ...).
        wav: ``[C, N]`` or ``[N]`` float audio, nominally in [-1, 1].
        sample_rate: Sample rate in Hz.
        comment: Optional text stored in the file's metadata (WAV ``LIST/INFO`` comment), e.g.
            the prompt and request that produced it.
        subtype: libsndfile subtype, e.g. ``"PCM_16"`` or ``"FLOAT"`` (pass ``"FLOAT"`` to keep a float
            input float). None: ``PCM_16`` for WAV within full scale, ``FLOAT`` for WAV above it (with a
            warning), the format's default otherwise.
        overwrite: replace an existing file at ``path``.

    Returns:
        The written path.

    Raises:
        AudioError: the audio has NaN/Inf samples or is empty (nothing is written).
        OutputExistsError: ``path`` exists and ``overwrite`` is False.

    Warns:
        UserWarning: audio above full scale written as float instead of PCM, or clipped because the
            chosen format cannot hold it.
    """
    p = Path(path)
    t = to_channels_first(wav).detach().cpu()
    validate_audio(t, sample_rate, name=f"audio for {p.name}")
    if not overwrite and os.path.lexists(p):
        raise OutputExistsError(f"{p} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    fmt = p.suffix.lstrip(".").upper() or "WAV"
    peak = float(t.abs().max())
    if subtype is None and fmt == "WAV":
        subtype = "PCM_16"
        if peak > 1.0:
            subtype = "FLOAT"
            warnings.warn(f"{p.name}: peak {peak:.3f} is above full scale; written as 32-bit float WAV "
                          "instead of clipping", UserWarning, stacklevel=2)
    if peak > 1.0 and (subtype or "").upper() not in FLOAT_SUBTYPES:
        warnings.warn(f"{p.name}: peak {peak:.3f} is above full scale and {fmt} {subtype or ''} has no float "
                      "samples: it is clipped to [-1, 1] (write .wav to keep it)", UserWarning, stacklevel=2)
        t = t.clamp(-1.0, 1.0)
    with AudioWriter(p, sample_rate, t.shape[0], subtype=subtype, comment=comment, overwrite=overwrite) as w:
        w.write(t)
    return p


class AudioWriter:
    """Write audio block by block, atomically and without clobbering (the writer behind :func:`save_audio`).

    The blocks go to a fresh temporary file made with :func:`tempfile.mkstemp` in the destination
    folder (an unpredictable name opened with ``O_EXCL``, so a planted symlink is never followed);
    :meth:`commit` (the end of a ``with`` block without an error) gives it the final name in one
    step, and :meth:`abort` (an error) removes it, so a failed or non-finite stream leaves nothing.
    An existing file (or link) at ``path`` is only replaced with ``overwrite=True``.

    Args:
        path: output file; its extension picks the container (``.wav``, ``.flac``, ...).
        sample_rate: rate in Hz.
        channels: channel count ``C`` of every block.
        subtype: libsndfile subtype (None: ``PCM_16`` for WAV, the format's default otherwise).
            Blocks above full scale are clipped (with one warning) unless it is ``FLOAT``/``DOUBLE``.
        comment: text stored in the file's metadata.
        overwrite: replace an existing file at ``path``.

    Raises:
        OutputExistsError: ``path`` exists (at the start or when committing) and ``overwrite`` is False.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int, *, subtype: str | None = None,
                 comment: str | None = None, overwrite: bool = False):
        self.path = p = Path(path)
        self.overwrite = overwrite
        if not overwrite and os.path.lexists(p):
            raise OutputExistsError(f"{p} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
        self.format = p.suffix.lstrip(".").upper() or "WAV"
        if subtype is None and self.format == "WAV":
            subtype = "PCM_16"
        self.subtype = subtype
        self.frames = 0
        self.peak = 0.0
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent)
        try:
            self._fh = os.fdopen(fd, "w+b")
            self._sf = sf.SoundFile(self._fh, "w", int(sample_rate), int(channels), subtype=subtype, format=self.format)
            self._sf.software = "promptsep"
            if comment:
                self._sf.comment = comment
        except BaseException:
            os.unlink(self._tmp)
            raise

    def write(self, block: torch.Tensor) -> None:
        """Append ``[C, n]`` samples.

        Raises:
            AudioError: the block has NaN/Inf samples (the file is then never committed).
        """
        t = to_channels_first(block).detach().cpu()
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            raise AudioError(f"audio for {self.path.name} has {int((~finite).sum())} NaN/Inf samples; nothing is written")
        if t.shape[-1] == 0:
            return
        peak = float(t.abs().max())
        if peak > 1.0 and (self.subtype or "").upper() not in FLOAT_SUBTYPES:
            if self.peak <= 1.0:
                warnings.warn(f"{self.path.name}: peak {peak:.3f} is above full scale and {self.format} "
                              f"{self.subtype or ''} has no float samples: it is clipped to [-1, 1] (write float "
                              "WAV to keep it)", UserWarning, stacklevel=2)
            t = t.clamp(-1.0, 1.0)
        self.peak = max(self.peak, peak)
        self._sf.write(t.numpy().T)
        self.frames += t.shape[-1]

    def commit(self) -> Path:
        """Close the file and give it its final name."""
        p, tmp = self.path, self._tmp
        try:
            if self.frames == 0:
                raise AudioError(f"audio for {p.name} is empty (0 samples); nothing is written")
            self._sf.close()
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
            if self.overwrite:
                os.replace(tmp, p)  # replaces a link at p itself, never what it points to
            else:
                try:
                    os.link(tmp, p, follow_symlinks=False)  # fails if p appeared meanwhile: no clobbering
                except FileExistsError:
                    raise OutputExistsError(f"{p} already exists; pass overwrite=True (CLI: --overwrite) to replace it") from None
                except OSError:  # a filesystem without hard links
                    if os.path.lexists(p):
                        raise OutputExistsError(f"{p} already exists; pass overwrite=True to replace it") from None
                    os.replace(tmp, p)
        finally:
            self.abort()
        return p

    def abort(self) -> None:
        """Close and remove the temporary file (the destination is left as it was)."""
        for f in (self._sf, self._fh):
            try:
                f.close()
            except Exception:  # noqa: BLE001 - already closed or half-written: it is removed anyway
                pass
        if os.path.lexists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
