"""Held-out evaluation of a judge: correlation with the reference-based targets, beside baselines.

On ``groups`` mixtures of a corpus split that the judge never saw in training (``test``
by default; the corpus split is by source group, so no test source is in the train split),
candidate estimates are made exactly as for training (:class:`judge.data.JudgeDataset`,
another seed), their reference targets computed (:mod:`judge.targets`) and, for every
axis, the Pearson (PCC) and Spearman (SRCC) correlations of three scores with the target
are measured in the same run:

- ``judge``: the judge's prediction of that axis;
- ``energy_ratio``: the heuristic ``10 log10(E_estimate / E_mixture)`` (clamped to
  [-60, 10] dB), one score for every axis;
- ``text_audio``: cosine similarity between the joint-embedding vectors of the prompt and
  of the estimate, one score for every axis, from the project's ``clap-tiny`` text-audio
  embedding (``checkpoints/promptsep-clap-tiny``, :mod:`embeddings.clap`, imported
  lazily and only here) when that release exists; otherwise this baseline is reported as
  missing (null) and only the energy heuristic is compared.

It also reports the mean target and prediction per candidate kind and for silent
candidates (target present / absent), and (:func:`silent_probe`) the scores of an all-zero
estimate on mixtures whose target is present and on mixtures whose target is absent. With a
separator release
(:func:`evaluate_reranking`, ``--separator DIR``) it measures the re-ranking gain: the
SI-SDR of ``Separator.separate(..., candidates=K, ranker="judge")`` for K = 1, 4, 8, its
wall time, and an oracle pick among the same candidates. With separator releases
(:func:`evaluate_bars`, ``--bars-separators A,B``) it measures issue 17's bars on their
outputs (several steps, seeds, refined and raw) beside the mixture and silence: PCC with the
grades, SRCC with SI-SDR, same-mixture pair ordering, separations worse than the mixture,
silent and absent cases, and the re-ranking gain at K = 4 against the oracle pick.

``python -m judge.evaluate --checkpoint DIR --corpus ROOT --out DIR [--separator DIR]`` (or
``promptsep judge evaluate ...``) writes ``judge_eval.json`` and ``judge_eval.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from judge.targets import AXES
from promptsep.release import packaged_checkpoint

logger = logging.getLogger(__name__)

DEFAULT_CLAP = packaged_checkpoint("promptsep-clap-tiny")


def _pcc(x: torch.Tensor, y: torch.Tensor) -> float:
    from judge.train import pearson

    return pearson(x, y)


def _srcc(x: torch.Tensor, y: torch.Tensor) -> float:
    from judge.train import spearman

    return spearman(x, y)


def _group_resamples(group_of: torch.Tensor, n_groups: int, samples: int, seed: int) -> list[torch.Tensor]:
    """Index tensors of ``samples`` bootstrap resamples of whole groups (mixtures).

    Args:
        group_of: ``[P]`` group index of every candidate.
        n_groups: number of groups.
        samples: resamples (0: none).
        seed: generator seed.
    """
    draws = _group_draws(n_groups, samples, seed)
    if draws is None:
        return []
    members = [torch.nonzero(group_of == g).reshape(-1) for g in range(n_groups)]
    return [torch.cat([members[int(g)] for g in row]) for row in draws]


def _group_draws(n_groups: int, samples: int, seed: int) -> torch.Tensor | None:
    """``[samples, n_groups]`` group indices of bootstrap resamples of whole groups (None: no resampling)."""
    if samples <= 0 or n_groups < 2:
        return None
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, n_groups, (samples, n_groups), generator=gen)


def _share_ci(hits: torch.Tensor, counts: torch.Tensor, draws: torch.Tensor | None, alpha: float) -> dict[str, Any]:
    """Pooled share ``sum(hits) / sum(counts)`` over groups (``[G]`` each) with a percentile CI
    over bootstrap resamples of the groups (``draws [S, G]``)."""
    hits, counts = hits.double(), counts.double()
    n = float(counts.sum())
    out: dict[str, Any] = {"share": float(hits.sum() / n) if n > 0 else None, "n": int(n), "ci": None}
    if draws is not None and n > 0:
        den = counts[draws].sum(-1)
        vals = (hits[draws].sum(-1) / den)[den > 0]
        if vals.numel():
            out["ci"] = [float(torch.quantile(vals, alpha / 2)), float(torch.quantile(vals, 1 - alpha / 2))]
    return out


def _mean_ci(values: torch.Tensor, draws: torch.Tensor | None, alpha: float) -> dict[str, Any]:
    """Mean of ``[G]`` per-group values with a percentile CI over the same group resamples."""
    v = values.double()
    out: dict[str, Any] = {"mean": float(v.mean()) if v.numel() else None, "ci": None}
    if draws is not None and v.numel():
        m = v[draws].mean(-1)
        out["ci"] = [float(torch.quantile(m, alpha / 2)), float(torch.quantile(m, 1 - alpha / 2))]
    return out


def _corr_ci(x: torch.Tensor, y: torch.Tensor, resamples: Sequence[torch.Tensor], alpha: float) -> dict[str, Any]:
    """PCC and SRCC of ``x`` ``[P]`` with ``y`` ``[P]``, with percentile CIs over ``resamples``."""
    out: dict[str, Any] = {"pcc": _pcc(x, y), "srcc": _srcc(x, y)}
    for key, fn in (("pcc", _pcc), ("srcc", _srcc)):
        vals = [fn(x[idx], y[idx]) for idx in resamples]
        vals = torch.tensor([v for v in vals if v == v], dtype=torch.float64)
        out[f"{key}_ci"] = None if vals.numel() == 0 else [
            float(torch.quantile(vals, alpha / 2)), float(torch.quantile(vals, 1 - alpha / 2))]
    return out


def load_text_audio(path: str | Path | None = None):
    """The project's joint text-audio embedding (``clap-tiny``) or None when it is not available."""
    p = Path(path) if path is not None else DEFAULT_CLAP
    if not (p / "model.safetensors").is_file():
        return None
    try:
        from embeddings.clap import ClapTiny
    except ImportError as exc:  # bench is optional for the judge
        logger.warning("text-audio baseline unavailable: %s", exc)
        return None
    return ClapTiny.from_pretrained(p)


@torch.no_grad()
def text_audio_similarity(clap, estimates: torch.Tensor, texts: Sequence[str], sample_rate: int) -> torch.Tensor:
    """Cosine of joint embeddings ``[P]`` of estimates ``[P, 1, N]`` and texts (0 for silent audio)."""
    from promptsep.audio import resample

    wav = resample(estimates[:, 0].float(), sample_rate, clap.sample_rate)
    a = clap.embed_audio(wav)
    t = clap.embed_text(list(texts))
    sim = (a * t).sum(-1)
    silent = estimates[:, 0].abs().amax(-1) == 0
    return torch.nan_to_num(sim.masked_fill(silent, 0.0), nan=0.0)


