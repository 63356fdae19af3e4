"""Audio embedding models behind one small interface (in the style of HEAR and mteb).

An :class:`AudioEmbedder` has a ``name``, a ``sample_rate`` (the rate its inputs must
have), an embedding size ``dim`` and::

    embed_audio(audio) -> [B, D] float32          # audio: list of [N] tensors or a [B, N] batch
    embed_frames(audio) -> ([B, T, D], [B, T])    # optional: frame embeddings + timestamps (s)
    embed_text(texts) -> [B, D]                   # optional: text in the same space

``supports_frames`` / ``supports_text`` say which optional parts exist. Every model is
registered in the explicit table :data:`EMBEDDERS` (name -> factory) and built with
:func:`build_embedder`; :func:`self_check` verifies shapes, dtypes, finiteness and
determinism of any embedder.

Built-in models (all offline):

- ``clap-tiny``: the project's audio-text joint embedding (``checkpoints/promptsep-clap-tiny``).
- ``mosaic-tiny``: self-supervised masked-patch contrastive encoder
  (``checkpoints/promptsep-mosaic-tiny``).
- ``resemblyzer``: the GE2E speaker encoder of the ``resemblyzer`` package (speech).
- ``codec-mean``: mean over time of the project's DAC-VAE latents (baseline).
- ``logmel-stats``: mean and std of 64 log-mel bands (baseline).

Hub models: ``clap-hub`` (LAION CLAP through ``transformers.ClapModel``, by hub id or a
local folder). They need the weights on disk or internet and are never used by default.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from embeddings.logmel import AudioBatch, LogMel, MelConfig, as_wav_list, pad_batch, resample_list
from promptsep.release import packaged_checkpoint

logger = logging.getLogger(__name__)

DEFAULT_CODEC_DIR = packaged_checkpoint("promptsep-tiny") / "codec"


class AudioEmbedder:
    """Base class of the embedding models.

    Subclasses set :attr:`name`, :attr:`sample_rate`, :attr:`dim` and implement
    :meth:`_embed` (a padded batch -> ``[B, D]``); :meth:`_frames` and :meth:`_text` are
    optional.

    Attributes:
        name: registry name.
        sample_rate: rate (Hz) of the inputs of :meth:`embed_audio`.
        dim: embedding size ``D``.
        batch_size: items per forward pass.
        device: torch device of the model.
        speech_only: the model is meant for speech (the benchmark reports it on speech items).
    """

    name: str = "base"
    sample_rate: int = 16000
    dim: int = 0
    batch_size: int = 16
    device: str = "cpu"
    speech_only: bool = False

    # ------------------------------------------------------------- identity
    def fingerprint(self) -> str:
        """Short id of the weights/settings; part of the embedding cache key."""
        return "v1"

    @property
    def cache_key(self) -> str:
        return f"{self.name}@{self.fingerprint()}"

    @property
    def supports_text(self) -> bool:
        return type(self)._text is not AudioEmbedder._text

    @property
    def supports_frames(self) -> bool:
        return type(self)._frames is not AudioEmbedder._frames

    # ---------------------------------------------------------------- public
    def embed_audio(self, audio: AudioBatch, sample_rate: int | None = None) -> torch.Tensor:
        """Clip embeddings.

        Args:
            audio: a ``[B, N]`` batch or a list of ``[N]`` waveforms (lengths may differ).
            sample_rate: rate of ``audio`` (default: :attr:`sample_rate`; other rates are resampled).

        Returns:
            ``[B, D]`` float32 on the CPU.
        """
        wavs = resample_list(as_wav_list(audio), sample_rate or self.sample_rate, self.sample_rate)
        out = []
        with torch.no_grad():
            for s in range(0, len(wavs), self.batch_size):
                chunk = wavs[s : s + self.batch_size]
                emb = self._embed(chunk)
                out.append(torch.as_tensor(emb).detach().float().cpu())
        return torch.cat(out)

    def embed_frames(self, audio: AudioBatch, sample_rate: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame embeddings ``[B, T, D]`` and their centre times ``[B, T]`` in seconds.

        Items shorter than the longest are zero beyond their end.

        Raises:
            NotImplementedError: the model has no frame embeddings.
        """
        if not self.supports_frames:
            raise NotImplementedError(f"{self.name} has no frame embeddings")
        wavs = resample_list(as_wav_list(audio), sample_rate or self.sample_rate, self.sample_rate)
        with torch.no_grad():
            emb, ts = self._frames(wavs)
        return emb.float().cpu(), ts.float().cpu()

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Text embeddings ``[B, D]`` in the audio space.

        Raises:
            NotImplementedError: the model has no text tower.
        """
        if not self.supports_text:
            raise NotImplementedError(f"{self.name} has no text tower")
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise ValueError("no texts to embed")
        with torch.no_grad():
            return torch.as_tensor(self._text(list(texts))).float().cpu()

    # ------------------------------------------------------------ subclasses
    def _embed(self, wavs: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def _frames(self, wavs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _text(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, sample_rate={self.sample_rate}, dim={self.dim})"


def _file_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha1()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:12]


# ================================================================ baselines
class LogMelStats(AudioEmbedder):
    """Mean and standard deviation over time of 64 log-mel bands (``D = 128``)."""

    name = "logmel-stats"

    def __init__(self, mel: MelConfig | None = None, batch_size: int = 32, device: str = "cpu"):
        self.mel_cfg = mel or MelConfig()
        self.sample_rate = self.mel_cfg.sample_rate
        self.frontend = LogMel(self.mel_cfg)
        self.dim = 2 * self.mel_cfg.n_mels
        self.batch_size = batch_size

    def fingerprint(self) -> str:
        c = self.mel_cfg
        return f"m{c.n_mels}-f{c.n_fft}-h{c.hop_length}"

    def _embed(self, wavs):
        x, lengths = pad_batch(wavs)
        logmel = self.frontend(x)  # [B, M, F]
        frames = self.frontend.num_frames(lengths).clamp_max(logmel.shape[-1])
        valid = (torch.arange(logmel.shape[-1])[None] < frames[:, None]).float()[:, None]
        n = valid.sum(-1)
        mean = (logmel * valid).sum(-1) / n
        std = (((logmel - mean[..., None]) ** 2 * valid).sum(-1) / n).sqrt()
        return torch.cat([mean, std], dim=-1)

    def _frames(self, wavs):
        # Stats over 1 s windows with a 0.5 s hop, so frame embeddings live in the clip space.
        win, hop = self.sample_rate, self.sample_rate // 2
        n_max = max(w.shape[-1] for w in wavs)
        starts = list(range(0, max(1, n_max - win + hop), hop))
        out = torch.zeros(len(wavs), len(starts), self.dim)
        for j, s in enumerate(starts):
            seg = [w[s : s + win] if w.shape[-1] > s else torch.zeros(1) for w in wavs]
            seg = [x if x.numel() > 0 else torch.zeros(1) for x in seg]
            emb = self._embed(seg)
            for i, w in enumerate(wavs):
                if w.shape[-1] > s:
                    out[i, j] = emb[i]
        ts = (torch.tensor(starts, dtype=torch.float32) + win / 2) / self.sample_rate
        return out, ts[None].expand(len(wavs), -1)


class CodecLatentMean(AudioEmbedder):
    """Mean over time of the (normalised) DAC-VAE latents of the project's codec (``D = C``)."""

    name = "codec-mean"

    def __init__(self, path: str | Path | None = None, codec: Any | None = None, device: str = "cpu",
                 batch_size: int = 16):
        if codec is None:
            from separation.codec import DACVAE

            path = Path(path) if path is not None else DEFAULT_CODEC_DIR
            if not (path / "config.json").is_file():
                raise FileNotFoundError(
                    f"codec-mean needs a trained codec release folder, none at {path}; pass path=... "
                    "(e.g. checkpoints/promptsep-tiny/codec)"
                )
            codec = DACVAE.from_pretrained(path, map_location=device)
            self._fp = _file_digest([path / "model.safetensors"])
        else:
            self._fp = "custom-" + hashlib.sha1(str(sorted((k, tuple(v.shape)) for k, v in codec.state_dict().items()))
                                                .encode()).hexdigest()[:8]
        self.codec = codec.eval().to(device)
        self.device = device
        self.sample_rate = int(codec.sample_rate)
        self.dim = int(codec.latent_dim)
        self.batch_size = batch_size

    def fingerprint(self) -> str:
        return self._fp

    def _latents(self, wavs):
        x, lengths = pad_batch(wavs)
        z = self.codec.encode(x[:, None].to(self.device))  # [B, C, T]
        frames = torch.tensor([self.codec.num_frames(int(n)) for n in lengths], device=z.device)
        valid = torch.arange(z.shape[-1], device=z.device)[None] < frames[:, None]
        return z, valid

    def _embed(self, wavs):
        z, valid = self._latents(wavs)
        v = valid[:, None].float()
        return (z * v).sum(-1) / v.sum(-1)

    def _frames(self, wavs):
        z, valid = self._latents(wavs)
        emb = z.transpose(1, 2) * valid[..., None]
        ts = (torch.arange(z.shape[-1], dtype=torch.float32) + 0.5) / float(self.codec.frame_rate)
        return emb, ts[None].expand(len(wavs), -1)


