"""DAC-VAE codec: descript-audio-codec's encoder/decoder with a Gaussian bottleneck.

The layout follows SAM Audio's codec: DAC's convolutional :class:`~dac.model.dac.Encoder`
(output width ``encoder_dim * 2**len(encoder_rates)``), a 1x1 ``in_proj`` to
``2 * latent_dim`` channels (mean and log-variance), a 1x1 ``out_proj`` from
``latent_dim`` back to the encoder width, and DAC's :class:`~dac.model.dac.Decoder`.
Inference uses only the mean (deterministic latents); training samples with the
reparameterisation trick and adds a KL term (see :mod:`separation.codec_losses`).

Lengths: inputs are right-padded to a multiple of the hop before encoding, so a clip of
``N`` samples gives ``ceil(N / hop)`` latent frames, and :meth:`DACVAE.decode` trims the
output to the requested length. DAC's transposed convolutions lose one sample per
odd stride; the decoder's odd-stride layers get ``output_padding=1`` so that ``T`` frames
always decode to exactly ``T * hop`` samples.

Latent normalisation: :meth:`DACVAE.encode` returns ``(mean - latent_mean) / latent_std``
per channel and :meth:`DACVAE.decode` undoes it; the statistics are buffers (identity
until :meth:`DACVAE.set_latent_stats` is called) and are part of the config and the
release checkpoint.

Release format: a folder with ``config.json`` (``format_version``, ``kind`` and the
config) and ``model.safetensors``; see :meth:`DACVAE.save_pretrained` and
:meth:`DACVAE.from_pretrained`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from promptsep import release
from promptsep.errors import InputError

logger = logging.getLogger(__name__)

FORMAT_VERSION = release.FORMAT_VERSION
KIND = "dac_vae"
CONFIG_NAME = release.CONFIG_NAME
WEIGHTS_NAME = release.WEIGHTS_NAME
INITIAL_LOGVAR = -20.0
INITIAL_MEAN_GAIN = 10.0
LOGVAR_RANGE = (-30.0, 20.0)
# With linear-analysis means (dac_mean=False) the DAC encoder only sets the posterior variance, and
# Adam drove it up to e^20 within 30 steps (loss 1e5); bound the noise to ~1 % of a unit latent.
LINEAR_MEAN_LOGVAR_MAX = -9.0


@dataclass
class CodecConfig(release.JsonConfig):
    """Architecture of a :class:`DACVAE` (model only; loss weights live in ``CodecLossConfig``).

    Attributes:
        sample_rate: audio rate in Hz.
        encoder_dim: width of the first encoder conv; it doubles at every encoder block,
            so the encoder outputs ``encoder_dim * 2**len(encoder_rates)`` channels.
        encoder_rates: downsampling strides; their product is the hop length.
        latent_dim: latent channels ``C``.
        decoder_dim: width of the first decoder conv; it halves at every decoder block
            (must be divisible by ``2**len(decoder_rates)``).
        decoder_rates: upsampling strides; their product must equal the hop length.
        latent_mean: per-channel latent means ``[C]`` for normalisation, or None (0).
        latent_std: per-channel latent stds ``[C]`` for normalisation, or None (1).
        linear_path: add a linear frame path beside the DAC stacks: an analysis conv
            (``hop`` taps, stride ``hop``) added to the latent means and a synthesis transposed
            conv added to the decoder output. Initialised from a PCA of training frames
            (:meth:`DACVAE.init_linear_path`) it is a working codec before any gradient step,
            and the DAC encoder/decoder (whose contributions start at zero) learn the
            non-linear remainder. Makes a small codec trainable on a CPU budget.
        dac_mean: with ``linear_path``, whether the DAC encoder adds to the latent means.
            False makes the means the linear analysis alone (the DAC encoder then only gives
            the posterior log-variance used in training), so :meth:`DACVAE.encode` skips the
            DAC encoder: encoding costs almost nothing, which is what makes on-the-fly
            separator training (three encodes per example) affordable on a CPU.
    """

    sample_rate: int = 16000
    encoder_dim: int = 16
    encoder_rates: tuple[int, ...] = (2, 4, 5, 8)
    latent_dim: int = 64
    decoder_dim: int = 128
    decoder_rates: tuple[int, ...] = (8, 5, 4, 2)
    latent_mean: list[float] | None = None
    latent_std: list[float] | None = None
    linear_path: bool = False
    dac_mean: bool = True

    def __post_init__(self) -> None:
        # JSON / YAML give lists; keep rates as tuples and stats as plain float lists.
        self.encoder_rates = tuple(int(r) for r in self.encoder_rates)
        self.decoder_rates = tuple(int(r) for r in self.decoder_rates)
        self.latent_mean, self.latent_std = release.float_list(self.latent_mean), release.float_list(self.latent_std)

    @property
    def hop_length(self) -> int:
        """Samples per latent frame (product of the encoder rates)."""
        return int(math.prod(self.encoder_rates))

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def encoder_out_dim(self) -> int:
        """Channels of the DAC encoder output (and of the decoder input)."""
        return self.encoder_dim * 2 ** len(self.encoder_rates)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the problem if the layout is inconsistent."""
        if self.sample_rate <= 0:
            raise ValueError(f"codec sample_rate must be positive, got {self.sample_rate}")
        if not self.encoder_rates or not self.decoder_rates:
            raise ValueError("codec encoder_rates and decoder_rates must not be empty")
        if any(r < 2 for r in self.encoder_rates + self.decoder_rates):
            raise ValueError(
                f"codec rates must all be >= 2 (DAC's strided convs), got encoder {self.encoder_rates}, "
                f"decoder {self.decoder_rates}"
            )
        if math.prod(self.decoder_rates) != self.hop_length:
            raise ValueError(
                f"codec decoder_rates {self.decoder_rates} (product {math.prod(self.decoder_rates)}) must "
                f"upsample by the hop length {self.hop_length} of encoder_rates {self.encoder_rates}"
            )
        if self.decoder_dim % 2 ** len(self.decoder_rates) or self.decoder_dim < 2 ** len(self.decoder_rates):
            raise ValueError(
                f"codec decoder_dim {self.decoder_dim} must be a positive multiple of "
                f"2**len(decoder_rates) = {2 ** len(self.decoder_rates)}"
            )
        if self.encoder_dim <= 0 or self.latent_dim <= 0:
            raise ValueError("codec encoder_dim and latent_dim must be positive")
        for name in ("latent_mean", "latent_std"):
            v = getattr(self, name)
            if v is not None and len(v) != self.latent_dim:
                raise ValueError(f"codec {name} has {len(v)} values, expected latent_dim = {self.latent_dim}")
        if not self.dac_mean and not self.linear_path:
            raise ValueError("codec dac_mean=False needs linear_path=True (the means must come from somewhere)")
        if self.latent_std is not None and any(not (s > 0) for s in self.latent_std):
            raise ValueError("codec latent_std values must all be positive")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["encoder_rates"] = list(self.encoder_rates)
        d["decoder_rates"] = list(self.decoder_rates)
        return d



