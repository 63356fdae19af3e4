"""Benchmark items: clean reference stems, separated stems and mixtures from the corpus.

- :func:`make_mixture_items`: test-split mixtures from
  :class:`separation.data.mixing.MixtureDataset` with a fixed seed (item ``i`` is a pure
  function of ``(seed, i)``); only items whose prompted target is present are kept. The
  reference stem is the dataset's ``target``, the mixture is ``mixture``, the prompt is
  the label's text prompt (``labels.json``; whatever prompt kind the dataset drew, the
  benchmark separates from text).
- :func:`separate_items`: runs a :class:`separation.separator.Separator` (a release folder)
  or the sanity-check pseudo-separator ``oracle:LEAK`` (``reference + LEAK * (mixture -
  reference)``: LEAK=0 is perfect separation, 1 is the mixture) on the mixtures; separated
  stems are cached on disk by (separator weights, mixture, prompt, steps, seed).
- :func:`load_clean_clips`: the clean clips of a split (zero-shot and retrieval on
  unmixed audio).
- :func:`make_long_recordings`: long recordings made of several clips of one label, for
  the segment-length x aggregation study.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from bench.embedding.cache import array_hash, file_hash

logger = logging.getLogger(__name__)

CONDITIONS: tuple[str, ...] = ("reference", "separated", "mixture")


@dataclass
class BenchItems:
    """Aligned stems of the benchmark items (one entry per item in every list).

    Attributes:
        sample_rate: rate of every waveform.
        reference / separated / mixture: ``[N]`` float32 waveforms (``separated`` may be None).
        labels / categories / texts / ids: per-item target label, its category, the text
            prompt used for separation, and a stable item id.
    """

    sample_rate: int
    reference: list[torch.Tensor]
    mixture: list[torch.Tensor]
    labels: list[str]
    categories: list[str]
    texts: list[str]
    ids: list[str]
    separated: list[torch.Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.reference)

    def conditions(self) -> dict[str, list[torch.Tensor]]:
        """Condition name -> waveforms (``separated`` only when present)."""
        out = {"reference": self.reference}
        if self.separated is not None:
            out["separated"] = self.separated
        out["mixture"] = self.mixture
        return out


def label_prompts(corpus_root: str | Path, labels: Sequence[str]) -> dict[str, list[str]]:
    """Prompt texts per label: ``CORPUS/labels.json`` if present, else the package's labels file,
    else the label name itself."""
    from separation.data.mixing import load_labels

    root = Path(corpus_root)
    info = load_labels(root / "labels.json") if (root / "labels.json").is_file() else load_labels()
    return {lab: list((info.get(lab) or {}).get("prompts") or [lab.replace("_", " ")]) for lab in labels}


def _peek_label(ds, i: int) -> str | None:
    """The target label item ``i`` of a MixtureDataset will have, from its first random draws
    (mirrors ``MixtureDataset.__getitem__``); only a hint to skip items cheaply - every kept
    item is checked after it is built."""
    try:
        c = ds.cfg
        rng = ds.item_rng(i)
        n_labels = len(ds.labels)
        present = not (rng.random() < c.absent_prob)
        cap = n_labels if present else n_labels - 1
        rng.integers(min(c.min_sources, cap), min(c.max_sources, cap) + 1)
        return ds.labels[int(rng.integers(n_labels))]
    except Exception:  # pragma: no cover - internals changed: build every item
        return None


def split_categories(corpus_root: str | Path, split: str) -> list[str]:
    """Sorted categories of the labels of a split (manifest ``category`` field)."""
    from separation.data.clips import read_manifest

    return sorted({str(r.get("category", "unknown")) for r in read_manifest(Path(corpus_root), split)})


def make_mixture_items(corpus_root: str | Path, split: str = "test", n_items: int = 200, seed: int = 1234,
                       mix: Mapping[str, Any] | None = None, max_tries: int | None = None,
                       categories: Sequence[str] | None = None, progress: bool = True,
                       stratify: bool = False) -> BenchItems:
    """Draw ``n_items`` mixtures with a present target from the ``split`` of the corpus.

    Args:
        corpus_root: corpus folder (``manifest.jsonl``).
        split: corpus split (the benchmark uses ``test``).
        n_items: items to keep.
        seed: dataset seed; item ``i`` is a pure function of ``(seed, i)``.
        mix: :class:`~separation.data.mixing.MixConfig` fields (others are ignored).
        max_tries: dataset indices to try at most (default ``4 * n_items``, ``200 *`` with ``categories``).
        categories: keep only items whose target is of these categories (e.g. ``["speech"]``).
        stratify: split ``n_items`` evenly over the target categories (those of ``categories``,
            else every category of the split): the dataset draws target labels uniformly, so a
            category with few labels (speech, music) would otherwise get a handful of items.
            Each category's items are the first of the seed's stream whose target is of it.
    """
    if stratify:
        cats_all = list(categories) if categories else split_categories(corpus_root, split)
        parts = []
        for j, cat in enumerate(cats_all):
            n_c = n_items // len(cats_all) + (1 if j < n_items % len(cats_all) else 0)
            if n_c > 0:
                parts.append(make_mixture_items(corpus_root, split, n_c, seed, mix, max_tries, [cat], progress))
        first = parts[0]
        out = BenchItems(first.sample_rate, [], [], [], [], [], [], info=dict(first.info))
        for p in parts:
            for name in ("reference", "mixture", "labels", "categories", "texts", "ids"):
                getattr(out, name).extend(getattr(p, name))
        out.info["categories"] = cats_all
        out.info["stratified"] = True
        return out

    from separation.data.mixing import MixtureDataset, mix_config_from_dict

    cfg = mix_config_from_dict(mix, where="items.mix", video=False)  # strict: a misspelt key is named
    tries = int(max_tries or (200 if categories else 4) * n_items)
    keep = set(categories) if categories else None
    ds = MixtureDataset(corpus_root, split, cfg, seed=seed, length=tries)
    ref, mixture, labels, cats, texts, ids = [], [], [], [], [], []
    from tqdm.auto import tqdm

    desc = f"{split} mixtures" + (f" ({', '.join(sorted(keep))})" if keep else "")
    bar = tqdm(total=n_items, desc=desc, leave=False, disable=not progress)
    for i in range(tries):
        if keep is not None:
            peek = _peek_label(ds, i)
            if peek is not None and ds.category[peek] not in keep:
                continue
        item = ds[i]
        if not item["target_present"] or (keep is not None and item["category"] not in keep):
            continue
        ref.append(item["target"][0])
        mixture.append(item["mixture"][0])
        labels.append(str(item["label"]))
        cats.append(str(item["category"]))
        texts.append(ds.prompts[item["label"]][0])
        ids.append(f"{split}:{seed}:{i}")
        bar.update(1)
        if len(ref) >= n_items:
            break
    bar.close()
    if len(ref) < 2:
        raise ValueError(f"only {len(ref)} usable mixtures in the {split!r} split of {corpus_root}")
    return BenchItems(cfg.sample_rate, ref, mixture, labels, cats, texts, ids,
                      info={"split": split, "seed": seed, "mix": dataclasses.asdict(cfg),
                            "categories": sorted(keep) if keep else None})


def _separator_fingerprint(path: Path) -> str:
    """Weights and config (the config holds the release's recommended sampler, which the
    separation uses when ``steps`` or the method are not given)."""
    h = hashlib.sha1(file_hash(path / "model.safetensors").encode())
    if (path / "config.json").is_file():
        h.update(file_hash(path / "config.json").encode())
    return h.hexdigest()[:16]


def separate_items(items: BenchItems, separator: str | None, steps: int = 16, batch_size: int = 8, seed: int = 0,
                   device: str = "cpu", cache_dir: str | Path | None = None, progress: bool = True,
                   refine: str | None = "wiener") -> BenchItems:
    """Fill ``items.separated`` by separating every mixture with its text prompt.

    Args:
        items: benchmark items (mixtures, prompts).
        separator: a Separator release folder, ``"oracle:LEAK"`` (pseudo-separator for
            sanity checks) or None (nothing to do).
        steps: ODE function evaluations of the Separator.
        batch_size: mixtures per ``separate_batch`` call.
        seed: sampler noise seed.
        cache_dir: where separated stems are cached (None: no cache).
        refine: the Separator's ``refine`` mode (``"wiener"``: mixture-consistent soft mask,
            the Separator's default; ``"none"``: raw generated stems); None: the Separator's
            default, for Separators without the argument.

    Returns:
        ``items`` (updated in place) with ``info["separator"]``.
    """
    if separator is None:
        return items
    sep_str = str(separator)
    if sep_str.startswith("oracle:"):
        leak = float(sep_str.split(":", 1)[1])
        items.separated = [r + leak * (m - r) for r, m in zip(items.reference, items.mixture)]
        items.info["separator"] = {"kind": "oracle", "leak": leak}
        return items

    from tqdm.auto import tqdm

    from separation.separator import Separator

    path = Path(sep_str)
    fp = _separator_fingerprint(path) if path.is_dir() else hashlib.sha1(sep_str.encode()).hexdigest()[:16]
    cache = Path(cache_dir) / "separated" / fp if cache_dir is not None else None
    tag = "" if refine is None else f"|refine={refine}"
    keys = [
        hashlib.sha1(f"{array_hash(m, items.sample_rate)}|{t}|{steps}|{seed}{tag}".encode()).hexdigest()
        for m, t in zip(items.mixture, items.texts)
    ]
    out: list[torch.Tensor | None] = [None] * len(items)
    if cache is not None:
        for i, k in enumerate(keys):
            p = cache / f"{k}.npy"
            if p.is_file():
                out[i] = torch.from_numpy(np.load(p, allow_pickle=False))
    todo = [i for i, v in enumerate(out) if v is None]
    t_sep = 0.0
    if todo:
        import time

        sep = Separator.from_pretrained(path, device=device)
        extra = {} if refine is None else {"refine": refine}
        bar = tqdm(total=len(todo), desc="separate", disable=not progress, leave=False)
        for s in range(0, len(todo), batch_size):
            idx = todo[s : s + batch_size]
            t0 = time.perf_counter()
            res = sep.separate_batch([items.mixture[i][None] for i in idx], [items.sample_rate] * len(idx),
                                     [items.texts[i] for i in idx], steps=steps, seed=seed, **extra)
            t_sep += time.perf_counter() - t0
            for i, r in zip(idx, res):
                if r.sample_rate != items.sample_rate:
                    raise ValueError(f"separator returned {r.sample_rate} Hz for {items.sample_rate} Hz input")
                out[i] = r.target[0].float()
                if cache is not None:
                    cache.mkdir(parents=True, exist_ok=True)
                    tmp = cache / f"{keys[i]}.{os.getpid()}.tmp.npy"
                    np.save(tmp, out[i].numpy(), allow_pickle=False)
                    os.replace(tmp, cache / f"{keys[i]}.npy")
            bar.update(len(idx))
        bar.close()
    items.separated = [o for o in out]  # type: ignore[misc]
    items.info["separator"] = {"kind": "separator", "path": str(path), "fingerprint": fp, "steps": steps,
                               "seed": seed, "refine": refine, "separated_now": len(todo), "cached": len(items) - len(todo),
                               "seconds_per_item": t_sep / len(todo) if todo else None}
    return items


def read_group_list(spec: str | Path | Sequence[str] | None) -> set[str]:
    """Group names from a list, or from a text file with one group per line (``#`` comments)."""
    if spec is None:
        return set()
    if isinstance(spec, (str, Path)):
        lines = Path(spec).read_text().splitlines()
        return {ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")}
    return {str(g) for g in spec}


def load_clean_clips(corpus_root: str | Path, split: str = "test", max_seconds: float = 10.0,
                     max_clips: int | None = None, seed: int = 0,
                     exclude_groups: str | Path | Sequence[str] | None = None) -> BenchItems:
    """Clean clips of a split (the first ``max_seconds`` of each), as reference-only items.

    ``exclude_groups`` (a list or a file of group names) drops clips of those groups, e.g. the
    groups an embedding model may have been trained on (``info["excluded"]`` counts them).
    """
    from separation.data.clips import read_manifest

    root = Path(corpus_root)
    rows = read_manifest(root, split)
    excluded = 0
    if exclude_groups is not None:
        drop = read_group_list(exclude_groups)
        kept = [r for r in rows if str(r.get("group")) not in drop]
        excluded = len(rows) - len(kept)
        rows = kept
    if not rows:
        raise ValueError(f"the {split!r} split of {root} is empty")
    if max_clips is not None and len(rows) > max_clips:
        sel = np.random.default_rng(seed).choice(len(rows), size=max_clips, replace=False)
        rows = [rows[i] for i in sorted(sel)]
    rates = {int(r["sample_rate"]) for r in rows}
    if len(rates) != 1:
        raise ValueError(f"clips of {root} have several rates {sorted(rates)}")
    sr = rates.pop()
    wavs, labels, cats, ids = [], [], [], []
    groups = [str(r.get("group", r["id"])) for r in rows]
    for r in rows:
        data, file_sr = sf.read(str(root / r["path"]), dtype="float32", always_2d=True, frames=int(max_seconds * sr))
        wavs.append(torch.from_numpy(np.ascontiguousarray(data.mean(1))))
        labels.append(str(r["label"]))
        cats.append(str(r.get("category", "unknown")))
        ids.append(str(r["id"]))
    prompts = label_prompts(root, sorted(set(labels)))
    texts = [prompts[lab][0] for lab in labels]
    return BenchItems(sr, wavs, wavs, labels, cats, texts, ids,
                      info={"split": split, "clean_clips": True, "excluded": excluded, "groups": groups})


def make_long_recordings(corpus_root: str | Path, split: str = "test", duration_s: float = 20.0,
                         per_label: int = 2, max_labels: int | None = 24, min_clips_per_label: int = 1,
                         seed: int = 0, distractor_fraction: float = 0.0, clip_s: float = 2.0,
                         ) -> tuple[list[torch.Tensor], list[str], list[str], int]:
    """Long recordings made by concatenating random clips (with 50 ms fades).

    With ``distractor_fraction`` 0 every clip has the recording's label. Otherwise the
    recording is a sequence of ``clip_s`` pieces, of which a ``distractor_fraction`` share
    (at random positions) are clips of *other* labels: the label is present in only part of
    the recording, so how segment embeddings are aggregated matters (a mean dilutes it, a
    max or an attention pooler can find it).

    Returns:
        ``(wavs [N] each of duration_s, labels, categories, sample_rate)``.
    """
    from separation.data.clips import read_manifest

    root = Path(corpus_root)
    rows = read_manifest(root, split)
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(str(r["label"]), []).append(r)
    labels = sorted(lab for lab, rs in by_label.items() if len(rs) >= min_clips_per_label)
    rng = np.random.default_rng(seed)
    if max_labels is not None and len(labels) > max_labels:
        labels = sorted(rng.choice(labels, size=max_labels, replace=False).tolist())
    sr = int(rows[0]["sample_rate"])
    n = int(round(duration_s * sr))
    fade = int(0.05 * sr)
    wavs, labs, cats = [], [], []
    others = sorted(by_label)
    piece = int(round(clip_s * sr)) if distractor_fraction > 0 else None
    for lab in labels:
        for _ in range(per_label):
            parts, total = [], 0
            n_pieces = max(1, -(-n // piece)) if piece else 0
            n_distract = int(round(distractor_fraction * n_pieces)) if piece else 0
            n_distract = max(0, min(n_distract, n_pieces - 1))  # the label is always somewhere
            distract = set(rng.choice(n_pieces, size=n_distract, replace=False).tolist()) if n_distract else set()
            while total < n:
                src = lab
                if piece and len(parts) in distract and len(others) > 1:
                    src = others[int(rng.integers(len(others)))]
                    while src == lab:
                        src = others[int(rng.integers(len(others)))]
                r = by_label[src][int(rng.integers(len(by_label[src])))]
                data, _ = sf.read(str(root / r["path"]), dtype="float32", always_2d=True)
                x = data.mean(1).copy()
                if piece:  # fixed-length pieces: loop short clips, crop long ones
                    x = np.resize(x, piece)
                if len(x) > 2 * fade:
                    ramp = np.linspace(0, 1, fade, dtype=np.float32)
                    x[:fade] *= ramp
                    x[-fade:] *= ramp[::-1]
                parts.append(x)
                total += len(x)
            wavs.append(torch.from_numpy(np.concatenate(parts)[:n]))
            labs.append(lab)
            cats.append(str(by_label[lab][0].get("category", "unknown")))
    return wavs, labs, cats, sr