# ================================================================== speech
class ResemblyzerEmbedder(AudioEmbedder):
    """GE2E speaker embeddings (``D = 256``) of the ``resemblyzer`` package (weights ship inside it).

    Each item is volume-normalised to -30 dBFS (as ``resemblyzer.preprocess_wav`` does, without
    its silence trimming, which would change the timing) and embedded as the normalised mean of
    1.6 s partial embeddings; frame embeddings are those partials.
    """

    name = "resemblyzer"
    speech_only = True

    def __init__(self, device: str = "cpu", batch_size: int = 16):
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as exc:  # pragma: no cover - optional extra
            raise ImportError("the resemblyzer embedder needs `pip install resemblyzer` (extra 'embed')") from exc
        import resemblyzer

        self.encoder = VoiceEncoder(device=device, verbose=False)
        self.device = device
        self.sample_rate = 16000
        self.dim = 256
        self.batch_size = batch_size
        self._fp = _file_digest([Path(resemblyzer.__file__).parent / "pretrained.pt"])

    def fingerprint(self) -> str:
        return self._fp

    @staticmethod
    def _prep(w: torch.Tensor) -> np.ndarray:
        x = w.numpy().astype(np.float32)
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        if rms > 1e-6:
            x = x * (10 ** (-30 / 20) / rms)
        return x

    def _embed(self, wavs):
        return torch.from_numpy(np.stack([self.encoder.embed_utterance(self._prep(w)) for w in wavs]))

    def _frames(self, wavs):
        parts, times = [], []
        for w in wavs:
            _, partials, slices = self.encoder.embed_utterance(self._prep(w), return_partials=True)
            parts.append(torch.from_numpy(partials))
            times.append(torch.tensor([(s.start + s.stop) / 2 / self.sample_rate for s in slices]))
        t = max(p.shape[0] for p in parts)
        emb = torch.zeros(len(wavs), t, self.dim)
        ts = torch.zeros(len(wavs), t)
        for i, (p, tt) in enumerate(zip(parts, times)):
            emb[i, : p.shape[0]] = p
            ts[i, : p.shape[0]] = tt
            if p.shape[0] < t:  # keep timestamps increasing past the end
                step = float(tt[1] - tt[0]) if len(tt) > 1 else 1.0
                ts[i, p.shape[0] :] = tt[-1] + step * torch.arange(1, t - p.shape[0] + 1)
        return emb, ts


