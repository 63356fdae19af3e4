"""On-the-fly prompted mixtures from the corpus.

Every item of :class:`MixtureDataset` is a fresh mixture of 1..4 corpus clips with
different labels, one of them the target, plus the prompt that names it (text,
time spans, both, or a masked synthetic video). Mixing rules:

- sources are cropped (or looped) from random offsets and, with probability
  ``p_partial``, placed at a random onset for a random active length, so a source
  does not necessarily sound for the whole segment (what makes span prompts
  informative);
- each source is loudness-normalised (RMS over its active 20 ms frames to
  ``ref_db`` dBFS) and then given a random level in ``level_db``;
- ``mixture`` is the sum of the sources, ``target`` the target source and
  ``residual`` is *defined* as ``mixture - target`` computed in float32, so that
  ``residual == mixture - target`` holds exactly (bit for bit);
- if any of mixture, target or residual peaks above ``peak`` (0.99), all sources
  are scaled by the same factor first;
- with probability ``absent_prob`` the prompt names a label that is not in the
  mixture: ``target`` is zeros, ``residual == mixture`` and ``target_present`` is
  False (such prompts are ``text`` or ``text+span``: only a text can name a sound
  that is not there);
- span prompts come from the target's 20 ms frame activity (:func:`activity_spans`):
  ``'+'`` where the target sounds, ``'-'`` where only the others sound, then 1..3 of
  them are kept at random (:func:`subsample_spans`);
- on ``train`` items (``augment.train_only``), each source can be augmented before it is
  placed (speed, pitch, EQ, band limiting, simulated room reverberation) and the mixture
  can get light coloured noise (part of the residual): :mod:`separation.data.augment`,
  switched per augmentation by :class:`~separation.data.augment.AugmentConfig`
  (``MixConfig.augment``), drawn from a generator of its own (:meth:`MixtureDataset.aug_rng`);
- labels have parent classes (``labels.json`` ``parents``, e.g. violin -> string
  instrument -> music): with probability ``p_parent_prompt`` a train prompt names a parent
  instead, and then no interferer belongs to that parent (the prompt stays unambiguous);
  labels listed in a label's ``excludes`` (``person speaking`` vs ``man speaking``) are
  never mixed with it;
- video prompts are synthetic scenes (:func:`separation.data.av.render_av_scene`)
  whose objects are animated by the sources' loudness, the target's object masked.

Item ``i`` of a ``valid``/``test`` dataset is a pure function of ``(seed, i)``
(``np.random.default_rng([seed, i])``); ``train`` items are a pure function of
``(seed, epoch, i)`` (see :meth:`MixtureDataset.set_epoch`), so runs are
reproducible whatever the number of data-loader workers.
"""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from prompts.span import activity_to_spans
from separation.data.augment import AugmentConfig, SourceAugmenter
from separation.data.av import num_video_frames, render_av_scene
from separation.data.clips import read_manifest

logger = logging.getLogger(__name__)

#: Prompt kinds an item can carry, in the order of the ``p_*`` fields of :class:`MixConfig`.
PROMPT_KINDS: tuple[str, ...] = ("text", "span", "text+span", "video", "text+video")
#: Prompt kinds that carry a video (a synthetic scene).
VIDEO_KINDS: tuple[str, ...] = ("video", "text+video")

#: Default label prompt texts shipped with the package.
DEFAULT_LABELS_PATH = Path(__file__).with_name("labels.json")

Span = tuple[str, float, float]


