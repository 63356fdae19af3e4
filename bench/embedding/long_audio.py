"""Segment length x aggregation study for long audio.

A long recording is cut into non-overlapping segments of ``segment_s`` seconds (the last,
shorter one is kept when it has at least a quarter of a segment), each segment is
embedded, and the segment embeddings ``[K, D]`` are aggregated into one clip vector:

- ``mean`` / ``max``: over segments;
- ``concat``: the segment vectors in order, zero-padded to the most segments any
  recording has (``K_max * D``);
- ``attention``: a small attention pooler (LayerNorm, one score per segment, softmax,
  weighted mean, linear classifier) trained on the training folds of the probe;
- ``whole``: no segmentation (the whole recording in one pass), for reference.

Quality is the cross-validated label accuracy of the aggregated vectors (logistic
probe, or the pooler's own classifier for ``attention``); cost is the median seconds per
recording spent embedding its segments, the aggregation time, and the peak memory of the
embedding pass (CUDA: peak allocated; CPU: peak resident-set growth, sampled every 2 ms).
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

AGGREGATIONS: tuple[str, ...] = ("mean", "max", "concat", "attention")


class PeakMemory:
    """Context manager measuring peak memory growth in MB (CUDA allocator or process RSS)."""

    def __init__(self, device: str = "cpu", interval_s: float = 0.002):
        self.cuda = str(device).startswith("cuda") and torch.cuda.is_available()
        self.interval = interval_s
        self.peak_mb = 0.0

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                import os

                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._base = self._rss()
        self._peak = self._base
        self._stop = threading.Event()

        def poll():
            while not self._stop.is_set():
                self._peak = max(self._peak, self._rss())
                time.sleep(self.interval)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss())
        self.peak_mb = max(0.0, (self._peak - self._base) / 2**20)


def segment(wav: torch.Tensor, seg_samples: int, min_fraction: float = 0.25) -> list[torch.Tensor]:
    """Non-overlapping ``seg_samples`` segments of ``wav [N]`` (a short tail is kept if long enough)."""
    n = wav.shape[-1]
    out = [wav[s : s + seg_samples] for s in range(0, n, seg_samples)]
    if len(out) > 1 and out[-1].shape[-1] < min_fraction * seg_samples:
        out = out[:-1]
    return out


def aggregate(segs: Sequence[np.ndarray], how: str, k_max: int | None = None) -> np.ndarray:
    """Aggregate per-recording segment embeddings ``[K_i, D]`` into ``[N, D]`` (``concat``: ``[N, K_max * D]``)."""
    if how == "mean":
        return np.stack([s.mean(0) for s in segs])
    if how == "max":
        return np.stack([s.max(0) for s in segs])
    if how == "concat":
        k = k_max or max(len(s) for s in segs)
        d = segs[0].shape[1]
        out = np.zeros((len(segs), k * d), dtype=np.float32)
        for i, s in enumerate(segs):
            out[i, : min(k, len(s)) * d] = s[:k].reshape(-1)
        return out
    raise ValueError(f"unknown aggregation {how!r}; use one of {AGGREGATIONS}")


class AttentionPooler(nn.Module):
    """Segment embeddings ``[B, K, D]`` (+ valid mask) -> pooled ``[B, D]`` -> class logits."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1)
        self.classify = nn.Linear(dim, n_classes)

    def pool(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        w = self.score(h)[..., 0].masked_fill(~valid, float("-inf")).softmax(-1)
        return (w[..., None] * h).sum(1)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pool(x, valid))


