"""Prompt data and prompt encoders for promptsep.

* :mod:`prompts.types`: :class:`TextPrompt`, :class:`SpanPrompt`, :class:`VideoPrompt`.
* :mod:`prompts.span`: span prompts -> per-latent-frame anchor ids (``NULL, POS, NEG, PAD``).
* :mod:`prompts.text`: frozen text encoders (bundled MiniLM, T5, tiny T5 for tests).
* :mod:`prompts.video`: open_clip vision tower on masked frames, resampling to latent frames.

Importing this package is light: ``transformers``, ``open_clip`` and ``av`` are imported
only when an encoder is built or a video is loaded.
"""

from prompts.span import NEG, NULL, PAD, POS, activity_to_spans, anchors_batch, parse_span, spans_to_anchors
from prompts.text import TextEncoder, TextEncoderConfig, build_text_encoder
from prompts.types import SpanPrompt, TextPrompt, VideoPrompt
from prompts.video import (
    VideoEncoder,
    VideoEncoderConfig,
    box_to_masks,
    build_video_encoder,
    check_video_covers_audio,
    load_video,
    resample_to_latent,
)

__all__ = [
    "NEG",
    "NULL",
    "PAD",
    "POS",
    "SpanPrompt",
    "TextEncoder",
    "TextEncoderConfig",
    "TextPrompt",
    "VideoEncoder",
    "VideoEncoderConfig",
    "VideoPrompt",
    "activity_to_spans",
    "anchors_batch",
    "box_to_masks",
    "build_text_encoder",
    "build_video_encoder",
    "check_video_covers_audio",
    "load_video",
    "parse_span",
    "resample_to_latent",
    "spans_to_anchors",
]