@torch.no_grad()
def evaluate_judge(judge, corpus_root: str | Path, split: str = "test", groups: int = 64, seed: int = 1234,
                   mix_cfg: Any = None, cand_cfg: Any = None, codec: Any = None, clap: Any = "auto",
                   progress: bool = True, bootstrap: int = 1000, bootstrap_seed: int = 0,
                   alpha: float = 0.05) -> dict[str, Any]:
    """Correlations of the judge and two baselines with the reference targets on a held-out split.

    Args:
        judge: a :class:`~judge.model.Judge`.
        corpus_root: corpus folder.
        split: corpus split (``"test"``: sources never seen in training).
        groups: mixtures evaluated (each with ``cand_cfg.per_mixture`` candidates).
        seed: data seed.
        mix_cfg / cand_cfg: mixing and candidate settings (defaults: 2 s, 2-4 sources, 6 candidates).
        codec: codec (or release path) for ``codec`` candidates (None: no such candidates).
        clap: a text-audio model, a release path, ``"auto"`` (the shipped ``clap-tiny`` if present) or None.
        bootstrap / bootstrap_seed / alpha: ``1 - alpha`` percentile CIs of every correlation from
            ``bootstrap`` resamples of whole mixtures (the candidates of one mixture stay together);
            0: no CIs.

    Returns:
        ``{"items", "groups", "split", "correlations": {axis: {score: {"pcc", "srcc", "pcc_ci", "srcc_ci"}}},
        "per_kind": {kind: {"n", "target": [4], "judge": [4]}}, "silent": {"target_present" | "target_absent":
        {"n", "target": [4], "judge": [4]}}, "text_audio": str | None, "seconds"}``.
    """
    from tqdm import tqdm

    from judge.data import CandidateConfig, JudgeDataset
    from separation.data.mixing import MixConfig
    from separation.metrics import energy_ratio_db

    if mix_cfg is None:
        mix_cfg = MixConfig(segment_s=2.0, min_sources=2, max_sources=4, p_text=1.0, p_span=0.0, p_text_span=0.0,
                            p_video=0.0)
    cand_cfg = cand_cfg if cand_cfg is not None else CandidateConfig(per_mixture=6)
    if clap == "auto":
        clap = load_text_audio()
    elif isinstance(clap, (str, Path)):
        clap = load_text_audio(clap)
    ds = JudgeDataset(corpus_root, split, mix_cfg, cand_cfg, seed=seed, length=groups, codec=codec)
    judge.eval()
    preds, targets, energy, ta, kinds, present, presence = [], [], [], [], [], [], []
    t0 = time.time()
    for i in tqdm(range(groups), desc=f"judge eval ({split})", disable=not progress):
        it = ds[i]
        est = it["estimates"]
        m = est.shape[0]
        mix = it["mixture"][None].expand(m, -1, -1)
        texts = [it["text"]] * m
        out = judge(mix, est, texts).cpu()
        preds.append(out[:, :4])
        if out.shape[-1] == 5:
            presence.append(out[:, 4])
        targets.append(it["targets"])
        energy.append(energy_ratio_db(est[:, 0], mix[:, 0]).clamp(-60, 10))
        if clap is not None:
            ta.append(text_audio_similarity(clap, est, texts, ds.sample_rate))
        kinds += it["kinds"]
        present += [it["target_present"]] * m
    group_of = torch.cat([torch.full((p.shape[0],), g) for g, p in enumerate(preds)])
    pred, ref, en = torch.cat(preds), torch.cat(targets), torch.cat(energy)
    tav = torch.cat(ta) if ta else None
    resamples = _group_resamples(group_of, len(preds), bootstrap, bootstrap_seed)
    corr: dict[str, dict] = {}
    for a, name in enumerate(AXES):
        row = {"judge": _corr_ci(pred[:, a], ref[:, a], resamples, alpha),
               "energy_ratio": _corr_ci(en, ref[:, a], resamples, alpha),
               "text_audio": None if tav is None else _corr_ci(tav, ref[:, a], resamples, alpha)}
        corr[name] = row
    per_kind: dict[str, dict] = {}
    for k in sorted(set(kinds)):
        idx = torch.tensor([j for j, kk in enumerate(kinds) if kk == k])
        per_kind[k] = {"n": len(idx), "target": [round(float(v), 3) for v in ref[idx].mean(0)],
                       "judge": [round(float(v), 3) for v in pred[idx].mean(0)]}
    # silent candidates: the right answer when the target is absent, the worst one when it is present
    silent: dict[str, dict] = {}
    for case, flag in (("target_present", True), ("target_absent", False)):
        idx = [j for j, (kk, pr) in enumerate(zip(kinds, present)) if kk == "silence" and pr == flag]
        if idx:
            ii = torch.tensor(idx)
            silent[case] = {"n": len(idx), "target": [round(float(v), 3) for v in ref[ii].mean(0)],
                            "judge": [round(float(v), 3) for v in pred[ii].mean(0)]}
    return {
        "split": split, "groups": groups, "items": int(pred.shape[0]), "seed": seed,
        "bootstrap": {"samples": bootstrap, "seed": bootstrap_seed, "alpha": alpha, "unit": "mixture"},
        "present_share": sum(present) / max(1, len(present)),
        "correlations": corr, "per_kind": per_kind, "silent": silent,
        "mae": [round(float(v), 3) for v in (pred - ref).abs().mean(0)],
        "presence_auc": _auc(torch.cat(presence)[torch.tensor(present)], torch.cat(presence)[~torch.tensor(present)])
        if presence else None,
        "text_audio": None if clap is None else "clap-tiny (checkpoints/promptsep-clap-tiny)",
        "seconds": round(time.time() - t0, 1),
    }


