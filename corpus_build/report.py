"""Markdown tables of a built corpus (``python -m corpus_build.report /work/corpus``).

Reads ``corpus_stats.json`` (written by :mod:`corpus_build.build`) and prints the tables
docs/CORPUS.md quotes: hours and clips per category and split, the per-label table
(clips, groups, minutes, sources, training sources, clips per split) and a summary of
sources per label.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from separation.data.splits import ALL_SPLITS


def category_table(stats: dict) -> str:
    """``| category | train | valid | test | valid_in | test_in | total |`` (clips / hours)."""
    head = "| category | " + " | ".join(ALL_SPLITS) + " | total |"
    lines = [head, "|" + " --- |" * (len(ALL_SPLITS) + 2)]
    for cat, v in stats["by_category"].items():
        cells = [f"{v['clips'].get(s, 0)} / {v['hours'].get(s, 0.0):.2f} h" for s in ALL_SPLITS]
        lines.append(f"| {cat} | " + " | ".join(cells) + f" | {v['total_clips']} / {v['total_hours']:.2f} h |")
    tot = [f"{stats['by_split'][s]['clips']} / {stats['by_split'][s]['hours']:.2f} h" for s in ALL_SPLITS]
    lines.append("| all | " + " | ".join(tot) + f" | {stats['clips']} / {stats['hours']:.2f} h |")
    return "\n".join(lines)


def label_table(stats: dict) -> str:
    """One row per label."""
    lines = ["| label | category | clips | groups | min | sources (train) | " + "/".join(ALL_SPLITS) + " |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for lab, v in stats["per_label"].items():
        sp = "/".join(str(v["splits"].get(s, 0)) for s in ALL_SPLITS)
        lines.append(f"| {lab} | {v['category']} | {v['clips']} | {v['groups']} | {60 * v['hours']:.1f} | "
                     f"{len(v['sources'])} ({v.get('train_sources', '?')}) | {sp} |")
    return "\n".join(lines)


def source_summary(stats: dict) -> str:
    """How many labels have 1, 2, 3-4, 5+ sources, and how many are in the source-disjoint test/valid."""
    per = stats["per_label"]
    bins = Counter()
    for v in per.values():
        n = len(v["sources"])
        bins["1" if n == 1 else "2" if n == 2 else "3-4" if n <= 4 else "5+"] += 1
    in_test = sum(1 for v in per.values() if v["splits"].get("test", 0))
    in_valid = sum(1 for v in per.values() if v["splits"].get("valid", 0))
    n_src = len(stats["by_source"])
    return (f"{len(per)} labels, {n_src} sources; labels by number of sources: "
            + ", ".join(f"{k}: {bins[k]}" for k in ("1", "2", "3-4", "5+"))
            + f"; labels in the source-disjoint test: {in_test}, valid: {in_valid}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m corpus_build.report", description=__doc__.splitlines()[0])
    p.add_argument("root", help="corpus folder with corpus_stats.json")
    args = p.parse_args(argv)
    path = Path(args.root) / "corpus_stats.json"
    if not path.is_file():
        print(f"no {path}: build the corpus first (promptsep data build --out {args.root})", file=sys.stderr)
        return 2
    stats = json.loads(path.read_text())
    b = stats.get("build", {})
    print(f"**{stats['clips']} clips, {stats['hours']:.2f} h, {stats['labels']} labels, {stats['groups']} groups, "
          f"{len(stats['by_source'])} sources, {stats.get('size_mb', 0):.0f} MB**"
          + (f", built in {b['seconds'] / 60:.1f} min" if "seconds" in b else "") + "\n")
    print(category_table(stats) + "\n")
    print(source_summary(stats) + "\n")
    print(label_table(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