@dataclass
class MixConfig:
    """How :class:`MixtureDataset` builds mixtures and prompts.

    Attributes:
        sample_rate: output rate in Hz (clips at another rate are resampled on load).
        segment_s: length of every item in seconds (``N = round(segment_s * sample_rate)``).
        min_sources / max_sources: number of sources in a mixture (inclusive range).
        level_db: range of the random per-source level (dB) after loudness normalisation.
        absent_prob: probability that the prompt names a label absent from the mixture.
        p_text / p_span / p_text_span / p_video / p_text_video: probabilities of the prompt
            kinds ``"text"``, ``"span"``, ``"text+span"``, ``"video"``, ``"text+video"``
            (renormalised over the kinds allowed for an item; video kinds need ``video=True``).
        p_same_label: probability that an item is a *same-label scene*: the target and one
            interferer are two different clips of the same label, so text cannot choose between
            them and only the video can; such items always take a video kind (``video`` or
            ``text+video`` by their relative probabilities). Needs ``video=True`` and a target
            present; labels with a single clip fall back to an ordinary item.
        video: render video prompts (synthetic scenes of :mod:`separation.data.av`).
        video_fps / video_size: frame rate and frame size of those scenes.
        p_cross_category: probability that an interferer is drawn from another category
            than the prompted label (when such a label is left).
        p_partial: probability that a source is active for only part of the segment.
        min_active_s: shortest active part of a partially placed source.
        loop_short: loop clips shorter than the active part (else zero-pad them).
        ref_db: RMS level (dBFS, over the active frames) every source is normalised to.
        peak: joint peak guard on mixture, target and residual.
        activity_frame_s / activity_db: frames and threshold (dB re the source's loudest
            frame) of the activity that defines span prompts.
        min_gap_s: gaps in the target's activity shorter than this are filled.
        min_span_s: ``'-'`` spans shorter than this are dropped.
        max_spans: spans kept per prompt: 1..``max_spans`` drawn at random (at least one
            ``'+'`` when the target is present); ``<= 0`` keeps them all.
        cache_mb: per-worker memory budget of the decoded-clip LRU cache.
        p_parent_prompt: probability that a train prompt names a parent class of the label.
        augment: on-the-fly augmentation (:class:`~separation.data.augment.AugmentConfig`;
            a mapping is converted strictly: unknown keys raise).
    """

    sample_rate: int = 16000
    segment_s: float = 4.0
    min_sources: int = 1
    max_sources: int = 4
    level_db: tuple[float, float] = (-10.0, 10.0)
    absent_prob: float = 0.1
    p_text: float = 0.45
    p_span: float = 0.15
    p_text_span: float = 0.3
    p_video: float = 0.1
    p_text_video: float = 0.0
    p_same_label: float = 0.0
    video: bool = False
    video_fps: float = 10.0
    video_size: int = 64
    p_cross_category: float = 0.5
    p_partial: float = 0.5
    min_active_s: float = 0.5
    loop_short: bool = True
    ref_db: float = -20.0
    peak: float = 0.99
    activity_frame_s: float = 0.02
    activity_db: float = -40.0
    min_gap_s: float = 0.1
    min_span_s: float = 0.1
    max_spans: int = 3
    cache_mb: float = 512.0
    p_parent_prompt: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig.from_dict(self.augment)
        elif not isinstance(self.augment, AugmentConfig):
            raise ValueError(f"MixConfig.augment must be an AugmentConfig or a mapping, got {type(self.augment)}")

    def kind_probs(self) -> dict[str, float]:
        """Prompt kind -> probability as configured (before renormalisation)."""
        return {"text": self.p_text, "span": self.p_span, "text+span": self.p_text_span, "video": self.p_video,
                "text+video": self.p_text_video}

    @property
    def num_samples(self) -> int:
        """Samples per item ``N``."""
        return int(round(self.segment_s * self.sample_rate))


