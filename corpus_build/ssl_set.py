"""SSL pretraining set: every usable audio window of the corpus's TRAIN sources, labelled or not.

``python -m corpus_build.ssl_set --corpus /work/corpus --out runs/ssl`` writes

- ``OUT/windows.jsonl``: one row per window ``{"path", "start_s", "dur_s", "source", "package",
  "origin"}`` (``origin``: ``corpus`` for a TRAIN-split clip of the corpus, ``unlabelled`` for
  a file of an extracted package under ``CORPUS/_src``); ``path`` is absolute;
- ``OUT/manifest.json``: the rule, the counts, hours per source and origin, the build time.

The source-disjoint rule of the corpus holds: a window is kept only if its split source (the
corpus's own :func:`corpus_build.sources.source_unit`, the ``PACKAGE:music`` soundtrack rule and
the ``PACKAGE:KIT`` drum-kit rule) is a source of the corpus's TRAIN split and of no
valid/test split; a file that any held-out clip (``valid``, ``test``, ``valid_in``,
``test_in``) was cut from is skipped, so no evaluation audio is seen even without its label;
reserved packages are refused (:func:`separation.data.is_reserved_package`). Files inside zip
archives are not read (their sources are covered by the corpus clips).

A window is ``window_s`` long (hop ``window_s``; the last one may be shorter, down to ``min_s``;
a whole file shorter than ``window_s`` is one window) and usable when at least
``min_active`` of its 50 ms frames lie within 40 dB of the file's loudest frame and above
``floor_db`` dBFS.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIO_EXT = (".wav", ".ogg", ".flac", ".mp3", ".opus", ".aiff", ".aif")
HELD_OUT = ("valid", "test", "valid_in", "test_in")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")


def file_unit(pkg: str, rel: str, kit: str | None = None) -> str:
    """Split source of the package-relative file ``rel`` (the corpus builder's rules).

    Args:
        pkg: Debian package. rel: path inside the extracted package.
        kit: the Hydrogen drum kit holding the file, if any.
    """
    from corpus_build.sources import MUSIC_RULES, match_label, source_unit

    if kit is not None:
        return f"{pkg}:{kit}"
    if pkg in MUSIC_RULES and match_label(MUSIC_RULES[pkg], rel) is not None:
        return f"{pkg}:music"
    return source_unit(pkg, rel)


def held_out_keys(rows: list[dict]) -> set[str]:
    """Slugged clip keys (``PATH__PARTS`` without the ``_sN`` suffix) of every held-out clip."""
    keys = set()
    for r in rows:
        if r.get("split") in HELD_OUT:
            key = str(r["id"]).split("/", 2)[-1]
            keys.add(re.sub(r"_s\d+$", "", key))
    return keys


def _is_held_out(rel: str, keys: set[str]) -> bool:
    parts = rel.rsplit(".", 1)[0].split("/")
    return any(_slug("__".join(parts[k:])) in keys for k in range(len(parts)))


def usable_windows(x: np.ndarray, sr: int, window_s: float = 4.0, min_s: float = 1.0, min_active: float = 0.3,
                   floor_db: float = -60.0) -> list[tuple[float, float]]:
    """``(start_s, dur_s)`` of the usable windows of mono ``x [N]`` at ``sr`` Hz (see module doc)."""
    hop = max(1, int(0.05 * sr))
    n = len(x) // hop
    if n == 0 or not np.all(np.isfinite(x)):
        return []
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-20)
    db = 20 * np.log10(rms)
    active = (db > db.max() - 40.0) & (db > floor_db)
    total = len(x) / sr
    out = []
    per = max(1, int(round(window_s / 0.05)))
    if total < window_s:
        starts = [0.0] if total >= min_s else []
    else:
        starts = [k * window_s for k in range(int(np.ceil(total / window_s)))]
    for s in starts:
        dur = min(window_s, total - s)
        if dur < min_s and s > 0:
            continue
        a = active[int(round(s / 0.05)) : int(round(s / 0.05)) + per]
        if len(a) and a.mean() >= min_active:
            out.append((round(s, 3), round(dur, 3)))
    return out


def _kit_of(path: Path, base: Path) -> str | None:
    for parent in path.parents:
        if parent == base or base not in parent.parents:
            return None
        if (parent / "drumkit.xml").is_file():
            return parent.name
    return None


def build_ssl_set(corpus: str | Path, out: str | Path, window_s: float = 4.0, min_s: float = 1.0,
                  min_active: float = 0.3, progress: bool = True) -> dict:
    """Write ``windows.jsonl`` and ``manifest.json`` of the SSL set to ``out`` (see module doc).

    Returns:
        The manifest dict (counts, hours per source and origin, build time).

    Raises:
        FileNotFoundError: no corpus manifest.
    """
    from tqdm.auto import tqdm

    from separation.data import is_reserved_package

    t0 = time.perf_counter()
    corpus, out = Path(corpus), Path(out)
    mpath = corpus / "manifest.jsonl"
    if not mpath.is_file():
        raise FileNotFoundError(f"no corpus manifest at {mpath}")
    rows = [json.loads(line) for line in mpath.read_text().splitlines() if line.strip()]
    train_src = {r["source"] for r in rows if r.get("split") == "train"}
    eval_src = {r["source"] for r in rows if r.get("split") in ("valid", "test")}
    allowed = train_src - eval_src
    keys = held_out_keys(rows)
    windows: list[dict] = []
    skipped: dict[str, int] = defaultdict(int)

    # 1. the corpus's own TRAIN clips
    for r in rows:
        if r.get("split") != "train" or r["source"] not in allowed:
            continue
        dur = float(r.get("duration", 0.0))
        for k in range(max(1, int(np.ceil(dur / window_s)))):
            s = k * window_s
            d = min(window_s, dur - s)
            if d >= min_s or k == 0:
                windows.append({"path": str((corpus / r["path"]).resolve()), "start_s": round(s, 3),
                                "dur_s": round(d, 3), "source": r["source"], "package": r.get("package", ""),
                                "origin": "corpus"})
    # 2. unlabelled files of the extracted packages
    src_root = corpus / "_src"
    files: list[tuple[str, Path, Path]] = []
    if src_root.is_dir():
        for base in sorted(p for p in src_root.iterdir() if p.is_dir()):
            if is_reserved_package(base.name):
                skipped["reserved package"] += 1
                continue
            files += [(base.name, base, p) for p in sorted(base.rglob("*"))
                      if p.is_file() and p.suffix.lower() in AUDIO_EXT]
    for pkg, base, path in tqdm(files, desc="ssl windows", disable=not progress):
        rel = path.relative_to(base).as_posix()
        kit = _kit_of(path, base) if pkg.startswith("hydrogen") else None
        unit = file_unit(pkg, rel, kit)
        if unit not in allowed:
            skipped["not a train source"] += 1
            continue
        if _is_held_out(rel, keys):
            skipped["held-out clip's file"] += 1
            continue
        try:
            x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception:  # noqa: BLE001 - an unreadable file is skipped and counted
            skipped["unreadable"] += 1
            continue
        found = usable_windows(x.mean(1), int(sr), window_s, min_s, min_active)
        if not found:
            skipped["no usable window"] += 1
        for s, d in found:
            windows.append({"path": str(path.resolve()), "start_s": s, "dur_s": d, "source": unit,
                            "package": pkg, "origin": "unlabelled"})

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "windows.jsonl.tmp"
    tmp.write_text("".join(json.dumps(w) + "\n" for w in windows))
    tmp.replace(out / "windows.jsonl")
    hours: dict[str, float] = defaultdict(float)
    by_origin: dict[str, float] = defaultdict(float)
    for w in windows:
        hours[w["source"]] += w["dur_s"] / 3600
        by_origin[w["origin"]] += w["dur_s"] / 3600
    manifest = {
        "corpus": str(corpus.resolve()), "window_s": window_s, "min_s": min_s, "min_active": min_active,
        "windows": len(windows), "hours": round(sum(hours.values()), 3),
        "hours_by_origin": {k: round(v, 3) for k, v in sorted(by_origin.items())},
        "sources": len(hours), "hours_per_source": {k: round(v, 4) for k, v in sorted(hours.items())},
        "files_scanned": len(files), "skipped": dict(skipped),
        "excluded_eval_sources": sorted(eval_src), "build_s": round(time.perf_counter() - t0, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m corpus_build.ssl_set --corpus DIR --out DIR``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="/work/corpus")
    ap.add_argument("--out", required=True)
    ap.add_argument("--window-s", type=float, default=4.0)
    ap.add_argument("--min-s", type=float, default=1.0)
    ap.add_argument("--min-active", type=float, default=0.3)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    m = build_ssl_set(a.corpus, a.out, a.window_s, a.min_s, a.min_active, progress=not a.no_progress)
    print(json.dumps({k: v for k, v in m.items() if k != "hours_per_source"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
