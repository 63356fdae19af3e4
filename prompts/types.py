"""Typed prompt data: what a user gives to say which sound to isolate.

Three kinds of prompt, which can be combined:

* :class:`TextPrompt`: a description such as ``"dog barking"``.
* :class:`SpanPrompt`: time spans where the target is audible (``'+'``) or silent (``'-'``).
* :class:`VideoPrompt`: video frames of the object that makes the sound, with per-frame
  masks or a bounding box that select it.

Each dataclass has a ``validate()`` method raising :class:`promptsep.errors.PromptError`
(or :class:`promptsep.errors.VideoError` for videos) with a message that names the problem.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from promptsep.errors import PromptError, VideoError

logger = logging.getLogger(__name__)

#: Span signs: ``'+'`` the target is audible in the span, ``'-'`` it is silent.
SPAN_SIGNS = ("+", "-")


def format_span(span: Sequence) -> str:
    """Human-readable form of a span, ``('+', 1.0, 2.5) -> "+1.0:2.5"`` (for error messages)."""
    try:
        sign, start, end = span
        return f"{sign}{float(start):g}:{float(end):g}"
    except (TypeError, ValueError):
        return repr(span)


def validate_span(
    span: Sequence, duration_s: float | None = None, tolerance_s: float = 0.0
) -> tuple[str, float, float]:
    """Check one span and return it normalised to ``(sign, float start, float end)``.

    Args:
        span: ``(sign, start_s, end_s)``.
        duration_s: length of the audio; when given, the span must end by then.
        tolerance_s: how far past ``duration_s`` a span may end (e.g. half a latent frame).

    Returns:
        ``(sign, start_s, end_s)`` with float times.

    Raises:
        PromptError: malformed tuple, unknown sign, non-finite or negative start,
            ``start >= end``, or a span that ends past the audio.
    """
    if isinstance(span, str) or not isinstance(span, Sequence) or len(span) != 3:
        raise PromptError(f"a span must be a (sign, start_s, end_s) tuple, got {span!r}")
    sign, start, end = span
    if sign not in SPAN_SIGNS:
        raise PromptError(
            f"unknown span sign {sign!r} in {span!r}: use '+' (target audible) or '-' (target silent)"
        )
    try:
        start, end = float(start), float(end)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"span {span!r} has non-numeric times") from exc
    name = format_span((sign, start, end))
    if not (math.isfinite(start) and math.isfinite(end)):
        raise PromptError(f"span {name} has a non-finite time")
    if start < 0:
        raise PromptError(f"span {name} starts at a negative time ({start:g} s); times start at 0")
    if start >= end:
        raise PromptError(f"span {name}: start ({start:g} s) must be before end ({end:g} s)")
    if duration_s is not None and end > duration_s + tolerance_s:
        raise PromptError(f"span {name} ends at {end:g} s, past the end of the {duration_s:.3f} s audio")
    return sign, start, end


@dataclass
class TextPrompt:
    """A text description of the target sound.

    Attributes:
        text: e.g. ``"dog barking"``, ``"piano"``, ``"man speaking"``.
    """

    text: str

    def validate(self) -> TextPrompt:
        """Raise :class:`PromptError` if the text is not a non-empty string; return self."""
        if not isinstance(self.text, str):
            raise PromptError(f"the text prompt must be a string, got {type(self.text).__name__}")
        if not self.text.strip():
            raise PromptError("the text prompt is empty: describe the sound to isolate, e.g. 'dog barking'")
        return self


@dataclass
class SpanPrompt:
    """Time spans where the target sound is audible or silent.

    Attributes:
        spans: list of ``(sign, start_s, end_s)``; ``sign`` is ``'+'`` (target audible in
            ``[start_s, end_s)``) or ``'-'`` (target silent there). Later spans override
            earlier ones where they overlap.
    """

    spans: list[tuple[str, float, float]] = field(default_factory=list)

    @classmethod
    def parse(cls, texts: Sequence[str]) -> SpanPrompt:
        """Build from strings such as ``["+1.0:2.5", "-4:5"]`` (see :func:`prompts.span.parse_span`)."""
        from prompts.span import parse_span

        return cls([parse_span(t) for t in texts])

    def validate(self, duration_s: float | None = None, tolerance_s: float = 0.0) -> SpanPrompt:
        """Check every span; return self.

        Args:
            duration_s: audio length in seconds; spans must end by then (plus ``tolerance_s``).
            tolerance_s: allowed overrun past ``duration_s``.

        Raises:
            PromptError: no spans, unknown sign, negative start, start >= end, span past the end.
        """
        if not self.spans:
            raise PromptError("the span prompt has no spans: give at least one like '+1.0:2.5'")
        self.spans = [validate_span(s, duration_s, tolerance_s) for s in self.spans]
        return self


@dataclass
class VideoPrompt:
    """Video frames of the sounding object, with masks or a box selecting it.

    Mask convention (one, everywhere in promptsep): mask value ``1`` (or True) marks the
    pixels of the **target object**; ``0`` is background, which the video encoder greys out.

    Attributes:
        frames: ``[F, 3, H, W]`` float RGB in ``[0, 1]``.
        fps: frames per second; frame ``j`` covers ``[j / fps, (j + 1) / fps)``.
        masks: ``[F, H, W]`` (bool or float in ``[0, 1]``, 1 = target) or None.
        box: ``(x0, y0, x1, y1)`` pixel box of the target (``x1``/``y1`` exclusive), used on
            every frame when ``masks`` is None.
    """

    frames: torch.Tensor
    fps: float
    masks: torch.Tensor | None = None
    box: tuple[int, int, int, int] | None = None

    @property
    def num_frames(self) -> int:
        """Number of frames ``F``."""
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        """Length of the video in seconds (``F / fps``)."""
        return self.num_frames / float(self.fps)

    def validate(self, require_selection: bool = False) -> VideoPrompt:
        """Check shapes, value ranges, fps and box; return self.

        Args:
            require_selection: also require masks or a box (needed to separate with it).

        Raises:
            VideoError: frames not ``[F, 3, H, W]`` or empty, values outside ``[0, 1]``,
                bad fps, masks whose shape differs from ``[F, H, W]``, a box outside the
                frame or empty, or (with ``require_selection``) neither masks nor box.
        """
        fr = self.frames
        if not isinstance(fr, torch.Tensor):
            raise VideoError(f"video frames must be a tensor, got {type(fr).__name__}")
        if fr.ndim != 4 or fr.shape[1] != 3:
            raise VideoError(f"video frames must be shaped [F, 3, H, W], got {list(fr.shape)}")
        f, _, h, w = fr.shape
        if f == 0 or h == 0 or w == 0:
            raise VideoError(f"the video is empty (frames shaped {list(fr.shape)})")
        if not fr.is_floating_point():
            raise VideoError(f"video frames must be float in [0, 1], got dtype {fr.dtype}")
        if not bool(torch.isfinite(fr).all()):
            raise VideoError("video frames contain NaN or infinite values")
        lo, hi = float(fr.min()), float(fr.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise VideoError(f"video frames must be in [0, 1], got values from {lo:.3f} to {hi:.3f}")
        try:
            fps = float(self.fps)
        except (TypeError, ValueError) as exc:
            raise VideoError(f"video fps must be a number, got {self.fps!r}") from exc
        if not (math.isfinite(fps) and fps > 0):
            raise VideoError(f"video fps must be positive, got {self.fps!r}")
        if self.masks is not None:
            m = self.masks
            if not isinstance(m, torch.Tensor) or tuple(m.shape) != (f, h, w):
                shape = list(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
                raise VideoError(
                    f"video masks must be shaped [F, H, W] = {[f, h, w]} like the frames, got {shape}"
                )
        if self.box is not None:
            check_box(self.box, h, w)
        if require_selection and self.masks is None and self.box is None:
            raise VideoError("the video prompt needs a box or per-frame masks that select the target object")
        return self


def check_box(box: Sequence, height: int, width: int) -> tuple[int, int, int, int]:
    """Check a pixel box ``(x0, y0, x1, y1)`` (``x1``/``y1`` exclusive) against a frame size.

    Returns:
        The box as four ints.

    Raises:
        VideoError: not four numbers, empty (``x0 >= x1`` or ``y0 >= y1``) or outside the frame.
    """
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    except (TypeError, ValueError) as exc:
        raise VideoError(f"a box must be four pixel coordinates (x0, y0, x1, y1), got {box!r}") from exc
    if x0 >= x1 or y0 >= y1:
        raise VideoError(f"box {(x0, y0, x1, y1)} is empty: need x0 < x1 and y0 < y1")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise VideoError(f"box {(x0, y0, x1, y1)} is outside the {width}x{height} (WxH) frame")
    return x0, y0, x1, y1