# ============================================================ joint / SSL
def _training_meta(path: str | Path) -> dict[str, Any]:
    """``training`` block of a release folder's ``config.json`` ({} if absent)."""
    import json

    try:
        meta = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return dict(meta.get("training") or {})


def _training_revision(path: str | Path) -> str | None:
    """``training.dataset_revision`` of a release folder's ``config.json`` (None if absent)."""
    rev = _training_meta(path).get("dataset_revision")
    return str(rev) if rev else None


def _training_groups(path: str | Path) -> frozenset[str] | None:
    """``training.train_groups`` (corpus groups of the training clips) of a release, if recorded."""
    groups = _training_meta(path).get("train_groups")
    return frozenset(map(str, groups)) if groups is not None else None


class _TowerEmbedder(AudioEmbedder):
    """Shared code of ``clap-tiny`` and ``mosaic-tiny`` (a model with ``embed_audio(wav, lengths)``).

    Args:
        path: the release folder (default: the shipped one of the subclass's model).
        model: an already built model (e.g. untrained, in tests) instead of ``path``.
        device: torch device.
        batch_size: clips per forward pass.
    """

    #: SHA-1 of the corpus manifest the weights were trained on (from the release's config.json), if known.
    training_revision: str | None = None
    #: corpus groups of the training clips (releases exported since they are recorded), if known.
    training_groups: frozenset[str] | None = None

    def __init__(self, path: str | Path | None = None, model: Any | None = None, device: str = "cpu",
                 batch_size: int = 16):
        if model is None:
            model_cls, default_dir = self._release_class()
            path = Path(path) if path is not None else default_dir
            model = model_cls.from_pretrained(path, map_location=device)
            # config.json too: it says what the embedding is (e.g. mosaic-tiny's ``embedding``)
            self._fp = _file_digest([path / "model.safetensors", path / "config.json"])
        else:
            self._fp = "untrained-" + hashlib.sha1(repr(model.cfg).encode()).hexdigest()[:8]
        self.model = model.eval().to(device)
        self.device = device
        self.sample_rate = int(model.sample_rate)
        self.dim = int(model.dim)
        self.batch_size = batch_size
        if path is not None:
            self.training_revision = _training_revision(path)
            self.training_groups = _training_groups(path)

    @staticmethod
    def _release_class() -> tuple[type, Path]:
        """``(model class with from_pretrained, its shipped release folder)``."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        return self._fp

    def _embed(self, wavs):
        x, lengths = pad_batch(wavs)
        return self.model.embed_audio(x.to(self.device), lengths)

    def _frames(self, wavs):
        x, lengths = pad_batch(wavs)
        emb, ts, _ = self.model.embed_frames(x.to(self.device), lengths)
        return emb, ts


class ClapTinyEmbedder(_TowerEmbedder):
    """The project's audio-text joint embedding (``D = 256``, text through frozen MiniLM)."""

    name = "clap-tiny"

    @staticmethod
    def _release_class() -> tuple[type, Path]:
        from embeddings.clap import DEFAULT_CLAP_DIR, ClapTiny

        return ClapTiny, DEFAULT_CLAP_DIR

    def _text(self, texts):
        return self.model.embed_text(texts)


