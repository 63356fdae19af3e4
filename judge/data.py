"""Judge training data: prompted corpus mixtures with candidate estimates of graded quality.

Item ``i`` of :class:`JudgeDataset` is a *group*: one mixture of
:class:`separation.data.mixing.MixtureDataset` (its target, residual and text prompt) and
``per_mixture`` candidate estimates, each with its four reference-based targets
(:func:`judge.targets.reference_targets`, 1..5). Candidate kinds (:data:`KINDS`):

- ``perfect``: the true target (a small random gain, within +-1 dB);
- ``leak``: the target plus the residual leaked at ``leak_db`` (relative to the residual's
  level in the mixture), sometimes only part of the time;
- ``gate``: the target with 1-3 segments (``gate_frac`` of the time in total) removed or
  attenuated by ``gate_atten_db``, with 10 ms ramps;
- ``gain``: the target at ``gain_db``;
- ``lowpass``: the target low-passed at ``lowpass_hz`` (zero-phase Butterworth-shaped FFT filter);
- ``clip``: the target hard-clipped at ``clip_frac`` of its peak;
- ``noise``: the target plus white or pink noise at ``noise_snr_db``;
- ``codec``: the target round-tripped through the codec (needs ``codec``);
- ``wrong_residual``: the residual (every source but the target);
- ``wrong_source``: the target of another mixture (another clip), at the target's level;
- ``silence``: all zeros;
- ``mixture``: the unprocessed mixture;
- ``combo``: two or three of leak / gate / lowpass / noise / clip / gain in a row;
- ``separator``: the output of a separator release (``separator`` given: one or several
  releases): per candidate a release, steps from ``separator_steps``, the release's own
  sampler, a refinement from ``separator_refine`` (``wiener``, or ``none``: the raw generated
  stem) and a seed;
- ``wrong_prompt``: the same, but the separator is prompted with another label's text (a
  label of another source in the mixture when there is one): what a wrong separation looks like.

The separator candidates of a group are generated in batched calls, one
:meth:`~separation.separator.Separator.separate_batch` per (release, steps) with ``keep_raw``
(so one call gives both the refined and the raw output); the call's seed is drawn with the
group's first candidate of that (release, steps), and its rows get distinct noise.

Every random draw of item ``i`` comes from ``np.random.default_rng([seed, i])`` (and the
mixture from the mixing dataset's own deterministic generator), so items are a pure
function of ``(seed, i)``. Train on the ``train`` split; hold out ``test`` for evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from judge.targets import RECIPE_VERSION, RECIPES, reference_targets

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("perfect", "leak", "gate", "gain", "lowpass", "clip", "noise", "codec", "wrong_residual",
                          "wrong_source", "silence", "mixture", "combo", "separator", "wrong_prompt")
#: Kinds made by running a separator release.
SEPARATOR_KINDS: tuple[str, ...] = ("separator", "wrong_prompt")

DEFAULT_WEIGHTS: dict[str, float] = {
    "perfect": 1.0, "leak": 2.0, "gate": 1.5, "gain": 0.5, "lowpass": 1.0, "clip": 0.75, "noise": 1.0,
    "codec": 0.5, "wrong_residual": 0.75, "wrong_source": 0.5, "silence": 0.5, "mixture": 0.75, "combo": 3.0,
    "separator": 7.0, "wrong_prompt": 2.2,  # together ~40 % of the weight when a separator is given
}


@dataclass
class CandidateConfig:
    """How candidate estimates are degraded.

    Attributes:
        per_mixture: candidates per mixture (``M``; a group's mixture is encoded once).
        weights: kind -> sampling weight (kinds not available, e.g. ``codec`` without a codec,
            are dropped).
        leak_db: level of the leaked residual relative to its level in the mixture (dB).
        gate_frac: share of the time removed by ``gate``.
        gate_atten_db: attenuation of the removed parts (dB; -120 is silence).
        gain_db: gain of ``gain``.
        lowpass_hz: cut-off of ``lowpass``.
        clip_frac: clipping threshold relative to the peak.
        noise_snr_db: target-to-noise ratio of ``noise``.
        separator_steps: steps the separator is run with (one drawn per candidate).
        separator_refine: refinements drawn per separator candidate (``"wiener"`` or ``"none"``).
        grade_recipe: the grading recipe of the candidates' targets (:mod:`judge.targets`: 2, or 3
            whose SIR / SAR ranges start at -20 dB so that grades do not tie at 1).
        anchors: kinds added to every group after the ``per_mixture`` drawn ones (e.g.
            ``("mixture", "silence")``: every group then holds the pairs "separation vs the
            untouched mixture" and "separation vs silence" that the within-group ranking loss
            orders; drawn kinds alone put both in the same group as a separator output rarely).
            Separator kinds cannot be anchors.
    """

    per_mixture: int = 4
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    leak_db: tuple[float, float] = (-40.0, 0.0)
    gate_frac: tuple[float, float] = (0.1, 0.9)
    gate_atten_db: tuple[float, float] = (-120.0, -6.0)
    gain_db: tuple[float, float] = (-15.0, 6.0)
    lowpass_hz: tuple[float, float] = (250.0, 6000.0)
    clip_frac: tuple[float, float] = (0.03, 0.8)
    noise_snr_db: tuple[float, float] = (-5.0, 45.0)
    separator_steps: tuple[int, ...] = (1, 2, 4, 8)
    separator_refine: tuple[str, ...] = ("wiener", "none")
    grade_recipe: int = RECIPE_VERSION
    anchors: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CandidateConfig:
        """Strict constructor from the ``candidates:`` config node: an unknown option or candidate
        kind is a ``ValueError`` naming it; kinds missing from a given ``weights`` get weight 0."""
        from promptsep.release import config_from_dict

        d = dict(d or {})
        cfg = config_from_dict(cls, d, "candidates")
        bad_refine = set(cfg.separator_refine) - {"wiener", "none"}
        if bad_refine or not cfg.separator_refine or not cfg.separator_steps:
            raise ValueError(f"candidates.separator_refine must be a non-empty subset of ['wiener', 'none'] and "
                             f"separator_steps non-empty, got {list(cfg.separator_refine)} / {list(cfg.separator_steps)}")
        if cfg.grade_recipe not in RECIPES:
            raise ValueError(f"candidates.grade_recipe must be one of {list(RECIPES)}, got {cfg.grade_recipe!r}")
        bad_anchor = [k for k in cfg.anchors if k not in KINDS or k in SEPARATOR_KINDS]
        if bad_anchor:
            raise ValueError(f"candidates.anchors must be non-separator candidate kinds, got {bad_anchor}; "
                             f"known: {[k for k in KINDS if k not in SEPARATOR_KINDS]}")
        if "weights" in d:
            bad = set(cfg.weights) - set(KINDS)
            if bad:
                raise ValueError(f"unknown candidate kinds {sorted(bad)}; known: {list(KINDS)}")
            cfg.weights = {**{k: 0.0 for k in KINDS}, **dict(cfg.weights)}
        return cfg


# ------------------------------------------------------------------ degradations
def _rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


def lowpass(x: torch.Tensor, sample_rate: int, cutoff_hz: float, order: int = 4) -> torch.Tensor:
    """Zero-phase low-pass ``[..., N]``: FFT gain ``1 / sqrt(1 + (f / fc)^(2 order))``."""
    n = x.shape[-1]
    spec = torch.fft.rfft(x.double(), n=n)
    f = torch.fft.rfftfreq(n, 1.0 / sample_rate).double()
    h = 1.0 / torch.sqrt(1.0 + (f / cutoff_hz) ** (2 * order))
    return torch.fft.irfft(spec * h, n=n).to(x.dtype)


def gate_mask(n: int, sample_rate: int, frac: float, atten_db: float, rng: np.random.Generator) -> torch.Tensor:
    """``[N]`` gain: 1 except 1-3 segments covering ``frac`` of the time at ``atten_db`` (10 ms ramps)."""
    k = int(rng.integers(1, 4))
    total = int(frac * n)
    lengths = rng.dirichlet(np.ones(k)) * total
    low = 10 ** (atten_db / 20)
    g = np.ones(n)
    for seg in lengths.astype(int):
        if seg <= 0:
            continue
        s = int(rng.integers(0, max(1, n - seg)))
        g[s : s + seg] = low
    ramp = max(1, int(0.01 * sample_rate))
    kernel = np.ones(ramp) / ramp
    g = np.convolve(g, kernel, mode="same")
    return torch.from_numpy(g.astype(np.float32))


def noise_like(x: torch.Tensor, snr_db: float, ref_rms: float, rng: np.random.Generator) -> torch.Tensor:
    """White or pink noise shaped like ``x`` at ``snr_db`` below ``ref_rms``."""
    n = x.shape[-1]
    w = torch.from_numpy(rng.standard_normal(n))
    if rng.random() < 0.5:  # pink: 1/sqrt(f) amplitude
        spec = torch.fft.rfft(w)
        f = torch.arange(spec.shape[-1], dtype=torch.float64).clamp_min(1.0)
        w = torch.fft.irfft(spec / f.sqrt(), n=n)
    w = w / (w.pow(2).mean().sqrt() + 1e-12)
    return (w * ref_rms * 10 ** (-snr_db / 20)).to(x.dtype).reshape(x.shape)


class JudgeDataset(Dataset):
    """Groups of (mixture, candidate estimates, text, targets) from corpus mixtures.

    Args:
        corpus_root: the corpus folder (``manifest.jsonl``).
        split: ``"train"`` for training, ``"valid"``/``"test"`` for validation/evaluation.
        mix_cfg: a :class:`~separation.data.mixing.MixConfig` (default: its defaults).
        cand_cfg: a :class:`CandidateConfig`.
        seed: base seed.
        length: number of groups.
        codec: a codec with a decoder (for ``codec`` candidates), or a codec release path.
        separator: a :class:`~separation.separator.Separator` or a release path, or a list of them
            (``separator`` and ``wrong_prompt`` candidates; one release drawn per candidate).

    Items: ``mixture [1, N]``, ``estimates [M, 1, N]``, ``targets [M, 4]`` (precision, recall,
    faithfulness, overall; 1..5), ``kinds`` (M str), ``text``, ``target_present``, ``label`` and
    ``details`` (M entries: the drawn settings of a separator candidate, ``{"kind", "item",
    "release", "steps", "refine", "seed", "text"}``, else None).
    """

    def __init__(self, corpus_root: str | Path, split: str = "train", mix_cfg: Any = None,
                 cand_cfg: CandidateConfig | None = None, seed: int = 0, length: int = 1000,
                 codec: Any = None, separator: Any = None):
        from separation.data.mixing import MixConfig, MixtureDataset

        self.mix_cfg = mix_cfg if mix_cfg is not None else MixConfig()
        self.mix = MixtureDataset(corpus_root, split, self.mix_cfg, seed=seed, length=max(1, length))
        self.split = split
        self.cand = cand_cfg if cand_cfg is not None else CandidateConfig()
        self.seed = int(seed)
        self.length = int(length)
        self.sample_rate = int(self.mix_cfg.sample_rate)
        self._codec = codec
        if separator is None or isinstance(separator, (str, Path)) or not isinstance(separator, Sequence):
            separator = [] if separator is None else [separator]
        self._separators = list(separator)
        weights = {k: float(self.cand.weights.get(k, 0.0)) for k in KINDS}
        if codec is None:
            weights["codec"] = 0.0
        if not self._separators:
            for k in SEPARATOR_KINDS:
                weights[k] = 0.0
        if sum(weights.values()) <= 0:
            raise ValueError("all candidate kind weights are zero")
        self.kinds = [k for k in KINDS if weights[k] > 0]
        p = np.array([weights[k] for k in self.kinds])
        self.probs = p / p.sum()

    def __len__(self) -> int:
        return self.length

    # lazily loaded heavy helpers (one per worker)
    def _get_codec(self):
        if isinstance(self._codec, (str, Path)):
            from separation.codec import DACVAE

            self._codec = DACVAE.from_pretrained(self._codec).eval()
        return self._codec

    def _get_separator(self, r: int):
        if isinstance(self._separators[r], (str, Path)):
            from separation.separator import Separator

            self._separators[r] = Separator.from_pretrained(self._separators[r])
        return self._separators[r]

    def _separator_spec(self, kind: str, item: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Draw one separator candidate's settings: release, steps, refinement, seed and prompt text."""
        c = self.cand
        spec = {"release": int(rng.integers(len(self._separators))), "steps": int(rng.choice(list(c.separator_steps))),
                "refine": str(rng.choice(list(c.separator_refine))), "seed": int(rng.integers(2**31)),
                "text": item["text"]}
        if kind == "wrong_prompt":
            spec["text"] = self.wrong_text(item, rng)
        return spec

    def wrong_text(self, item: Mapping[str, Any], rng: np.random.Generator) -> str:
        """A prompt for another label: one of the mixture's other sources when there is one, else any label."""
        others = [lab for lab in item.get("source_labels", []) if lab != item["label"]]
        if not others:
            others = [lab for lab in self.mix.labels if lab != item["label"]]
        lab = others[int(rng.integers(len(others)))]
        prompts = self.mix.prompts[lab]
        return prompts[int(rng.integers(len(prompts)))]

    @torch.no_grad()
    def separate(self, item: Mapping[str, Any], specs: Sequence[Mapping[str, Any]]) -> list[torch.Tensor]:
        """Run the separator candidates ``specs`` of one mixture, batched per (release, steps).

        Returns:
            one ``[1, N]`` estimate per spec (the refined or raw target, as the spec says).
        """
        mix, n = item["mixture"], item["target"].shape[-1]
        out: list[torch.Tensor | None] = [None] * len(specs)
        calls: dict[tuple[int, int], list[int]] = {}
        for j, sp in enumerate(specs):
            calls.setdefault((sp["release"], sp["steps"]), []).append(j)
        for (r, steps), rows in calls.items():
            sep = self._get_separator(r)
            res = sep.separate_batch([mix] * len(rows), [self.sample_rate] * len(rows), [specs[j]["text"] for j in rows],
                                     steps=steps, seed=specs[rows[0]]["seed"], refine="wiener", keep_raw=True)
            for j, rr in zip(rows, res):
                x = rr.target if specs[j]["refine"] == "wiener" else rr.raw[0]
                out[j] = x[:, :n].to(mix.dtype)
        return out  # type: ignore[return-value]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.mix[int(i)]
        rng = np.random.default_rng([self.seed, 7, int(i)])
        m = int(self.cand.per_mixture)
        kinds = [self.kinds[int(k)] for k in rng.choice(len(self.kinds), size=m, p=self.probs)]
        ests: list[Any] = []
        specs: dict[int, dict[str, Any]] = {}
        for j, kind in enumerate(kinds):
            if kind in SEPARATOR_KINDS:
                specs[j] = self._separator_spec(kind, item, rng)
                ests.append(None)
            else:
                ests.append(self.candidate(kind, item, rng, int(i)))
        if specs:
            for j, x in zip(specs, self.separate(item, list(specs.values()))):
                ests[j] = x
        # anchors come after the drawn kinds, from their own generator: the drawn candidates are unchanged
        arng = np.random.default_rng([self.seed, 8, int(i)])
        for kind in self.cand.anchors:
            kinds.append(kind)
            ests.append(self.candidate(kind, item, arng, int(i)))
        m = len(kinds)
        est = torch.stack(ests)  # [M, 1, N]
        n = est.shape[-1]
        tgt = item["target"].expand(m, 1, n)
        res = item["residual"].expand(m, 1, n)
        targets = reference_targets(est[:, 0], tgt[:, 0], res[:, 0], self.sample_rate, recipe=self.cand.grade_recipe)
        details = [{"kind": kinds[j], "item": int(i), **specs[j]} if j in specs else None for j in range(m)]
        return {"mixture": item["mixture"], "estimates": est, "targets": targets, "kinds": kinds,
                "text": item["text"], "target_present": bool(item["target_present"]), "label": item["label"],
                "details": details}

    # ------------------------------------------------------------ candidates
    def candidate(self, kind: str, item: Mapping[str, Any], rng: np.random.Generator, index: int) -> torch.Tensor:
        """One ``[1, N]`` candidate estimate of ``kind`` for a mixture item."""
        c = self.cand
        s, r, mix = item["target"], item["residual"], item["mixture"]
        sr = self.sample_rate
        present = bool(item["target_present"])
        ref_rms = _rms(s) if present else _rms(mix)

        def u(lo_hi):
            return float(rng.uniform(*lo_hi))

        if kind == "perfect":
            return s * 10 ** (rng.uniform(-1, 1) / 20)
        if kind == "leak":
            leak = r * 10 ** (u(c.leak_db) / 20)
            if rng.random() < 0.3:
                leak = leak * gate_mask(leak.shape[-1], sr, u((0.2, 0.8)), -120.0, rng)
            return s + leak
        if kind == "gate":
            return s * gate_mask(s.shape[-1], sr, u(c.gate_frac), u(c.gate_atten_db), rng)
        if kind == "gain":
            return s * 10 ** (u(c.gain_db) / 20)
        if kind == "lowpass":
            return lowpass(s, sr, float(np.exp(rng.uniform(*np.log(c.lowpass_hz)))))
        if kind == "clip":
            peak = float(s.abs().max())
            thr = u(c.clip_frac) * peak
            return s.clamp(-thr, thr) if peak > 0 else s.clone()
        if kind == "noise":
            return s + noise_like(s, u(c.noise_snr_db), ref_rms, rng)
        if kind == "codec":
            codec = self._get_codec()
            with torch.no_grad():
                z = codec.encode(s[None].float())
                return codec.decode(z, length=s.shape[-1])[0].to(s.dtype)
        if kind == "wrong_residual":
            return r.clone()
        if kind == "wrong_source":
            other = self.mix[index + 10**7]  # items are pure functions of the index: another mixture
            o = other["target"] if other["target_present"] else other["residual"]
            return o * (ref_rms / (_rms(o) + 1e-9))
        if kind == "silence":
            return torch.zeros_like(s)
        if kind == "mixture":
            return mix.clone()
        if kind == "combo":
            steps = list(rng.choice(["leak", "gate", "lowpass", "noise", "clip", "gain"], size=int(rng.integers(2, 4)),
                                    replace=False))
            x = s.clone()
            if "leak" in steps:
                x = x + r * 10 ** (u(c.leak_db) / 20)
            for st in steps:
                if st == "gate":
                    x = x * gate_mask(x.shape[-1], sr, u(c.gate_frac), u(c.gate_atten_db), rng)
                elif st == "lowpass":
                    x = lowpass(x, sr, float(np.exp(rng.uniform(*np.log(c.lowpass_hz)))))
                elif st == "noise":
                    x = x + noise_like(x, u(c.noise_snr_db), ref_rms, rng)
                elif st == "clip":
                    peak = float(x.abs().max())
                    if peak > 0:
                        thr = u(c.clip_frac) * peak
                        x = x.clamp(-thr, thr)
                elif st == "gain":
                    x = x * 10 ** (u(c.gain_db) / 20)
            return x
        if kind in SEPARATOR_KINDS:
            if not self._separators:
                raise ValueError(f"{kind!r} candidates need a separator release")
            return self.separate(item, [self._separator_spec(kind, item, rng)])[0]
        raise ValueError(f"unknown candidate kind {kind!r}; known: {list(KINDS)}")


def collate_groups(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Flatten groups to pairs: ``mixture``/``estimate`` ``[P, 1, N]`` (the mixture repeated per
    candidate), ``targets [P, 4]``, and ``text``/``kind``/``target_present``/``group`` lists of ``P``."""
    mix, est, tg, texts, kinds, present, group = [], [], [], [], [], [], []
    for g, it in enumerate(items):
        m = it["estimates"].shape[0]
        mix.append(it["mixture"].expand(m, -1, -1))
        est.append(it["estimates"])
        tg.append(it["targets"])
        texts += [it["text"]] * m
        kinds += list(it["kinds"])
        present += [it["target_present"]] * m
        group += [g] * m
    return {"mixture": torch.cat(mix).contiguous(), "estimate": torch.cat(est), "targets": torch.cat(tg),
            "text": texts, "kind": kinds, "target_present": present, "group": group}
