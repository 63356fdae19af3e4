"""Synthetic audio-visual scenes for video prompts.

Each source of a mixture becomes a visual object (its own colour and shape, at a
random place) whose size, brightness and motion follow the loudness envelope of
its sound: an object grows, brightens and wobbles while its source is loud and
shrinks to a dim dot while it is silent. The target's object is given by a mask
(``1`` = the target object's visible pixels, ``0`` elsewhere; the one convention
used everywhere in promptsep), so the only way to tell which sound the masked
object makes is to match its activity over time with the audio.

Drawing is plain torch on small frames (``64 x 64`` by default), cheap enough to
run inside a data-loader worker.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Saturated, mutually distinct RGB colours (values in [0, 1]).
PALETTE: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.2, 0.2),  # red
    (0.2, 0.9, 0.2),  # green
    (0.25, 0.45, 1.0),  # blue
    (1.0, 0.9, 0.1),  # yellow
    (0.95, 0.3, 0.95),  # magenta
    (0.1, 0.95, 0.95),  # cyan
    (1.0, 0.6, 0.1),  # orange
    (0.95, 0.95, 0.95),  # white
)

#: Shapes an object can take.
SHAPES: tuple[str, ...] = ("circle", "square", "diamond", "triangle", "ring")


def num_video_frames(num_samples: int, sample_rate: int, fps: float) -> int:
    """Video frames ``F = ceil(duration * fps)`` covering ``num_samples`` of audio."""
    return max(1, math.ceil(num_samples / sample_rate * fps - 1e-9))


def loudness_envelope(wav: torch.Tensor, sample_rate: int, fps: float, num_frames: int | None = None,
                      floor_db: float = -40.0) -> torch.Tensor:
    """Per-video-frame loudness of a waveform, mapped to ``[0, 1]``.

    The RMS of each video frame's window is taken in dB relative to the loudest
    frame; ``floor_db`` and below map to 0, the loudest frame to 1.

    Args:
        wav: ``[N]`` waveform.
        sample_rate: its rate in Hz.
        fps: video frame rate.
        num_frames: ``F`` (default ``ceil(N / sample_rate * fps)``).
        floor_db: level (dB re the peak frame) that maps to 0.

    Returns:
        ``[F]`` float32 envelope in ``[0, 1]`` (all zeros for a silent input).
    """
    wav = wav.detach().to(torch.float32).reshape(-1)
    n = wav.numel()
    f = num_video_frames(n, sample_rate, fps) if num_frames is None else int(num_frames)
    edges = np.minimum(np.round(np.arange(f + 1) * sample_rate / fps).astype(np.int64), n)
    sq = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(wav.to(torch.float64) ** 2, 0)])
    lo, hi = torch.from_numpy(edges[:-1]), torch.from_numpy(edges[1:])
    count = (hi - lo).clamp(min=1).to(torch.float64)
    rms = ((sq[hi] - sq[lo]).clamp(min=0) / count).sqrt()
    peak = float(rms.max()) if rms.numel() else 0.0
    if peak <= 1e-8:
        return torch.zeros(f, dtype=torch.float32)
    db = 20 * torch.log10(rms.clamp(min=1e-12) / peak)
    return ((db - floor_db) / -floor_db).clamp(0.0, 1.0).to(torch.float32)


def _shape_mask(shape: str, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Boolean ``[F, H, W]`` pixels of ``shape`` given offsets from its centre and radius ``[F, 1, 1]``."""
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return torch.maximum(dx.abs(), dy.abs()) <= 0.85 * r
    if shape == "diamond":
        return dx.abs() + dy.abs() <= 1.2 * r
    if shape == "triangle":  # pointing up
        return (dy >= -r) & (dy <= 0.8 * r) & (dx.abs() <= 0.6 * (dy + r))
    if shape == "ring":
        d2 = dx**2 + dy**2
        return (d2 <= r**2) & (d2 >= (0.5 * r) ** 2)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render_av_scene(
    sources_audio: list[torch.Tensor],
    target_index: int,
    sample_rate: int,
    fps: float = 10.0,
    size: int = 64,
    rng: np.random.Generator | None = None,
) -> dict:
    """Render a video in which every source is an object animated by its own loudness.

    Objects sit in distinct cells of a grid (random cell, jitter, colour, shape and
    drawing order), so they rarely overlap. Per video frame, an object's radius,
    brightness and wobble grow with its source's loudness envelope
    (:func:`loudness_envelope`); a silent source stays a small dim shape.

    Args:
        sources_audio: one ``[N]`` waveform per source (all the same length), at the
            levels they have in the mixture.
        target_index: which source the mask selects.
        sample_rate: audio rate in Hz.
        fps: video frame rate.
        size: frame height and width in pixels.
        rng: numpy generator (default: a fresh unseeded one).

    Returns:
        ``{"frames": [F, 3, H, W] float32 in [0, 1], "masks": [F, H, W] float32 (1 = the
        target object's visible pixels), "fps": float}`` with ``F = ceil(N / sample_rate * fps)``.

    Raises:
        ValueError: no sources, a bad ``target_index`` or sources of different lengths.
    """
    if not sources_audio:
        raise ValueError("render_av_scene needs at least one source")
    if not 0 <= target_index < len(sources_audio):
        raise ValueError(f"target_index {target_index} is out of range for {len(sources_audio)} sources")
    lengths = {int(s.reshape(-1).numel()) for s in sources_audio}
    if len(lengths) != 1:
        raise ValueError(f"sources must have the same length, got {sorted(lengths)}")
    rng = rng if rng is not None else np.random.default_rng()
    n = lengths.pop()
    f = num_video_frames(n, sample_rate, fps)
    k = len(sources_audio)
    grid = max(2, math.ceil(math.sqrt(k)))
    cell = size / grid
    cells = rng.permutation(grid * grid)[:k]
    colours = rng.permutation(len(PALETTE))[:k]
    shapes = rng.permutation(len(SHAPES))[: min(k, len(SHAPES))]
    shapes = [SHAPES[int(shapes[j % len(shapes)])] for j in range(k)]
    order = rng.permutation(k)

    bg = torch.tensor(rng.uniform(0.0, 0.15, size=3), dtype=torch.float32)
    # colour of each object per frame, index 0 = background: [F, K + 1, 3]
    colour_table = bg.view(1, 1, 3).repeat(f, k + 1, 1)
    owner = torch.full((f, size, size), -1, dtype=torch.long)
    ys = torch.arange(size, dtype=torch.float32).view(1, size, 1)
    xs = torch.arange(size, dtype=torch.float32).view(1, 1, size)
    t = torch.arange(f, dtype=torch.float32) / fps
    r_min, r_max = 0.12 * cell, 0.36 * cell
    wobble = 0.1 * cell
    for j in (int(o) for o in order):
        env = loudness_envelope(sources_audio[j], sample_rate, fps, num_frames=f)
        row, col = divmod(int(cells[j]), grid)
        cx0 = (col + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
        cy0 = (row + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
        freq = rng.uniform(1.0, 3.0)
        phase = rng.uniform(0, 2 * math.pi)
        cx = cx0 + wobble * env * torch.sin(2 * math.pi * freq * t + phase)
        cy = cy0 + wobble * env * torch.cos(2 * math.pi * freq * t + phase)
        r = (r_min + (r_max - r_min) * env).view(f, 1, 1)
        pix = _shape_mask(shapes[j], xs - cx.view(f, 1, 1), ys - cy.view(f, 1, 1), r)
        colour = torch.tensor(PALETTE[int(colours[j])], dtype=torch.float32)
        colour_table[:, j + 1] = colour.view(1, 3) * (0.3 + 0.7 * env).view(f, 1)
        owner.masked_fill_(pix, j)  # later objects are drawn on top
    idx = (owner + 1).view(f, 1, size * size).expand(f, 3, size * size)
    frames = torch.gather(colour_table.transpose(1, 2), 2, idx).view(f, 3, size, size)  # [F, 3, H, W]
    masks = (owner == target_index).to(torch.float32)
    return {"frames": frames.clamp(0.0, 1.0), "masks": masks, "fps": float(fps)}
