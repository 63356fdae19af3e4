"""Embedding cache: one ``.npy`` per (content hash, model) under a cache folder.

The key of an item is the SHA-1 of its content - a file's bytes, or a waveform's float32
samples plus its rate - and the model's :attr:`AudioEmbedder.cache_key` (name and a
fingerprint of its weights), so retraining a model or changing a stem never serves a
stale vector. Files are written atomically; several processes can share a cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


def array_hash(wav: torch.Tensor | np.ndarray, sample_rate: int) -> str:
    """SHA-1 of a waveform's float32 samples, shape and rate."""
    a = np.ascontiguousarray(torch.as_tensor(wav).detach().cpu().numpy(), dtype=np.float32)
    h = hashlib.sha1()
    h.update(f"{a.shape}|{int(sample_rate)}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def file_hash(path: str | Path) -> str:
    """SHA-1 of a file's bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class EmbeddingCache:
    """Vectors keyed by (content hash, model key).

    Args:
        root: cache folder (None disables caching: every lookup misses, nothing is written).

    Attributes:
        hits / misses: lookups served from disk / computed since creation.
    """

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0

    def _path(self, model_key: str, key: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", model_key)
        return self.root / safe / key[:2] / f"{key}.npy"

    def get(self, model_key: str, key: str) -> np.ndarray | None:
        if self.root is None:
            return None
        p = self._path(model_key, key)
        if not p.is_file():
            return None
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError):  # torn or foreign file: recompute
            logger.warning("unreadable cache entry %s, recomputing", p)
            return None

    def put(self, model_key: str, key: str, vec: np.ndarray) -> None:
        if self.root is None:
            return
        p = self._path(model_key, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, np.asarray(vec, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, p)

    def embed(self, embedder, wavs: Sequence[torch.Tensor], sample_rate: int, keys: Sequence[str] | None = None,
              desc: str | None = None, progress: bool = True) -> np.ndarray:
        """Embeddings ``[B, D]`` of waveforms, computing only the ones not cached.

        Args:
            embedder: an :class:`~bench.embedding.models.AudioEmbedder`.
            wavs: ``[N]`` waveforms at ``sample_rate``.
            sample_rate: their rate (resampled to the model's rate when different).
            keys: content keys (default: :func:`array_hash` of each waveform).
            desc: progress-bar label.
        """
        from tqdm.auto import tqdm

        keys = list(keys) if keys is not None else [array_hash(w, sample_rate) for w in wavs]
        mk = embedder.cache_key
        out: list[np.ndarray | None] = [self.get(mk, k) for k in keys]
        todo = [i for i, v in enumerate(out) if v is None or v.shape != (embedder.dim,)]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        bs = max(1, int(embedder.batch_size))
        bar = tqdm(total=len(todo), desc=desc or f"embed {embedder.name}", disable=not progress or not todo,
                   leave=False)
        for s in range(0, len(todo), bs):
            idx = todo[s : s + bs]
            emb = embedder.embed_audio([wavs[i] for i in idx], sample_rate=sample_rate).numpy()
            for i, v in zip(idx, emb):
                out[i] = v
                self.put(mk, keys[i], v)
            bar.update(len(idx))
        bar.close()
        return np.stack(out).astype(np.float32)
