"""Regenerate the bundled example mixtures from the promptsep corpus.

Each example mixes two corpus clips of different categories (a *target* that the
example's text prompt names and an *interferer*), both from the corpus's TRAIN split so
that no evaluation source appears in the examples, and both under permissive licences
(CC0 / public domain, CC-BY, MIT, BSD, Apache). A pair under one share-alike licence
(e.g. CC-BY-SA-3.0 + CC-BY-SA-3.0) is used only if no permissive pair exists, and is then
attributed and released under that licence.

Usage (from the repository root)::

    python examples/make_examples.py --corpus /path/to/corpus --out examples

Writes ``<name>.wav`` (16 kHz mono 16-bit, at most 8 s), ``examples.json`` (read by the
demo: file, text prompt, suggested span, sources) and ``README.md`` (attribution).
Deterministic for a given corpus and ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

logger = logging.getLogger("make_examples")

SAMPLE_RATE = 16000
#: Licence names whose clips may be mixed with any other clip of this list (attribution kept).
PERMISSIVE = re.compile(
    r"^(cc0.*|cc-?by-?[0-9.]+|cc-?by|mit|expat|bsd.*|apache.*|isc|unlicense|zlib|public[- ]?domain|pd|pddl.*)$", re.I
)
#: Share-alike licences: only mixed with a clip under the very same licence.
SHARE_ALIKE = re.compile(r"^cc-?by-?sa(-?[0-9.]+)?(-[a-z]+)?$", re.I)
#: Licence names inside a free-text licence field ("score: music21 corpus (BSD); soundfont (MIT)").
_TOKENS = re.compile(
    r"\b(cc0(?:-1\.0)?|cc-by(?:-nc)?(?:-nd)?(?:-sa)?(?:-[0-9.]+)?|gpl[-0-9.+]*|lgpl[-0-9.+]*|mit|expat|bsd[-0-9a-z]*|"
    r"apache[-0-9.]*|public domain|pd|unlicense|isc|zlib|non-?commercial|proprietary|unknown)\b",
    re.I,
)
#: (target category, interferer category) of the examples, in order of preference.
PLAN = [("speech", "sfx"), ("instrument", "speech"), ("sfx", "music"), ("sfx", "instrument"), ("instrument", "sfx"),
        ("speech", "music"), ("music", "sfx")]


def licence_kind(lic: str) -> str | None:
    """``"permissive"``, ``"share-alike"`` or None (not usable: NC, ND, GPL, unknown, mixed).

    A free-text field is permissive only if every licence named in it is permissive.
    """
    lic = (lic or "").strip()
    if PERMISSIVE.match(lic):
        return "permissive"
    if SHARE_ALIKE.match(lic):
        return "share-alike"
    names = [m.group(1) for m in _TOKENS.finditer(lic)]
    if names and all(PERMISSIVE.match(n.strip()) for n in names):
        return "permissive"
    return None


def read_manifest(corpus: Path) -> list[dict]:
    rows = []
    with open(corpus / "manifest.jsonl") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def load_clip(corpus: Path, row: dict) -> np.ndarray:
    """Mono float32 clip at 16 kHz."""
    data, sr = sf.read(str(corpus / row["path"]), dtype="float32", always_2d=True)
    x = data.mean(axis=1)
    if sr != SAMPLE_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(sr, SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, sr // g).astype(np.float32)
    return x


def active_span(x: np.ndarray, frame_s: float = 0.05, rel_db: float = -25.0) -> tuple[float, float] | None:
    """First..last frame whose level is within ``rel_db`` of the loudest frame (seconds)."""
    hop = int(frame_s * SAMPLE_RATE)
    n = len(x) // hop
    if n == 0:
        return None
    lev = 10 * np.log10((x[: n * hop].reshape(n, hop) ** 2).mean(1) + 1e-10)
    on = np.nonzero(lev > lev.max() + rel_db)[0]
    if on.size == 0:
        return None
    return round(on[0] * frame_s, 2), round(min(len(x) / SAMPLE_RATE, (on[-1] + 1) * frame_s), 2)


def frame_levels(x: np.ndarray, frame_s: float = 0.05) -> np.ndarray:
    """Frame levels in dB."""
    hop = int(frame_s * SAMPLE_RATE)
    n = max(1, len(x) // hop)
    x = np.pad(x, (0, max(0, n * hop - len(x))))
    return 10 * np.log10((x[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(1) + 1e-10)


def active_fraction(x: np.ndarray, rel_db: float = -20.0) -> float:
    """Fraction of frames within ``rel_db`` of the loudest frame."""
    lev = frame_levels(x)
    return float((lev > lev.max() + rel_db).mean())


def rms(x: np.ndarray, rel_db: float = -30.0) -> float:
    """RMS over the active frames (within ``rel_db`` of the loudest), so sparse sounds are not drowned."""
    hop = int(0.05 * SAMPLE_RATE)
    lev = frame_levels(x)
    on = np.nonzero(lev > lev.max() + rel_db)[0]
    if on.size == 0 or len(x) < hop:
        return float(np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-12))
    frames = np.concatenate([x[k * hop : (k + 1) * hop] for k in on]).astype(np.float64)
    return float(np.sqrt(np.mean(frames**2) + 1e-12))


def pick_pairs(rows: list[dict], count: int, seed: int, min_s: float, min_interferer_s: float = 0.3,
               activity=None, min_activity: float = 0.5) -> list[tuple[dict, dict, str]]:
    """Choose ``count`` (target, interferer, licence note) pairs following :data:`PLAN`.

    Targets are train clips of at least ``min_s`` seconds with distinct labels; an
    interferer is a train clip of another category and label (longer ones preferred, short
    ones are repeated); no source group is used twice. With ``activity(row) -> fraction``,
    a target must be audible for at least ``min_activity`` of its length.
    """
    rng = random.Random(seed)
    train = [r for r in rows if r.get("split") == "train" and licence_kind(r.get("license", "")) is not None
             and float(r.get("duration", 0)) >= min_interferer_s]
    by_cat: dict[str, list[dict]] = {}
    for r in sorted(train, key=lambda r: r["id"]):
        by_cat.setdefault(r["category"], []).append(r)
    for lst in by_cat.values():
        rng.shuffle(lst)
        lst.sort(key=lambda r: float(r.get("duration", 0)) < 2.0)  # stable: long clips first, shuffled
    chosen: list[tuple[dict, dict, str]] = []
    target_labels: set[str] = set()
    used_groups: set[str] = set()

    def free(cat):
        return [r for r in by_cat.get(cat, []) if r["group"] not in used_groups]

    for allow_sa in (False, True):
        for tcat, icat in PLAN:
            if len(chosen) >= count or any(c[0]["category"] == tcat and c[1]["category"] == icat for c in chosen):
                continue
            for t in free(tcat):
                if float(t.get("duration", 0)) < min_s or t["label"] in target_labels:
                    continue
                if activity is not None and activity(t) < min_activity:
                    continue
                kt = licence_kind(t["license"])
                if kt == "share-alike" and not allow_sa:
                    continue
                match = None
                for i in free(icat):
                    if i["label"] == t["label"] or i["group"] == t["group"]:
                        continue
                    ki = licence_kind(i["license"])
                    if kt == ki == "permissive":
                        match = (i, "permissive: " + ", ".join(sorted({t["license"], i["license"]})))
                        break
                    if allow_sa and kt == ki == "share-alike" and t["license"].lower() == i["license"].lower():
                        match = (i, f"share-alike: {t['license']}")
                        break
                if match:
                    chosen.append((t, match[0], match[1]))
                    target_labels.add(t["label"])
                    used_groups.update({t["group"], match[0]["group"]})
                    break
    return chosen[:count]


def prompt_text(label: str, labels: dict) -> str:
    """The label's first prompt text from labels.json (or the label with underscores as spaces)."""
    entry = labels.get(label) or {}
    prompts = entry.get("prompts") or []
    return prompts[0] if prompts else label.replace("_", " ")


