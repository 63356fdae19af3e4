"""Benchmark manifests: JSONL files of prompted mixtures with their reference stems.

One JSON object per line::

    {"id": "test-0-00003",
     "mixture": "items_audio/test-0-00003_mix.wav",      # or "sources": [stem, stem, ...] (summed)
     "target": "items_audio/test-0-00003_target.wav",    # null (or target_present=false): absent target
     "text": "dog barking", "spans": [["+", 0.4, 2.1]], "video": null,
     "category": "sfx", "prompt_kind": "text+span",
     "label": "dog", "target_present": true, "num_sources": 3, "subset": "main",
     "scene": "test-0-00003", "split": "test", "seed": 0}

Paths are relative to the manifest's folder (absolute paths work too). ``prompt_kind``
selects which prompts the separator gets: ``text``, ``span``, ``text+span`` or ``video``
(without it, every prompt the item carries is used). ``text`` is always passed to the judge.
``video`` is an ``.npz`` with ``frames`` ``[F, 3, H, W]`` (uint8 or float in [0, 1]),
``masks`` ``[F, H, W]`` and ``fps``.

:func:`build_manifest` (``promptsep bench manifest``) writes such a manifest from the
corpus test split with :class:`separation.data.mixing.MixtureDataset` and a fixed seed:
float32 WAVs next to the manifest, the prompt kinds text / span / text+span (and video
when asked for), and a subset of 2-source mixtures of different categories, stored as
``sources`` stems and prompted with each of ``pair_kinds`` (one item per kind, same
``scene``). Only held-out splits are allowed (:data:`EVAL_SPLITS`: ``test``, ``valid``
source-disjoint; ``test_in``, ``valid_in`` in-distribution): item ``i`` of an
eval split is a pure function of ``(corpus, split, seed, i)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from promptsep.errors import InputError

logger = logging.getLogger(__name__)

#: Prompt kinds a manifest item can have.
PROMPT_KINDS = ("text", "span", "text+span", "video")
#: Held-out corpus splits a manifest may be built from: ``test`` / ``valid`` hold out whole
#: sources (source-disjoint), ``test_in`` / ``valid_in`` are file-disjoint (in-distribution).
EVAL_SPLITS = ("valid", "test", "valid_in", "test_in")


# ---------------------------------------------------------------------- reading
def load_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read a manifest; relative paths are resolved against its folder.

    A line that is not a JSON object, or an item without ``mixture``/``sources``, is kept
    as an item with an ``_error`` (the benchmark records it as failed and goes on).

    Args:
        path: the ``.jsonl`` file.

    Returns:
        Items in file order; each has ``id`` (``line{n}`` when missing) and ``_line``.

    Raises:
        FileNotFoundError: no such manifest.
        InputError: two items share an id.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"benchmark manifest not found: {p}")
    base = p.resolve().parent
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError(f"expected a JSON object, got {type(item).__name__}")
        except ValueError as exc:
            items.append({"id": f"line{n}", "_line": n, "_error": f"manifest line {n} is not valid JSON: {exc}"})
            continue
        item = dict(item)
        item["id"] = str(item.get("id") or f"line{n}")
        item["_line"] = n
        if item["id"] in seen:
            raise InputError(f"{p}: item id {item['id']!r} appears twice (line {n})")
        seen.add(item["id"])
        for key in ("mixture", "target", "video"):
            if item.get(key):
                item[key] = str(base / item[key])
        if item.get("sources"):
            item["sources"] = [str(base / s) for s in item["sources"]]
        if not item.get("mixture") and not item.get("sources"):
            item["_error"] = f"item {item['id']} has neither 'mixture' nor 'sources'"
        kind = item.get("prompt_kind")
        if kind is not None and kind not in PROMPT_KINDS:
            item["_error"] = f"item {item['id']}: unknown prompt_kind {kind!r} (use one of {', '.join(PROMPT_KINDS)})"
        items.append(item)
    return items


@dataclass
class LoadedItem:
    """Audio and prompts of one manifest item, ready for the benchmark.

    Attributes:
        item: the manifest entry.
        mixture: ``[1, N]`` float32 (channels averaged).
        target: ``[1, N]`` reference stem (zeros when the target is absent).
        sample_rate: rate of both.
        present: whether the target sounds in the mixture.
        text / spans / video: the prompts given to the separator (None when not used).
        judge_text: the description given to the judge (the item's text, or its label).
    """

    item: dict[str, Any]
    mixture: torch.Tensor
    target: torch.Tensor
    sample_rate: int
    present: bool
    text: str | None
    spans: list[tuple[str, float, float]] | None
    video: Any | None
    judge_text: str

    @property
    def residual(self) -> torch.Tensor:
        """True residual ``mixture - target`` ``[1, N]``."""
        return self.mixture - self.target

    @property
    def seconds(self) -> float:
        return self.mixture.shape[-1] / self.sample_rate


def _read_wav(path: str, what: str) -> tuple[torch.Tensor, int]:
    """Mono ``[1, N]`` float32 and its rate; :class:`InputError` when unreadable, empty or non-finite."""
    if not Path(path).is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
        raise InputError(f"{what} file {path} is unreadable: {exc}") from exc
    if data.shape[0] == 0:
        raise InputError(f"{what} file {path} is empty")
    if not np.isfinite(data).all():
        raise InputError(f"{what} file {path} has NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))[None], int(sr)


def load_video_npz(path: str) -> Any:
    """A :class:`prompts.types.VideoPrompt` from an ``.npz`` (``frames``, ``masks``, ``fps``)."""
    from prompts.types import VideoPrompt

    if not Path(path).is_file():
        raise InputError(f"video file not found: {path}")
    try:
        with np.load(path) as z:
            frames = torch.from_numpy(z["frames"])
            masks = torch.from_numpy(z["masks"]).float() if "masks" in z else None
            fps = float(z["fps"])
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"video file {path} is unreadable (needs frames, masks, fps): {exc}") from exc
    frames = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    return VideoPrompt(frames=frames, fps=fps, masks=masks)


def read_item(item: dict[str, Any]) -> LoadedItem:
    """Load an item's audio and prompts.

    Raises:
        InputError: a manifest error, an unreadable/missing/empty file, stems of different
            rates or lengths, a target whose length differs from the mixture's, bad spans.
    """
    if item.get("_error"):
        raise InputError(item["_error"])
    iid = item["id"]
    if item.get("sources"):
        stems = [_read_wav(s, f"item {iid} source") for s in item["sources"]]
        rates = {sr for _, sr in stems}
        lengths = {w.shape[-1] for w, _ in stems}
        if len(rates) != 1:
            raise InputError(f"item {iid}: sources have different sample rates {sorted(rates)}")
        if len(lengths) != 1:
            raise InputError(f"item {iid}: length mismatch between sources ({sorted(lengths)} samples)")
        mixture = torch.stack([w for w, _ in stems]).sum(0)
        sr = rates.pop()
    else:
        mixture, sr = _read_wav(item["mixture"], f"item {iid} mixture")
    present = bool(item.get("target_present", item.get("target") is not None))
    if item.get("target"):
        target, sr_t = _read_wav(item["target"], f"item {iid} target")
        if sr_t != sr:
            raise InputError(f"item {iid}: target is at {sr_t} Hz, the mixture at {sr} Hz")
        if target.shape[-1] != mixture.shape[-1]:
            raise InputError(
                f"item {iid}: length mismatch, mixture has {mixture.shape[-1]} samples, target {target.shape[-1]}"
            )
        if not present:
            target = torch.zeros_like(mixture)
    elif present:
        raise InputError(f"item {iid}: no target stem (set target_present=false for an absent-target item)")
    else:
        target = torch.zeros_like(mixture)
    if float(mixture.abs().max()) == 0.0:
        raise InputError(f"item {iid}: the mixture is silent")

    kind = item.get("prompt_kind")
    text = item.get("text") or None
    spans = item.get("spans") or None
    video_path = item.get("video") or None
    use_text = text is not None and (kind is None or kind in ("text", "text+span"))
    use_span = spans is not None and (kind is None or kind in ("span", "text+span"))
    use_video = video_path is not None and (kind is None or kind == "video")
    if kind in ("text", "text+span") and text is None:
        raise InputError(f"item {iid}: prompt_kind {kind!r} needs a 'text'")
    if kind in ("span", "text+span") and spans is None:
        raise InputError(f"item {iid}: prompt_kind {kind!r} needs 'spans'")
    if kind == "video" and video_path is None:
        raise InputError(f"item {iid}: prompt_kind 'video' needs a 'video' file")
    norm_spans = None
    if use_span:
        from prompts.types import validate_span

        dur = mixture.shape[-1] / sr
        norm_spans = [validate_span(tuple(s), dur, tolerance_s=1e-6) for s in spans]
    video = load_video_npz(video_path) if use_video else None
    if not (use_text or use_span or use_video):
        raise InputError(f"item {iid} has no usable prompt (text, spans or video)")
    judge_text = text or str(item.get("label") or "").replace("_", " ") or "the target sound"
    return LoadedItem(item, mixture, target, sr, present, text if use_text else None, norm_spans, video, judge_text)


# ---------------------------------------------------------------------- writing
def _write_wav(path: Path, wav: torch.Tensor, sr: int) -> None:
    """Float32 WAV (exact, no clipping), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sf.write(str(tmp), wav.reshape(-1).numpy().astype(np.float32), int(sr), format="WAV", subtype="FLOAT")
    os.replace(tmp, path)


def _write_video(path: Path, video: dict) -> None:
    frames = (video["frames"].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    masks = (video["masks"] > 0.5).to(torch.uint8).numpy()
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, frames=frames, masks=masks, fps=np.float32(video["fps"]))
    os.replace(tmp, path)


def build_manifest(
    corpus: str | Path,
    out: str | Path,
    split: str = "test",
    n: int = 200,
    seed: int = 0,
    n_pairs: int | None = None,
    segment_s: float = 4.0,
    min_sources: int = 2,
    max_sources: int = 4,
    absent_prob: float = 0.1,
    video: bool = False,
    pair_kinds: Sequence[str] = ("text", "span", "text+span"),
) -> list[dict[str, Any]]:
    """Write a benchmark manifest of corpus mixtures (and their WAVs) with a fixed seed.

    Args:
        corpus: corpus root (with ``manifest.jsonl``).
        out: the manifest to write; audio goes to ``<out stem>_audio/`` beside it.
        split: held-out corpus split (:data:`EVAL_SPLITS`): ``test`` (source-disjoint) and ``test_in``
            (in-distribution) for benchmarks and model cards, ``valid`` / ``valid_in`` for choosing
            settings; never ``train``.
        n: main items: 1..``max_sources`` sources (at least ``min_sources``), prompt kinds
            text / span / text+span (and video) in equal proportions, ``absent_prob``
            of them naming an absent sound.
        seed: item ``i`` is a pure function of ``(seed, i)``.
        n_pairs: extra 2-source mixtures whose sources have different categories
            (``subset: "pair_cross"``, written as two ``sources`` stems); default ``n // 2``.
        pair_kinds: prompt kinds of every pair: each pair (a ``scene``) becomes one item per
            kind (ids ``<scene>.<kind>``) sharing its stems, so kinds compare on the same
            mixtures (the text bar, the paired gain of span prompts). A span kind is skipped
            for a pair whose target activity gave no spans.
        segment_s: mixture length in seconds.
        min_sources / max_sources: sources per main mixture.
        absent_prob: share of main items whose prompt names an absent sound.
        video: also draw video prompts (synthetic scenes of :mod:`separation.data.av`).

    Returns:
        The items written (paths relative to the manifest's folder).
    """
    from separation.data.clips import read_manifest
    from separation.data.mixing import MixConfig, MixtureDataset

    out = Path(out)
    if split not in EVAL_SPLITS:
        raise InputError(f"benchmark manifests are built from held-out clips only (--split one of "
                         f"{', '.join(EVAL_SPLITS)}), never from the train split; got {split!r}")
    bad_kinds = [k for k in pair_kinds if k not in PROMPT_KINDS or k == "video"]
    if bad_kinds:
        raise InputError(f"pair prompt kinds must be among text, span, text+span; got {bad_kinds}")
    if n < 0 or (n_pairs is not None and n_pairs < 0):
        raise InputError("--n and --n-pairs must be >= 0")
    rows = read_manifest(corpus, split)
    if not rows:
        raise InputError(f"the {split!r} split of the corpus at {corpus} is empty")
    sr = int(rows[0].get("sample_rate", 16000))
    audio_dir = out.parent / f"{out.stem}_audio"
    rel = audio_dir.name
    n_pairs = n // 2 if n_pairs is None else int(n_pairs)
    cfg = MixConfig(sample_rate=sr, segment_s=segment_s, min_sources=min_sources, max_sources=max_sources,
                    absent_prob=absent_prob, p_text=1.0, p_span=1.0, p_text_span=1.0,
                    p_video=1.0 if video else 0.0, video=video)
    pair_cfg = dataclasses.replace(cfg, min_sources=2, max_sources=2, p_cross_category=1.0, absent_prob=0.0)
    plans = [("main", cfg, seed, n), ("pair_cross", pair_cfg, seed + 10007, n_pairs)]
    items: list[dict[str, Any]] = []
    from tqdm import tqdm

    for subset, mcfg, mseed, count in plans:
        if count <= 0:
            continue
        ds = MixtureDataset(corpus, split, mcfg, seed=mseed, length=count)
        for i in tqdm(range(count), desc=f"manifest {subset}", disable=count < 20):
            ex = ds[i]
            iid = f"{split}-{seed}-{'p' if subset != 'main' else ''}{i:05d}"
            item: dict[str, Any] = {"id": iid, "scene": iid}
            if subset == "main":
                _write_wav(audio_dir / f"{iid}_mix.wav", ex["mixture"], sr)
                item["mixture"] = f"{rel}/{iid}_mix.wav"
                if ex["target_present"]:
                    _write_wav(audio_dir / f"{iid}_target.wav", ex["target"], sr)
                    item["target"] = f"{rel}/{iid}_target.wav"
                else:
                    item["target"] = None
            else:
                _write_wav(audio_dir / f"{iid}_target.wav", ex["target"], sr)
                _write_wav(audio_dir / f"{iid}_other.wav", ex["residual"], sr)
                item["sources"] = [f"{rel}/{iid}_target.wav", f"{rel}/{iid}_other.wav"]
                item["target"] = f"{rel}/{iid}_target.wav"
            item["text"] = ex["text"]
            item["spans"] = [[s, round(float(a), 4), round(float(b), 4)] for s, a, b in ex["spans"]] or None
            item["video"] = None
            if ex.get("video") is not None:
                _write_video(audio_dir / f"{iid}_video.npz", ex["video"])
                item["video"] = f"{rel}/{iid}_video.npz"
            item.update({
                "category": ex["category"], "label": ex["label"],
                "target_present": bool(ex["target_present"]), "num_sources": int(ex["num_sources"]),
                "subset": subset, "source_labels": list(ex.get("source_labels") or []),
                "split": split, "seed": int(seed),
            })
            if subset == "main":
                kind = ex["prompt_kind"]
                if kind in ("span", "text+span") and not item["spans"]:
                    kind = "text"  # no activity spans could be drawn: fall back to text
                items.append({**item, "prompt_kind": kind})
            else:
                for kind in pair_kinds:
                    if kind in ("span", "text+span") and not item["spans"]:
                        continue
                    items.append({**item, "id": f"{iid}.{kind}", "prompt_kind": kind})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as f:
        for item in items:
            f.write(json.dumps(item) + "\n")
    os.replace(tmp, out)
    logger.info("wrote %d items to %s (audio in %s)", len(items), out, audio_dir)
    return items


def main(argv: Sequence[str] | None = None) -> int:
    """``promptsep bench manifest --corpus DIR --split test --n N --seed S --out items.jsonl``."""
    p = argparse.ArgumentParser(prog="promptsep bench manifest",
                                description="Write a benchmark manifest of prompted mixtures from a corpus split.")
    p.add_argument("--corpus", required=True, help="corpus root (with manifest.jsonl)")
    p.add_argument("--out", required=True, help="manifest to write (audio goes to <stem>_audio/ beside it)")
    p.add_argument("--split", default="test", choices=list(EVAL_SPLITS),
                   help="held-out corpus split: test / valid hold out whole sources, test_in / valid_in are "
                        "in-distribution (benchmarks never use train)")
    p.add_argument("--n", type=int, default=200, help="main items (--min-sources..--max-sources sources, mixed prompt kinds)")
    p.add_argument("--n-pairs", type=int, default=None, help="2-source different-category items (default n/2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--segment-s", type=float, default=4.0)
    p.add_argument("--min-sources", type=int, default=2)
    p.add_argument("--max-sources", type=int, default=4)
    p.add_argument("--absent-prob", type=float, default=0.1)
    p.add_argument("--video", action="store_true", help="also draw video prompts (main items)")
    p.add_argument("--pair-kinds", nargs="+", default=["text", "span", "text+span"],
                   choices=["text", "span", "text+span"],
                   help="prompt kinds of every 2-source pair (one item per kind, same stems)")
    args = p.parse_args(argv)
    try:
        items = build_manifest(args.corpus, args.out, args.split, args.n, args.seed, args.n_pairs, args.segment_s,
                               args.min_sources, args.max_sources, args.absent_prob, args.video, args.pair_kinds)
    except (InputError, FileNotFoundError, ValueError) as exc:
        print(f"promptsep bench manifest: error: {exc}", flush=True)
        return 2
    kinds: dict[str, int] = {}
    for it in items:
        kinds[it["prompt_kind"]] = kinds.get(it["prompt_kind"], 0) + 1
    print(json.dumps({"manifest": str(args.out), "items": len(items), "prompt_kinds": kinds}))
    return 0


__all__ = ["EVAL_SPLITS", "LoadedItem", "PROMPT_KINDS", "build_manifest", "load_manifest", "load_video_npz", "read_item"]