def mix_config_from_dict(d: Mapping[str, Any] | None, *, loader_keys: Iterable[str] = (), where: str = "data",
                         **fixed: Any) -> MixConfig:
    """A :class:`MixConfig` from a ``data:`` config mapping, strictly.

    ``prompt_kinds`` (``{kind: probability}``, kinds of :data:`PROMPT_KINDS`) sets the ``p_*``
    fields; ``loader_keys`` are the caller's own keys of the same node (corpus root, batch
    size ...), skipped here; every other key must be a :class:`MixConfig` field (``augment``
    one of :class:`~separation.data.augment.AugmentConfig`), converted by
    :func:`promptsep.release.config_from_dict`.

    Args:
        d: the plain mapping (e.g. ``OmegaConf.to_container(cfg.data, resolve=True)``).
        loader_keys: keys that belong to the caller.
        where: prefix of the key names in error messages.
        **fixed: fields the caller sets whatever the mapping says (e.g. ``sample_rate``).

    Raises:
        promptsep.release.ReleaseError: an unknown key or prompt kind (a ``ValueError`` naming it,
            e.g. ``'data.segmnet_s'``).
    """
    from promptsep.release import ReleaseError, config_from_dict

    skip = set(loader_keys)
    d = {k: v for k, v in dict(d or {}).items() if k not in skip}
    kinds = d.pop("prompt_kinds", None) or {}
    bad = [k for k in kinds if k not in PROMPT_KINDS]
    if bad:
        raise ReleaseError(f"unknown prompt kind {', '.join(repr(f'{where}.prompt_kinds.{k}') for k in bad)}; "
                           f"known kinds: {list(PROMPT_KINDS)}")
    d.update({"p_" + kind.replace("+", "_"): p for kind, p in kinds.items()})
    d.update(fixed)
    return config_from_dict(MixConfig, d, where)