def make_mixture(target: np.ndarray, interferer: np.ndarray, max_s: float, ratio_db: float) -> tuple[np.ndarray, float]:
    """Target plus interferer at ``ratio_db`` below it (RMS over its active part), cut to the target, peak 0.9.

    A short interferer is repeated with 0.5 s gaps, starting 0.3 s in.
    """
    n = min(len(target), int(max_s * SAMPLE_RATE))
    t = target[:n]
    if len(interferer) >= n:
        i = interferer[:n]
    else:
        i = np.zeros(n, np.float32)
        step = len(interferer) + int(0.5 * SAMPLE_RATE)
        for start in range(int(0.3 * SAMPLE_RATE), n, step):
            seg = interferer[: n - start]
            i[start : start + len(seg)] = seg
    i = i * (rms(t) / rms(interferer)) * 10 ** (-ratio_db / 20)
    mix = t + i
    scale = 0.9 / max(1e-6, float(np.abs(mix).max()))
    return (mix * scale).astype(np.float32), n / SAMPLE_RATE


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")[:40]


def describe(row: dict) -> str:
    """One attribution line for a source clip, from whatever provenance fields the manifest has."""
    parts = [f"`{row['id']}` ({row['label']}, {row['category']})"]
    src = row.get("source", "?")
    group = str(row.get("group", ""))
    orig = group.split(":", 1)[1] if group.startswith(f"{src}:") else group
    debian = re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", src) is not None
    where = f"the Debian package `{src}`" if debian else f"`{src}`"
    parts.append(f"from `{orig}` in {where}" if orig else f"from {where}")
    if row.get("offset_s"):
        parts.append(f"starting at {float(row['offset_s']):g} s")
    for key in ("author", "artist", "attribution", "url", "source_url"):
        if row.get(key):
            parts.append(f"{key.replace('_', ' ')}: {row[key]}")
    holders = "the package's debian/copyright" if debian else "the source's licence notes"
    parts.append(f"licence: {row.get('license', '?')} (copyright holders: see {holders})")
    return "; ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="/work/corpus", help="corpus root (manifest.jsonl, labels.json, clips/)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent), help="output folder")
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--seconds", type=float, default=6.0, help="longest example (at most 8 s)")
    p.add_argument("--min-seconds", type=float, default=3.0, help="shortest usable target clip")
    p.add_argument("--ratio-db", type=float, default=3.0, help="interferer level below the target (RMS dB)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    corpus, out = Path(args.corpus), Path(args.out)
    seconds = min(args.seconds, 8.0)
    rows = read_manifest(corpus)
    labels_path = corpus / "labels.json"
    if not labels_path.is_file():
        from separation.data.mixing import DEFAULT_LABELS_PATH

        labels_path = DEFAULT_LABELS_PATH
    labels = json.loads(labels_path.read_text()) if labels_path.is_file() else {}
    cache: dict[str, float] = {}

    def activity(row: dict) -> float:
        if row["id"] not in cache:
            cache[row["id"]] = active_fraction(load_clip(corpus, row)[: int(seconds * SAMPLE_RATE)])
        return cache[row["id"]]

    pairs = pick_pairs(rows, args.count, args.seed, args.min_seconds, activity=activity)
    if not pairs:
        print("no usable pair of train clips with compatible licences", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    index, readme_rows = [], []
    for t, i, lic_note in pairs:
        text = prompt_text(t["label"], labels)
        mix, dur = make_mixture(load_clip(corpus, t), load_clip(corpus, i), seconds, args.ratio_db)
        name = f"{slug(t['label'])}_with_{slug(i['label'])}.wav"
        sf.write(str(out / name), mix, SAMPLE_RATE, subtype="PCM_16")
        size = (out / name).stat().st_size
        assert size < 300 * 1024, f"{name} is {size} bytes"
        span = active_span(load_clip(corpus, t)[: len(mix)])
        licences = sorted({t.get("license"), i.get("license")})
        index.append({
            "file": name, "text": text, "title": f"{text} + {i['label'].replace('_', ' ')}",
            "duration": round(dur, 3), "spans": [["+", *span]] if span else [],
            "licenses": licences, "licence_note": lic_note,
            "target": {k: t.get(k) for k in ("id", "label", "category", "source", "group", "license")},
            "interferer": {k: i.get(k) for k in ("id", "label", "category", "source", "group", "license")},
        })
        readme_rows.append((name, text, dur, t, i, licences, lic_note))
        logger.info("%s: %.2f s, %d bytes, prompt %r, licences %s", name, dur, size, text, licences)
    (out / "examples.json").write_text(json.dumps(index, indent=2) + "\n")
    import hashlib

    digest = hashlib.sha256((corpus / "manifest.jsonl").read_bytes()).hexdigest()[:16]
    write_readme(out / "README.md", readme_rows, args, digest)
    return 0


def write_readme(path: Path, rows, args, manifest_digest: str = "") -> None:
    lines = [
        "# Bundled examples",
        "",
        "Short mixtures of two clips of the promptsep corpus each, made by `examples/make_examples.py`",
        "(`python examples/make_examples.py --corpus CORPUS`). The clips are what the corpus holds: recorded",
        "telephone prompts and game sound effects, instrument parts rendered from MIDI scores with a soundfont",
        "(synthesised, not recordings of players), and espeak-ng speech (synthetic). Both clips of every mixture come from the",
        "corpus's **train** split (no evaluation source is in the examples) and are under permissive licences",
        "(CC0 / public domain, CC-BY, MIT, BSD, Apache); a pair under one share-alike licence is marked so.",
        f"The interferer is mixed {args.ratio_db:g} dB (RMS) below the target and the mixture is peak-normalised;",
        "files are 16 kHz mono 16-bit WAV.",
        f"Made with `--seed {args.seed} --seconds {args.seconds:g} --ratio-db {args.ratio_db:g}` from a corpus whose",
        f"`manifest.jsonl` has SHA-256 `{manifest_digest}...`.",
        "",
        "Each mixture is a derivative work of its two sources and is distributed under their licences, with the",
        "attribution below (CC-BY requires it; keep it when you redistribute the files).",
        "",
        "| file | text prompt | seconds | licences |",
        "| --- | --- | --- | --- |",
    ]
    for name, text, dur, _t, _i, lic, _note in rows:
        lines.append(f"| `{name}` | {text} | {dur:.2f} | {', '.join(lic)} |")
    lines += ["", "## Sources and attribution", ""]
    for name, _text, _dur, t, i, _lic, note in rows:
        lines += [f"### `{name}`", "", f"- target: {describe(t)}", f"- interferer: {describe(i)}",
                  f"- licence of the mixture: {note}", ""]
    lines += ["Try one from the command line (writes `separated/<file name>/target.wav` and `residual.wav`):", "",
              "```bash", f"promptsep separate examples/{rows[0][0]} --text \"{rows[0][1]}\" --out-dir separated", "```", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