def _pad_segments(segs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    k = max(len(s) for s in segs)
    x = torch.zeros(len(segs), k, segs[0].shape[1])
    valid = torch.zeros(len(segs), k, dtype=torch.bool)
    for i, s in enumerate(segs):
        x[i, : len(s)] = torch.from_numpy(np.asarray(s, dtype=np.float32))
        valid[i, : len(s)] = True
    return x, valid


def attention_probe_accuracy(segs: Sequence[np.ndarray], y: np.ndarray, folds: int = 5, seed: int = 0,
                             steps: int = 200, lr: float = 1e-2) -> float:
    """Cross-validated accuracy of an :class:`AttentionPooler` trained on each training fold."""
    import warnings

    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    classes, yi = np.unique(y, return_inverse=True)
    counts = np.bincount(yi)
    if counts.max() < 2:
        return float("nan")
    n_splits = int(max(2, min(folds, counts.max())))
    x, valid = _pad_segments(segs)
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)  # scale-free input
    pred = np.full(len(y), -1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threading only adds synchronisation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        splits = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(yi, yi))
    for tr, te in splits:
        torch.manual_seed(seed)
        model = AttentionPooler(x.shape[-1], len(classes))
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
        tgt = torch.from_numpy(yi[tr])
        for _ in range(steps):
            loss = nn.functional.cross_entropy(model(x[tr], valid[tr]), tgt)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred[te] = model(x[te], valid[te]).argmax(-1).numpy()
    torch.set_num_threads(threads)
    return float(np.mean(pred == yi))


def probe_accuracy(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Stratified K-fold accuracy of a standardised logistic-regression probe on ``x [N, D]``."""
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.unique(np.asarray(y), return_counts=True)[1]
    if counts.max() < 2:
        return float("nan")
    cv = StratifiedKFold(n_splits=int(max(2, min(folds, counts.max()))), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        return float(np.mean(cross_val_score(probe, x, y, cv=cv)))


def run_segment_study(embedder, wavs: Sequence[torch.Tensor], labels: Sequence[str], sample_rate: int,
                      segment_s: Sequence[float] = (2.0, 5.0, 10.0), aggregations: Sequence[str] = AGGREGATIONS,
                      whole: bool = True, folds: int = 5, seed: int = 0, progress: bool = True,
                      attention_steps: int = 200) -> list[dict]:
    """The trade-off table of one model: quality, time and memory per (segment length, aggregation).

    Args:
        embedder: an :class:`~bench.embedding.models.AudioEmbedder`.
        wavs: long recordings ``[N]`` at ``sample_rate``.
        labels: one label per recording.
        segment_s: segment lengths in seconds.
        aggregations: subset of :data:`AGGREGATIONS`.
        whole: add a row embedding each recording in one pass.
        attention_steps: training steps of the attention pooler per fold.

    Returns:
        Rows ``{"model", "segment_s", "aggregation", "accuracy", "dim", "segments",
        "embed_s_median", "aggregate_s", "peak_mem_mb", "realtime_factor"}`` (realtime factor:
        audio seconds per embedding second, medians over recordings).
    """
    from tqdm.auto import tqdm

    from embeddings.logmel import resample_list

    y = np.asarray(labels)
    wavs = resample_list(list(wavs), sample_rate, embedder.sample_rate)
    sr = embedder.sample_rate
    settings: list[float | None] = list(segment_s) + ([None] if whole else [])
    rows: list[dict] = []
    for seg in tqdm(settings, desc=f"segments {embedder.name}", disable=not progress, leave=False):
        seg_embs: list[np.ndarray] = []
        times: list[float] = []
        with PeakMemory(embedder.device) as mem:
            for w in wavs:
                pieces = [w] if seg is None else segment(w, int(round(seg * sr)))
                t0 = time.perf_counter()
                e = embedder.embed_audio(pieces).numpy()
                times.append(time.perf_counter() - t0)
                seg_embs.append(e)
        med = statistics.median(times)
        audio_s = statistics.median([w.shape[-1] / sr for w in wavs])
        base = {"model": embedder.name, "segment_s": seg if seg is not None else "whole",
                "segments": float(np.mean([len(s) for s in seg_embs])), "embed_s_median": med,
                "peak_mem_mb": mem.peak_mb, "realtime_factor": audio_s / med if med > 0 else float("inf")}
        aggs = ["mean"] if seg is None else list(aggregations)
        for how in aggs:
            t0 = time.perf_counter()
            if how == "attention":
                acc = attention_probe_accuracy(seg_embs, y, folds, seed, steps=attention_steps)
                dim = seg_embs[0].shape[1]
            else:
                x = aggregate(seg_embs, how)
                dim = x.shape[1]
                acc = probe_accuracy(x, y, folds, seed)
            agg_s = time.perf_counter() - t0
            rows.append({**base, "aggregation": how if seg is not None else "whole", "accuracy": acc, "dim": dim,
                         "aggregate_s": agg_s})
    return rows