class MosaicEmbedder(_TowerEmbedder):
    """Self-supervised masked-patch contrastive encoder (``D = model.dim``: the width for a ``cls``
    release, ``2 (stem_dim + depth x width)`` = 768 for the shipped ``stages`` one; no text tower)."""

    name = "mosaic-tiny"

    @staticmethod
    def _release_class() -> tuple[type, Path]:
        from embeddings.mosaic import DEFAULT_MOSAIC_DIR, MosaicTiny

        return MosaicTiny, DEFAULT_MOSAIC_DIR


# ===================================================================== hub
class HubClapEmbedder(AudioEmbedder):
    """LAION CLAP through ``transformers.ClapModel`` (48 kHz, ``D = 512``), by hub id or folder.

    Needs the weights locally (``local_files_only``) or internet access; never used by the
    offline default path.
    """

    name = "clap-hub"

    def __init__(self, model_id: str = "laion/clap-htsat-unfused", device: str = "cpu", batch_size: int = 8,
                 local_files_only: bool | None = None):
        import os

        from transformers import ClapModel, ClapProcessor

        if local_files_only is None:
            local_files_only = os.environ.get("HF_HUB_OFFLINE", "0") == "1"
        try:
            self.processor = ClapProcessor.from_pretrained(model_id, local_files_only=local_files_only)
            self.model = ClapModel.from_pretrained(model_id, local_files_only=local_files_only).eval().to(device)
        except OSError as exc:
            raise OSError(f"could not load CLAP {model_id!r}: {exc}. Without internet, pass a local folder.") from exc
        self.model_id = model_id
        self.device = device
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        self.dim = int(self.model.config.projection_dim)
        self.batch_size = batch_size

    def fingerprint(self) -> str:
        return hashlib.sha1(self.model_id.encode()).hexdigest()[:12]

    def _embed(self, wavs):
        inputs = self.processor(audios=[w.numpy() for w in wavs], sampling_rate=self.sample_rate,
                                return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return F.normalize(self.model.get_audio_features(**inputs), dim=-1)

    def _text(self, texts):
        inputs = self.processor(text=texts, return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return F.normalize(self.model.get_text_features(**inputs), dim=-1)


# ================================================================ registry
#: name -> factory(**kwargs) -> AudioEmbedder. The one place models are registered.
EMBEDDERS: dict[str, Callable[..., AudioEmbedder]] = {
    "clap-tiny": ClapTinyEmbedder,
    "mosaic-tiny": MosaicEmbedder,
    "resemblyzer": ResemblyzerEmbedder,
    "codec-mean": CodecLatentMean,
    "logmel-stats": LogMelStats,
    "clap-hub": HubClapEmbedder,
}

#: Offline built-ins run by default.
DEFAULT_MODELS: tuple[str, ...] = ("clap-tiny", "mosaic-tiny", "resemblyzer", "codec-mean", "logmel-stats")


def build_embedder(name: str, **kwargs: Any) -> AudioEmbedder:
    """Build a registered embedder.

    Args:
        name: a key of :data:`EMBEDDERS`.
        **kwargs: passed to the factory (``path``, ``device``, ``batch_size``, ...).

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    if name not in EMBEDDERS:
        raise KeyError(f"unknown embedding model {name!r}; known: {sorted(EMBEDDERS)}")
    return EMBEDDERS[name](**kwargs)


def self_check(embedder: AudioEmbedder, seconds: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Check an embedder's contract on random audio; raises ``AssertionError`` on a violation.

    Checks: ``embed_audio`` on a list of two lengths and on a ``[B, N]`` batch gives
    ``[B, D]`` float32 finite outputs with ``D == dim``; the same input gives the same
    output (deterministic, batch-independent up to 1e-4); frames (if any) are
    ``[B, T, D]`` with increasing timestamps ``[B, T]``; text (if any) is ``[B, D]``.

    Returns:
        ``{"name", "dim", "sample_rate", "frames": bool, "text": bool}``.
    """
    g = torch.Generator().manual_seed(seed)
    sr = int(embedder.sample_rate)
    n = max(1, int(seconds * sr))
    a = 0.1 * torch.randn(n, generator=g)
    b = 0.1 * torch.randn(n // 2 + 1, generator=g) + 0.05 * torch.sin(torch.arange(n // 2 + 1) * 0.05)
    d = int(embedder.dim)
    assert d > 0, f"{embedder.name}: dim must be positive, got {d}"

    def check(x: torch.Tensor, rows: int, what: str) -> None:
        assert isinstance(x, torch.Tensor), f"{embedder.name}: {what} returned {type(x).__name__}, not a tensor"
        assert x.shape == (rows, d), f"{embedder.name}: {what} gave shape {tuple(x.shape)}, expected {(rows, d)}"
        assert x.dtype == torch.float32, f"{embedder.name}: {what} gave dtype {x.dtype}, expected float32"
        assert torch.isfinite(x).all(), f"{embedder.name}: {what} gave non-finite values"

    e_list = embedder.embed_audio([a, b])
    check(e_list, 2, "embed_audio(list)")
    e_batch = embedder.embed_audio(torch.stack([a, a]))
    check(e_batch, 2, "embed_audio([B, N])")
    e_one = embedder.embed_audio([a])
    check(e_one, 1, "embed_audio([one])")
    assert torch.allclose(e_batch[0], e_batch[1], atol=1e-4), f"{embedder.name}: identical rows embed differently"
    assert torch.allclose(e_one[0], e_list[0], atol=1e-4, rtol=1e-3), (
        f"{embedder.name}: an item's embedding depends on the rest of the batch or is not deterministic"
    )
    if embedder.supports_frames:
        fr, ts = embedder.embed_frames([a, b])
        assert fr.dim() == 3 and fr.shape[0] == 2 and fr.shape[2] == d, (
            f"{embedder.name}: embed_frames gave shape {tuple(fr.shape)}, expected [2, T, {d}]"
        )
        assert ts.shape == fr.shape[:2], f"{embedder.name}: timestamps {tuple(ts.shape)} vs frames {tuple(fr.shape)}"
        assert fr.dtype == torch.float32 and torch.isfinite(fr).all(), f"{embedder.name}: bad frame embeddings"
        if ts.shape[1] > 1:
            assert bool((ts[:, 1:] > ts[:, :-1]).all()), f"{embedder.name}: timestamps must increase"
    if embedder.supports_text:
        t = embedder.embed_text(["a dog barking", "piano"])
        check(t, 2, "embed_text")
    return {"name": embedder.name, "dim": d, "sample_rate": sr, "frames": embedder.supports_frames,
            "text": embedder.supports_text}


# ==================================================================== mteb
def _mteb_meta(name: str, embedder: AudioEmbedder | None = None, loader: Callable[..., Any] | None = None):
    """mteb ``ModelMeta`` of a built-in model (``embedder`` fills the dimension and revision)."""
    from mteb.models import ModelMeta

    text = bool(embedder.supports_text) if embedder is not None else name in ("clap-tiny", "clap-hub")
    return ModelMeta(
        loader=loader, name=f"promptsep/{name}", revision=embedder.fingerprint() if embedder is not None else None,
        release_date=None, languages=["eng-Latn"] if text else None, n_parameters=None, memory_usage_mb=None,
        max_tokens=None, embed_dim=int(embedder.dim) if embedder is not None else None, license=None,
        open_weights=True, public_training_code=None, public_training_data=None, framework=["PyTorch"],
        similarity_fn_name="cosine", use_instructions=False, training_datasets=None,
        modalities=["audio", "text"] if text else ["audio"],
    )


def _mteb_encoder_class():
    from mteb.models.abs_encoder import AbsEncoder

    from bench.embedding.cache import array_hash

    class PromptSepEncoder(AbsEncoder):
        """An :class:`AudioEmbedder` as an mteb encoder (``encode`` over mteb's dataloaders).

        Audio items arrive as ``{"array", "sampling_rate"}``; their embeddings go through the
        benchmark's content-keyed :class:`~bench.embedding.cache.EmbeddingCache`.
        """

        def __init__(self, embedder: AudioEmbedder, cache=None, progress: bool = False):
            from bench.embedding.cache import EmbeddingCache

            self.embedder = embedder
            self.cache = cache if cache is not None else EmbeddingCache(None)
            self.progress = progress
            self.mteb_model_meta = _mteb_meta(embedder.name, embedder)
            self.calls = 0
            self._memo: dict[str, np.ndarray] = {}

        def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
            self.calls += 1
            out: list[np.ndarray] = []
            for batch in inputs:
                if "audio" in batch:
                    by_rate: dict[int, list[int]] = {}
                    audios = batch["audio"]
                    for k, a in enumerate(audios):
                        by_rate.setdefault(int(a["sampling_rate"]), []).append(k)
                    emb = [None] * len(audios)
                    for sr, idx in by_rate.items():
                        wavs = [torch.as_tensor(np.asarray(audios[k]["array"], dtype=np.float32)) for k in idx]
                        keys = [array_hash(w, sr) for w in wavs]
                        todo = [n for n, key in enumerate(keys) if key not in self._memo]
                        if todo:  # the same stem recurs (pairs, retrieval corpora): embed it once
                            vecs = self.cache.embed(self.embedder, [wavs[n] for n in todo], sr,
                                                    keys=[keys[n] for n in todo], progress=False)
                            self._memo.update({keys[n]: v for n, v in zip(todo, vecs)})
                        for k, key in zip(idx, keys):
                            emb[k] = self._memo[key]
                    out.extend(emb)
                elif "text" in batch:
                    out.extend(self.embedder.embed_text(list(batch["text"])).numpy())
                else:
                    raise ValueError(f"{self.embedder.name}: batch without audio or text ({sorted(batch)})")
            return np.stack(out).astype(np.float32)

    return PromptSepEncoder


def mteb_model(name: str, cache=None, **kwargs: Any):
    """An embedding model as an mteb encoder.

    ``name`` is a built-in (:data:`EMBEDDERS`, wrapped with :class:`ModelMeta`) or any model
    mteb knows by name (e.g. ``laion/clap-htsat-unfused``: needs its weights from the hub).

    Returns:
        ``(encoder, embedder)``: ``embedder`` is the :class:`AudioEmbedder` (None for mteb's own models).

    Raises:
        KeyError: unknown name; OSError: an mteb model whose weights cannot be fetched (offline).
    """
    if name in EMBEDDERS:
        embedder = build_embedder(name, **kwargs)
        return _mteb_encoder_class()(embedder, cache), embedder
    import mteb

    try:
        meta = mteb.get_model_meta(name)
    except (KeyError, ValueError) as exc:
        raise KeyError(f"unknown embedding model {name!r}: not a built-in ({sorted(EMBEDDERS)}) and not an mteb "
                       f"model") from exc
    try:
        return meta.load_model(**{k: v for k, v in kwargs.items() if k == "device"}), None
    except Exception as exc:  # noqa: BLE001 - hub/network errors come in many types
        raise OSError(f"could not load mteb model {name!r} (needs its weights from the hub; offline?): {exc}") from exc


def mteb_model_metas() -> list[Any]:
    """ModelMeta of every built-in model (``loader`` builds its mteb encoder)."""
    return [_mteb_meta(n, loader=_load_builtin) for n in EMBEDDERS]


def _load_builtin(model_name: str, revision: str | None = None, **kwargs: Any):
    """``ModelMeta.loader`` of the built-ins: ``promptsep/<name>`` -> its mteb encoder."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("embed_dim",)}
    return mteb_model(model_name.split("/", 1)[-1], **kwargs)[0]