def check_latents(codec: nn.Module, z: torch.Tensor, length: int | None) -> None:
    """Raise :class:`InputError` unless ``z`` is ``[B, codec.latent_dim, T >= 1]`` and ``length`` (if given)
    is in ``[1, T * hop]``: the decode contract shared by both codecs."""
    if z.dim() != 3 or z.shape[1] != codec.latent_dim:
        raise InputError(f"codec latents must be shaped [B, {codec.latent_dim}, T], got {tuple(z.shape)}")
    if z.shape[-1] == 0:
        raise InputError("codec latents are empty (0 frames)")
    full = z.shape[-1] * codec.hop_length
    if length is not None and not 0 < int(length) <= full:
        raise InputError(f"decode length must be in [1, {full}] for {z.shape[-1]} frames, got {length}")


@torch.no_grad()
def write_latent_stats(codec: nn.Module, mean: Any, std: Any) -> None:
    """Check and set a codec's per-channel normalisation: its ``latent_mean`` / ``latent_std``
    buffers and the same values in its config (``codec.cfg``), so a release carries them.

    Args:
        codec: a :class:`DACVAE` or :class:`~separation.mdct_codec.MDCTCodec`.
        mean / std: ``[C]`` raw latent means and standard deviations (finite; stds positive).
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float32).detach().flatten().cpu()
    std_t = torch.as_tensor(std, dtype=torch.float32).detach().flatten().cpu()
    if mean_t.numel() != codec.latent_dim or std_t.numel() != codec.latent_dim:
        raise ValueError(
            f"latent stats must have {codec.latent_dim} values each, got {mean_t.numel()} and {std_t.numel()}"
        )
    if not torch.isfinite(mean_t).all() or not torch.isfinite(std_t).all() or (std_t <= 0).any():
        raise ValueError("latent stats must be finite and the stds positive")
    codec.latent_mean.copy_(mean_t)
    codec.latent_std.copy_(std_t)
    codec.cfg.latent_mean = mean_t.tolist()
    codec.cfg.latent_std = std_t.tolist()


def codec_preset(name: str) -> CodecConfig:
    """A named codec layout: ``conf/codec/<name>.yaml`` (the one table of codec layouts).

    Args:
        name: ``"tiny16k"`` (the :class:`CodecConfig` defaults) or ``"sam48k"`` (SAM Audio's layout).

    Returns:
        A fresh :class:`CodecConfig`.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    return release.config_from_dict(CodecConfig, release.conf_node("codec", name), f"codec/{name}.yaml")


def _to_parametrized_weight_norm(module: nn.Module) -> None:
    """Swap DAC's legacy hook-based weight norm for ``torch.nn.utils.parametrizations.weight_norm``.

    The parametrized form deep-copies (EMA, Lightning), and its parameters
    (``parametrizations.weight.original0`` = g, ``original1`` = v) save and load like any other.
    """
    from torch.nn.utils.parametrizations import weight_norm

    for m in module.modules():
        if hasattr(m, "weight_g") and hasattr(m, "weight_v"):
            nn.utils.remove_weight_norm(m)
            weight_norm(m, name="weight", dim=0)


class DACVAE(nn.Module):
    """DAC encoder/decoder with a Gaussian (VAE) bottleneck.

    Attributes:
        cfg: the :class:`CodecConfig` (kept in sync with the latent statistics).
        sample_rate: audio rate in Hz.
        hop_length: samples per latent frame.
        frame_rate: latent frames per second.
        latent_dim: latent channels ``C``.
    """

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        cfg = dataclasses.replace(cfg)  # own copy: set_latent_stats writes into it
        cfg.validate()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # dac's torch.jit.script at import
            from dac.model.dac import Decoder, Encoder

        self.cfg = cfg
        self.sample_rate = int(cfg.sample_rate)
        self.hop_length = cfg.hop_length
        self.frame_rate = float(cfg.frame_rate)
        self.latent_dim = int(cfg.latent_dim)
        width = cfg.encoder_out_dim
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # DAC's legacy torch.nn.utils.weight_norm
            self.encoder = Encoder(cfg.encoder_dim, list(cfg.encoder_rates), width)
            self.decoder = Decoder(width, cfg.decoder_dim, list(cfg.decoder_rates), d_out=1)
        _to_parametrized_weight_norm(self.encoder)
        _to_parametrized_weight_norm(self.decoder)
        # DAC zeroes every conv bias at init (its ``init_weights``); PyTorch's default uniform biases
        # dominate the small audio signal and make the features input-independent at init.
        for m in [*self.encoder.modules(), *self.decoder.modules()]:
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) and m.bias is not None:
                nn.init.zeros_(m.bias)
        # DAC's ConvTranspose1d(k=2s, stride=s, padding=ceil(s/2)) gives L*s - 1 samples for odd s;
        # output_padding=1 makes every decoder block an exact L -> L*s upsampler.
        for m in self.decoder.modules():
            if isinstance(m, nn.ConvTranspose1d) and m.stride[0] % 2 == 1:
                m.output_padding = (1,)
        self.in_proj = nn.Conv1d(width, 2 * cfg.latent_dim, kernel_size=1)
        # Start with informative latents and a tiny posterior variance: with the default init the means
        # are ~0.05 and the sampling noise (logvar ~ 0) swamps them, so the decoder learns to ignore the
        # latents and the posterior collapses (measured: input-independent output after 500 steps).
        with torch.no_grad():
            self.in_proj.weight[: cfg.latent_dim].mul_(INITIAL_MEAN_GAIN)
            self.in_proj.bias[cfg.latent_dim :].fill_(INITIAL_LOGVAR)
        self.out_proj = nn.Conv1d(cfg.latent_dim, width, kernel_size=1)
        self.linear_path = bool(cfg.linear_path)
        self.dac_mean = bool(cfg.dac_mean)
        if self.linear_path:
            hop = cfg.hop_length
            self.lin_enc = nn.Conv1d(1, cfg.latent_dim, kernel_size=hop, stride=hop, bias=False)
            self.lin_dec = nn.ConvTranspose1d(cfg.latent_dim, 1, kernel_size=hop, stride=hop, bias=False)
            with torch.no_grad():  # the DAC stacks start as a zero contribution (adaLN-zero style)
                self.in_proj.weight[: cfg.latent_dim].zero_()
                self.in_proj.bias[: cfg.latent_dim].zero_()
                last = [m for m in self.decoder.modules() if isinstance(m, nn.Conv1d)][-1]
                last.parametrizations.weight.original0.zero_()
        mean = torch.zeros(cfg.latent_dim) if cfg.latent_mean is None else torch.tensor(cfg.latent_mean)
        std = torch.ones(cfg.latent_dim) if cfg.latent_std is None else torch.tensor(cfg.latent_std)
        self.register_buffer("latent_mean", mean.float())
        self.register_buffer("latent_std", std.float())
        self._length_warned = False

    # ------------------------------------------------------------------ helpers
    def num_frames(self, num_samples: int) -> int:
        """Latent frames for ``num_samples`` samples: ``ceil(N / hop)``."""
        return -(-int(num_samples) // self.hop_length)

    def param_count(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those with ``requires_grad``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _check_wav(self, wav: torch.Tensor) -> None:
        if not isinstance(wav, torch.Tensor):
            raise InputError(f"codec input must be a torch.Tensor [B, 1, N], got {type(wav).__name__}")
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise InputError(f"codec input must be mono audio shaped [B, 1, N], got shape {tuple(wav.shape)}")
        if wav.shape[-1] == 0:
            raise InputError("codec input is empty (0 samples)")

    def _pad(self, wav: torch.Tensor) -> torch.Tensor:
        n = wav.shape[-1]
        pad = self.num_frames(n) * self.hop_length - n
        return nn.functional.pad(wav, (0, pad)) if pad else wav

    def _decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) latents ``[B, C, T]`` -> audio ``[B, 1, T * hop]``."""
        y = self.decoder(self.out_proj(z))
        if self.linear_path:
            y = y + self.lin_dec(z)
        want = z.shape[-1] * self.hop_length
        if y.shape[-1] != want:  # not expected (see __init__); keep the length contract regardless
            if not self._length_warned:
                logger.warning("codec decoder gave %d samples for %d frames; fixing to %d",
                               y.shape[-1], z.shape[-1], want)
                self._length_warned = True
            y = y[..., :want] if y.shape[-1] > want else nn.functional.pad(y, (0, want - y.shape[-1]))
        return y

    # -------------------------------------------------------------- public API
    def encode_dist(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw posterior parameters.

        Args:
            wav: audio ``[B, 1, N]`` at :attr:`sample_rate` (right-padded to a multiple of the hop).

        Returns:
            ``(mean, logvar)``, each ``[B, C, ceil(N / hop)]``, unnormalised; logvar is clamped
            to a safe range.
        """
        self._check_wav(wav)
        x = self._pad(wav)
        h = self.encoder(x)
        mean, logvar = self.in_proj(h).chunk(2, dim=1)
        if self.linear_path:
            mean = self.lin_enc(x) + (mean if self.dac_mean else 0.0)
        hi = LOGVAR_RANGE[1] if self.dac_mean else LINEAR_MEAN_LOGVAR_MAX
        return mean, logvar.clamp(LOGVAR_RANGE[0], hi)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """Deterministic, normalised latents.

        Args:
            wav: audio ``[B, 1, N]``.

        Returns:
            ``(mean - latent_mean) / latent_std`` shaped ``[B, C, ceil(N / hop)]``.
        """
        if self.dac_mean:
            mean, _ = self.encode_dist(wav)
        else:  # the means are the linear analysis alone: no need to run the DAC encoder
            self._check_wav(wav)
            mean = self.lin_enc(self._pad(wav))
        return (mean - self.latent_mean[:, None]) / self.latent_std[:, None]

    def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Decode normalised latents.

        Args:
            z: normalised latents ``[B, C, T]`` (as returned by :meth:`encode`).
            length: output samples (at most ``T * hop``); None keeps all ``T * hop``.

        Returns:
            audio ``[B, 1, length or T * hop]``.
        """
        check_latents(self, z, length)
        raw = z * self.latent_std[:, None] + self.latent_mean[:, None]
        y = self._decode_raw(raw)
        return y if length is None else y[..., : int(length)]

    def forward(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass.

        Args:
            wav: audio ``[B, 1, N]``.

        Returns:
            dict with ``recon`` ``[B, 1, N]`` (decoded from a reparameterised sample in training
            mode, from the mean in eval mode), raw ``mean`` and ``logvar`` ``[B, C, T]``, and
            ``kl``: the scalar mean (over batch, channels and frames) KL divergence to N(0, 1).
        """
        mean, logvar = self.encode_dist(wav)
        if self.training:
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        else:
            z = mean
        recon = self._decode_raw(z)[..., : wav.shape[-1]]
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return {"recon": recon, "mean": mean, "logvar": logvar, "kl": kl}

    @torch.no_grad()
    def init_linear_path(self, frames_from: torch.Tensor) -> torch.Tensor:
        """Set the linear frame path to the top-``C`` principal components of audio frames.

        With the DAC contributions at zero this makes the codec a PCA transform coder: the
        latents are the projections of each ``hop``-sample frame on the components and the
        decoder overlap-adds them back.

        Args:
            frames_from: audio ``[B, 1, N]`` or ``[B, N]`` (e.g. random training crops) cut
                into ``hop``-sample frames.

        Returns:
            the fraction of frame energy the ``C`` components keep (a scalar tensor).
        """
        if not self.linear_path:
            raise ValueError("init_linear_path needs a codec built with linear_path=True")
        wav = frames_from.reshape(frames_from.shape[0], -1).double()
        n = wav.shape[-1] // self.hop_length * self.hop_length
        if n == 0:
            raise InputError(f"need at least {self.hop_length} samples per item to take frames")
        frames = wav[:, :n].reshape(-1, self.hop_length)
        cov = frames.T @ frames / frames.shape[0]
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        basis = evecs.flip(1)[:, : self.latent_dim].T.float()  # [C, hop]
        self.lin_enc.weight.copy_(basis[:, None, :])
        self.lin_dec.weight.copy_(basis[:, None, :])
        return evals.flip(0)[: self.latent_dim].sum() / evals.sum().clamp_min(1e-20)

    # ---------------------------------------------------------- normalisation
    @torch.no_grad()
    def set_latent_stats(self, mean: torch.Tensor | Iterable[float], std: torch.Tensor | Iterable[float]) -> None:
        """Set the per-channel normalisation (buffers and config).

        Args:
            mean: ``[C]`` raw latent means.
            std: ``[C]`` raw latent standard deviations (positive).
        """
        write_latent_stats(self, mean, std)

    # ----------------------------------------------------------------- release
    def save_pretrained(self, path: str | Path) -> Path:
        """Write a release folder: ``config.json`` + ``model.safetensors``.

        Args:
            path: output directory (created if missing).

        Returns:
            The directory path.
        """
        out = release.save_release(path, self.state_dict(), self.cfg.to_dict(), KIND)
        logger.info("saved codec (%d parameters) to %s", self.param_count(), out)
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> DACVAE:
        """Load a release folder written by :meth:`save_pretrained` (strictly, checksum verified).

        Args:
            path: the folder, a file inside it (``config.json`` / ``model.safetensors``) or a hub id.
            map_location: device for the weights.

        Returns:
            The codec in eval mode.

        Raises:
            FileNotFoundError: the folder or one of its files is missing.
            ValueError: wrong ``kind`` or ``format_version``, a checksum mismatch, or weights
                that do not match the config.
        """
        root, meta, state = release.read_release(path, KIND, map_location)
        model = cls(CodecConfig.from_dict(meta["config"]))
        release.load_state_strict(model, state, model.state_dict().keys(), root)
        model.to(map_location)
        model.eval()
        logger.info("loaded codec from %s (%d parameters)", root, model.param_count())
        return model


def build_codec(cfg: Any = None) -> Any:
    """Factory: the codec a config describes.

    Args:
        cfg: a :class:`CodecConfig` (a randomly initialised :class:`DACVAE`), an
            :class:`~separation.mdct_codec.MDCTCodecConfig` (the fixed MDCT transform), or None
            (the DAC-VAE ``tiny16k`` layout).
    """
    from separation.mdct_codec import MDCTCodec, MDCTCodecConfig

    if isinstance(cfg, MDCTCodecConfig):
        return MDCTCodec(cfg)
    return DACVAE(cfg if cfg is not None else CodecConfig())


def codec_config_from_dict(d: Any, where: str = "codec") -> Any:
    """A codec config from its plain form, strictly: ``kind: mdct`` gives an
    :class:`~separation.mdct_codec.MDCTCodecConfig`, anything else a :class:`CodecConfig`.
    A config object passes through unchanged."""
    from separation.mdct_codec import KIND as MDCT_KIND
    from separation.mdct_codec import MDCTCodecConfig

    if d is None or dataclasses.is_dataclass(d):
        return d
    if dict(d).get("kind") == MDCT_KIND:
        return release.config_from_dict(MDCTCodecConfig, d, where)
    return release.config_from_dict(CodecConfig, d, where)


def load_codec_release(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a codec release folder of either kind (:class:`DACVAE` or the MDCT transform)."""
    from separation.mdct_codec import KIND as MDCT_KIND
    from separation.mdct_codec import MDCTCodec

    root, meta = release.read_meta(path)
    if meta.get("kind") == MDCT_KIND:
        return MDCTCodec.from_pretrained(root, map_location)
    return DACVAE.from_pretrained(root, map_location)


@torch.no_grad()
def compute_latent_stats(
    codec: DACVAE, batches: Iterable[torch.Tensor], eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the raw latent means over some audio.

    Args:
        codec: the codec (put in eval mode here; the caller's mode is restored).
        batches: iterable of audio batches ``[B, 1, N]``.
        eps: floor for the standard deviations.

    Returns:
        ``(mean [C], std [C])`` on the CPU, ready for :meth:`DACVAE.set_latent_stats`.
    """
    was_training = codec.training
    codec.eval()
    total = total_sq = None
    count = 0
    try:
        device = codec.latent_mean.device
        for wav in batches:
            mean, _ = codec.encode_dist(wav.to(device))
            m = mean.double().transpose(0, 1).reshape(mean.shape[1], -1)
            total = m.sum(1) if total is None else total + m.sum(1)
            total_sq = m.pow(2).sum(1) if total_sq is None else total_sq + m.pow(2).sum(1)
            count += m.shape[1]
    finally:
        codec.train(was_training)
    if count == 0:
        raise ValueError("compute_latent_stats got no batches")
    mu = total / count
    std = (total_sq / count - mu.pow(2)).clamp_min(0).sqrt().clamp_min(eps)
    return mu.float().cpu(), std.float().cpu()
