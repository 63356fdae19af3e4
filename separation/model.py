"""The separation model: codec + prompt encoders + DiT backbone + flow matching.

:class:`SeparationModel` composes the parts: it owns the learned null embeddings
used for prompt dropout and classifier-free guidance and turns prompts into a
:class:`Conditioning`. The objective (prior, time sampling, prompt dropout, loss:
:func:`separation.flow.objective`, :func:`separation.flow.drop_prompts`) and the
samplers, chunked long-audio sampling included (:func:`separation.flow.iter_sample_chunked`),
live in :mod:`separation.flow`; the backbone (:mod:`separation.dit`) knows nothing of
any of that.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prompts.span import NULL, PAD, spans_to_anchors
from prompts.text import TextEncoderConfig, build_text_encoder
from prompts.video import VideoEncoderConfig
from promptsep import release
from separation.codec import DACVAE, CodecConfig, build_codec, codec_config_from_dict
from separation.dit import DiT, DiTConfig
from separation.flow import (
    FlowConfig,
    drop_prompts,
    guided_velocity,
    iter_sample_chunked,
    latent_rms,
    mask_split,
    objective,
    prior_sample,
    velocity_from_data,
)
from separation.mdct_codec import MDCTCodec, MDCTCodecConfig

logger = logging.getLogger(__name__)

#: Version of the release checkpoint layout (config.json + model.safetensors).
FORMAT_VERSION = release.FORMAT_VERSION
MODEL_KIND = "promptsep_separator"


@dataclass
class SamplingDefaults:
    """The sampler settings a release recommends (chosen on the valid split when it is made).

    Attributes:
        steps: function evaluations of the ODE sampler.
        method: ``midpoint``, ``euler`` or ``diffusers``.
        refine_power: mask exponent of the Wiener refinement (2 = Wiener-like power ratio,
            1 = magnitude ratio; see :func:`separation.refine.wiener_refine`).
        refine_n_fft: STFT size of the Wiener refinement (hop = ``refine_n_fft // 4``).
    """

    steps: int = 16
    method: str = "midpoint"
    refine_power: float = 2.0
    refine_n_fft: int = 1024


@dataclass
class SeparationModelConfig(release.JsonConfig):
    """Everything needed to rebuild a separation model.

    Attributes:
        codec: the codec: a learned :class:`~separation.codec.DACVAE` or the fixed MDCT transform
            (:class:`~separation.mdct_codec.MDCTCodecConfig`, ``kind: mdct``).
        dit: the backbone; its ``latent_dim``/``text_dim``/``video_dim`` are filled from the
            codec and encoders by :func:`build_separation_model`.
        flow: objective and prompt dropout.
        text: text encoder (frozen).
        video: video encoder (frozen) or None for a model without video prompts.
        sampling: the recommended sampler settings (what ``Separator.separate`` uses when
            ``steps`` / ``method`` are not given).
    """

    codec: CodecConfig | MDCTCodecConfig = field(default_factory=CodecConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    video: VideoEncoderConfig | None = field(default_factory=VideoEncoderConfig)
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)

    def __post_init__(self) -> None:
        self.codec = codec_config_from_dict(self.codec)



@dataclass
class Conditioning:
    """Encoded prompts for a batch.

    Attributes:
        text: text memory ``[B, L, Dt]``.
        text_mask: ``[B, L]`` bool, True for real tokens.
        anchors: span anchor ids ``[B, T]`` (null where a row has no span prompt).
        video: video features ``[B, T, Dv]`` or None (model without a video path).
        has_text / has_span / has_video: ``[B]`` bool, which rows carry each prompt kind.
    """

    text: torch.Tensor
    text_mask: torch.Tensor
    anchors: torch.Tensor
    video: torch.Tensor | None
    has_text: torch.Tensor
    has_span: torch.Tensor
    has_video: torch.Tensor

    def index(self, rows: torch.Tensor | slice) -> Conditioning:
        """Select rows (for candidates or chunking of the batch)."""
        return Conditioning(
            self.text[rows], self.text_mask[rows], self.anchors[rows],
            None if self.video is None else self.video[rows],
            self.has_text[rows], self.has_span[rows], self.has_video[rows],
        )

    def frames(self, start: int, end: int) -> Conditioning:
        """Slice the per-frame parts to latent frames ``[start, end)``."""
        return dataclasses.replace(
            self,
            anchors=self.anchors[:, start:end],
            video=None if self.video is None else self.video[:, start:end],
        )

    def repeat(self, k: int) -> Conditioning:
        """Repeat every row ``k`` times (row-major: each row's copies are adjacent)."""
        def rep(x):
            return None if x is None else x.repeat_interleave(k, dim=0)
        return Conditioning(*(rep(getattr(self, f.name)) for f in dataclasses.fields(self)))


class SeparationModel(nn.Module):
    """Codec, prompt encoders and DiT composed for flow-matching separation."""

    def __init__(self, cfg: SeparationModelConfig, codec: DACVAE | MDCTCodec | None = None, lazy_video: bool = False):
        """Build the parts.

        Args:
            cfg: the configuration.
            codec: an already trained codec (None: built from ``cfg.codec``).
            lazy_video: with a config whose ``dit.video_dim`` is known (a release's), do not build the
                video tower (an open_clip model) until a video prompt needs it (:meth:`video_tower`);
                :meth:`from_pretrained` keeps its saved weights aside until then.
        """
        super().__init__()
        self.cfg = cfg
        self.codec = codec if codec is not None else build_codec(cfg.codec)
        self.text_encoder = build_text_encoder(cfg.text)
        self.video_encoder = None
        self._video_state: dict[str, torch.Tensor] | None = None  # weights of a tower not built yet
        video_dim = 0
        if cfg.video is not None and lazy_video and cfg.dit.video_dim:
            video_dim = int(cfg.dit.video_dim)
            self._video_state = {}
        elif cfg.video is not None:
            from prompts.video import VideoEncoder

            self.video_encoder = VideoEncoder(cfg.video)
            video_dim = self.video_encoder.dim
        cfg.dit = dataclasses.replace(
            cfg.dit, latent_dim=self.codec.latent_dim, text_dim=self.text_encoder.dim, video_dim=video_dim
        )
        self.dit = DiT(cfg.dit)
        self.null_text = nn.Parameter(torch.randn(1, self.text_encoder.dim) * 0.02)
        self.null_video = nn.Parameter(torch.zeros(max(video_dim, 1)))
        for module in (self.codec, self.text_encoder, self.video_encoder):
            if module is not None and not (module is self.video_encoder and cfg.video.trainable):
                module.requires_grad_(False)  # frozen: only the backbone (and a trainable video tower) learn

    # ------------------------------------------------------------------ basics
    def video_tower(self) -> Any:
        """The video encoder, built now (with its saved weights) if it was left unbuilt (``lazy_video``).

        Raises:
            PromptError: the model was trained without video prompts.
            ReleaseError: the saved tower weights do not fit the tower the config builds.
        """
        if self.video_encoder is None and self._video_state is not None:
            from prompts.video import VideoEncoder

            tower = VideoEncoder(self.cfg.video)
            prefix = "video_encoder."
            state = {k[len(prefix):]: v for k, v in self._video_state.items()}
            if tower.dim != self.cfg.dit.video_dim:
                raise release.ReleaseError(f"the video tower gives {tower.dim}-d features, the backbone expects "
                                           f"{self.cfg.dit.video_dim}")
            release.load_state_strict(tower, state, [k for k in tower.state_dict() if not k.startswith("_")],
                                      "video tower")
            tower.requires_grad_(False)
            self.video_encoder = tower.eval().to(self.null_text.device)
            self._video_state = None
        if self.video_encoder is None:
            from promptsep.errors import PromptError

            raise PromptError("this model was trained without video prompts")
        return self.video_encoder

    @property
    def latent_dim(self) -> int:
        return self.codec.latent_dim

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    def train(self, mode: bool = True) -> SeparationModel:
        """Train the backbone only: frozen parts stay in eval mode."""
        super().train(mode)
        for module in (self.codec, self.text_encoder, self.video_encoder):
            if module is not None:
                module.eval()
        return self

    def trainable_state_keys(self) -> list[str]:
        """State-dict keys saved in a release (everything but pretrained frozen text encoders)."""
        skip = "text_encoder." if self.cfg.text.kind in ("minilm", "t5") else None
        keys, seen = [], set()
        for k, v in self.state_dict(keep_vars=True).items():
            if skip is not None and k.startswith(skip):
                continue
            ptr = (v.data_ptr(), v.shape, v.dtype)  # tied weights (e.g. T5 embeddings) are saved once
            if v.numel() and ptr in seen:
                continue
            seen.add(ptr)
            keys.append(k)
        return keys

    @torch.no_grad()
    def encode_audio(self, wav: torch.Tensor) -> torch.Tensor:
        """Codec latents ``[B, 1, N] -> [B, T, C]`` (normalised)."""
        return self.codec.encode(wav).transpose(1, 2)

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Latents ``[B, T, C] -> [B, 1, N]`` (trimmed to ``length``)."""
        return self.codec.decode(z.transpose(1, 2), length=length)

    # ----------------------------------------------------------------- prompts
    def encode_prompts(
        self,
        texts: Sequence[str | None],
        spans: Sequence[Sequence[tuple[str, float, float]] | None],
        videos: Sequence[Any | None],
        num_frames: int,
        durations: Sequence[float],
    ) -> Conditioning:
        """Encode a batch of prompts.

        Args:
            texts: one text per row, None for no text prompt.
            spans: one list of ``(sign, start_s, end_s)`` per row, None/empty for no span prompt.
            videos: one video per row (a :class:`prompts.types.VideoPrompt` or a dict with
                ``frames [F, 3, H, W]``, ``masks [F, H, W]``, ``fps``), None for no video.
            num_frames: latent frames ``T`` of the batch.
            durations: real duration of each row's audio in seconds (frames past it are padding).

        Returns:
            A :class:`Conditioning` on the model's device. Everything is computed without
            gradients except the video features of a trainable video tower (when gradients are on).
        """
        if not (len(spans) == len(videos) == len(durations) == len(texts)):
            raise ValueError("texts, spans, videos and durations must have one entry per row")
        with torch.no_grad():
            cond = self._encode_text_span(texts, spans, num_frames, durations)
        tower_grad = (torch.is_grad_enabled() and self.video_encoder is not None
                      and bool(self.video_encoder.cfg.trainable))
        with torch.set_grad_enabled(tower_grad):
            video = self._encode_videos(videos, len(texts), num_frames)
        has_video = torch.tensor([v is not None for v in videos], dtype=torch.bool, device=cond.text.device)
        cond = dataclasses.replace(cond, video=video, has_video=has_video)
        return self.apply_dropout(cond, "text", ~cond.has_text)

    def _encode_text_span(self, texts, spans, num_frames: int, durations) -> Conditioning:
        """Text memory and span anchors of a batch (video parts left empty)."""
        b = len(texts)
        device = self.null_text.device
        has_text = torch.tensor([bool(t) for t in texts], dtype=torch.bool, device=device)
        real = [t for t in texts if t]
        dt = self.text_encoder.dim
        if real:
            mem, mask = self.text_encoder(list(real))
            mem, mask = mem.to(device), mask.to(device)
            text = torch.zeros(b, mem.shape[1], dt, device=device)
            text_mask = torch.zeros(b, mem.shape[1], dtype=torch.bool, device=device)
            text[has_text], text_mask[has_text] = mem, mask
        else:
            text = torch.zeros(b, 1, dt, device=device)
            text_mask = torch.zeros(b, 1, dtype=torch.bool, device=device)
        anchors = torch.full((b, num_frames), NULL, dtype=torch.long, device=device)
        has_span = torch.zeros(b, dtype=torch.bool, device=device)
        for i, (sp, dur) in enumerate(zip(spans, durations)):
            if sp:
                anchors[i] = spans_to_anchors(sp, num_frames, self.frame_rate, dur).to(device)
                has_span[i] = True
            else:
                pad_from = min(num_frames, self.codec.num_frames(int(round(dur * self.sample_rate))))
                anchors[i, pad_from:] = PAD
        none = torch.zeros(b, dtype=torch.bool, device=device)
        return Conditioning(text, text_mask, anchors, None, has_text, has_span, none)

    def _encode_videos(self, videos, b: int, num_frames: int) -> torch.Tensor | None:
        """Video features ``[B, T, Dv]`` (the null embedding on rows without video), or None for a
        model without a video path (an error if a row has a video)."""
        device = self.null_text.device
        if self.cfg.video is None:
            if any(v is not None for v in videos):
                from promptsep.errors import PromptError

                raise PromptError("this model was trained without video prompts")
            return None
        video = self.null_video.expand(b, num_frames, -1).clone()
        for i, v in enumerate(videos):  # the tower is only built when a video prompt is given
            if v is None:
                continue
            from prompts.video import resample_to_latent

            frames, masks, fps = _video_parts(v)
            feats = self.video_tower()(frames[None].to(device), None if masks is None else masks[None].to(device))
            video[i] = resample_to_latent(feats, fps, num_frames, self.frame_rate)[0]
        return video

    def apply_dropout(self, cond: Conditioning, kind: str, rows: torch.Tensor) -> Conditioning:
        """Replace prompt ``kind`` by its null embedding in ``rows`` (``[B]`` bool)."""
        if not bool(rows.any()):
            return cond
        r = rows.to(cond.text.device)
        if kind == "text":
            text = cond.text.clone()
            mask = cond.text_mask.clone()
            text[r] = 0.0
            text[r, 0] = self.null_text[0].to(text.dtype)
            mask[r] = False
            mask[r, 0] = True
            return dataclasses.replace(cond, text=text, text_mask=mask)
        if kind == "span":
            anchors = cond.anchors.clone()
            sub = anchors[r]
            sub[sub != PAD] = NULL
            anchors[r] = sub
            return dataclasses.replace(cond, anchors=anchors)
        if kind == "video":
            if cond.video is None:
                return cond
            video = cond.video.clone()
            video[r] = self.null_video.to(video.dtype)
            return dataclasses.replace(cond, video=video)
        raise ValueError(f"unknown prompt kind {kind!r}")

    # ---------------------------------------------------------------- velocity
    def velocity(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        z_mix: torch.Tensor,
        cond: Conditioning,
        audio_mask: torch.Tensor | None = None,
        dropped: frozenset = frozenset(),
    ) -> torch.Tensor:
        """Velocity ``[B, T, 2C]`` with prompt kinds in ``dropped`` nulled for every row.

        With ``flow.prediction="mask"`` the backbone's output is turned into the data estimate
        (:meth:`predict_data`) and from there into the velocity towards it.
        """
        all_rows = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for kind in dropped:
            cond = self.apply_dropout(cond, kind, all_rows)
        out = self.dit(x, t, z_mix, cond.text, cond.text_mask, cond.anchors, cond.video, audio_mask)
        if self.cfg.flow.prediction == "velocity":
            return out
        return velocity_from_data(self.predict_data(out, z_mix), x, t)

    def predict_data(self, out: torch.Tensor, z_mix: torch.Tensor) -> torch.Tensor:
        """``[target | residual]`` latents ``[B, T, 2C]`` from the backbone output of a
        ``prediction="mask"`` model (soft masks of the mixture, :func:`separation.flow.mask_split`)."""
        return mask_split(out, z_mix, self._latent_offset().to(z_mix.dtype), self.cfg.flow.mask_range)

    def _latent_offset(self) -> torch.Tensor:
        """``latent_mean / latent_std`` ``[C]``: raw latents are ``(z + offset) * latent_std``."""
        return self.codec.latent_mean / self.codec.latent_std

    # ---------------------------------------------------------------- training
    def training_loss(self, batch: Mapping[str, Any], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Flow-matching loss on a batch from :func:`separation.data.mixing.collate_mixtures`.

        Args:
            batch: ``mixture``/``target``/``residual`` ``[B, 1, N]``, ``text`` list, ``spans`` list,
                ``use_text``/``use_span`` lists of bool, optional ``video`` list.
            generator: optional RNG for noise, times and dropout.

        Returns:
            ``{"loss": scalar, "t": [B]}``.
        """
        device = self.null_text.device
        mix = batch["mixture"].to(device)
        b, _, n = mix.shape
        with torch.no_grad():
            z_mix = self.encode_audio(mix)
            z_tgt = self.encode_audio(batch["target"].to(device))
            z_res = self.encode_audio(batch["residual"].to(device))
        x1 = torch.cat([z_tgt, z_res], dim=-1)
        num_frames = x1.shape[1]
        texts = [t if u else None for t, u in zip(batch["text"], batch["use_text"])]
        spans = [s if u else None for s, u in zip(batch["spans"], batch["use_span"])]
        videos = batch.get("video") or [None] * b
        if self.cfg.video is None:
            videos = [None] * b
        dur = n / self.sample_rate
        cond = self.encode_prompts(texts, spans, videos, num_frames, [dur] * b)
        fc = self.cfg.flow
        cond = drop_prompts(fc, cond, self.apply_dropout, b, device, generator)

        def network(xt, t):
            return self.dit(xt, t, z_mix, cond.text, cond.text_mask, cond.anchors, cond.video, None)

        loss, t, x1_hat = objective(fc, x1, z_mix, network, lambda out: self.predict_data(out, z_mix),
                                    self.codec.latent_std, self._latent_offset(), generator)
        out = {"latent_loss": loss.detach(), "t": t.detach()}
        if fc.wave_loss_weight > 0 and x1_hat is not None:
            wave = self.wave_loss(x1_hat, mix, batch["target"].to(device))
            out["wave_loss"] = wave.detach()
            loss = loss + fc.wave_loss_weight * wave
        out["loss"] = loss
        return out

    def wave_loss(self, x1_hat: torch.Tensor, mix: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss on the deployed output: decode both estimated stems, refine them the way the
        release does (:func:`separation.refine.wiener_refine` with ``cfg.sampling``'s settings) and
        score the refined target (:func:`separation.flow.thresholded_snr_loss`).

        Args:
            x1_hat: ``[target | residual]`` latents ``[B, T, 2C]``.
            mix / target: waveforms ``[B, 1, N]``.
        """
        from separation.flow import thresholded_snr_loss
        from separation.refine import wiener_refine

        n = mix.shape[-1]
        c = self.latent_dim
        stems = self.codec.decode(torch.cat([x1_hat[..., :c], x1_hat[..., c:]], dim=0).transpose(1, 2), n)
        est_t, est_r = stems[: mix.shape[0], 0], stems[mix.shape[0]:, 0]
        s = self.cfg.sampling
        refined, _ = wiener_refine(mix[:, 0], est_t, est_r, n_fft=int(s.refine_n_fft),
                                   hop_length=int(s.refine_n_fft) // 4, power=float(s.refine_power))
        return thresholded_snr_loss(refined, target[:, 0], mix[:, 0], self.cfg.flow.wave_loss_floor_db)

    # -------------------------------------------------------------- generation
    def initial_state(self, z_mix: torch.Tensor, noise: torch.Tensor, rms: torch.Tensor | None = None) -> torch.Tensor:
        """The flow's starting point ``x_0 [B, T, 2C]`` from standard-normal ``noise [B, T, 2C]``
        and the mixture latents ``z_mix [B, T, C]`` (see :func:`separation.flow.prior_sample`;
        ``rms [B, 1, 1]``: the whole items' latent RMS when ``z_mix`` is a piece of them)."""
        return prior_sample(self.cfg.flow, z_mix, noise, rms)

    @torch.no_grad()
    def generate(
        self,
        z_mix: torch.Tensor,
        cond: Conditioning,
        noise: torch.Tensor,
        nfe: int = 16,
        method: str = "midpoint",
        guidance: Mapping[str, float] | None = None,
        audio_mask: torch.Tensor | None = None,
        chunks: Sequence[tuple[int, int]] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Integrate the flow to ``[target | residual]`` latents ``[B, T, 2C]``.

        ``noise [B, T, 2C]`` is standard normal; it is mapped to the configured source
        distribution by :meth:`initial_state` first. Long inputs are generated in ``chunks``
        (``[s, e)`` latent-frame windows that may overlap) with pinned overlaps
        (:func:`~separation.flow.iter_sample_chunked`); None: one chunk. ``progress(done, total)``
        is called after each chunk.
        """
        total = z_mix.shape[1]
        rms = latent_rms(z_mix) if self.cfg.flow.prior == "mixture" else None
        parts = [x for _, x in self.generate_iter(
            lambda s, e: z_mix[:, s:e], cond, lambda s, e: noise[:, s:e], total, nfe, method, guidance,
            audio_mask, chunks, rms, progress)]
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def generate_iter(
        self,
        z_fn: Callable[[int, int], torch.Tensor],
        cond: Conditioning,
        noise_fn: Callable[[int, int], torch.Tensor],
        total: int,
        nfe: int = 16,
        method: str = "midpoint",
        guidance: Mapping[str, float] | None = None,
        audio_mask: torch.Tensor | None = None,
        chunks: Sequence[tuple[int, int]] | None = None,
        rms: torch.Tensor | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """:meth:`generate` piece by piece (:func:`~separation.flow.iter_sample_chunked`): yields
        ``(start, x1 [B, n, 2C])`` for finished latent frames in order, asking ``z_fn(s, e)`` for
        the mixture latents ``[B, e-s, C]`` and ``noise_fn(s, e)`` for the noise ``[B, e-s, 2C]``
        of each chunk. ``rms [B, 1, 1]``: the whole items' latent RMS (needed by the mixture prior;
        :func:`~separation.flow.latent_rms`). Memory does not grow with ``total`` beyond ``cond``.
        """
        cache: dict[tuple[int, int], torch.Tensor] = {}

        def z_chunk(s, e):
            if (s, e) not in cache:
                cache.clear()
                cache[(s, e)] = z_fn(s, e)
            return cache[(s, e)]

        if self.cfg.flow.prior == "mixture" and rms is None:
            raise ValueError("the mixture prior needs the latent RMS of the whole items (rms=...)")

        def x0_fn(s, e):
            return self.initial_state(z_chunk(s, e), noise_fn(s, e), rms)

        def chunk_velocity(s, e):
            c = cond if (s, e) == (0, total) else cond.frames(s, e)
            m = None if audio_mask is None else audio_mask[:, s:e]
            zm = z_chunk(s, e)

            def vel(x, t, dropped):
                return self.velocity(x, t, zm, c, m, dropped)

            return lambda x, t: guided_velocity(vel, x, t, guidance)

        yield from iter_sample_chunked(chunk_velocity, x0_fn, list(chunks) if chunks else [(0, total)], nfe, method,
                                       progress)

    # ------------------------------------------------------------- persistence
    def save_pretrained(self, path: str | Path) -> Path:
        """Write a release folder (:func:`promptsep.release.save_release`) with the current weights."""
        state = self.state_dict()
        tensors = {k: state[k] for k in self.trainable_state_keys()}
        tensors.update(self._video_state or {})  # a tower not built yet keeps the weights it was loaded with
        return release.save_release(path, tensors, self.cfg.to_dict(), MODEL_KIND)

    def init_from_release(self, path: str | Path) -> dict[str, int]:
        """Initialise this (untrained) model from a separator release, for fine-tuning.

        Every saved tensor must exist here with the same shape, except those of the video tower
        (``video_encoder.*``), which are skipped when this model's tower differs (a new tower starts
        from its own initialisation); every trainable tensor here must be in the release, except the
        video tower's. The codec must already match the release's (its latent statistics included).

        Args:
            path: a release folder (or hub id).

        Returns:
            ``{"loaded": n, "skipped_video": n, "new_video": n}`` tensor counts.

        Raises:
            ReleaseError: a tensor missing, extra or of another shape outside the video tower.
        """
        _, _, tensors = release.read_release(path, MODEL_KIND)
        state = self.state_dict()
        own = set(self.trainable_state_keys())
        tower = "video_encoder."
        take, skipped, bad = {}, 0, []
        for k, v in tensors.items():
            if k in state and tuple(state[k].shape) == tuple(v.shape):
                take[k] = v
            elif k.startswith(tower):
                skipped += 1
            else:
                bad.append(k)
        missing = sorted(k for k in own - set(take) if not k.startswith(tower))
        if bad or missing:
            raise release.ReleaseError(f"{path}: cannot initialise this model from it: tensors of another name or "
                                       f"shape {bad[:5]}, tensors missing from it {missing[:5]}")
        if skipped:  # a different tower: the release's tower tensors are all dropped, none mixed in
            take = {k: v for k, v in take.items() if not k.startswith(tower)}
        self.load_state_dict(take, strict=False)
        new_video = sum(1 for k in own if k.startswith(tower) and k not in take)
        logger.info("initialised from %s: %d tensors, %d of its video tower skipped, %d video tower tensors new",
                    path, len(take), skipped, new_video)
        return {"loaded": len(take), "skipped_video": skipped, "new_video": new_video}

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> SeparationModel:
        """Load a release folder or hub id strictly (checksum verified; every saved tensor must match)."""
        root, meta, tensors = release.read_release(path, MODEL_KIND, map_location)
        model = cls(SeparationModelConfig.from_dict(meta["config"]), lazy_video=True)
        if model._video_state is not None:  # the video tower is built on the first video prompt
            model._video_state = {k: v for k, v in tensors.items() if k.startswith("video_encoder.")}
            tensors = {k: v for k, v in tensors.items() if not k.startswith("video_encoder.")}
        release.load_state_strict(model, tensors, model.trainable_state_keys(), root)
        return model.eval().to(map_location)


#: Kept for callers of the old name: :func:`promptsep.release.resolve_checkpoint`.
resolve_checkpoint = release.resolve_checkpoint


def _video_parts(v: Any) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """``(frames [F, 3, H, W], masks [F, H, W] | None, fps)`` from a VideoPrompt or a dict."""
    if isinstance(v, Mapping):
        return v["frames"], v.get("masks"), float(v["fps"])
    masks = v.masks
    if masks is None and getattr(v, "box", None) is not None:
        from prompts.video import box_to_masks

        f, _, h, w = v.frames.shape
        masks = box_to_masks(v.box, f, h, w)
    return v.frames, masks, float(v.fps)


def build_separation_model(cfg: SeparationModelConfig, codec: DACVAE | MDCTCodec | None = None) -> SeparationModel:
    """Factory: build a :class:`SeparationModel` (optionally around an already trained codec)."""
    return SeparationModel(cfg, codec=codec)
