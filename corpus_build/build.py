"""Build the offline corpus of single-source clips with text labels.

Usage::

    python -m corpus_build.build --out /work/corpus            # default sources
    python -m corpus_build.build --out DIR --sources sonic-pi,hydrogen --max-clips-per-label 20
    python -m corpus_build.build --out DIR --light              # without the heavy downloads
    promptsep data build --out DIR

Steps: ``apt-get download`` each needed Debian package into ``DIR/_debs`` (skipped when the
``.deb`` is there), extract the audio members into ``DIR/_src/PACKAGE`` (skipped when done),
scan every source into work items (:mod:`corpus_build.sources`), decode / resample /
trim / cut / normalise them into ``DIR/clips/...`` (cached per source in ``DIR/_rows``, so
a re-run only redoes what changed), cap clips per label, assign group splits
(:mod:`separation.data.splits`) and write ``DIR/manifest.jsonl`` and ``DIR/corpus_stats.json``.

Clips: mono 16-bit WAV at ``--sample-rate``, at most ``--max-seconds`` long (longer files
are cut into windows that share the file's group), silence trimmed at both ends, peak
normalised to -1 dBFS, never silent. Manifest rows follow ``docs/INTERFACES.md`` and add
``bandwidth_hz`` (the band the original recording had, e.g. 4000 for 8 kHz speech),
``offset_s`` (start in the source file or score), ``orig_sample_rate`` and, where known,
``text``/``lang`` (speech) or ``program`` (GM program of a rendered stem).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

import separation.data
from corpus_build.sources import (
    DEFAULT_SOURCES,
    GM_INSTRUMENTS,
    LIGHT_SOURCES,
    PACKAGE_GLOBS,
    SFX_RULES,
    SOUNDFONTS,
    SOURCES,
    Item,
)
from separation.data import EXCLUDED_COMPOSERS, is_reserved_package
from separation.data.splits import ALL_SPLITS, assign_all_splits

logger = logging.getLogger(__name__)

#: bump when clip processing changes, to invalidate the per-source caches.
BUILD_VERSION = 6
LABELS_PATH = Path(separation.data.__file__).with_name("labels.json")
CATEGORIES = ("speech", "instrument", "sfx", "music")
PEAK = 10 ** (-1.0 / 20)  # -1 dBFS


def load_labels(path: str | Path = LABELS_PATH) -> dict[str, dict]:
    """``labels.json``: label -> ``{"category", "prompts"}``."""
    return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------------------
# Debian packages


def ensure_package(name: str, cache: Path) -> Path:
    """Path of ``name``'s ``.deb`` in ``cache``, downloading it with ``apt-get download`` if absent.

    Raises:
        ValueError: the package is reserved for external evaluation.
        RuntimeError: apt-get failed (run ``apt-get update`` once first).
    """
    if is_reserved_package(name):
        raise ValueError(f"{name} is reserved for external evaluation and must not be used in the corpus")
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{name}_*.deb"))
    if found:
        return found[-1]
    proc = subprocess.run(["apt-get", "download", name], cwd=cache, capture_output=True, text=True)
    found = sorted(cache.glob(f"{name}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {name} failed (rc {proc.returncode}): {proc.stderr.strip()[-400:]}\n"
                           "run `apt-get update` once, or check the package name")
    return found[-1]


def extract_package(deb: Path, dest: Path, globs: Sequence[str]) -> Path:
    """Extract the members of ``deb`` matching ``globs`` (plus ``copyright``) into ``dest``, once."""
    marker = dest / ".extracted"
    if marker.is_file() and marker.read_text().strip() == deb.name:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    patterns = list(globs) + ["*/copyright"]
    cmd = f"dpkg-deb --fsys-tarfile {shlex_quote(str(deb))} | tar -x -C {shlex_quote(str(dest))} --wildcards " + \
        " ".join(shlex_quote(p) for p in patterns)
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
    # tar exits 2 when a pattern matches nothing; that is fine as long as something came out
    if proc.returncode not in (0, 2) or not any(dest.rglob("*")):
        raise RuntimeError(f"extracting {deb.name} failed: {proc.stderr.strip()[-400:]}")
    marker.write_text(deb.name)
    return dest


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def ensure_tool(tool: str, apt_name: str | None = None) -> bool:
    """True if ``tool`` is on PATH; tries ``apt-get install -y`` when running as root."""
    if shutil.which(tool):
        return True
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        logger.info("installing %s with apt-get", apt_name or tool)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", apt_name or tool],
                       capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which(tool) is not None


# --------------------------------------------------------------------------------------
# signal processing


def to_mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1) if data.ndim == 2 else data


def resample(x: np.ndarray, sr: int, new_sr: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``) of a 1-D float signal."""
    if sr == new_sr:
        return x.astype(np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(int(sr), int(new_sr))
    return resample_poly(x.astype(np.float64), new_sr // g, sr // g).astype(np.float32)


def lowpass(x: np.ndarray, sr: int, cutoff: float) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    if cutoff >= sr / 2 * 0.999:
        return x
    sos = butter(10, cutoff, btype="low", fs=sr, output="sos")
    return sosfiltfilt(sos, x).astype(np.float32)


def frame_rms(x: np.ndarray, hop: int) -> np.ndarray:
    n = max(1, len(x) // hop)
    fr = x[: n * hop].reshape(n, hop) if len(x) >= hop else x[None]
    return np.sqrt(np.mean(fr.astype(np.float64) ** 2, axis=1) + 1e-20)


def trim_silence(x: np.ndarray, sr: int, rel_db: float = -50.0, ref: float | None = None,
                 pad_s: float = 0.02) -> tuple[int, int]:
    """``(start, end)`` sample range without leading/trailing frames below ``rel_db`` of ``ref``
    (default: the loudest 10 ms frame). ``(0, 0)`` when everything is below."""
    hop = max(1, sr // 100)
    rms = frame_rms(x, hop)
    ref = float(rms.max()) if ref is None else ref
    thr = max(ref * 10 ** (rel_db / 20), 1e-5)
    on = np.flatnonzero(rms > thr)
    if len(on) == 0:
        return 0, 0
    pad = int(pad_s * sr)
    return max(0, on[0] * hop - pad), min(len(x), (on[-1] + 1) * hop + pad)


def active_fraction(x: np.ndarray, sr: int, ref: float, rel_db: float = -40.0) -> float:
    rms = frame_rms(x, max(1, sr // 100))
    return float(np.mean(rms > ref * 10 ** (rel_db / 20)))


def cut_segments(x: np.ndarray, sr: int, max_s: float, max_segments: int, min_s: float = 0.1,
                 min_active: float = 0.25, window_starts: Sequence[float] | None = None
                 ) -> list[tuple[float, np.ndarray]]:
    """Trimmed, peak-normalised pieces of at most ``max_s`` seconds: ``[(offset_s, wav)]``.

    A file no longer than ``max_s`` (after trimming) gives one piece. Longer ones are cut
    into consecutive windows (or at ``window_starts``), at most ``max_segments`` of them
    evenly spread; windows active less than ``min_active`` of the time (frames within 40 dB
    of the file's loudest frame) are dropped.
    """
    hop = max(1, sr // 100)
    if len(x) == 0 or not np.isfinite(x).all():
        return []
    ref = float(frame_rms(x, hop).max())
    if ref < 1e-5:
        return []
    n = int(max_s * sr)
    s0, e0 = trim_silence(x, sr, ref=ref)
    out: list[tuple[float, np.ndarray]] = []
    if window_starts is None and e0 - s0 <= n:
        pieces = [(s0, x[s0:e0])]
        min_active = 0.0
    else:
        if window_starts is None:
            starts = list(range(s0, e0, n))
            if len(starts) > 1 and e0 - starts[-1] < min(2 * sr, n):
                starts.pop()
        else:
            starts = [int(round(t * sr)) for t in window_starts if int(round(t * sr)) < len(x)]
        if len(starts) > max_segments:
            idx = sorted({round(i * (len(starts) - 1) / max(1, max_segments - 1)) for i in range(max_segments)})
            starts = [starts[i] for i in idx]
        pieces = [(s, x[s: s + n]) for s in starts]
    for start, seg in pieces:
        if min_active and active_fraction(seg, sr, ref) < min_active:
            continue
        a, b = trim_silence(seg, sr, ref=ref)
        seg = seg[a:b]
        if len(seg) < min_s * sr:
            continue
        peak = float(np.abs(seg).max())
        if peak < 1e-4:
            continue
        out.append(((start + a) / sr, (seg / peak * PEAK).astype(np.float32)))
    return out


# --------------------------------------------------------------------------------------
# loading items


_ZIPS: dict[str, zipfile.ZipFile] = {}


def load_item_audio(item: Item) -> tuple[np.ndarray, int]:
    """Mono float32 audio of a file/zip/espeak item at its own rate."""
    kind = item.loader[0]
    if kind == "file":
        data, sr = sf.read(item.loader[1], dtype="float32", always_2d=True)
    elif kind == "zip":
        z = _ZIPS.get(item.loader[1])
        if z is None:  # one open archive per worker: the central directory of public.zip is large
            z = _ZIPS[item.loader[1]] = zipfile.ZipFile(item.loader[1])
        raw = z.read(item.loader[2])
        data, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    elif kind == "espeak":
        voice, text = item.loader[1], item.loader[2]
        rng = random.Random(item.key)
        with tempfile.TemporaryDirectory() as td:
            wav = Path(td) / "s.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(rng.randint(135, 185)), "-p",
                            str(rng.randint(35, 65)), "-w", str(wav), text], check=True, capture_output=True)
            data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    else:
        raise ValueError(f"unknown loader {kind!r}")
    return to_mono(data), int(sr)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")


def clip_id(item: Item, category: str, suffix: str) -> str:
    """``CATEGORY/SOURCEPKG/KEY_SUFFIX`` (the first component of the item key names its package or tool)."""
    src, _, key = item.key.partition("/") if "/" in item.key else (item.source, "", item.key)
    return f"{category}/{_slug(src)}/{_slug(key.replace('/', '__'))}{suffix}"


def write_clip(out: Path, cid: str, wav: np.ndarray, sr: int) -> str:
    rel = f"clips/{cid}.wav"
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sf.write(str(tmp), wav, sr, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return rel


def process_item(args: tuple[Item, dict]) -> list[dict]:
    """Worker: one item -> manifest rows (without ``split``). Errors are logged, not raised."""
    item, cfg = args
    try:
        if item.loader[0] == "score":
            return process_score(item, cfg)
        x, sr0 = load_item_audio(item)
        sr = cfg["sample_rate"]
        band = min(sr0 / 2, sr / 2)
        if item.bandwidth_hz:
            band = min(band, item.bandwidth_hz)
        x = resample(x, sr0, sr)
        if item.category == "speech" and cfg.get("speech_band_hz"):
            x = lowpass(x, sr, cfg["speech_band_hz"])
            band = min(band, cfg["speech_band_hz"])
        rows = []
        for k, (off, seg) in enumerate(cut_segments(x, sr, cfg["max_seconds"], item.max_segments)):
            cid = clip_id(item, item.category, f"_s{k}")
            rel = write_clip(Path(cfg["out"]), cid, seg, sr)
            row = {"id": cid, "path": rel, "label": item.label, "category": item.category, "source": item.source,
                   "group": item.group, "license": item.license, "duration": round(len(seg) / sr, 4),
                   "sample_rate": sr, "split": None, "bandwidth_hz": int(band), "offset_s": round(off, 3),
                   "orig_sample_rate": sr0, "package": item.package or item.source}
            row.update({k2: v for k2, v in item.extra.items() if k2 in ("text", "lang", "synthetic") and v != ""})
            rows.append(row)
        return rows
    except Exception as exc:  # one bad file must not stop the build
        logger.warning("skipping %s: %s", item.key, exc)
        return []


# --------------------------------------------------------------------------------------
# music21 scores -> per-part stems


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, events: list[tuple[float, int, bytes]], end_s: float, tpq: int = 480) -> None:
    """Format-0 MIDI at 120 qpm from ``(time_s, order, message bytes)`` events."""
    tps = tpq * 2  # ticks per second at 120 qpm
    track = bytearray(b"\x00\xff\x51\x03\x07\xa1\x20")  # tempo 500000 us per quarter
    last = 0
    for t, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        tick = int(round(t * tps))
        track += _varlen(max(0, tick - last)) + msg
        last = max(last, tick)
    track += _varlen(max(0, int(round(end_s * tps)) - last)) + b"\xff\x2f\x00"
    hdr = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + tpq.to_bytes(2, "big")
    path.write_bytes(hdr + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track))


def score_parts(path: str) -> list[list[tuple[float, float, list[int], int]]]:
    """Notes per part: ``[(onset_ql, dur_ql, midi pitches, velocity)]``, empty parts dropped."""
    from music21 import converter

    if any(c in path.lower() for c in EXCLUDED_COMPOSERS):
        raise ValueError(f"{path} is by an excluded composer")
    s = converter.parse(path)
    parts = []
    for p in s.parts:
        notes = []
        for n in p.flatten().stripTies().notes:
            dur = float(n.quarterLength)
            if dur <= 0:
                continue
            vel = n.volume.velocity if n.volume is not None and n.volume.velocity else 80
            notes.append((float(n.offset), dur, [int(pp.midi) for pp in n.pitches], int(vel)))
        if notes:
            parts.append(notes)
    return parts


def choose_instruments(parts: list[list], rng: random.Random) -> list[str]:
    """A distinct GM instrument per part whose range covers the part (piano/organ/harp fit all)."""
    used: set[str] = set()
    out = []
    for notes in parts:
        lo = min(min(ps) for _, _, ps, _ in notes)
        hi = max(max(ps) for _, _, ps, _ in notes)
        fits = [lab for lab, (_, a, b) in GM_INSTRUMENTS.items() if a - 2 <= lo and hi <= b + 2 and lab not in used]
        if not fits:
            fits = [lab for lab in ("piano", "organ", "harp", "harpsichord", "marimba") if lab not in used] or ["piano"]
        lab = rng.choice(sorted(fits))
        used.add(lab)
        out.append(lab)
    return out


def process_score(item: Item, cfg: dict) -> list[dict]:
    """Render each part of a score as its own stem, in aligned windows of ``max_seconds``.

    Up to ``item.max_segments`` windows of score time are chosen (evenly spread). Every
    (part, window) block holds the notes starting inside the window (cut at its end) and
    is written into one MIDI file one after the other (4 s gaps, no reverb or chorus),
    rendered by a single ``fluidsynth`` call and cut apart: the synthesiser is linear, so
    each block is the exact stem of that part in that window, and the blocks of one window
    sum to the mixture of the whole ensemble there (same ``group`` and ``offset_s``).
    """
    sr, max_s = cfg["sample_rate"], cfg["max_seconds"]
    parts = score_parts(item.loader[1])[:8]
    if len(parts) < 2:
        return []
    rng = random.Random(f"{cfg['seed']}:{item.key}")
    qpm = rng.uniform(60, 140)
    spq = 60.0 / qpm
    labels = choose_instruments(parts, rng)
    vel_scale = [rng.uniform(0.6, 1.2) for _ in parts]  # per part dynamics
    fx = synth_effects(rng)
    length = max(on + d for notes in parts for on, d, _, _ in notes) * spq
    win = [w * max_s for w in range(max(1, int(math.ceil(length / max_s))))]
    if len(win) > 1 and length - win[-1] < 2.0:
        win.pop()
    if len(win) > item.max_segments:
        idx = sorted({round(i * (len(win) - 1) / max(1, item.max_segments - 1)) for i in range(item.max_segments)})
        win = [win[i] for i in idx]
    gap, tail = 4.0, 2.0
    block = max_s + gap
    events: list[tuple[float, int, bytes]] = []
    blocks = []  # (part index, label, window start, block start time)
    for i, (notes, lab) in enumerate(zip(parts, labels)):
        ch = i if i < 9 else i + 1
        for ws in win:
            t0 = len(blocks) * block
            blocks.append((i, lab, ws, t0))
            events.append((t0, 0, bytes([0xC0 | ch, GM_INSTRUMENTS[lab][0]])))
            for on, d, ps, vel in notes:
                start = on * spq
                end = min(start + max(0.02, d * spq * 0.98), ws + max_s)
                if not ws <= start < ws + max_s:
                    continue
                v = max(20, min(127, int(round(vel * vel_scale[i])) + rng.randint(-10, 10)))
                for p in ps:
                    if 0 <= p < 128:
                        events.append((t0 + start - ws, 2, bytes([0x90 | ch, p, v])))
                        events.append((t0 + end - ws, 1, bytes([0x80 | ch, p, 0])))
            # safety: all notes off at the end of the window (no note can ring into the next block)
            events.append((t0 + max_s + 0.01, 1, bytes([0xB0 | ch, 123, 0])))
    render_sr = 48000 if 48000 % sr == 0 else sr
    sfn = item.extra.get("soundfont", "FluidR3_GM")
    sf2 = cfg["soundfonts"][sfn]
    with tempfile.TemporaryDirectory() as td:
        mid, wav = Path(td) / "s.mid", Path(td) / "s.wav"
        write_midi(mid, events, len(blocks) * block)
        subprocess.run(["fluidsynth", "-ni", "-q", *fluidsynth_fx_args(fx), "-g", "0.6", "-r", str(render_sr),
                        "-F", str(wav), sf2, str(mid)], check=True, capture_output=True, timeout=600)
        data, got_sr = sf.read(str(wav), dtype="float32", always_2d=True)
    audio = resample(to_mono(data), got_sr, sr)
    rows = []
    for i, lab, ws, t0 in blocks:
        a = int(round(t0 * sr))
        stem = audio[a: a + int(round((max_s + tail) * sr))]
        # keep the window only: the release tail after max_s is cut (clips are <= max_s)
        pieces = cut_segments(stem[: int(max_s * sr)], sr, max_s, 1, window_starts=[0.0], min_active=0.5)
        for off, seg in pieces:
            k = win.index(ws)
            cid = clip_id(item, "instrument", f"_p{i}_{_slug(lab)}_s{k}")
            rel = write_clip(Path(cfg["out"]), cid, seg, sr)
            rows.append({"id": cid, "path": rel, "label": lab, "category": "instrument", "source": item.source,
                         "group": item.group, "license": item.license, "duration": round(len(seg) / sr, 4),
                         "sample_rate": sr, "split": None, "bandwidth_hz": int(sr // 2),
                         "offset_s": round(ws + off, 3), "window_s": ws, "orig_sample_rate": render_sr,
                         "program": GM_INSTRUMENTS[lab][0], "part": i, "tempo_qpm": round(qpm, 1),
                         "package": item.package, "soundfont": sfn, "velocity_scale": round(vel_scale[i], 3),
                         "synth_fx": fx})
    return rows


def synth_effects(rng: random.Random) -> dict:
    """Random fluidsynth reverb and chorus settings of one score (each on with probability 0.6)."""
    fx: dict = {"reverb": rng.random() < 0.6, "chorus": rng.random() < 0.6}
    if fx["reverb"]:
        fx.update(room_size=round(rng.uniform(0.1, 0.9), 3), damp=round(rng.uniform(0.0, 0.8), 3),
                  width=round(rng.uniform(0.2, 1.0), 3), reverb_level=round(rng.uniform(0.2, 0.9), 3))
    if fx["chorus"]:
        fx.update(chorus_nr=rng.randint(2, 6), chorus_level=round(rng.uniform(0.5, 2.5), 3),
                  chorus_speed=round(rng.uniform(0.2, 1.5), 3), chorus_depth=round(rng.uniform(2.0, 12.0), 3))
    return fx


def fluidsynth_fx_args(fx: dict) -> list[str]:
    """fluidsynth command-line options for :func:`synth_effects` settings."""
    args = ["-R", "1" if fx.get("reverb") else "0", "-C", "1" if fx.get("chorus") else "0"]
    names = {"room_size": "synth.reverb.room-size", "damp": "synth.reverb.damp", "width": "synth.reverb.width",
             "reverb_level": "synth.reverb.level", "chorus_nr": "synth.chorus.nr",
             "chorus_level": "synth.chorus.level", "chorus_speed": "synth.chorus.speed",
             "chorus_depth": "synth.chorus.depth"}
    for k, opt in names.items():
        if k in fx:
            args += ["-o", f"{opt}={fx[k]}"]
    return args


# --------------------------------------------------------------------------------------
# assembly


def _rank(key: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def round_robin_cap(entries: list, key_fn, source_fn, cap: int, seed: int) -> list:
    """At most ``cap`` entries, taken in turn from each source in a seeded hash order."""
    if cap <= 0 or len(entries) <= cap:
        return entries
    by_src: dict[str, list] = defaultdict(list)
    for e in entries:
        by_src[source_fn(e)].append(e)
    queues = [sorted(v, key=lambda e: _rank(key_fn(e), seed)) for _, v in sorted(by_src.items())]
    out: list = []
    i = 0
    while len(out) < cap:
        progressed = False
        for q in queues:
            if i < len(q) and len(out) < cap:
                out.append(q[i])
                progressed = True
        if not progressed:
            break
        i += 1
    return out


def cap_rows(rows: list[dict], cap: int, seed: int) -> list[dict]:
    """Per label, at most ``cap`` clips, balanced across sources (deterministic)."""
    if cap <= 0:
        return rows
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_label[r["label"]].append(r)
    keep = set()
    for rs in by_label.values():
        keep.update(r["id"] for r in round_robin_cap(rs, lambda r: r["id"], lambda r: r["source"], cap, seed))
    return [r for r in rows if r["id"] in keep]


def write_manifest(root: str | Path, rows: list[dict]) -> Path:
    """Write ``ROOT/manifest.jsonl`` atomically (rows sorted by id)."""
    path = Path(root) / "manifest.jsonl"
    tmp = path.with_name("manifest.jsonl.tmp")
    with open(tmp, "w") as f:
        for r in sorted(rows, key=lambda r: r["id"]):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(root: str | Path) -> list[dict]:
    """Rows of ``ROOT/manifest.jsonl``."""
    path = Path(root) / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def corpus_stats(rows: list[dict], root: Path | None = None) -> dict:
    """Counts and hours per category / split / label / source."""
    hours: dict = defaultdict(lambda: defaultdict(float))
    clips: dict = defaultdict(Counter)
    per_label: dict = {}
    for r in rows:
        hours[r["category"]][r["split"]] += r["duration"] / 3600
        clips[r["category"]][r["split"]] += 1
        pl = per_label.setdefault(r["label"], {"category": r["category"], "clips": 0, "hours": 0.0, "groups": set(),
                                               "splits": Counter(), "sources": set()})
        pl["clips"] += 1
        pl["hours"] += r["duration"] / 3600
        pl["groups"].add(r["group"])
        pl["splits"][r["split"]] += 1
        pl["sources"].add(r["source"])
    train_src: dict[str, set] = defaultdict(set)
    for r in rows:
        if r["split"] in ("train", "valid_in", "test_in"):
            train_src[r["label"]].add(r["source"])
    labels = {k: {"category": v["category"], "clips": v["clips"], "hours": round(v["hours"], 4),
                  "groups": len(v["groups"]), "splits": dict(v["splits"]), "sources": sorted(v["sources"]),
                  "train_sources": len(train_src[k])}
              for k, v in sorted(per_label.items())}
    out = {
        "clips": len(rows),
        "hours": round(sum(r["duration"] for r in rows) / 3600, 4),
        "groups": len({r["group"] for r in rows}),
        "labels": len(labels),
        "by_category": {c: {"clips": dict(clips[c]), "hours": {s: round(h, 4) for s, h in hours[c].items()},
                            "total_clips": sum(clips[c].values()), "total_hours": round(sum(hours[c].values()), 4)}
                        for c in CATEGORIES if c in clips},
        "by_split": {s: {"clips": sum(1 for r in rows if r["split"] == s),
                         "hours": round(sum(r["duration"] for r in rows if r["split"] == s) / 3600, 4)}
                     for s in ALL_SPLITS},
        "by_source": dict(sorted(Counter(r["source"] for r in rows).items())),
        "per_label": labels,
    }
    if root is not None:
        size = sum((Path(root) / r["path"]).stat().st_size for r in rows if (Path(root) / r["path"]).is_file())
        out["size_mb"] = round(size / 1e6, 1)
    return out


def print_summary(stats: dict, seconds: float | None = None) -> None:
    print(f"\ncorpus: {stats['clips']} clips, {stats['hours']:.2f} h, {stats['labels']} labels, "
          f"{stats['groups']} groups" + (f", {stats.get('size_mb', 0):.0f} MB" if "size_mb" in stats else "")
          + (f", built in {seconds / 60:.1f} min" if seconds is not None else ""))
    print(f"{'category':<11}" + "".join(f"{s:>20}" for s in (*ALL_SPLITS, "total")))
    for c, v in stats["by_category"].items():
        cells = [f"{v['clips'].get(s, 0):>6} / {v['hours'].get(s, 0.0):6.2f} h" for s in ALL_SPLITS]
        cells.append(f"{v['total_clips']:>6} / {v['total_hours']:6.2f} h")
        print(f"{c:<11}" + "".join(f"{x:>20}" for x in cells))
    print("labels: " + ", ".join(f"{k} ({v['clips']}/{v['groups']}g)" for k, v in stats["per_label"].items()))


# --------------------------------------------------------------------------------------
# driver


def _source_params(name: str, args: argparse.Namespace) -> dict:
    categories = {k: v["category"] for k, v in sorted(load_labels().items())}
    rules = {p: SFX_RULES.get(p) for p in SOURCES[name].packages} if name in SOURCES else {}
    # prompts and parents of labels.json do not change clips: only categories and rule tables count
    params = {"version": BUILD_VERSION, "sample_rate": args.sample_rate, "max_seconds": args.max_seconds,
              "seed": args.seed, "item_cap": args.max_clips_per_label,
              "categories_sha": hashlib.sha1(json.dumps(categories).encode()).hexdigest()[:12],
              "rules_sha": hashlib.sha1(json.dumps(rules).encode()).hexdigest()[:12]}
    if name in ("asterisk", "espeak", "0ad"):
        params["speech_band_hz"] = args.speech_band_hz
    if name == "music21":
        params["scores"] = args.scores
    return params


def build_source(name: str, src_root: Path, out: Path, labels: dict, args: argparse.Namespace,
                 soundfonts: dict[str, str] | None) -> list[dict]:
    """Rows of one source, from the cache ``out/_rows/NAME.jsonl`` when still valid."""
    rows_dir = out / "_rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    cache, pfile = rows_dir / f"{name}.jsonl", rows_dir / f"{name}.params.json"
    params = _source_params(name, args)
    if not args.force and cache.is_file() and pfile.is_file() and json.loads(pfile.read_text()) == params:
        rows = [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
        if all((out / r["path"]).is_file() for r in rows):
            logger.info("%s: %d clips from cache", name, len(rows))
            return rows
    t0 = time.time()
    spec = SOURCES[name]
    items = spec.scan(src_root, labels, seed=args.seed, scores=args.scores)
    unknown = sorted({it.label for it in items if it.label is not None and it.label not in labels})
    if unknown:
        raise ValueError(f"source {name} produces labels missing from labels.json: {unknown}")
    # item-level cap per label (clip-level cap is applied again at assembly)
    if args.max_clips_per_label > 0:
        by_label: dict = defaultdict(list)
        for it in items:
            by_label[it.label].append(it)
        items = [it for lab in by_label for it in
                 round_robin_cap(by_label[lab], lambda i: i.key, lambda i: i.source, args.max_clips_per_label,
                                 args.seed)]
    cfg = {"out": str(out), "sample_rate": args.sample_rate, "max_seconds": args.max_seconds,
           "speech_band_hz": args.speech_band_hz, "seed": args.seed, "soundfonts": soundfonts or {}}
    rows: list[dict] = []
    work = [(it, cfg) for it in items]
    desc = f"{name} ({len(items)} items)"
    if args.jobs > 1 and len(work) > 1:
        with get_context("fork").Pool(args.jobs) as pool:
            for rs in tqdm(pool.imap_unordered(process_item, work, chunksize=1 if name == "music21" else 4),
                           total=len(work), desc=desc, unit="item", file=sys.stderr):
                rows.extend(rs)
    else:
        for w in tqdm(work, desc=desc, unit="item", file=sys.stderr):
            rows.extend(process_item(w))
    rows.sort(key=lambda r: r["id"])
    with open(cache, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    pfile.write_text(json.dumps(params))
    (rows_dir / f"{name}.seconds").write_text(f"{time.time() - t0:.1f}\n")
    return rows


def _cached_seconds(out: Path, name: str) -> float | None:
    """Seconds the last real (uncached) build of a source took."""
    f = out / "_rows" / f"{name}.seconds"
    return float(f.read_text()) if f.is_file() else None


def build(args: argparse.Namespace) -> dict:
    """Run the whole build; returns the stats dict."""
    t0 = time.time()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache).resolve() if args.cache else out / "_debs"
    src_root = out / "_src"
    labels = load_labels()
    if args.sources in ("default", ""):
        names = list(LIGHT_SOURCES if args.light else DEFAULT_SOURCES)
    elif args.sources == "all":
        names = list(SOURCES)
    else:
        names = [s.strip() for s in args.sources.split(",") if s.strip()]
    if args.heavy:
        names += [k for k, v in SOURCES.items() if v.heavy and k not in names]
    bad = [n for n in names if n not in SOURCES]
    if bad:
        raise SystemExit(f"unknown source(s) {bad}; known: {', '.join(SOURCES)}")
    for n in list(names):
        for tool in SOURCES[n].needs:
            if not ensure_tool(tool):
                logger.warning("%s is not installed: skipping source %s (apt-get install -y %s)", tool, n, tool)
                names.remove(n)
                break
    packages = sorted({p for n in names for p in SOURCES[n].packages})
    for p in tqdm(packages, desc="packages", unit="pkg", file=sys.stderr):
        deb = ensure_package(p, cache)
        extract_package(deb, src_root / p, PACKAGE_GLOBS.get(p, ("*.wav", "*.ogg", "*.flac")))
    soundfonts: dict[str, str] = {}
    if "music21" in names:
        for sfn, (pkg, fname, _) in SOUNDFONTS.items():
            cands = sorted((src_root / pkg).rglob(fname))
            if not cands:
                raise RuntimeError(f"{fname} not found in {pkg}")
            soundfonts[sfn] = str(cands[0])
    t_fetch = time.time() - t0
    rows: list[dict] = []
    for n in names:
        ts = time.time()
        rs = build_source(n, src_root, out, labels, args, soundfonts)
        logger.info("%s: %d clips in %.0f s", n, len(rs), time.time() - ts)
        rows.extend(rs)
    # drop labels with fewer than 2 clips, cap, split
    counts = Counter(r["label"] for r in rows)
    dropped = sorted(lab for lab, c in counts.items() if c < 2)
    if dropped:
        logger.warning("dropping labels with < 2 clips: %s", dropped)
    rows = [r for r in rows if counts[r["label"]] >= 2]
    rows = cap_rows(rows, args.max_clips_per_label, args.seed)
    assign_all_splits(rows, seed=args.seed, fractions=tuple(args.split), in_fractions=tuple(args.split_in))
    write_manifest(out, rows)
    if args.prune:
        keep = {r["path"] for r in rows}
        cached = set()
        for f in (out / "_rows").glob("*.jsonl"):
            cached |= {json.loads(line)["path"] for line in f.read_text().splitlines() if line.strip()}
        gone = [p for p in (out / "clips").rglob("*.wav") if p.relative_to(out).as_posix() not in keep | cached]
        for p in gone:
            p.unlink()
        logger.info("pruned %d clip files that no manifest or source cache references", len(gone))
    seconds = time.time() - t0
    stats = corpus_stats(rows, out)
    stats["build"] = {"seconds": round(seconds, 1), "fetch_extract_seconds": round(t_fetch, 1),
                      "sources": names, "packages": packages, "sample_rate": args.sample_rate,
                      "max_seconds": args.max_seconds, "max_clips_per_label": args.max_clips_per_label,
                      "seed": args.seed, "split": list(args.split), "speech_band_hz": args.speech_band_hz,
                      "scores": args.scores, "dropped_labels": dropped, "version": BUILD_VERSION,
                      "source_seconds": {n: _cached_seconds(out, n) for n in names},
                      "debs_mb": round(sum(f.stat().st_size for f in cache.glob("*.deb")) / 1e6, 1)}
    (out / "corpus_stats.json").write_text(json.dumps(stats, indent=1))
    print_summary(stats, seconds)
    return stats


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m corpus_build.build",
                                description="Build the offline single-source corpus (clips + manifest.jsonl).")
    p.add_argument("--out", required=True, help="corpus folder (clips/, manifest.jsonl, corpus_stats.json)")
    p.add_argument("--sources", default="default",
                   help=f"comma list of sources, 'default' or 'all' (known: {', '.join(SOURCES)})")
    p.add_argument("--heavy", action="store_true", help="kept for compatibility: heavy sources are on by default")
    p.add_argument("--light", action="store_true",
                   help="'default' leaves out the heavy downloads (0ad, supertuxkart, redeclipse, soundtracks ...)")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--max-seconds", type=float, default=10.0, help="longest clip; longer files are cut")
    p.add_argument("--max-clips-per-label", type=int, default=1000, help="0: no cap")
    p.add_argument("--scores", type=int, default=192, help="music21 scores to render (instrument stems)")
    p.add_argument("--speech-band-hz", type=float, default=0.0,
                   help="low-pass every speech clip at this frequency (0: off; bandwidth_hz is recorded anyway)")
    p.add_argument("--split", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VALID", "TEST"))
    p.add_argument("--split-in", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VALID_IN", "TEST_IN"),
                   help="group split of the training sources into train / valid_in / test_in")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--cache", default=None, help="folder for downloaded .debs (default OUT/_debs)")
    p.add_argument("--force", action="store_true", help="ignore the per-source caches")
    p.add_argument("--prune", action="store_true",
                   help="delete clip files left over from earlier builds (not in the manifest or a source cache)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    build(args)
    return 0


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``promptsep data build ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "build":
        argv = argv[1:]
    return main(argv)


if __name__ == "__main__":
    sys.exit(main())
