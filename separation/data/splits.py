"""Splits of the corpus: source-disjoint evaluation plus in-distribution (group-disjoint) sets.

Split names: ``train``; ``valid`` and ``test`` hold out whole *sources* (see
:func:`assign_source_splits`; model selection uses ``valid``); ``valid_in`` and ``test_in``
hold out groups (files, scores, voices) of the training sources only, the in-distribution
figures reported beside the source-disjoint ones.

Source rule (:func:`assign_source_splits`, deterministic in the sources, their labels and
clip counts, and the seed):

1. A source is a Debian package, or a finer unit where one package holds several
   recordings' origins (a Hydrogen drum kit, a game's voice family, an espeak-ng voice
   variant, a music21 composer rendered with one soundfont). Every clip of a source goes
   to the same side.
2. A source may leave ``train`` only if every one of its labels keeps at least one other
   source in ``train``: so each ``valid``/``test`` label has >= 1 training source, and a
   label with a single source can only be ``train``/``valid_in``/``test_in``.
3. ``test`` then ``valid`` take turns picking, among the eligible sources that fit their
   clip budget (``fraction * the clips of the source's category``: every category gets
   held-out sources; a source counts in its clips' majority category), the one adding the
   most labels not yet in that split (the first source of a split and category may take up
   to twice the budget) (ties: ``sha1(f"{seed}:{source}")`` order). Sources adding no new label are taken
   only while the split holds less than half its budget.

Group rule inside the training sources (:func:`assign_group_splits`, below):
``train``/``valid``/``test`` there become ``train``/``valid_in``/``test_in``.

Group rule (deterministic in the set of groups, their labels and the seed; adding or removing
groups of a label can move other groups of that label):

1. Groups are stratified by label (a group with several labels, e.g. the stems of one
   score, goes to one shared "multi-label" stratum). Inside a stratum of ``n`` groups they
   are ranked by ``hash(seed, group)`` and the group at rank ``i`` takes
   ``u = (i + 0.5) / n``: ``u < f_train`` -> train, ``u < f_train + f_valid`` -> valid, else
   test. This gives each label close to the requested proportions. Every clip of a group
   inherits its split, so clips cut from one source file (or stems of one score) never
   straddle splits.
2. Every label keeps at least one train group: if hashing left a label without one, its
   valid/test group with the smallest ``hash(seed + 1, group)`` moves to train (only if
   that does not empty the split it leaves for another label).
3. Every label with at least 3 groups gets at least one test and one valid group: the
   label's train group with the smallest ``hash(seed + 1, group)`` moves there, provided
   every label of that group still has a train group afterwards; failing that, a group
   from the other evaluation split moves, provided it is not the last one there of any
   label with at least 3 groups.

Labels are visited in sorted order. A label with 1 or 2 groups may be train-only.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

SPLITS = ("train", "valid", "test")
#: every split name a manifest can hold: source-disjoint valid/test, in-distribution valid_in/test_in.
ALL_SPLITS = ("train", "valid", "test", "valid_in", "test_in")
IN_DISTRIBUTION = {"train": "train", "valid": "valid_in", "test": "test_in"}


def group_hash(group: str, seed: int = 0) -> float:
    """Uniform number in ``[0, 1)`` from ``sha1(f"{seed}:{group}")``."""
    h = hashlib.sha1(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def base_split(group: str, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Split of a group from its hash alone, ignoring strata (for ad-hoc use)."""
    tr, va, _ = fractions
    u = group_hash(group, seed)
    return "train" if u < tr else ("valid" if u < tr + va else "test")


def assign_group_splits(group_labels: dict[str, Iterable[str]], seed: int = 0,
                        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, str]:
    """Split per group following the module rule.

    Args:
        group_labels: group -> labels of its clips.
        seed: split seed.
        fractions: train/valid/test fractions (normalised).

    Returns:
        group -> ``"train" | "valid" | "test"``.
    """
    total = float(sum(fractions))
    if total <= 0 or any(f < 0 for f in fractions):
        raise ValueError(f"split fractions must be non-negative and not all zero, got {fractions}")
    fr = tuple(f / total for f in fractions)
    glabels = {g: sorted(set(ls)) for g, ls in group_labels.items()}
    # 1. stratified by label: within each stratum groups are ranked by their hash and the
    #    quantile of the rank picks the split (exact proportions, still hash-driven)
    strata: dict[str, list[str]] = defaultdict(list)
    for g, ls in glabels.items():
        strata[ls[0] if len(ls) == 1 else "\x00multi-label"].append(g)
    split = {}
    for members in strata.values():
        members.sort(key=lambda g: (group_hash(g, seed), g))
        n = len(members)
        for i, g in enumerate(members):
            u = (i + 0.5) / n
            split[g] = "train" if u < fr[0] else ("valid" if u < fr[0] + fr[1] else "test")
    by_label: dict[str, list[str]] = defaultdict(list)
    for g, ls in glabels.items():
        for lab in ls:
            by_label[lab].append(g)
    for lab in by_label:
        by_label[lab].sort(key=lambda g: (group_hash(g, seed + 1), g))

    def count(lab: str, s: str) -> int:
        return sum(split[g] == s for g in by_label[lab])

    # 2. at least one train group per label
    for lab in sorted(by_label):
        if count(lab, "train"):
            continue
        for g in by_label[lab]:
            src = split[g]
            if all(count(other, src) > 1 or len(by_label[other]) < 2 for other in glabels[g] if other != lab):
                split[g] = "train"
                break
    # 3. labels with >= 3 groups: at least one test and one valid group
    def can_leave(g: str, src: str) -> bool:
        if src == "train":
            return all(count(other, "train") > 1 for other in glabels[g])
        return all(count(other, src) > 1 or len(by_label[other]) < 3 for other in glabels[g])

    for lab in sorted(by_label):
        if len(by_label[lab]) < 3:
            continue
        for target in ("test", "valid"):
            if count(lab, target) or fr[SPLITS.index(target)] == 0:
                continue
            for src in ("train", "valid" if target == "test" else "test"):
                moved = False
                for g in by_label[lab]:
                    if split[g] == src and can_leave(g, src):
                        split[g] = target
                        moved = True
                        break
                if moved:
                    break
    return split