@torch.no_grad()
def evaluate_reranking(judge, separator, corpus_root: str | Path, split: str = "test", groups: int = 16,
                       ks: Sequence[int] = (1, 4, 8), steps: int = 8, seed: int = 4321, mix_cfg: Any = None,
                       refine: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Re-ranking gain: SI-SDR of ``Separator.separate(..., candidates=K, ranker="judge")`` for each K.

    On ``groups`` held-out mixtures whose target is present, the separator is run once per K
    with the same seed (candidate 0 is the same noise for every K, so K = 1 is the plain
    output), and the SI-SDR of the kept target against the reference target is measured,
    with the wall time of the call (generation + judge scoring). Beside it, with the same
    candidates, an *oracle* pick (the candidate with the best SI-SDR against the reference:
    the most any ranker can gain) is reported for the largest K.

    Args:
        judge: the :class:`~judge.model.Judge` used as the ranker.
        separator: a :class:`~separation.separator.Separator` (its ``judge`` is set to ``judge``
            for the run and restored after).
        corpus_root / split / groups / seed / mix_cfg: held-out mixtures (text prompts, target present).
        ks: candidate counts compared (1 = no re-ranking).
        steps: sampling steps of the separator.
        refine: passed to ``separate`` when not None (the separator's default otherwise).

    Returns:
        ``{"split", "groups", "steps", "ks": {K: {"si_sdr", "si_sdri", "seconds"}},
        "oracle": {"k", "si_sdr"}, "mixture_si_sdr", "per_item": [...]}`` (SI-SDR in dB, means
        over items; ``si_sdri`` is the improvement over the unprocessed mixture).
    """
    from tqdm import tqdm

    from separation.data.mixing import MixConfig, MixtureDataset
    from separation.metrics import si_sdr

    if mix_cfg is None:
        mix_cfg = MixConfig(segment_s=2.0, min_sources=2, max_sources=4, p_text=1.0, p_span=0.0, p_text_span=0.0,
                            p_video=0.0, absent_prob=0.0)
    ks = sorted({int(k) for k in ks})
    ds = MixtureDataset(corpus_root, split, mix_cfg, seed=seed, length=max(1, groups))
    sr = int(mix_cfg.sample_rate)
    kwargs = {} if refine is None else {"refine": refine}
    old_judge = separator.judge
    separator.judge = judge
    per_item = []
    try:
        for i in tqdm(range(groups), desc=f"re-ranking ({split})", disable=not progress):
            it = ds[i]
            if not it["target_present"]:
                continue
            mix, ref = it["mixture"], it["target"]
            row = {"text": it["text"], "mixture_si_sdr": float(si_sdr(mix, ref).mean())}
            for k in ks:
                t0 = time.perf_counter()
                out = separator.separate(mix, sr, text=it["text"], steps=steps, candidates=k, seed=seed + i,
                                         ranker="judge" if k > 1 else None, **kwargs)
                row[f"k{k}_seconds"] = time.perf_counter() - t0
                row[f"k{k}_si_sdr"] = float(si_sdr(out.target[..., : ref.shape[-1]], ref).mean())
            kmax = ks[-1]
            if kmax > 1:
                best = []

                def oracle(m, cands, rate, spans=None, text=None, _ref=ref, _best=best):
                    v = si_sdr(cands[:, 0, : _ref.shape[-1]].float(), _ref[0, : cands.shape[-1]].float()[None])
                    _best.append(v)
                    return v

                out = separator.separate(mix, sr, text=it["text"], steps=steps, candidates=kmax, seed=seed + i,
                                         ranker=oracle, **kwargs)
                row["oracle_si_sdr"] = float(si_sdr(out.target[..., : ref.shape[-1]], ref).mean())
            per_item.append(row)
    finally:
        separator.judge = old_judge
    n = max(1, len(per_item))

    def mean(key):
        return round(sum(r[key] for r in per_item) / n, 3) if per_item else float("nan")

    mix_mean = mean("mixture_si_sdr")
    res_ks = {}
    for k in ks:
        res_ks[k] = {"si_sdr": mean(f"k{k}_si_sdr"), "si_sdri": round(mean(f"k{k}_si_sdr") - mix_mean, 3),
                     "seconds": mean(f"k{k}_seconds")}
    return {"split": split, "groups": groups, "items": len(per_item), "steps": steps, "ks": res_ks,
            "oracle": {"k": ks[-1], "si_sdr": mean("oracle_si_sdr")} if ks[-1] > 1 and per_item else None,
            "mixture_si_sdr": mix_mean, "per_item": per_item}


def reranking_table(r: dict[str, Any]) -> str:
    """The re-ranking result as markdown."""
    base = r["ks"][min(r["ks"])]
    lines = [f"Re-ranking with the judge on {r['items']} held-out `{r['split']}` mixtures ({r['steps']} steps; "
             f"mixture SI-SDR {r['mixture_si_sdr']:+.2f} dB):", "",
             "| K | SI-SDR (dB) | SI-SDRi (dB) | gain over K=1 (dB) | seconds / item |", "| --- | --- | --- | --- | --- |"]
    for k, v in r["ks"].items():
        lines.append(f"| {k} | {v['si_sdr']:+.2f} | {v['si_sdri']:+.2f} | {v['si_sdr'] - base['si_sdr']:+.2f} | "
                     f"{v['seconds']:.2f} |")
    if r.get("oracle"):
        lines.append(f"| {r['oracle']['k']} (oracle pick) | {r['oracle']['si_sdr']:+.2f} | "
                     f"{r['oracle']['si_sdr'] - r['mixture_si_sdr']:+.2f} | "
                     f"{r['oracle']['si_sdr'] - base['si_sdr']:+.2f} | - |")
    return "\n".join(lines) + "\n"


@torch.no_grad()
def silent_probe(judge, corpus_root: str | Path, split: str = "test", groups: int = 32, seed: int = 999,
                 mix_cfg: Any = None) -> dict[str, Any]:
    """Scores of an all-zero estimate on ``groups`` held-out mixtures whose prompted target is
    present and on ``groups`` whose target is absent (the prompt names a label not in the mix).

    The reference targets (:mod:`judge.targets`) are 5/1/5/1 (precision, recall,
    faithfulness, overall) when the target is present and 5/5/5/5 when it is absent.

    Returns:
        ``{"target_present" | "target_absent": {"n", "target": [4], "judge_mean": [4],
        "judge_std": [4]}, "overall_auc"}`` where ``overall_auc`` is the probability that the
        judge's overall for silence on an absent-target mixture exceeds that on a present one
        (1: always told apart, 0.5: chance).
    """
    import dataclasses

    from judge.targets import reference_targets
    from separation.data.mixing import MixConfig, MixtureDataset

    if mix_cfg is None:
        mix_cfg = MixConfig(segment_s=2.0, min_sources=2, max_sources=4, p_text=1.0, p_span=0.0, p_text_span=0.0,
                            p_video=0.0)
    out: dict[str, Any] = {}
    overall: dict[str, torch.Tensor] = {}
    judge.eval()
    for case, absent in (("target_present", 0.0), ("target_absent", 1.0)):
        ds = MixtureDataset(corpus_root, split, dataclasses.replace(mix_cfg, absent_prob=absent), seed=seed,
                            length=max(1, groups))
        preds, refs = [], []
        for i in range(groups):
            it = ds[i]
            mix = it["mixture"][None]
            z = torch.zeros_like(mix)
            preds.append(judge(mix, z, [it["text"]]).cpu()[0, :4])
            refs.append(reference_targets(z[:, 0], it["target"], it["residual"], int(mix_cfg.sample_rate))[0])
        p, r = torch.stack(preds), torch.stack(refs)
        overall[case] = p[:, 3]
        out[case] = {"n": groups, "target": [round(float(v), 3) for v in r.mean(0)],
                     "judge_mean": [round(float(v), 3) for v in p.mean(0)],
                     "judge_std": [round(float(v), 3) for v in p.std(0)] if groups > 1 else [0.0] * 4}
    out["overall_auc"] = _auc(overall["target_absent"], overall["target_present"])
    return out


def _auc(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """P(a > b) over all pairs of ``a [n]`` and ``b [m]``, ties counted half (None when either is empty)."""
    if a.numel() == 0 or b.numel() == 0:
        return None
    return round(float(((a[:, None] > b[None]).float() + 0.5 * (a[:, None] == b[None]).float()).mean()), 3)


# ------------------------------------------------------------------ issue-17 bars
@torch.no_grad()
def separator_outputs(separator, items: Sequence[dict[str, Any]], steps: Sequence[int] = (4, 1),
                      seeds: Sequence[int] = (0, 1), sample_rate: int = 16000, batch: int = 8,
                      prompts: Sequence[Sequence[str]] | None = None) -> list[list[dict[str, Any]]]:
    """Outputs of one separator release for each mixture: every steps x seed, refined (Wiener) and raw.

    One :meth:`~separation.separator.Separator.separate_batch` call per (steps, seed) and block
    of ``batch`` mixtures (the release's own sampler; ``keep_raw`` gives the raw output of the
    same call).

    Args:
        prompts: per mixture, the texts the separator is prompted with, the ``i``-th seed with
            ``prompts[item][i % len]`` (prompt-variant candidates); None: every seed gets the item's text.

    Returns:
        per mixture, a list of ``{"estimate": [1, N], "steps", "seed", "refine", "text"}`` in the
        order steps, seed, refine (``wiener`` then ``none``).
    """
    out: list[list[dict[str, Any]]] = [[] for _ in items]
    for st in steps:
        for i, sd in enumerate(seeds):
            for s in range(0, len(items), batch):
                block = items[s : s + batch]
                texts = [it["text"] if prompts is None else prompts[s + j][i % len(prompts[s + j])]
                         for j, it in enumerate(block)]
                res = separator.separate_batch([it["mixture"] for it in block], [sample_rate] * len(block),
                                               texts, steps=int(st), seed=int(sd), refine="wiener", keep_raw=True)
                for j, (it, r) in enumerate(zip(block, res)):
                    n = it["mixture"].shape[-1]
                    for refine, x in (("wiener", r.target), ("none", r.raw[0])):
                        out[s + j].append({"estimate": x[:, :n].float(), "steps": int(st), "seed": int(sd),
                                           "refine": refine, "text": texts[j]})
    return out


def _ordered_right(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """1 where ``pred`` orders a pair like ``truth`` (``[...]`` differences), 0.5 on a predicted tie, else 0."""
    return torch.where(pred == 0, torch.full_like(pred, 0.5), ((pred > 0) == (truth > 0)).double())


@torch.no_grad()
def evaluate_bars(judge, separators: dict[str, Any], corpus_root: str | Path, split: str = "test", groups: int = 48,
                  seed: int = 2024, absent_share: float = 0.2, steps: Sequence[int] = (4, 1),
                  seeds: Sequence[int] = (0, 1), segment_s: float = 2.0, min_diff_db: float = 1.0,
                  bootstrap: int = 1000, bootstrap_seed: int = 0, alpha: float = 0.05,
                  progress: bool = True, grade_recipe: int | None = None,
                  variants: bool = False, memo: dict | None = None) -> dict[str, Any]:
    """Issue 17's bars on ``groups`` held-out mixtures (2-3 sources, text prompts, ``absent_share``
    of the prompts naming an absent sound).

    Candidates per mixture: the outputs of every separator release at every ``steps`` x
    ``seeds``, refined and raw (:func:`separator_outputs`), the mixture itself and silence.
    Every candidate gets its reference grades (:func:`judge.targets.reference_targets`), its
    SI-SDR against the target (present targets) and the judge's scores. Reported, each with a
    ``1 - alpha`` percentile CI from ``bootstrap`` resamples of whole mixtures:

    - ``a_pcc``: PCC (and SRCC) of the judge's overall with the overall grade, all candidates;
    - ``b_srcc_si_sdr``: SRCC (and PCC) of the overall with SI-SDR over separator outputs (present);
    - ``c_pairs``: share of same-mixture pairs of separator outputs with ``|dSI-SDR| >= min_diff_db``
      that the overall orders like SI-SDR (a predicted tie counts half);
    - ``d_worse_than_mixture``: share of separator outputs with SI-SDR below the mixture's that
      score below the mixture;
    - ``e_silent_present``: share of present-target mixtures (with at least one separator output of
      SI-SDRi > 0) where silence scores below every such output; ``e_absent``: share of
      absent-target mixtures where silence scores above the mixture; ``e_silent_absent`` both pooled;
    - ``f_rerank``: per release, on the ``len(steps) x len(seeds)`` refined outputs as the K
      candidates (K = 1: the first, i.e. ``steps[0]``, seed ``seeds[0]``): SI-SDRi of K = 1, of
      the judge's pick and of the oracle pick (best SI-SDR), the judge's gain over K = 1 and its
      share of the oracle's gain (``sum judge gain / sum oracle gain``).

    Args:
        judge: a :class:`~judge.model.Judge`.
        separators: ``{name: Separator}`` releases.
        corpus_root / split / groups / seed: the held-out mixtures.
        absent_share: probability that a prompt names an absent sound.
        steps / seeds: sampler steps and seeds of the separator outputs.
        segment_s: mixture length.
        min_diff_db: SI-SDR difference that makes a pair in ``c_pairs``.
        bootstrap / bootstrap_seed / alpha: the CIs.
        grade_recipe: the grading recipe of the grades (None: :data:`judge.targets.RECIPE_VERSION`).
        variants: prompt-variant candidates: the ``i``-th seed prompts the separator with the
            ``i``-th of :meth:`separation.prompt_variants.PromptVariants.variants` (the item's text,
            then its label's other prompts, cycling), so the K candidates differ by prompt as well as noise; the judge still scores
            every candidate against the item's own text (what the user asked for).
        memo: a dict that keeps the separator outputs between calls with the same mixtures and
            settings (scoring several judges on one set of candidates); None: computed each call.

    Returns:
        the figures above, ``grade_ceiling`` (figures (b)-(f) with the grades as the score), plus
        ``{"split", "groups", "present", "candidates", "grade_recipe", "seconds"}``.
    """
    import dataclasses

    from tqdm import tqdm

    from judge.targets import RECIPE_VERSION, reference_targets
    from separation.data.mixing import MixConfig, MixtureDataset
    from separation.metrics import si_sdr

    recipe = RECIPE_VERSION if grade_recipe is None else int(grade_recipe)
    t0 = time.time()
    cfg = MixConfig(segment_s=segment_s, min_sources=2, max_sources=3, p_text=1.0, p_span=0.0, p_text_span=0.0,
                    p_video=0.0)
    ds = MixtureDataset(corpus_root, split, dataclasses.replace(cfg, absent_prob=float(absent_share)), seed=seed,
                        length=max(1, groups))
    sr = int(cfg.sample_rate)
    items = [ds[i] for i in range(groups)]
    if variants:  # the lookup the Separator's candidates use: the whole label table, not the split's labels
        from separation.prompt_variants import PromptVariants

        labels_file = Path(corpus_root) / "labels.json"
        table = PromptVariants.from_file(labels_file if labels_file.is_file() else None)
        prompts = [table.variants(it["text"]) for it in items]
    else:
        prompts = None
    outs = {}
    for name, sep in separators.items():
        key = (name, id(sep), str(corpus_root), split, groups, seed, float(absent_share), tuple(steps), tuple(seeds),
               float(segment_s), bool(variants))
        if memo is not None and key in memo:
            outs[name] = memo[key]
            continue
        outs[name] = separator_outputs(sep, items, steps, seeds, sr, prompts=prompts)
        if memo is not None:
            memo[key] = outs[name]
    judge.eval()
    rows: list[dict[str, Any]] = []  # one per candidate
    for g, it in enumerate(tqdm(items, desc=f"judge bars ({split})", disable=not progress)):
        cands = [{"kind": "separator", "release": name, **o} for name in outs for o in outs[name][g]]
        cands += [{"kind": "mixture", "estimate": it["mixture"].float()},
                  {"kind": "silence", "estimate": torch.zeros_like(it["mixture"]).float()}]
        est = torch.stack([c["estimate"] for c in cands])  # [M, 1, N]
        m = est.shape[0]
        tgt, res = it["target"].expand(m, -1), it["residual"].expand(m, -1)
        grades = reference_targets(est[:, 0], tgt, res, sr, recipe=recipe)
        scores = judge(it["mixture"][None].expand(m, -1, -1).float(), est, [it["text"]] * m).cpu()
        present = bool(it["target_present"])
        sis = si_sdr(est[:, 0].float(), tgt.float()) if present else torch.full((m,), float("nan"))
        for j, c in enumerate(cands):
            rows.append({"group": g, "kind": c["kind"], "release": c.get("release"), "steps": c.get("steps"), "text": c.get("text"),
                         "seed": c.get("seed"), "refine": c.get("refine"), "present": present,
                         "grade": float(grades[j, 3]), "overall": float(scores[j, 3]),
                         "presence": float(scores[j, 4]) if scores.shape[-1] == 5 else None, "si_sdr": float(sis[j])})
    group_of = torch.tensor([r["group"] for r in rows])
    overall = torch.tensor([r["overall"] for r in rows], dtype=torch.float64)
    grade = torch.tensor([r["grade"] for r in rows], dtype=torch.float64)
    result: dict[str, Any] = {"split": split, "groups": groups, "present": sum(it["target_present"] for it in items),
                              "candidates": len(rows), "releases": list(separators), "steps": list(steps),
                              "grade_recipe": recipe, "candidates_from": "prompt variants x seeds" if variants else "seeds",
                              "seeds": list(seeds), "bootstrap": {"samples": bootstrap, "alpha": alpha, "unit": "mixture"}}
    result["a_pcc"] = _corr_ci(overall, grade, _group_resamples(group_of, groups, bootstrap, bootstrap_seed), alpha)
    si = torch.tensor([r["si_sdr"] for r in rows], dtype=torch.float64)
    result.update(_ranking_figures(overall, si, rows, items, list(outs), groups, min_diff_db, bootstrap,
                                   bootstrap_seed, alpha, len(steps) * len(seeds)))
    # The same figures with the reference grades in place of the judge's scores: what a judge that
    # predicted its training targets exactly would reach (a ceiling set by the grading recipe).
    result["grade_ceiling"] = _ranking_figures(grade, si, rows, items, list(outs), groups, min_diff_db, bootstrap,
                                               bootstrap_seed, alpha, len(steps) * len(seeds))
    result["seconds"] = round(time.time() - t0, 1)
    return result


def _ranking_figures(overall: torch.Tensor, si: torch.Tensor, rows: list[dict[str, Any]], items: list[dict],
                     releases: list[str], groups: int, min_diff_db: float, bootstrap: int, bootstrap_seed: int,
                     alpha: float, k_candidates: int) -> dict[str, Any]:
    """Figures (b)-(f) of :func:`evaluate_bars` for one score ``overall [M]`` of the candidates ``rows``.

    Args:
        overall: the score that ranks the candidates (the judge's overall, or the grades).
        si: SI-SDR of each candidate against the target ``[M]`` (NaN when the target is absent).
        rows / items: the candidates (with ``group``, ``kind``, ``release``, ``refine``, ``present``)
            and the mixtures.
        releases: the separator releases in the candidates.
        groups / min_diff_db / bootstrap / bootstrap_seed / alpha: as :func:`evaluate_bars`.
        k_candidates: candidates per release in the re-ranking figure.
    """
    result: dict[str, Any] = {}
    group_of = torch.tensor([r["group"] for r in rows])
    draws = _group_draws(groups, bootstrap, bootstrap_seed)
    sep_idx = [j for j, r in enumerate(rows) if r["kind"] == "separator" and r["present"]]
    if len(sep_idx) >= 2:
        ii = torch.tensor(sep_idx)
        result["b_srcc_si_sdr"] = _corr_ci(overall[ii], si[ii], _group_resamples(group_of[ii], groups, bootstrap,
                                                                                   bootstrap_seed), alpha)
    hits = {k: torch.zeros(groups, dtype=torch.float64) for k in ("c", "d", "e_p", "e_a")}
    counts = {k: torch.zeros(groups, dtype=torch.float64) for k in hits}
    rerank: dict[str, dict[str, torch.Tensor]] = {name: {"k1": [], "judge": [], "oracle": []} for name in releases}
    for g, it in enumerate(items):
        idx = [j for j, r in enumerate(rows) if r["group"] == g]
        sep = [j for j in idx if rows[j]["kind"] == "separator"]
        mix_j = next(j for j in idx if rows[j]["kind"] == "mixture")
        sil_j = next(j for j in idx if rows[j]["kind"] == "silence")
        if not it["target_present"]:
            hits["e_a"][g] = 1.0 if overall[sil_j] > overall[mix_j] else (0.5 if overall[sil_j] == overall[mix_j] else 0.0)
            counts["e_a"][g] = 1.0
            continue
        s = torch.tensor(sep)
        d_si = si[s][:, None] - si[s][None, :]
        d_o = overall[s][:, None] - overall[s][None, :]
        sel = torch.triu(d_si.abs() >= min_diff_db, diagonal=1)
        hits["c"][g] = _ordered_right(d_o[sel], d_si[sel]).sum()
        counts["c"][g] = float(sel.sum())
        worse = s[si[s] < si[mix_j]]
        hits["d"][g] = _ordered_right(overall[mix_j] - overall[worse], torch.ones(len(worse), dtype=torch.float64)).sum()
        counts["d"][g] = float(len(worse))
        good = s[si[s] - si[mix_j] > 0]
        if len(good):
            counts["e_p"][g] = 1.0
            hits["e_p"][g] = float(bool((overall[sil_j] < overall[good]).all()))
        for name in releases:
            k4 = [j for j in sep if rows[j]["release"] == name and rows[j]["refine"] == "wiener"]
            kk = torch.tensor(k4)
            pick = kk[int(torch.argmax(overall[kk]))]
            best = kk[int(torch.argmax(si[kk]))]
            for key, j in (("k1", kk[0]), ("judge", pick), ("oracle", best)):
                rerank[name][key].append(float(si[j] - si[mix_j]))
    result["c_pairs"] = _share_ci(hits["c"], counts["c"], draws, alpha)
    result["d_worse_than_mixture"] = _share_ci(hits["d"], counts["d"], draws, alpha)
    result["e_silent_present"] = _share_ci(hits["e_p"], counts["e_p"], draws, alpha)
    result["e_absent"] = _share_ci(hits["e_a"], counts["e_a"], draws, alpha)
    result["e_silent_absent"] = _share_ci(hits["e_p"] + hits["e_a"], counts["e_p"] + counts["e_a"], draws, alpha)
    f = {}
    for name, r in rerank.items():
        if not r["k1"]:
            continue
        k1, jp, orc = (torch.tensor(r[key], dtype=torch.float64) for key in ("k1", "judge", "oracle"))
        pdraws = _group_draws(len(k1), bootstrap, bootstrap_seed)
        f[name] = {"k": k_candidates, "n": len(k1), "k1_si_sdri": _mean_ci(k1, pdraws, alpha),
                   "judge_si_sdri": _mean_ci(jp, pdraws, alpha), "oracle_si_sdri": _mean_ci(orc, pdraws, alpha),
                   "judge_gain_db": _mean_ci(jp - k1, pdraws, alpha), "oracle_gain_db": _mean_ci(orc - k1, pdraws, alpha),
                   "oracle_share": {**_share_ci(jp - k1, orc - k1, pdraws, alpha), "n": len(k1)}}
    result["f_rerank"] = f
    return result


def _ci_text(v: dict[str, Any] | None, key: str, pct: bool = False) -> str:
    if not v or v.get(key) is None:
        return "n/a"
    k = 100.0 if pct else 1.0
    ci = v.get("ci") or v.get(f"{key}_ci")
    unit = " %" if pct else ""
    return f"{k * v[key]:.{0 if pct else 2}f}{unit}" + (f" [{k * ci[0]:.{0 if pct else 2}f}, {k * ci[1]:.{0 if pct else 2}f}]" if ci else "")


def trained_recipe(checkpoint: str | Path | None) -> int:
    """The grading recipe a judge release was trained on (its ``train_result.json``), else the default
    :data:`judge.targets.RECIPE_VERSION` (releases from before the record, e.g. the shipped one)."""
    from judge.targets import RECIPE_VERSION

    path = Path(checkpoint) / "train_result.json" if checkpoint else None
    if path is not None and path.is_file():
        try:
            return int(json.loads(path.read_text()).get("grade_recipe", RECIPE_VERSION))
        except (ValueError, TypeError, AttributeError):
            return RECIPE_VERSION
    return RECIPE_VERSION


def bars_table(r: dict[str, Any]) -> str:
    """The :func:`evaluate_bars` result as markdown: the judge's figures and, beside them, the same
    figures with the reference grades as the score (``grade_ceiling``: a judge that predicted its
    grades exactly)."""
    ceil = r.get("grade_ceiling") or {}

    def row(label: str, key: str, field: str, pct: bool, bar: str, n: bool = True) -> str:
        v = r.get(key)
        count = f" (n={v['n']})" if n and v and "n" in v else ""
        return f"| {label}{count} | {_ci_text(v, field, pct)} | {_ci_text(ceil.get(key), field, pct)} | {bar} |"

    lines = [f"Issue-17 bars on `{r['split']}`: {r['groups']} mixtures ({r['present']} with the target present), "
             f"{r['candidates']} candidates; releases {', '.join(r['releases'])}, steps {r['steps']}, seeds "
             f"{r['seeds']}{' (each seed with its own prompt variant)' if r.get('candidates_from', 'seeds') != 'seeds' else ''}, refined and raw (95 % CIs: bootstrap over mixtures); grading recipe "
             f"{r.get('grade_recipe', 2)}. Column \"grades\": the same figure with the reference grades as the "
             "score (what a judge that predicted its grades exactly would reach).", "",
             "| figure | judge | grades | bar |", "| --- | --- | --- | --- |",
             f"| (a) PCC overall vs grade | {_ci_text(r['a_pcc'], 'pcc')} | 1 | >= 0.8 |",
             row("(b) SRCC overall vs SI-SDR (separator outputs)", "b_srcc_si_sdr", "srcc", False, ">= 0.7", False),
             row("(c) same-mixture pairs, dSI-SDR >= 1 dB, ordered right", "c_pairs", "share", True, ">= 75 %"),
             row("(d) worse than the mixture scored below it", "d_worse_than_mixture", "share", True, ">= 75 %"),
             row("(e) silence below every output with SI-SDRi > 0, target present", "e_silent_present", "share", True,
                 ">= 90 %"),
             row("(e) silence above the mixture, target absent", "e_absent", "share", True, ">= 90 %")]
    for name, f in r["f_rerank"].items():
        g = (ceil.get("f_rerank") or {}).get(name, {})
        lines += [f"| (f) {name}: K={f['k']} pick gain over K=1, dB SI-SDRi (n={f['n']}) | "
                  f"{_ci_text(f['judge_gain_db'], 'mean')} (oracle {_ci_text(f['oracle_gain_db'], 'mean')}) | "
                  f"{_ci_text(g.get('judge_gain_db'), 'mean')} | >= +0.5 |",
                  f"| (f) {name}: share of the oracle gain | {_ci_text(f['oracle_share'], 'share', True)} | "
                  f"{_ci_text(g.get('oracle_share'), 'share', True)} | >= 60 % |"]
    return "\n".join(lines) + "\n"


def _fmt(v: dict | None, key: str) -> str:
    if v is None or v.get(key) is None or v[key] != v[key]:
        return "n/a"
    ci = v.get(f"{key}_ci")
    return f"{v[key]:+.3f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")


#: Human names of the corpus splits (the source-disjoint split first).
SPLIT_NAMES = {"test": "test (source-disjoint)", "test_in": "test_in (in-distribution)",
               "valid": "valid (source-disjoint)", "valid_in": "valid_in (in-distribution)"}


def side_by_side_table(results: dict[str, dict[str, Any]]) -> str:
    """Judge correlations (PCC and SRCC with CIs) of several splits side by side, as markdown.

    Args:
        results: ``{split: evaluate_judge(...) result}`` in column order.
    """
    splits = list(results)
    head = " | ".join(f"{SPLIT_NAMES.get(sp, sp)} PCC | {SPLIT_NAMES.get(sp, sp)} SRCC" for sp in splits)
    lines = ["Judge vs its reference-based grades, side by side (95 % CIs: bootstrap over mixtures):", "",
             "| axis | " + head + " |", "| --- |" + " --- | --- |" * len(splits)]
    axes = list(next(iter(results.values()))["correlations"]) if splits else []
    for name in axes:
        cells = []
        for sp in splits:
            row = results[sp]["correlations"].get(name, {}).get("judge")
            cells += [_fmt(row, "pcc"), _fmt(row, "srcc")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| split | mixtures | candidates | target present |", "| --- | --- | --- | --- |"]
    for sp in splits:
        r = results[sp]
        lines.append(f"| {SPLIT_NAMES.get(sp, sp)} | {r['groups']} | {r['items']} | {100 * r['present_share']:.0f} % |")
    if all(results[sp].get("silent_probe") for sp in splits):
        lines += ["", "Silent-estimate probe, judge overall (target present / absent; 1.0 / 5.0 is right):", "",
                  "| split | present | absent | P(absent > present) |", "| --- | --- | --- | --- |"]
        for sp in splits:
            p = results[sp]["silent_probe"]
            lines.append(f"| {SPLIT_NAMES.get(sp, sp)} | {p['target_present']['judge_mean'][3]:.2f} | "
                         f"{p['target_absent']['judge_mean'][3]:.2f} | {p['overall_auc']:.3f} |")
    return "\n".join(lines) + "\n"


def markdown_table(result: dict[str, Any]) -> str:
    """The correlation table (and per-kind means) as markdown."""
    lines = [
        f"Held-out `{result['split']}` split: {result['groups']} mixtures, {result['items']} candidates "
        f"(target present in {100 * result['present_share']:.0f} %).",
        "",
        "| axis | judge PCC | judge SRCC | energy-ratio PCC | energy-ratio SRCC | text-audio PCC | text-audio SRCC |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in result["correlations"].items():
        lines.append(f"| {name} | {_fmt(row['judge'], 'pcc')} | {_fmt(row['judge'], 'srcc')} | "
                     f"{_fmt(row['energy_ratio'], 'pcc')} | {_fmt(row['energy_ratio'], 'srcc')} | "
                     f"{_fmt(row['text_audio'], 'pcc')} | {_fmt(row['text_audio'], 'srcc')} |")
    ta = result.get("text_audio")
    lines += ["", f"Text-audio baseline: {ta or 'not available (no joint text-audio embedding release found)'}.",
              "", "Mean scores per candidate kind (target / judge; precision, recall, faithfulness, overall):", "",
              "| kind | n | target | judge |", "| --- | --- | --- | --- |"]
    lines += _target_judge_rows(result["per_kind"].items())
    if result.get("silent"):
        lines += ["", "Silent (all-zero) candidates (target / judge; precision, recall, faithfulness, overall):", "",
                  "| case | n | target | judge |", "| --- | --- | --- | --- |"]
        lines += _target_judge_rows((case.replace("_", " "), v) for case, v in result["silent"].items())
    if result.get("silent_probe"):
        sp = result["silent_probe"]
        lines += ["", "Silent-estimate probe: an all-zero estimate scored on held-out mixtures whose target is present / "
                  "absent (precision, recall, faithfulness, overall):", "",
                  "| case | n | target | judge mean | judge std |", "| --- | --- | --- | --- | --- |"]
        for case in ("target_present", "target_absent"):
            v = sp[case]
            lines.append(f"| {case.replace('_', ' ')} | {v['n']} | {' '.join(f'{x:.2f}' for x in v['target'])} | "
                         f"{' '.join(f'{x:.2f}' for x in v['judge_mean'])} | "
                         f"{' '.join(f'{x:.2f}' for x in v['judge_std'])} |")
        lines += ["", f"P(overall of silence, target absent > target present) = {sp['overall_auc']:.3f}."]
    if result.get("reranking"):
        lines += ["", reranking_table(result["reranking"]).rstrip("\n")]
    if result.get("bars"):
        lines += ["", bars_table(result["bars"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


def _target_judge_rows(groups) -> list[str]:
    """Markdown rows ``| name | n | target | judge |`` (four axes each) of ``(name, stats)`` pairs."""
    rows = []
    for name, v in groups:
        t = " ".join(f"{x:.2f}" for x in v["target"])
        j = " ".join(f"{x:.2f}" for x in v["judge"])
        rows.append(f"| {name} | {v['n']} | {t} | {j} |")
    return rows


def write_report(result: dict[str, Any], out_dir: str | Path, name: str = "judge_eval") -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j = out / f"{name}.json"
    j.write_text(json.dumps(result, indent=2))
    m = out / f"{name}.md"
    m.write_text(markdown_table(result))
    return j, m


def write_side_by_side(results: dict[str, dict[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``judge_eval_<split>.json/.md`` per split and the side-by-side ``judge_eval.json/.md``."""
    out = Path(out_dir)
    parts = [markdown_table(r) for r in results.values()]
    for sp, r in results.items():
        write_report(r, out, f"judge_eval_{sp}")
    j = out / "judge_eval.json"
    j.write_text(json.dumps({"splits": list(results), "results": results}, indent=2))
    m = out / "judge_eval.md"
    m.write_text(side_by_side_table(results) + "".join(f"\n## `{sp}`\n\n{t}" for sp, t in zip(results, parts)))
    return j, m


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m judge.evaluate --checkpoint DIR [--corpus ROOT] [--groups N] [--out DIR]``."""
    import os

    p = argparse.ArgumentParser(prog="promptsep judge evaluate",
                                description="Correlate a judge with reference targets on held-out mixtures.")
    p.add_argument("--checkpoint", default=str(packaged_checkpoint("promptsep-judge-tiny")))
    p.add_argument("--corpus", default=os.environ.get("PROMPTSEP_CORPUS", "/work/corpus"))
    p.add_argument("--split", default="test",
                   help="held-out corpus split, or several comma-separated to report side by side "
                        "(e.g. test,test_in: source-disjoint and in-distribution)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of mixtures for CIs (0: none)")
    p.add_argument("--groups", type=int, default=64)
    p.add_argument("--per-mixture", type=int, default=6)
    p.add_argument("--segment-s", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--codec", default=None, help="codec release for 'codec' candidates (default: the judge's codec)")
    p.add_argument("--clap", default=None, help="joint text-audio embedding release (default: the shipped clap-tiny)")
    p.add_argument("--silent-groups", type=int, default=32,
                   help="mixtures per case (target present / absent) of the silent-estimate probe (0: skip)")
    p.add_argument("--separator", default=None,
                   help="separator release: also measure the re-ranking gain (SI-SDR with --rerank-k candidates)")
    p.add_argument("--rerank-k", default="1,4,8", help="candidate counts for the re-ranking measurement")
    p.add_argument("--rerank-groups", type=int, default=16)
    p.add_argument("--rerank-steps", type=int, default=8)
    p.add_argument("--bars-separators", default=None,
                   help="comma-separated separator releases: also measure issue 17's bars (pairs, mixture, "
                        "silence, re-ranking at K = steps x seeds) on their outputs")
    p.add_argument("--bars-groups", type=int, default=48, help="mixtures of the bars evaluation")
    p.add_argument("--bars-absent", type=float, default=0.2, help="share of absent-target prompts in the bars evaluation")
    p.add_argument("--bars-steps", default="4,1", help="separator steps of the bars evaluation (the first is K = 1)")
    p.add_argument("--bars-seeds", type=int, default=2, help="separator seeds per steps value in the bars evaluation")
    p.add_argument("--bars-variants", action="store_true",
                   help="bars candidates from prompt variants: the i-th seed prompts the separator with the i-th "
                        "prompt of the label (the item's text first); the judge scores against the item's text")
    p.add_argument("--grade-recipe", type=int, default=None,
                   help="grading recipe (judge.targets) of the grades, in the correlations and the bars (default: "
                        "the recipe recorded in the release's train_result.json, else judge.targets.RECIPE_VERSION)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/judge_eval")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from judge.data import CandidateConfig
    from judge.model import Judge
    from judge.targets import RECIPES
    from separation.data.mixing import MixConfig

    try:
        judge = Judge.from_pretrained(args.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        print(f"promptsep judge evaluate: error: {exc}", file=sys.stderr)
        return 2
    codec = args.codec or judge.cfg.codec_path
    mix_cfg = MixConfig(segment_s=args.segment_s, min_sources=2, max_sources=4, p_text=1.0, p_span=0.0,
                        p_text_span=0.0, p_video=0.0)
    recipe = args.grade_recipe if args.grade_recipe is not None else trained_recipe(args.checkpoint)
    if recipe not in RECIPES:
        print(f"promptsep judge evaluate: error: --grade-recipe must be one of {list(RECIPES)}, got {recipe}",
              file=sys.stderr)
        return 2
    cand = CandidateConfig(per_mixture=args.per_mixture, grade_recipe=recipe)
    if codec is None:
        cand.weights["codec"] = 0.0
    splits = [sp.strip() for sp in args.split.split(",") if sp.strip()]
    if not splits or "train" in splits or len(set(splits)) != len(splits):
        print(f"promptsep judge evaluate: error: --split needs distinct held-out splits, got {args.split!r}",
              file=sys.stderr)
        return 2
    sep = None
    if args.separator:
        from separation.separator import Separator

        try:
            sep = Separator.from_pretrained(args.separator)
        except (FileNotFoundError, ValueError) as exc:
            print(f"promptsep judge evaluate: error: {exc}", file=sys.stderr)
            return 2
    bar_seps: dict[str, Any] = {}
    if args.bars_separators:
        from separation.separator import Separator

        for path in [x.strip() for x in args.bars_separators.split(",") if x.strip()]:
            try:
                bar_seps[Path(path).name] = Separator.from_pretrained(path)
            except (FileNotFoundError, ValueError) as exc:
                print(f"promptsep judge evaluate: error: {exc}", file=sys.stderr)
                return 2
    results: dict[str, dict[str, Any]] = {}
    for split in splits:
        try:
            result = evaluate_judge(judge, args.corpus, split, args.groups, args.seed, mix_cfg, cand, codec=codec,
                                    clap=args.clap or "auto", bootstrap=args.bootstrap)
        except ValueError as exc:  # an empty or unknown split
            print(f"promptsep judge evaluate: error: {exc}", file=sys.stderr)
            return 2
        result["checkpoint"] = str(args.checkpoint)
        if args.silent_groups > 0:
            result["silent_probe"] = silent_probe(judge, args.corpus, split, args.silent_groups, args.seed + 2,
                                                  mix_cfg)
        if sep is not None:
            ks = [int(k) for k in args.rerank_k.split(",") if k.strip()]
            result["reranking"] = evaluate_reranking(judge, sep, args.corpus, split, args.rerank_groups, ks,
                                                     steps=args.rerank_steps, seed=args.seed + 1)
            result["reranking"]["separator"] = str(args.separator)
        if bar_seps:
            result["bars"] = evaluate_bars(judge, bar_seps, args.corpus, split, args.bars_groups, seed=args.seed + 3,
                                           absent_share=args.bars_absent,
                                           steps=[int(x) for x in args.bars_steps.split(",") if x.strip()],
                                           seeds=list(range(args.bars_seeds)), segment_s=args.segment_s,
                                           bootstrap=args.bootstrap, grade_recipe=recipe,
                                           variants=args.bars_variants)
        results[split] = result
    if len(results) == 1:
        j, m = write_report(results[splits[0]], args.out)
    else:
        j, m = write_side_by_side(results, args.out)
    print(m.read_text())
    print(f"wrote {j} and {m}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
