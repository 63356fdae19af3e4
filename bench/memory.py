"""Memory against length: peak RSS of streamed separation (``Separator.separate_file``) for long files.

``python -m bench.memory --out runs/memory`` writes synthetic 16 kHz recordings of 2, 20 and 60
minutes (tones + noise bursts, 16-bit WAV, written in blocks), then separates each in a fresh
process with the CLI's streaming path and reads that process's peak resident set size (``VmHWM``,
else ``ru_maxrss``: the whole process, model and libraries included). The report gives peak RSS per
length and the ratio of the longest to the shortest; the bar of issue 11 is a ratio within 1.10.
Outputs: ``memory.json`` and ``memory.md`` in ``--out``. Not a test: it takes minutes per hour of audio.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.child import child_env

#: Lengths measured by default (minutes).
DEFAULT_MINUTES = (2.0, 20.0, 60.0)


def synthetic_blocks(seconds: float, sample_rate: int, block_s: float = 60.0, seed: int = 0) -> Iterator[np.ndarray]:
    """A deterministic mixture-like signal (two tones + gated noise), ``[n]`` float32 blocks."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    step = int(block_s * sample_rate)
    for s in range(0, n, step):
        t = np.arange(s, min(n, s + step)) / sample_rate
        x = 0.3 * np.sin(2 * math.pi * 440 * t) + 0.2 * np.sin(2 * math.pi * 97 * t)
        x += 0.1 * rng.standard_normal(t.size) * (np.sin(2 * math.pi * 0.7 * t) > 0)
        yield x.astype(np.float32)


def write_input(path: Path, seconds: float, sample_rate: int) -> Path:
    """Write :func:`synthetic_blocks` as a 16-bit mono WAV, block by block."""
    import soundfile as sf

    with sf.SoundFile(str(path), "w", sample_rate, 1, subtype="PCM_16") as f:
        for block in synthetic_blocks(seconds, sample_rate):
            f.write(block)
    return path


def child(args: argparse.Namespace) -> int:
    """Separate one file with the streaming path; print one JSON line with peak RSS and timings."""
    from bench.speed import peak_rss_mb, rss_mb
    from separation.separator import Separator

    t0 = time.perf_counter()
    sep = Separator.from_pretrained(args.checkpoint, device=args.device)
    rss_loaded = rss_mb()
    t1 = time.perf_counter()
    info = sep.separate_file(args.input, Path(args.work) / "target.wav", Path(args.work) / "residual.wav",
                             text=args.text, overwrite=True)
    print(json.dumps({"load_s": t1 - t0, "separate_s": time.perf_counter() - t1, "audio_s": info["audio_seconds"],
                      "rss_after_load_mb": rss_loaded, "peak_rss_mb": peak_rss_mb(),
                      "steps": info["steps"], "method": info["method"]}))
    return 0


def run_length(minutes: float, checkpoint: str, work: Path, device: str, text: str, sample_rate: int) -> dict[str, Any]:
    """Write the input, separate it in a fresh process, return its figures."""
    d = work / f"{minutes:g}min"
    d.mkdir(parents=True, exist_ok=True)
    src = write_input(d / "input.wav", minutes * 60, sample_rate)
    cmd = [sys.executable, "-m", "bench.memory", "--child", "--input", str(src), "--work", str(d),
           "--checkpoint", checkpoint, "--device", device, "--text", text]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    if proc.returncode != 0:
        raise RuntimeError(f"{minutes:g} min: the child failed:\n{proc.stderr[-2000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    for f in d.iterdir():  # the inputs and stems are large: keep only the figures
        f.unlink()
    d.rmdir()
    return {"minutes": minutes, **row}


def report(rows: list[dict[str, Any]]) -> str:
    """Markdown table of peak RSS against length, with the longest/shortest ratio."""
    lines = ["| audio | peak RSS (MiB) | RSS after loading (MiB) | separation time (s) | real-time factor |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['minutes']:g} min | {r['peak_rss_mb']:.0f} | {r['rss_after_load_mb']:.0f} | "
                     f"{r['separate_s']:.0f} | {r['separate_s'] / r['audio_s']:.3f} |")
    lo, hi = min(rows, key=lambda r: r["minutes"]), max(rows, key=lambda r: r["minutes"])
    ratio = hi["peak_rss_mb"] / lo["peak_rss_mb"]
    lines += ["", f"peak RSS {hi['minutes']:g} min / {lo['minutes']:g} min = {ratio:.3f} "
              f"({'within' if ratio <= 1.10 else 'over'} the 1.10 bar)"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.memory [--minutes 2 20 60] [--out DIR]``."""
    from promptsep.cli import DEFAULT_CHECKPOINT

    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, nargs="+", default=list(DEFAULT_MINUTES), help="lengths to measure")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="separator release (default: shipped)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--text", default="a steady tone", help="text prompt")
    p.add_argument("--sample-rate", type=int, default=16000, help="rate of the synthetic input (default 16000)")
    p.add_argument("--out", default="runs/memory", help="folder of memory.json / memory.md")
    p.add_argument("--work", default=None, help="scratch folder for the inputs and stems (default: a temp dir)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        for minutes in args.minutes:
            rows.append(run_length(minutes, args.checkpoint, Path(work), args.device, args.text, args.sample_rate))
            print(f"{minutes:g} min: peak RSS {rows[-1]['peak_rss_mb']:.0f} MiB, {rows[-1]['separate_s']:.0f} s",
                  file=sys.stderr)
            (out / "memory.json").write_text(json.dumps({"checkpoint": args.checkpoint, "device": args.device,
                                                         "rows": rows}, indent=2))  # kept after each length
            (out / "memory.md").write_text(report(rows))
    print(report(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