def assign_splits(rows: list[dict], seed: int = 0,
                  fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> list[dict]:
    """Set ``row["split"]`` on manifest rows (in place) by their ``group``; returns ``rows``."""
    gl: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        gl[r["group"]].add(r["label"])
    split = assign_group_splits(gl, seed, fractions)
    for r in rows:
        r["split"] = split[r["group"]]
    return rows


def assign_source_splits(source_labels: dict[str, dict[str, float]], seed: int = 0,
                         fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                         source_category: dict[str, str] | None = None) -> dict[str, str]:
    """Split per source following the module's source rule.

    Args:
        source_labels: source -> {label: weight (clips)}.
        seed: split seed (tie order).
        fractions: train/valid/test fractions of the clips (budgets of valid and test).
        source_category: source -> category (its clips' majority category). Budgets are
            then per category (``fraction * the category's clips``), so every category
            gets held-out sources; default: one budget for all.

    Returns:
        source -> ``"train" | "valid" | "test"``.
    """
    total_f = float(sum(fractions))
    if total_f <= 0 or any(f < 0 for f in fractions):
        raise ValueError(f"split fractions must be non-negative and not all zero, got {fractions}")
    weight = {s: float(sum(v.values())) for s, v in source_labels.items()}
    cat = {s: (source_category or {}).get(s, "") for s in source_labels}
    cat_total: dict[str, float] = defaultdict(float)
    for s, w in weight.items():
        cat_total[cat[s]] += w
    budget = {(t, c): fractions[i] / total_f * tot for c, tot in cat_total.items()
              for i, t in ((1, "valid"), (2, "test"))}
    n_train: dict[str, int] = defaultdict(int)
    for labs in source_labels.values():
        for lab in labs:
            n_train[lab] += 1
    order = sorted(source_labels, key=lambda s: (group_hash(s, seed), s))
    split = {s: "train" for s in order}
    used = {k: 0.0 for k in budget}
    covered: dict[str, set[str]] = {"valid": set(), "test": set()}
    while True:
        moved = False
        for target in ("test", "valid"):
            best, best_gain = None, -1
            for s in order:
                key = (target, cat[s])
                if split[s] != "train":
                    continue
                # the first source of a split and category may take up to twice the budget
                # (otherwise a category of a few equal sources would get none)
                limit = budget[key] if used[key] > 0 else 2 * budget[key]
                if used[key] + weight[s] > limit:
                    continue
                if any(n_train[lab] < 2 for lab in source_labels[s]):
                    continue
                gain = len(set(source_labels[s]) - covered[target])
                if gain == 0 and used[key] >= 0.5 * budget[key]:
                    continue
                if gain > best_gain:
                    best, best_gain = s, gain
            if best is None:
                continue
            split[best] = target
            used[(target, cat[best])] += weight[best]
            covered[target] |= set(source_labels[best])
            for lab in source_labels[best]:
                n_train[lab] -= 1
            moved = True
        if not moved:
            return split


def assign_all_splits(rows: list[dict], seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                      in_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> list[dict]:
    """Set ``row["split"]`` (one of :data:`ALL_SPLITS`) on manifest rows in place; returns ``rows``.

    Whole sources go to ``valid``/``test`` (:func:`assign_source_splits`, weights = clips,
    budgets per category: a source counts in its clips' majority category);
    the groups of the remaining sources are split into ``train``/``valid_in``/``test_in``
    (:func:`assign_group_splits`).

    Raises:
        ValueError: a group spans several sources.
    """
    src_labels: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    src_cats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    group_src: dict[str, str] = {}
    for r in rows:
        src_labels[r["source"]][r["label"]] += 1.0
        src_cats[r["source"]][str(r.get("category", ""))] += 1
        if group_src.setdefault(r["group"], r["source"]) != r["source"]:
            raise ValueError(f"group {r['group']!r} spans sources {group_src[r['group']]!r} and {r['source']!r}")
    majority = {s: max(sorted(c), key=lambda k: c[k]) for s, c in src_cats.items()}
    ssplit = assign_source_splits({s: dict(v) for s, v in src_labels.items()}, seed, fractions, majority)
    gl: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if ssplit[r["source"]] == "train":
            gl[r["group"]].add(r["label"])
    gsplit = assign_group_splits(gl, seed, in_fractions)
    for r in rows:
        s = ssplit[r["source"]]
        r["split"] = IN_DISTRIBUTION[gsplit[r["group"]]] if s == "train" else s
    return rows
