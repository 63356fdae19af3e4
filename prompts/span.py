"""Span prompts -> one anchor id per latent frame.

Anchor ids (embedded by the DiT and added to its input through a gate):

* ``NULL = 0``: no information about this frame.
* ``POS = 1``: ``'+'`` span, the target is audible.
* ``NEG = 2``: ``'-'`` span, the target is silent.
* ``PAD = 3``: the frame lies past the end of the real audio (batch padding).

Alignment rule (used everywhere): latent frame ``k`` covers ``[k / fr, (k + 1) / fr)`` and
its centre is ``c_k = (k + 0.5) / fr``. A span ``[start, end)`` marks frame ``k`` iff
``start <= c_k < end``; a span 1.0-2.0 s at 50 frames/s marks exactly frames 50..99.
Comparisons are made in frame units with a 1e-9 frame tolerance, so that times written
in decimal (``0.07`` s at 50 frames/s is exactly the centre of frame 3) behave as written.
A span that reaches the end of the audio also covers its last, partial frame. Later spans
override earlier ones. Frame ``k`` is padding iff it starts at or after the end of the
audio (``k >= ceil(duration_s * fr)``, the codec's frame count), and padding is ``PAD``
whatever the spans say.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

import torch

from prompts.types import SpanPrompt, format_span, validate_span
from promptsep.errors import PromptError

logger = logging.getLogger(__name__)

NULL, POS, NEG, PAD = 0, 1, 2, 3
#: Anchor id of each span sign.
SIGN_TO_ID = {"+": POS, "-": NEG}

_EPS = 1e-9
_NUM = r"[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?"
_SPAN_RE = re.compile(rf"^\s*([+-])\s*({_NUM})\s*:\s*({_NUM})\s*$")


def parse_span(s: str) -> tuple[str, float, float]:
    """Parse ``"+1.0:2.5"`` -> ``('+', 1.0, 2.5)`` and ``"-4:5"`` -> ``('-', 4.0, 5.0)``.

    The sign is required: ``'+'`` the target is audible in ``[start, end)`` seconds,
    ``'-'`` it is silent there.

    Raises:
        PromptError: malformed string, or ``start >= end``.
    """
    if not isinstance(s, str):
        raise PromptError(f"a span must be a string like '+1.0:2.5', got {s!r}")
    m = _SPAN_RE.match(s)
    if m is None:
        raise PromptError(
            f"cannot parse span {s!r}: expected SIGN START:END in seconds, e.g. '+1.0:2.5' "
            "(target audible) or '-4:5' (target silent)"
        )
    return validate_span((m.group(1), float(m.group(2)), float(m.group(3))))


def _as_spans(spans) -> list:
    """Accept a :class:`SpanPrompt`, a list of tuples and/or strings, or None."""
    if spans is None:
        return []
    if isinstance(spans, SpanPrompt):
        return list(spans.spans)
    if isinstance(spans, str):
        return [parse_span(spans)]
    return [parse_span(s) if isinstance(s, str) else s for s in spans]


def num_real_frames(duration_s: float, frame_rate: float) -> int:
    """Frames that start before ``duration_s``: ``ceil(duration_s * frame_rate)`` (like ``codec.num_frames``)."""
    return max(0, math.ceil(duration_s * frame_rate - _EPS))


def spans_to_anchors(
    spans,
    num_frames: int,
    frame_rate: float,
    duration_s: float | None = None,
) -> torch.Tensor:
    """Turn span prompts into one anchor id per latent frame (see the module docstring for the rule).

    Args:
        spans: ``(sign, start_s, end_s)`` tuples (or ``"+1.0:2.5"`` strings, or a
            :class:`SpanPrompt`); an empty list gives all ``NULL`` (plus ``PAD``).
        num_frames: latent frames ``T`` of the (possibly padded) batch.
        frame_rate: latent frames per second.
        duration_s: real length of the audio; frames from ``ceil(duration_s * frame_rate)``
            on are ``PAD``. None means ``num_frames / frame_rate`` (no padding).

    Returns:
        LongTensor ``[T]`` of ids in ``{NULL, POS, NEG, PAD}``.

    Raises:
        PromptError: a span with an unknown sign, a negative start, ``start >= end`` or an
            end past ``duration_s`` by more than half a frame.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if not frame_rate > 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    if duration_s is None:
        duration_s = num_frames / frame_rate
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise PromptError(f"audio duration must be a non-negative number of seconds, got {duration_s}")
    half = 0.5 / frame_rate
    anchors = torch.full((num_frames,), NULL, dtype=torch.long)
    pad_from = min(num_frames, num_real_frames(duration_s, frame_rate))
    for span in _as_spans(spans):
        sign, start, end = validate_span(span, duration_s, tolerance_s=half)
        first = math.ceil(start * frame_rate - 0.5 - _EPS)
        if end * frame_rate >= duration_s * frame_rate - _EPS:
            last = pad_from  # reaches the end: also the last, partial frame
        else:
            last = math.ceil(end * frame_rate - 0.5 - _EPS)
        first, last = max(0, first), min(pad_from, last)
        if last <= first:
            logger.debug("span %s covers no latent frame at %g frames/s", format_span(span), frame_rate)
            continue
        anchors[first:last] = SIGN_TO_ID[sign]
    anchors[pad_from:] = PAD
    return anchors


