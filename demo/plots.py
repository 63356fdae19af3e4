"""Pictures for the demo: waveform with span prompts, spectrograms, a video frame with its box.

Everything renders with matplotlib's object API on the Agg canvas (no ``pyplot`` global
state, so concurrent requests do not share figures) and returns ``uint8`` RGB arrays
``[H, W, 3]`` that Gradio shows as images. matplotlib is imported inside the functions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Colours of '+' (target audible) and '-' (target silent) spans.
SPAN_COLOURS = {"+": "#2ca02c", "-": "#d62728"}
#: Colour of the box drawn on a video frame.
BOX_COLOUR = (255, 64, 32)


def _figure(width_in: float, height_in: float, dpi: int = 100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _render(fig) -> np.ndarray:
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def _mono(wav) -> np.ndarray:
    """``[C, N]`` / ``[N]`` tensor or array -> float ``[N]`` (channel mean)."""
    x = np.asarray(wav.detach().cpu().numpy() if hasattr(wav, "detach") else wav, dtype=np.float32)
    return x.mean(axis=0) if x.ndim == 2 else x


def waveform_picture(
    wav, sample_rate: int, spans: Sequence[tuple[str, float, float]] = (), title: str = "mixture"
) -> np.ndarray:
    """Waveform envelope with '+' spans shaded green and '-' spans red.

    Args:
        wav: ``[C, N]`` or ``[N]`` waveform.
        sample_rate: its rate.
        spans: ``(sign, start_s, end_s)`` spans to draw (invalid ones are drawn as given).
        title: text above the plot.

    Returns:
        ``[H, W, 3]`` uint8 image.
    """
    x = _mono(wav)
    n = x.shape[-1]
    dur = n / float(sample_rate) if n else 0.0
    fig = _figure(10, 2.2)
    ax = fig.add_axes((0.06, 0.22, 0.92, 0.62))
    if n:
        cols = min(2000, n)
        edges = np.linspace(0, n, cols + 1).astype(int)
        lo = np.minimum.reduceat(x, edges[:-1])
        hi = np.maximum.reduceat(x, edges[:-1])
        t = edges[:-1] / float(sample_rate)
        ax.fill_between(t, lo, hi, color="#1f77b4", linewidth=0.5)
    for sign, start, end in spans:
        colour = SPAN_COLOURS.get(sign, "#7f7f7f")
        ax.axvspan(start, end, color=colour, alpha=0.3, linewidth=0, zorder=3)
        ax.text((start + end) / 2, 0.93, sign, transform=ax.get_xaxis_transform(), ha="center", va="top",
                color=colour, fontsize=11, fontweight="bold", zorder=5,
                bbox={"facecolor": "white", "edgecolor": colour, "boxstyle": "round,pad=0.2"})
    ax.set_xlim(0, max(dur, 1e-3))
    peak = float(np.abs(x).max()) if n else 1.0
    ax.set_ylim(-1.05 * max(peak, 1e-3), 1.05 * max(peak, 1e-3))
    ax.set_yticks([])
    ax.set_xlabel("time (s)", fontsize=9)
    ax.tick_params(labelsize=8)
    legend = "   green: target audible (+)   red: target silent (-)" if spans else ""
    ax.set_title(f"{title} ({dur:.2f} s){legend}", fontsize=10, loc="left")
    return _render(fig)


def spectrogram_picture(wav, sample_rate: int, title: str, n_fft: int = 1024, top_db: float = 80.0) -> np.ndarray:
    """Log-magnitude spectrogram (dB, ``top_db`` range below the peak) as an image.

    Args:
        wav: ``[C, N]`` or ``[N]`` waveform (channels are averaged).
        sample_rate: its rate.
        title: text above the plot.
        n_fft: FFT size (hop is a quarter of it).
        top_db: dynamic range shown.

    Returns:
        ``[H, W, 3]`` uint8 image.
    """
    x = _mono(wav).astype(np.float64)
    hop = n_fft // 4
    if x.shape[-1] < n_fft:
        x = np.pad(x, (0, n_fft - x.shape[-1]))
    frames = 1 + (x.shape[-1] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=-1)) ** 2  # [frames, bins]
    db = 10 * np.log10(spec + 1e-12)
    ref = db.max() if np.isfinite(db.max()) else 0.0
    db = np.maximum(db, ref - top_db)
    fig = _figure(10, 2.6)
    ax = fig.add_axes((0.06, 0.18, 0.92, 0.7))
    dur = x.shape[-1] / float(sample_rate)
    ax.imshow(db.T, origin="lower", aspect="auto", cmap="magma", extent=(0, dur, 0, sample_rate / 2000.0),
              vmin=ref - top_db, vmax=ref, interpolation="nearest")
    ax.set_ylabel("kHz", fontsize=9)
    ax.set_xlabel("time (s)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.set_title(title, fontsize=10, loc="left")
    return _render(fig)


def box_picture(frame, box: Sequence[float] | None = None, width: int = 3) -> np.ndarray:
    """A video frame with the target box drawn on it.

    Args:
        frame: ``[3, H, W]`` float tensor/array in ``[0, 1]`` or ``[H, W, 3]`` uint8 array.
        box: ``(x0, y0, x1, y1)`` pixels (``x1``/``y1`` exclusive) or None.
        width: line width in pixels.

    Returns:
        ``[H, W, 3]`` uint8 image of the frame's own size (so clicks map to frame pixels).
    """
    from PIL import Image, ImageDraw

    arr = np.asarray(frame.detach().cpu().numpy() if hasattr(frame, "detach") else frame)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = np.transpose(arr, (1, 2, 0))
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
    if box is not None:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        draw = ImageDraw.Draw(img)
        lw = max(1, min(width, (x1 - x0) // 2, (y1 - y0) // 2)) if x1 > x0 and y1 > y0 else width
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=BOX_COLOUR, width=lw)
    return np.asarray(img)


def point_picture(frame, point: Sequence[float]) -> np.ndarray:
    """A video frame with a cross at ``point`` (the first corner of a box being clicked)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(box_picture(frame))
    x, y = (int(round(float(v))) for v in point)
    r = max(3, min(img.size) // 40)
    draw = ImageDraw.Draw(img)
    draw.line((x - r, y, x + r, y), fill=BOX_COLOUR, width=2)
    draw.line((x, y - r, x, y + r), fill=BOX_COLOUR, width=2)
    return np.asarray(img)


def save_png(picture: np.ndarray, path, text: dict[str, str] | None = None) -> str:
    """Write an RGB picture ``[H, W, 3]`` as a PNG with optional ``tEXt`` metadata.

    The demo returns its pictures as files written into the request's own folder, with the
    request id in the metadata. Gradio caches outputs by content hash and rewrites the cached
    file for each response, so two concurrent requests that drew byte-identical pictures (same
    mixture) would share one cache file and one could be served while the other truncates it;
    per-request metadata keeps every response's files distinct.

    Args:
        picture: ``uint8`` RGB array ``[H, W, 3]``.
        path: Output ``.png`` path.
        text: ``tEXt`` key/value pairs to store.

    Returns:
        The written path as a string.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in (text or {}).items():
        info.add_text(str(k), str(v))
    Image.fromarray(np.ascontiguousarray(picture, dtype=np.uint8), mode="RGB").save(str(path), pnginfo=info)
    return str(path)


__all__ = ["waveform_picture", "spectrogram_picture", "box_picture", "point_picture", "save_png"]
