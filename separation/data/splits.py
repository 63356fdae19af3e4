"""Group-level train/valid/test splits of the corpus.

Rule (deterministic in the set of groups, their labels and the seed; adding or removing
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