def anchors_batch(
    span_lists: Sequence,
    num_frames: int,
    frame_rate: float,
    durations: Sequence[float | None] | float | None = None,
) -> torch.Tensor:
    """Anchors for a batch: one span list (or None) per row.

    Args:
        span_lists: ``B`` entries, each as accepted by :func:`spans_to_anchors` (None or
            empty for a row without span prompt: ``NULL`` frames, ``PAD`` past its duration).
        num_frames: ``T``.
        frame_rate: latent frames per second.
        durations: real audio length of each row (or one value for all, or None).

    Returns:
        LongTensor ``[B, T]``.
    """
    b = len(span_lists)
    if durations is None or isinstance(durations, (int, float)):
        durations = [durations] * b
    if len(durations) != b:
        raise ValueError(f"got {b} span lists but {len(durations)} durations")
    if b == 0:
        return torch.zeros(0, num_frames, dtype=torch.long)
    return torch.stack(
        [spans_to_anchors(s, num_frames, frame_rate, d) for s, d in zip(span_lists, durations)]
    )


def activity_to_spans(
    activity: torch.Tensor,
    frame_rate: float,
    min_len_s: float = 0.0,
    include_negative: bool = True,
) -> list[tuple[str, float, float]]:
    """Turn a per-frame activity mask into ``'+'`` (active) and ``'-'`` (inactive) spans.

    Each run of equal values over frames ``k0..k1-1`` becomes the span
    ``[k0 / frame_rate, k1 / frame_rate)``, so that
    ``spans_to_anchors(activity_to_spans(a, fr), len(a), fr)`` equals
    ``where(a, POS, NEG)`` exactly.

    Args:
        activity: ``[T]`` bool (or 0/1) per frame, True where the target is audible.
        frame_rate: frames per second of ``activity``.
        min_len_s: runs shorter than this are dropped (their frames stay ``NULL``: short,
            ambiguous segments say nothing).
        include_negative: also emit ``'-'`` spans for inactive runs.

    Returns:
        Spans ``(sign, start_s, end_s)`` in time order.
    """
    a = torch.as_tensor(activity).reshape(-1).bool().cpu()
    if a.numel() == 0:
        return []
    change = torch.nonzero(a[1:] != a[:-1]).flatten() + 1
    bounds = [0, *change.tolist(), a.numel()]
    min_frames = min_len_s * frame_rate - _EPS
    spans = []
    for k0, k1 in zip(bounds[:-1], bounds[1:]):
        if k1 - k0 < min_frames:
            continue
        active = bool(a[k0])
        if not active and not include_negative:
            continue
        spans.append(("+" if active else "-", k0 / frame_rate, k1 / frame_rate))
    return spans