# ----------------------------------------------------------------------- labels
def load_labels(path: str | Path | None = None) -> dict[str, dict]:
    """Read a labels file ``{label: {"category": str, "prompts": [str, ...]}}``.

    Args:
        path: the JSON file (default: ``separation/data/labels.json``).

    Returns:
        The mapping, or ``{}`` if the default file does not exist (yet).

    Raises:
        FileNotFoundError: an explicitly given file does not exist.
        ValueError: the file is not a mapping of label -> object with a ``prompts`` list.
    """
    p = Path(path) if path is not None else DEFAULT_LABELS_PATH
    if not p.is_file():
        if path is not None:
            raise FileNotFoundError(f"labels file not found: {p}")
        return {}
    data = json.loads(p.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a JSON object label -> {{category, prompts}}")
    for label, entry in data.items():
        prompts = entry.get("prompts") if isinstance(entry, dict) else None
        if not isinstance(prompts, list) or not all(isinstance(t, str) and t.strip() for t in prompts):
            raise ValueError(f"{p}: label {label!r} needs a 'prompts' list of non-empty strings")
    return data


# ------------------------------------------------------------------------ spans
def frame_activity(wav: np.ndarray, sample_rate: int, frame_s: float = 0.02, threshold_db: float = -40.0) -> np.ndarray:
    """Frames where a waveform sounds.

    Args:
        wav: ``[N]`` waveform.
        sample_rate: its rate in Hz.
        frame_s: frame length in seconds (non-overlapping frames; the last may be short).
        threshold_db: a frame is active when its RMS is above this many dB re the loudest frame.

    Returns:
        ``[ceil(N / frame)]`` bool (all False for a silent input).
    """
    rms = _frame_rms(np.asarray(wav, dtype=np.float64), max(1, int(round(frame_s * sample_rate))))
    peak = float(rms.max()) if rms.size else 0.0
    if peak <= 1e-7:
        return np.zeros(rms.shape, dtype=bool)
    return rms > peak * 10 ** (threshold_db / 20)


def _frame_rms(wav: np.ndarray, hop: int) -> np.ndarray:
    """RMS of non-overlapping ``hop``-sample frames of ``[N]`` -> ``[ceil(N / hop)]``."""
    n = wav.shape[-1]
    f = max(1, math.ceil(n / hop))
    padded = np.zeros(f * hop, dtype=np.float64)
    padded[:n] = wav
    sq = (padded.reshape(f, hop) ** 2).sum(1)
    count = np.full(f, hop, dtype=np.float64)
    count[-1] = n - (f - 1) * hop if n > 0 else 1
    return np.sqrt(sq / np.maximum(count, 1))


def _fill_gaps(active: np.ndarray, max_gap: int) -> np.ndarray:
    """Set runs of False no longer than ``max_gap`` frames between two True frames to True."""
    out = active.copy()
    idx = np.flatnonzero(active)
    if idx.size < 2 or max_gap <= 0:
        return out
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= max_gap + 1:
            out[a + 1 : b] = True
    return out


def activity_spans(
    target: np.ndarray,
    others: np.ndarray,
    sample_rate: int,
    frame_s: float = 0.02,
    threshold_db: float = -40.0,
    min_gap_s: float = 0.1,
    min_span_s: float = 0.1,
) -> list[Span]:
    """All span prompts of a target: ``'+'`` where it sounds, ``'-'`` where only others sound.

    The target's frame activity (:func:`frame_activity`, re its own loudest frame) has
    gaps shorter than ``min_gap_s`` filled, so ``'+'`` spans cover every active frame.
    ``'-'`` spans are frames where the target is inactive and ``others`` are active,
    at least ``min_span_s`` long. Runs become spans with
    :func:`prompts.span.activity_to_spans`; times are frame edges clipped to the duration.

    Args:
        target: ``[N]`` target waveform (zeros for an absent target: only ``'-'`` spans).
        others: ``[N]`` sum of the other sources.
        sample_rate: rate in Hz.
        frame_s / threshold_db: activity frames and threshold.
        min_gap_s / min_span_s: gap filling of ``'+'`` runs, shortest ``'-'`` span.

    Returns:
        ``[(sign, start_s, end_s)]`` sorted by start, non-overlapping, inside ``[0, N / sample_rate]``.
    """
    n = int(np.asarray(target).shape[-1])
    hop = max(1, int(round(frame_s * sample_rate)))
    frame_rate = sample_rate / hop
    duration = n / sample_rate
    pos = frame_activity(target, sample_rate, frame_s, threshold_db)
    pos = _fill_gaps(pos, int(round(min_gap_s / frame_s)))
    neg = frame_activity(others, sample_rate, frame_s, threshold_db) & ~pos
    spans: list[Span] = list(activity_to_spans(torch.from_numpy(pos), frame_rate, include_negative=False))
    spans += [("-", a, b) for _, a, b in activity_to_spans(torch.from_numpy(neg), frame_rate, min_len_s=min_span_s,
                                                           include_negative=False)]
    spans = [(sign, float(a), float(min(b, duration))) for sign, a, b in spans if a < duration]
    spans.sort(key=lambda s: s[1])
    return spans


def subsample_spans(spans: Sequence[Span], max_spans: int, rng: np.random.Generator) -> list[Span]:
    """Keep 1..``max_spans`` random spans (at least one ``'+'`` if there is one), sorted by start.

    ``max_spans <= 0`` keeps all of them.
    """
    spans = list(spans)
    if max_spans <= 0 or len(spans) <= 1:
        return spans
    k = int(rng.integers(1, min(max_spans, len(spans)) + 1))
    pos = [i for i, s in enumerate(spans) if s[0] == "+"]
    chosen: list[int] = []
    if pos:
        chosen.append(int(pos[int(rng.integers(len(pos)))]))
    rest = [i for i in range(len(spans)) if i not in chosen]
    if k > len(chosen):
        chosen += [int(j) for j in rng.choice(rest, size=k - len(chosen), replace=False)]
    return [spans[i] for i in sorted(chosen)]


# ---------------------------------------------------------------------- dataset
class MixtureDataset(Dataset):
    """Prompted mixtures of corpus clips, made on the fly.

    Args:
        corpus_root: folder with ``manifest.jsonl`` (paths relative to it).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        cfg: mixing configuration.
        seed: base seed; item ``i`` is a function of ``(seed, i)`` (eval splits) or
            ``(seed, epoch, i)`` (train).
        length: number of items per epoch.
        labels_path: labels file (default: ``CORPUS/labels.json`` if present, else
            ``separation/data/labels.json``; labels missing from it use their own name as prompt).

    Raises:
        FileNotFoundError: no manifest, a missing labels file or missing clip files.
        ValueError: the split has fewer than 2 labels, or the configuration is inconsistent.

    Items are dicts: ``mixture``/``target``/``residual`` ``[1, N]`` float32 (``residual ==
    mixture - target`` exactly), ``text`` str, ``spans`` list of ``(sign, start_s, end_s)``,
    ``prompt_kind``, ``use_text``, ``use_span``, ``video`` (``{"frames": [F, 3, H, W],
    "masks": [F, H, W], "fps"}`` for video prompts, else None), ``label``, ``category``,
    ``target_present``, ``num_sources``, ``source_labels`` (labels in the mixture).
    """

    def __init__(self, corpus_root: str | Path, split: str, cfg: MixConfig | None = None, seed: int = 0,
                 length: int = 1000, labels_path: str | Path | None = None):
        self.root = Path(corpus_root)
        self.split = split
        self.cfg = cfg = cfg if cfg is not None else MixConfig()
        self.seed = int(seed)
        self.length = int(length)
        self.epoch = 0
        self.train = split == "train"
        self._check_config()

        rows = read_manifest(self.root, split)
        if not rows:
            raise ValueError(f"the {split!r} split of the corpus at {self.root} has no clips")
        missing = [r["path"] for r in rows if not (self.root / r["path"]).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} clip(s) of the {split!r} split are missing under {self.root}, e.g. {missing[:3]}"
            )
        self.by_label: dict[str, list[dict]] = {}
        for r in rows:
            self.by_label.setdefault(str(r["label"]), []).append(r)
        self.labels = sorted(self.by_label)
        if len(self.labels) < 2:
            raise ValueError(
                f"the {split!r} split of {self.root} has {len(self.labels)} label(s) {self.labels}; "
                "mixing needs at least 2 different labels"
            )

        if labels_path is None and (self.root / "labels.json").is_file():
            labels_path = self.root / "labels.json"
        label_info = load_labels(labels_path)
        unknown = [lab for lab in self.labels if lab not in label_info]
        if unknown:
            logger.warning("%d label(s) have no prompts in the labels file, using their names: %s",
                           len(unknown), unknown[:10])
        self.prompts: dict[str, list[str]] = {}
        self.category: dict[str, str] = {}
        self.parents: dict[str, list[str]] = {}
        self.excludes: dict[str, set[str]] = {}
        for lab in self.labels:
            info = label_info.get(lab, {})
            self.prompts[lab] = list(info.get("prompts") or [lab.replace("_", " ")])
            self.category[lab] = str(info.get("category") or self.by_label[lab][0].get("category", "unknown"))
            self.parents[lab] = [str(p) for p in info.get("parents") or []]
            self.excludes[lab] = {str(x) for x in info.get("excludes") or []}
        for lab in self.labels:  # exclusion is symmetric
            for other in self.excludes[lab]:
                if other in self.excludes:
                    self.excludes[other].add(lab)
        aug = cfg.augment
        on = (aug.any_source() or aug.noise) and (self.train or not aug.train_only)
        self.augmenter = SourceAugmenter(aug, cfg.sample_rate) if on else None

        kinds = cfg.kind_probs()
        if not cfg.video:
            kinds.update({k: 0.0 for k in VIDEO_KINDS})
            if cfg.p_same_label > 0:
                raise ValueError("same-label scenes (p_same_label > 0) need video prompts (MixConfig.video=True)")
        self._kind_probs = kinds
        if cfg.p_same_label > 0 and sum(kinds[k] for k in VIDEO_KINDS) <= 0:
            raise ValueError("same-label scenes (p_same_label > 0) need a video prompt kind with probability > 0")
        if sum(kinds.values()) <= 0:
            raise ValueError("all prompt kind probabilities are zero (video kinds need MixConfig.video=True)")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_bytes = 0

    # ------------------------------------------------------------ basics
    def _check_config(self) -> None:
        c = self.cfg
        if not 1 <= c.min_sources <= c.max_sources:
            raise ValueError(f"need 1 <= min_sources <= max_sources, got {c.min_sources}, {c.max_sources}")
        if c.segment_s <= 0 or c.num_samples < 1:
            raise ValueError(f"segment_s must be positive, got {c.segment_s}")
        if c.level_db[0] > c.level_db[1]:
            raise ValueError(f"level_db must be (low, high), got {c.level_db}")
        probs = [c.absent_prob, c.p_cross_category, c.p_partial, c.p_parent_prompt, c.p_same_label,
                 *c.kind_probs().values()]
        if any(p < 0 for p in probs) or max(c.absent_prob, c.p_cross_category, c.p_partial, c.p_parent_prompt,
                                            c.p_same_label) > 1:
            raise ValueError("MixConfig probabilities must be in [0, 1]")

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of train items (item ``i`` depends on ``(seed, epoch, i)``)."""
        self.epoch = int(epoch)

    def item_rng(self, i: int) -> np.random.Generator:
        """The generator of item ``i``: ``[seed, i]`` for eval splits, ``[seed, epoch, i]`` for train."""
        key = [self.seed, self.epoch, int(i)] if self.train else [self.seed, int(i)]
        return np.random.default_rng(key)

    def aug_rng(self, i: int) -> np.random.Generator:
        """The augmentation generator of item ``i`` (the item key plus a constant): independent
        of :meth:`item_rng`, so switching augmentations leaves clips, crops and prompts alone."""
        key = [self.seed, self.epoch, int(i), 0xA06] if self.train else [self.seed, int(i), 0xA06]
        return np.random.default_rng(key)

    # ------------------------------------------------------------ clips
    def _load(self, row: dict) -> np.ndarray:
        """Decoded mono clip ``[M]`` float32 at ``cfg.sample_rate`` (LRU-cached per worker)."""
        key = row["path"]
        wav = self._cache.get(key)
        if wav is not None:
            self._cache.move_to_end(key)
            return wav
        data, sr = sf.read(str(self.root / key), dtype="float32", always_2d=True)
        wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        if int(sr) != self.cfg.sample_rate:
            from promptsep.audio import resample

            wav = resample(torch.from_numpy(np.ascontiguousarray(wav)), int(sr), self.cfg.sample_rate).numpy()
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        if not np.isfinite(wav).all():
            raise ValueError(f"clip {self.root / key} has non-finite samples")
        self._cache[key] = wav
        self._cache_bytes += wav.nbytes
        budget = self.cfg.cache_mb * 2**20
        while self._cache_bytes > budget and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return wav

    def _take(self, clip: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
        """``[length]`` samples of a clip: a random crop (the loudest of a few tries) or a loop/pad."""
        m = clip.shape[0]
        if m >= length:
            clip_ms = float(np.mean(clip.astype(np.float64) ** 2)) + 1e-12
            best, best_ms = None, -1.0
            for _ in range(4):
                off = int(rng.integers(0, m - length + 1))
                seg = clip[off : off + length]
                ms = float(np.mean(seg.astype(np.float64) ** 2))
                if ms > best_ms:
                    best, best_ms = seg, ms
                if ms >= 0.01 * clip_ms:  # within 20 dB of the clip's mean power
                    break
            return best.astype(np.float64)
        out = np.zeros(length, dtype=np.float64)
        if self.cfg.loop_short:
            phase = int(rng.integers(m))
            reps = math.ceil((length + phase) / m)
            out[:] = np.tile(clip, reps)[phase : phase + length]
        else:
            start = int(rng.integers(0, length - m + 1))
            out[start : start + m] = clip
        return out

    def _place(self, clip: np.ndarray, rng: np.random.Generator, arng: np.random.Generator | None = None,
               applied: list[str] | None = None) -> np.ndarray:
        """A ``[N]`` source: the clip's active part (augmented when ``arng`` is given) placed at a
        random onset, loudness-normalised. Names of the augmentations applied go to ``applied``."""
        c = self.cfg
        n = c.num_samples
        min_active = min(n, max(1, int(round(c.min_active_s * c.sample_rate))))
        if rng.random() < c.p_partial and min_active < n:
            active = int(rng.integers(min_active, n + 1))
            onset = int(rng.integers(0, n - active + 1))
        else:
            active, onset = n, 0
        aug = self.augmenter if arng is not None else None
        factor = aug.speed_factor(arng) if aug is not None else 1.0
        take = max(1, int(round(active * factor)))
        seg = self._take(clip, take, rng)
        if aug is not None:
            if take != active:
                seg = aug.apply_speed(seg, active)
                if applied is not None:
                    applied.append("speed")
            seg, names = aug.source(seg, arng)
            if applied is not None:
                applied += names
        fade = min(active // 4, int(0.005 * c.sample_rate))
        if fade > 1:
            ramp = np.linspace(0.0, 1.0, fade)
            if onset > 0:
                seg[:fade] *= ramp
            if onset + active < n:
                seg[-fade:] *= ramp[::-1]
        src = np.zeros(n, dtype=np.float64)
        src[onset : onset + active] = seg
        hop = max(1, int(round(c.activity_frame_s * c.sample_rate)))
        rms = _frame_rms(src, hop)
        peak = float(rms.max())
        if peak <= 1e-7:
            return src
        act = rms > peak * 10 ** (c.activity_db / 20)
        level = math.sqrt(float(np.mean(rms[act] ** 2)))
        return src * (10 ** (c.ref_db / 20) / level)

    # ------------------------------------------------------------ sampling
    def _pick_labels(self, prompt_label: str, count: int, rng: np.random.Generator,
                     exclude: set[str] | None = None) -> list[str]:
        """Up to ``count`` distinct labels other than ``prompt_label`` and ``exclude``, preferring other categories."""
        cat = self.category[prompt_label]
        left = [lab for lab in self.labels if lab != prompt_label and lab not in (exclude or ())]
        out: list[str] = []
        for _ in range(count):
            if not left:
                break
            cross = [lab for lab in left if self.category[lab] != cat]
            pool = cross if cross and rng.random() < self.cfg.p_cross_category else left
            lab = pool[int(rng.integers(len(pool)))]
            out.append(lab)
            left = [x for x in left if x != lab and x not in self.excludes.get(lab, ())]
        return out

    def _pick_kind(self, present: bool, rng: np.random.Generator, video_only: bool = False) -> str:
        probs = dict(self._kind_probs)
        if video_only:
            probs = {k: (p if k in VIDEO_KINDS else 0.0) for k, p in probs.items()}
        if not present:  # a prompt for an absent sound must name it: text kinds only
            probs = {k: (p if k in ("text", "text+span") else 0.0) for k, p in probs.items()}
            if sum(probs.values()) <= 0:
                return "text"
        kinds = list(probs)
        p = np.array([probs[k] for k in kinds], dtype=np.float64)
        return kinds[int(rng.choice(len(kinds), p=p / p.sum()))]

    def __getitem__(self, i: int) -> dict[str, Any]:
        c = self.cfg
        rng = self.item_rng(i)
        n_labels = len(self.labels)
        present = not (rng.random() < c.absent_prob)
        cap = n_labels if present else n_labels - 1
        k = int(rng.integers(min(c.min_sources, cap), min(c.max_sources, cap) + 1))
        label = self.labels[int(rng.integers(n_labels))]
        parent = None  # drawn only when enabled, so p_parent_prompt=0 leaves the stream unchanged
        if present and self.train and c.p_parent_prompt > 0 and self.parents[label] \
                and rng.random() < c.p_parent_prompt:
            parent = self.parents[label][int(rng.integers(len(self.parents[label])))]
        exclude = set(self.excludes[label])
        if parent is not None:
            exclude |= {lab for lab in self.labels if lab == parent or parent in self.parents[lab]}
        # drawn only when enabled, so p_same_label=0 leaves every other configuration's stream unchanged
        same = (c.p_same_label > 0 and present and k >= 2 and len(self.by_label[label]) >= 2
                and rng.random() < c.p_same_label)
        others = self._pick_labels(label, (k - 1 if present else k) - int(same), rng, exclude)
        if same:
            others = [label] + others
        if not present and not others:  # nothing left to mix: make the target present after all
            present = True
        mix_labels = ([label] if present else []) + others

        arng = self.aug_rng(i) if self.augmenter is not None else None
        applied: list[list[str]] = []
        sources = []
        first_row = -1
        for j, lab in enumerate(mix_labels):
            rows = self.by_label[lab]
            r = int(rng.integers(len(rows)))
            if same and j == 1:  # the same-label interferer is another clip than the target's
                r = (first_row + 1 + int(rng.integers(len(rows) - 1))) % len(rows)
            if j == 0:
                first_row = r
            clip = self._load(rows[r])
            gain = 10 ** (rng.uniform(*c.level_db) / 20)
            names: list[str] = []
            sources.append(self._place(clip, rng, arng, names) * gain)
            applied.append(names)
        stack = np.stack(sources)  # [K, N] float64
        mix64 = stack.sum(0)
        noise = self.augmenter.noise(mix64, arng) if arng is not None else None
        if noise is not None:
            mix64 = mix64 + noise
        tgt64 = stack[0] if present else np.zeros_like(mix64)
        peak = max(np.abs(mix64).max(), np.abs(tgt64).max(), np.abs(mix64 - tgt64).max())
        if peak > c.peak:
            stack *= c.peak / peak
            mix64 *= c.peak / peak
            if noise is not None:
                noise *= c.peak / peak
            tgt64 = stack[0] if present else np.zeros_like(mix64)
        mixture = torch.from_numpy(mix64.astype(np.float32))[None]
        target = torch.from_numpy(tgt64.astype(np.float32))[None]
        residual = mixture - target  # exact by definition

        kind = self._pick_kind(present, rng, video_only=same)
        prompts = self.prompts[label]
        if parent is not None:
            text = parent
        else:
            text = prompts[int(rng.integers(len(prompts)))] if self.train else prompts[0]
        spans = activity_spans(tgt64, mix64 - tgt64, c.sample_rate, c.activity_frame_s, c.activity_db,
                               c.min_gap_s, c.min_span_s)
        spans = subsample_spans(spans, c.max_spans, rng)
        video = None
        if kind in VIDEO_KINDS:
            video = render_av_scene([torch.from_numpy(s) for s in stack], 0, c.sample_rate, c.video_fps,
                                    c.video_size, rng)
        return {
            "mixture": mixture,
            "target": target,
            "residual": residual,
            "text": text,
            "spans": spans,
            "prompt_kind": kind,
            "use_text": kind in ("text", "text+span", "text+video"),
            "use_span": kind in ("span", "text+span"),
            "video": video,
            "label": label,
            "category": self.category[label],
            "target_present": present,
            "num_sources": len(mix_labels),
            "source_labels": mix_labels,
            "augmentations": applied + ([["noise"]] if noise is not None else []),
            "prompt_level": "parent" if parent is not None else "label",
            "same_label": bool(same),
        }

    def num_video_frames(self) -> int:
        """Frames ``F = ceil(segment_s * video_fps)`` of the video prompts."""
        return num_video_frames(self.cfg.num_samples, self.cfg.sample_rate, self.cfg.video_fps)


def collate_mixtures(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of :class:`MixtureDataset`.

    Args:
        items: dataset items with ``[1, N]`` audio of a common ``N``.

    Returns:
        ``mixture``/``target``/``residual`` stacked to ``[B, 1, N]``; every other key a
        list of ``B`` values (``video`` entries are None for rows without a video prompt).
    """
    if not items:
        raise ValueError("collate_mixtures got an empty batch")
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        if key in ("mixture", "target", "residual"):
            out[key] = torch.stack(vals)
        else:
            out[key] = vals
    return out


__all__ = [
    "MixConfig",
    "MixtureDataset",
    "collate_mixtures",
    "activity_spans",
    "frame_activity",
    "subsample_spans",
    "load_labels",
    "PROMPT_KINDS",
]
