"""Video prompts: masked frames -> one feature per frame -> one feature per latent frame.

Mask convention (the only one in promptsep): mask value ``1`` (True) marks the pixels of
the **target object**. The encoder keeps those pixels and replaces the rest by the
normalisation mean colour (grey), which is exactly zero after normalisation; soft masks in
``[0, 1]`` blend the two. A box ``(x0, y0, x1, y1)`` (pixels, ``x1``/``y1`` exclusive)
becomes a mask of ones inside the box (:func:`box_to_masks`).

Time convention: video frame ``j`` covers ``[j / fps, (j + 1) / fps)`` and stands for its
centre ``(j + 0.5) / fps``; latent frame ``k`` stands for ``(k + 0.5) / frame_rate``
(:func:`resample_to_latent` interpolates linearly between frame centres).

The tower is an open_clip visual tower: ``open_clip.create_model(name, pretrained=tag).visual``
for names such as ``"ViT-B-32"`` with tag ``"openai"`` (downloads unless cached), or the
built-in ``"promptsep-tiny-vit"`` (tiny ViT, seeded random init, no files) for tests and
small models. ``open_clip``, ``av`` are imported lazily.

A third tower, ``"promptsep-conv-tower"`` (:class:`ConvFrameTower`), is a small convolutional
network meant to be **trained** with the separator (``trainable: true``): three strided
convolutions and a spatial mean, so a frame's feature can follow what the masked object does
(its size, brightness and motion) at a cost a CPU can train.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from prompts.types import VideoPrompt, check_box
from promptsep.errors import VideoError

logger = logging.getLogger(__name__)

TINY_VIT_NAME = "promptsep-tiny-vit"
#: open_clip model config of the tiny ViT (the text tower is built by open_clip and dropped).
TINY_VIT_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}
CONV_TOWER_NAME = "promptsep-conv-tower"
#: Seed of random initialisation (the tiny ViT is identical in every process).
VIDEO_INIT_SEED = 0

#: open_clip's OpenAI normalisation (``open_clip.OPENAI_DATASET_MEAN`` / ``_STD``), used by the conv tower
#: without importing open_clip.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_registered = False


def register_tiny_vit() -> None:
    """Register ``promptsep-tiny-vit`` with open_clip (idempotent)."""
    global _registered
    if _registered:
        return
    import open_clip

    if TINY_VIT_NAME not in open_clip.list_models():
        with tempfile.TemporaryDirectory(prefix="promptsep-openclip-") as tmp:
            path = Path(tmp) / f"{TINY_VIT_NAME}.json"
            path.write_text(json.dumps(TINY_VIT_CONFIG))
            open_clip.add_model_config(path)  # read at registration; the file may go afterwards
    _registered = True


class ConvFrameTower(nn.Module):
    """A small trainable per-frame conv tower: ``[N, 3, S, S] -> [N, dim]``.

    Three 3x3 stride-2 convolutions (GELU), a spatial mean and a linear head. The masked-out
    background is zero after normalisation, so the spatial mean grows with the masked object's
    visible area and brightness; the convolutions see its shape and motion blur.

    Attributes:
        output_dim: feature width ``dim``.
    """

    def __init__(self, dim: int = 64, width: int = 32) -> None:
        super().__init__()
        w = int(width)
        self.net = nn.Sequential(
            nn.Conv2d(3, w // 2, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w // 2, w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GELU(),
        )
        self.head = nn.Linear(2 * w, int(dim))
        self.output_dim = int(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S]`` normalised frames -> ``[N, dim]``."""
        return self.head(self.net(x).mean(dim=(2, 3)))


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


@dataclass
class VideoEncoderConfig:
    """Video encoder settings.

    Attributes:
        model_name: open_clip model name (``"ViT-B-32"``, ``"ViT-L-14"``, ...),
            ``"promptsep-tiny-vit"`` or ``"promptsep-conv-tower"`` (:class:`ConvFrameTower`,
            to be trained; ``dim`` sets its width, 64 when None).
        pretrained: open_clip pretrained tag (``"openai"``) or checkpoint file; None = random
            init (seeded).
        image_size: frames are resized to ``image_size x image_size``; the tower is built at
            that size (open_clip resizes pretrained position embeddings when it differs).
        dim: expected feature width ``D``; None accepts the tower's own. A mismatch is an error.
        trainable: False (default) freezes the tower (eval mode, no gradients).
        chunk_frames: frames per tower call (bounds memory on long videos).
    """

    model_name: str = TINY_VIT_NAME
    pretrained: str | None = None
    image_size: int = 64
    dim: int | None = None
    trainable: bool = False
    chunk_frames: int = 64


class VideoEncoder(nn.Module):
    """Masked video frames -> per-frame features with an open_clip visual tower.

    Attributes:
        cfg: the configuration.
        dim: feature width ``D``.
        visual: the open_clip visual tower.
    """

    def __init__(self, cfg: VideoEncoderConfig | None = None) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else VideoEncoderConfig()
        self.cfg = cfg
        build = self._conv_tower if cfg.model_name == CONV_TOWER_NAME else self._open_clip_tower
        self.visual, mean, std, dim = build(cfg)
        # masked-out pixels become exactly zero after this normalisation, for every tower
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        if dim is None:
            with torch.no_grad():
                dim = self.visual(torch.zeros(1, 3, cfg.image_size, cfg.image_size)).shape[-1]
        self.dim = int(dim)
        if cfg.dim is not None and int(cfg.dim) != self.dim:
            raise ValueError(
                f"video tower {cfg.model_name!r} gives {self.dim}-d features, but the config says dim={cfg.dim}"
            )
        if not cfg.trainable:
            self.requires_grad_(False)
            super().train(False)
        logger.info("video encoder %s (pretrained=%s, %d px, trainable=%s): %d-d", cfg.model_name, cfg.pretrained,
                    cfg.image_size, cfg.trainable, self.dim)

    @staticmethod
    def _conv_tower(cfg: VideoEncoderConfig) -> tuple[nn.Module, tuple, tuple, int]:
        """``(tower, mean, std, dim)`` of :class:`ConvFrameTower` (seeded init, no files)."""
        if cfg.pretrained is not None:
            raise ValueError(f"{CONV_TOWER_NAME} has no pretrained tags; its weights come with a separator release "
                             f"(got pretrained={cfg.pretrained!r})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(VIDEO_INIT_SEED)
            tower = ConvFrameTower(dim=int(cfg.dim or 64))
        return tower, OPENAI_MEAN, OPENAI_STD, tower.output_dim

    @staticmethod
    def _open_clip_tower(cfg: VideoEncoderConfig) -> tuple[nn.Module, tuple, tuple, int | None]:
        """``(visual tower, mean, std, dim or None)`` of an open_clip model (downloads a pretrained tag)."""
        import open_clip

        if cfg.model_name == TINY_VIT_NAME:
            register_tiny_vit()
        model_cfg = open_clip.get_model_config(cfg.model_name)
        if model_cfg is None and "hf-hub:" not in cfg.model_name and "local-dir:" not in cfg.model_name:
            raise ValueError(f"unknown open_clip model {cfg.model_name!r}; see open_clip.list_models()")
        force = None
        if model_cfg is not None:
            native = model_cfg.get("vision_cfg", {}).get("image_size")
            if native != cfg.image_size:
                force = int(cfg.image_size)
        quiet = _DropRandomInitWarning() if cfg.pretrained is None else None
        root = logging.getLogger()
        if quiet is not None:
            root.addFilter(quiet)  # random init is what we asked for: drop open_clip's warning
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(VIDEO_INIT_SEED)
            try:
                clip = open_clip.create_model(
                    cfg.model_name, pretrained=cfg.pretrained, force_image_size=force
                )
            except RuntimeError as exc:
                raise RuntimeError(
                    f"could not build the open_clip video tower {cfg.model_name!r} (pretrained={cfg.pretrained!r}): "
                    f"{exc}. Without internet, set video.pretrained to a local checkpoint file."
                ) from exc
            finally:
                if quiet is not None:
                    root.removeFilter(quiet)
        pp = open_clip.get_model_preprocess_cfg(clip) or {}
        mean = pp.get("mean") or open_clip.OPENAI_DATASET_MEAN
        std = pp.get("std") or open_clip.OPENAI_DATASET_STD
        dim = getattr(clip.visual, "output_dim", None)
        if dim is None and model_cfg is not None:
            dim = model_cfg.get("embed_dim")
        return clip.visual, tuple(mean), tuple(std), dim

    def train(self, mode: bool = True) -> VideoEncoder:
        """Frozen encoders stay in eval mode."""
        return super().train(mode and self.cfg.trainable)

    def preprocess(self, frames: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Mask, resize and normalise frames.

        Args:
            frames: ``[N, 3, H, W]`` in ``[0, 1]``.
            masks: ``[N, H, W]`` (1 = target object) or None (whole frame).

        Returns:
            ``[N, 3, S, S]`` normalised, ``S = image_size``; background is 0.
        """
        x = frames.float()
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        if masks is not None:
            m = masks.to(device=x.device, dtype=torch.float32).clamp(0, 1).unsqueeze(1)
            x = x * m + mean * (1 - m)
        s = int(self.cfg.image_size)
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return (x - mean) / std

    def forward(self, frames: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Encode masked frames.

        Args:
            frames: ``[B, F, 3, H, W]`` float RGB in ``[0, 1]``.
            masks: ``[B, F, H, W]`` (1 = target object, bool or float) or None.

        Returns:
            ``[B, F, D]`` float32 features.

        Raises:
            VideoError: bad shapes.
        """
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise VideoError(f"video frames must be shaped [B, F, 3, H, W], got {list(frames.shape)}")
        b, f, _, h, w = frames.shape
        if masks is not None and tuple(masks.shape) != (b, f, h, w):
            raise VideoError(
                f"video masks must be shaped [B, F, H, W] = {[b, f, h, w]}, got {list(masks.shape)}"
            )
        flat = frames.reshape(b * f, 3, h, w)
        mflat = None if masks is None else masks.reshape(b * f, h, w)
        param = next(self.visual.parameters())
        step = max(1, int(self.cfg.chunk_frames))
        outs = []
        with torch.set_grad_enabled(self.cfg.trainable and torch.is_grad_enabled()):
            for i in range(0, b * f, step):
                x = self.preprocess(
                    flat[i : i + step].to(param.device), None if mflat is None else mflat[i : i + step]
                )
                out = self.visual(x.to(param.dtype))
                if isinstance(out, (tuple, list)):
                    out = out[0]
                outs.append(out.float())
        feats = torch.cat(outs) if outs else torch.zeros(0, self.dim, device=param.device)
        return feats.reshape(b, f, self.dim)


def build_video_encoder(cfg: VideoEncoderConfig | None = None) -> VideoEncoder:
    """Factory: a :class:`VideoEncoder` (no download for ``promptsep-tiny-vit``)."""
    return VideoEncoder(cfg if cfg is not None else VideoEncoderConfig())


def resample_to_latent(feats: torch.Tensor, fps: float, num_frames: int, frame_rate: float) -> torch.Tensor:
    """Resample per-video-frame features to one per latent frame (linear in time).

    Latent frame ``k`` takes the value at time ``(k + 0.5) / frame_rate``, interpolated
    linearly between video frame centres ``(j + 0.5) / fps``; times before the first or after
    the last centre take the edge frame. When ``fps == frame_rate`` and ``F == T`` the
    features come back unchanged.

    Args:
        feats: ``[B, F, D]``.
        fps: video frames per second.
        num_frames: latent frames ``T``.
        frame_rate: latent frames per second.

    Returns:
        ``[B, T, D]`` in the dtype of ``feats``.
    """
    if feats.ndim != 3:
        raise ValueError(f"feats must be [B, F, D], got {list(feats.shape)}")
    if not (fps > 0 and frame_rate > 0):
        raise ValueError(f"fps and frame_rate must be positive, got {fps} and {frame_rate}")
    b, f, d = feats.shape
    if f == 0:
        raise VideoError("the video has no frames")
    k = torch.arange(num_frames, device=feats.device, dtype=torch.float64)
    pos = ((k + 0.5) / float(frame_rate) * float(fps) - 0.5).clamp(0, f - 1)
    lo = pos.floor().long().clamp(0, f - 1)
    hi = (lo + 1).clamp(max=f - 1)
    wgt = (pos - lo.double()).to(feats.dtype).view(1, -1, 1)
    return feats[:, lo] * (1 - wgt) + feats[:, hi] * wgt


def box_to_masks(box, num_frames: int, height: int, width: int) -> torch.Tensor:
    """A pixel box on every frame as masks.

    Args:
        box: ``(x0, y0, x1, y1)`` in pixels, ``x1``/``y1`` exclusive.
        num_frames: ``F``.
        height: ``H``.
        width: ``W``.

    Returns:
        ``[F, H, W]`` float32, 1 inside the box (the target), 0 outside.

    Raises:
        VideoError: box empty or outside the frame.
    """
    x0, y0, x1, y1 = check_box(box, height, width)
    m = torch.zeros(num_frames, height, width)
    m[:, y0:y1, x0:x1] = 1.0
    return m


def load_video(
    path: str | Path,
    max_frames: int | None = None,
    max_side: int | None = None,
) -> VideoPrompt:
    """Decode a video file (any format FFmpeg/PyAV reads) into a :class:`VideoPrompt`.

    Args:
        path: video file.
        max_frames: keep at most this many frames from the start (None: all).
        max_side: downscale so the longer side is at most this (None: keep the size; boxes
            must then be given in the downscaled pixel coordinates).

    Returns:
        ``VideoPrompt(frames [F, 3, H, W] float in [0, 1], fps)`` without masks or box.

    Raises:
        VideoError: missing or unreadable file, no video stream, no decodable frame.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video file not found: {path}")
    frames = []
    try:
        with av.open(str(path)) as container:
            streams = _picture_streams(container)
            if not streams:
                raise VideoError(f"{path} has no video stream")
            stream = streams[0]
            fps = _frame_rate(stream)
            for frame in container.decode(stream):
                if max_frames is not None and len(frames) >= max_frames:
                    break
                if max_side is not None and max(frame.width, frame.height) > max_side:
                    scale = max_side / max(frame.width, frame.height)
                    frame = frame.reformat(
                        width=max(1, round(frame.width * scale)), height=max(1, round(frame.height * scale))
                    )
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"cannot read video {path}: {exc}") from exc
    if not frames:
        raise VideoError(f"no frames could be decoded from {path}")
    if not (math.isfinite(fps) and fps > 0):
        raise VideoError(f"{path} has no usable frame rate")
    video = torch.stack(frames).permute(0, 3, 1, 2).float().div_(255.0)
    logger.info(
        "loaded video %s: %d frames %dx%d at %.3f fps",
        path,
        video.shape[0],
        video.shape[3],
        video.shape[2],
        fps,
    )
    return VideoPrompt(frames=video, fps=fps)


def check_video_covers_audio(video: VideoPrompt, duration_s: float) -> None:
    """Raise :class:`VideoError` if the video is shorter than the audio by more than one frame.

    Args:
        video: the video prompt (its length is ``F / fps``).
        duration_s: audio length in seconds.
    """
    fps = float(video.fps)
    if not (math.isfinite(fps) and fps > 0):
        raise VideoError(f"video fps must be positive, got {video.fps!r}")
    length = int(video.frames.shape[0]) / fps
    if length < duration_s - 1.0 / fps - 1e-9:
        raise VideoError(f"video is {length:.2f} s, shorter than the {duration_s:.2f} s audio")


#: Longer side (pixels) the CLI decodes video prompts at: the towers see 64-224 px, and the frames of a
#: long high-resolution clip would not fit in memory at full size. Boxes and masks are given in the
#: file's own pixels and scaled with the frames.
VIDEO_MAX_SIDE = 256


def _frame_rate(stream) -> float:
    """Frames per second of a PyAV video stream (average, else guessed, else base rate; 0 if unknown)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _picture_streams(container) -> list:
    """The video streams of an open container that are moving pictures (not cover art)."""
    import av

    attached = int(av.stream.Disposition.attached_pic)
    return [s for s in container.streams.video if not int(s.disposition) & attached]


def has_video_stream(path: str | Path) -> bool:
    """Whether ``path`` is a media file with a video stream (an mp3's cover picture does not count).

    Args:
        path: any file.

    Returns:
        True for a video container FFmpeg reads (mp4, webm, mkv, mov, ...); False for audio-only
        files and files FFmpeg cannot open.
    """
    import av

    try:
        with av.open(str(path)) as container:
            return bool(_picture_streams(container))
    except (av.error.FFmpegError, OSError, ValueError):
        return False


def load_mask_image(path: str | Path) -> torch.Tensor:
    """Read a single-image mask: white (bright) pixels are the target object.

    Args:
        path: an image file Pillow reads (png, jpeg, bmp, ...); colour and alpha are converted to grey.

    Returns:
        ``[H, W]`` float32 of 0 and 1 (1 where the grey level is at least half of full scale).

    Raises:
        VideoError: missing or unreadable file, or a mask with no white pixel.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise VideoError(f"mask image not found: {p}")
    try:
        with Image.open(p) as img:
            grey = torch.from_numpy(np.array(img.convert("L"), dtype=np.uint8))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise VideoError(f"cannot read the mask image {p}: {exc}") from exc
    mask = (grey >= 128).float()
    if not bool(mask.any()):
        raise VideoError(f"the mask image {p} has no white pixel: paint the target object white on black")
    return mask


def video_geometry(path: str | Path) -> tuple[int, int, float]:
    """``(width, height, fps)`` of the first picture stream of ``path``, read without decoding it.

    Args:
        path: a video file.

    Returns:
        The file's own frame width and height in pixels (0 if the header does not say) and its
        frame rate (0.0 if unknown).

    Raises:
        VideoError: unreadable file or no video stream.
    """
    import av

    try:
        with av.open(str(path)) as container:
            streams = _picture_streams(container)
            if not streams:
                raise VideoError(f"{path} has no video stream")
            ctx = streams[0].codec_context
            return int(ctx.width), int(ctx.height), _frame_rate(streams[0])
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"cannot read video {path}: {exc}") from exc


def scale_box(
    box: tuple[int, int, int, int], size: tuple[int, int], new_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A pixel box on a ``size`` frame moved to the same frame scaled to ``new_size``.

    The scaled box covers at least the same part of the picture (start rounded down, end up)
    and stays inside the new frame.

    Args:
        box: ``(x0, y0, x1, y1)`` in pixels of the ``size = (W, H)`` frame (``x1``/``y1`` exclusive).
        size: ``(W, H)`` the box is given in.
        new_size: ``(W', H')`` of the scaled frame.

    Returns:
        ``(x0', y0', x1', y1')`` in pixels of the ``new_size`` frame.
    """
    (width, height), (w, h) = size, new_size
    sx, sy = w / width, h / height
    x0, y0, x1, y1 = box
    return (
        min(int(math.floor(x0 * sx)), w - 1),
        min(int(math.floor(y0 * sy)), h - 1),
        min(max(int(math.ceil(x1 * sx)), 1), w),
        min(max(int(math.ceil(y1 * sy)), 1), h),
    )


def load_video_prompt(
    path: str | Path,
    duration_s: float,
    box: tuple[int, int, int, int] | None = None,
    mask: str | Path | None = None,
    max_side: int | None = VIDEO_MAX_SIDE,
) -> VideoPrompt:
    """A video file as a prompt for ``duration_s`` seconds of audio, with a box or a mask image.

    Any frame rate and frame size: the frames that cover the audio are decoded (frames past
    its end are ignored and not decoded), downscaled so the longer side is at most ``max_side``,
    and the box or mask, given in the file's own pixels, is scaled with them. A video shorter
    than the audio by more than one frame is an error (:func:`check_video_covers_audio`).

    Args:
        path: video file (any container and codec FFmpeg reads).
        duration_s: length of the audio the video goes with, in seconds.
        box: ``(x0, y0, x1, y1)`` around the target in the file's pixels (``x1``/``y1`` exclusive).
        mask: an image file, white = target (:func:`load_mask_image`), applied to every frame and
            resized to the frame size (nearest neighbour). Exactly one of ``box`` and ``mask``.
        max_side: longest decoded side in pixels (None: full size).

    Returns:
        A validated :class:`VideoPrompt` (``frames [F, 3, H', W']``, ``fps``, and ``box`` or
        ``masks [F, H', W']``).

    Raises:
        VideoError: neither or both of box and mask, unreadable video or mask, a box outside the
            frame, a mask with no target pixel left at the frame size, a video shorter than the audio.
    """
    path = Path(path)
    if (box is None) == (mask is None):
        raise VideoError("select the target object in the video with exactly one of a box or a mask image")
    mask_img = load_mask_image(mask) if mask is not None else None  # a bad mask fails before decoding
    if not path.is_file():
        raise VideoError(f"video file not found: {path}")
    width, height, fps = video_geometry(path)
    if box is not None and width > 0 and height > 0:
        box = check_box(box, height, width)
    max_frames = int(math.ceil(duration_s * fps)) + 1 if fps > 0 else None
    video = load_video(path, max_frames=max_frames, max_side=max_side)
    check_video_covers_audio(video, duration_s)
    f, _, h, w = video.frames.shape
    if box is not None:
        video.box = scale_box(box, (width or w, height or h), (w, h))
    else:
        mh, mw = mask_img.shape
        if abs(mw / mh - w / h) > 0.02 * (w / h):
            logger.warning("mask image %s is %dx%d but the video frames are %dx%d: stretched to fit", mask, mw, mh,
                           width, height)
        m = F.interpolate(mask_img[None, None], size=(h, w), mode="nearest")[0, 0]
        if not bool(m.any()):
            raise VideoError(f"the mask image {mask} has no target pixel left at the {w}x{h} frame size")
        video.masks = m.expand(f, h, w)
    return video.validate(require_selection=True)
