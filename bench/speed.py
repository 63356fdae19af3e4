"""Speed report: real-time factor and peak memory of a separator on the CPU (or a GPU).

``promptsep bench speed --checkpoint DIR --out DIR`` measures

- 10 s of audio at 4 / 8 / 16 / 32 function evaluations (NFE): the median wall time of
  several runs in one process and the real-time factor (RTF = time / audio duration);
- long inputs (default 1 and 5 minutes, plus the 10 s point) at one NFE, to show that
  time grows linearly with length and peak memory stays flat thanks to chunking.

Each configuration runs in a fresh subprocess (``--in-process`` turns that off), so one
configuration's allocations cannot hide another's peak. Peak memory is the resident set
size (RSS) high-water mark during the first run minus the RSS just before it: on Linux
the high-water mark is reset through ``/proc/self/clear_refs`` (``VmHWM``), elsewhere
``resource.getrusage`` is used (valid because the process is fresh). tracemalloc is not
used because it does not see torch's CPU allocations. Outputs: ``speed.json``, ``speed.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.child import child_env

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- memory
def _status_kb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """Current resident set size in MiB (Linux), or None."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark (Linux ``clear_refs`` 5); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """RSS high-water mark in MiB (``VmHWM``, else ``ru_maxrss``)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


# ---------------------------------------------------------------------- one configuration
def speed_signal(seconds: float, sample_rate: int, seed: int = 0):
    """A deterministic ``[1, N]`` mixture-like signal (tones + noise bursts)."""
    import torch

    n = int(round(seconds * sample_rate))
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / sample_rate
    x = 0.3 * torch.sin(2 * math.pi * 440 * t) + 0.2 * torch.sin(2 * math.pi * 97 * t)
    x = x + 0.1 * torch.randn(n, generator=g) * (torch.sin(2 * math.pi * 0.7 * t) > 0)
    return x[None].float()


def measure(
    checkpoint: str,
    seconds: float,
    nfe: int,
    repeats: int = 3,
    chunk_s: float = 10.0,
    overlap_s: float = 2.0,
    threads: int | None = None,
    device: str = "cpu",
    method: str | None = "midpoint",
    text: str = "a steady tone",
    candidates: int = 1,
    judge: str | None = None,
    variants: bool = False,
) -> dict[str, Any]:
    """Time and memory of one configuration in this process.

    With ``candidates`` K > 1 the separator draws K results and keeps the judge's best (the cost of
    re-ranking: K separations and K judge passes); ``judge`` is then the judge release folder.

    A 0.5 s warm-up run initialises kernels; then the peak-RSS counter is reset and the
    first full run gives the memory figure (peak RSS minus RSS before it); then
    ``repeats`` more runs give the median time.

    With ``variants`` the K candidates are prompt variants of ``text`` (``Separator.separate(variants=True)``).

    Returns:
        ``{"audio_s", "nfe", "times", "median_s", "rtf", "rss_before_mb", "peak_rss_mb",
        "peak_delta_mb", "chunks", "threads", "candidate_texts"}`` (and ``cuda_peak_mb`` on a GPU).
    """
    import torch

    from separation.separator import Separator

    if threads:
        torch.set_num_threads(int(threads))
    ranker = None
    if int(candidates) > 1:
        if not judge:
            raise ValueError("candidates > 1 needs a judge release (--judge) to rank them")
        from judge.model import Judge

        ranker = Judge.from_pretrained(judge, map_location=device).eval()
    sep = Separator.from_pretrained(checkpoint, device=device, chunk_s=chunk_s, overlap_s=overlap_s, judge=ranker)
    sr = sep.sample_rate
    audio = speed_signal(seconds, sr)
    kw = {"text": text, "steps": nfe, "method": method, "candidates": int(candidates), "variants": bool(variants)}
    if ranker is not None:
        kw["ranker"] = "judge"
    sep.separate(speed_signal(min(0.5, seconds), sr), sr, **kw)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    exact = reset_peak_rss()
    before = rss_mb()
    if not exact:
        before = peak_rss_mb()  # fresh process: the high-water mark so far is the baseline
    t0 = time.perf_counter()
    first_res = sep.separate(audio, sr, **kw)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    first = time.perf_counter() - t0
    peak = peak_rss_mb()
    out: dict[str, Any] = {"audio_s": seconds, "nfe": nfe, "rss_before_mb": before, "peak_rss_mb": peak,
                           "peak_delta_mb": max(0.0, peak - (before or 0.0)), "peak_exact": exact,
                           "first_run_s": first, "threads": torch.get_num_threads(), "device": device,
                           "candidates": int(candidates), "method": sep.sampling(nfe, method)[1],
                           "candidate_texts": first_res.info.get("candidate_texts")}
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        sep.separate(audio, sr, **kw)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    out["times"] = times
    out["median_s"] = statistics.median(times)
    out["rtf"] = out["median_s"] / seconds
    frames = sep.model.codec.num_frames(audio.shape[-1])
    out["chunks"] = len(sep._chunk_bounds(frames, sep.model.frame_rate))
    return out


def _measure_isolated(args: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure` in a fresh ``python -m bench.speed --child`` process."""
    cmd = [sys.executable, "-m", "bench.speed", "--child", json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    if proc.returncode != 0:
        raise RuntimeError(f"speed measurement {args} failed:\n{proc.stderr[-2000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


# ---------------------------------------------------------------------- report
def _fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
    return slope, my - slope * mx


def run_speed(
    checkpoint: str,
    out_dir: str | Path,
    nfe: Sequence[int] = (4, 8, 16, 32),
    short_s: float = 10.0,
    long_s: Sequence[float] = (60.0, 300.0),
    long_nfe: int = 8,
    repeats: int = 5,
    long_repeats: int = 2,
    chunk_s: float = 10.0,
    overlap_s: float = 2.0,
    threads: int | None = None,
    device: str = "cpu",
    isolate: bool = True,
    command: str | None = None,
    candidates: Sequence[int] = (),
    judge: str | None = None,
    method: str | None = "midpoint",
    text: str = "a steady tone",
    variants: bool = False,
) -> dict[str, Any]:
    """Measure every configuration and write ``speed.json`` and ``speed.md``.

    Args:
        checkpoint: separator release folder.
        out_dir: output folder.
        nfe: step counts measured on ``short_s`` seconds.
        short_s: length of the short input (10 s).
        long_s: long input lengths (1 and 5 minutes), measured at ``long_nfe``.
        long_nfe: NFE of the length sweep.
        repeats / long_repeats: timed runs per configuration (medians reported).
        chunk_s / overlap_s: the separator's chunking.
        threads: torch CPU threads (None: torch's default).
        device: ``cpu`` or ``cuda``.
        isolate: one fresh subprocess per configuration.
        command: the command line recorded in the report.
        candidates: re-ranking rows: K candidates ranked by ``judge`` on ``short_s`` seconds at the
            first ``nfe`` (K = 1 is the same row without the judge, the cost baseline).
        judge: judge release folder for the re-ranking rows.
        method: sampler (None: the release's recommended).
        text: the text prompt.
        variants: re-ranking rows with prompt-variant candidates (``Separator.separate(variants=True)``;
            ``text`` must be a known label's prompt, e.g. "trumpet", for the wordings to differ).

    Returns:
        The ``speed.json`` content.
    """
    import torch

    if any(int(k) > 1 for k in candidates) and not (judge and (Path(judge) / "config.json").is_file()):
        raise FileNotFoundError(f"--candidates needs a judge release folder (config.json), got {judge!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = [{"seconds": short_s, "nfe": int(k), "repeats": repeats} for k in nfe]
    for s in long_s:
        configs.append({"seconds": float(s), "nfe": int(long_nfe), "repeats": long_repeats})
    if int(long_nfe) not in [int(k) for k in nfe]:
        configs.append({"seconds": short_s, "nfe": int(long_nfe), "repeats": repeats})
    for k in candidates:
        if int(k) > 1:
            configs.append({"seconds": short_s, "nfe": int(nfe[0]), "repeats": repeats, "candidates": int(k)})
    results = []
    from tqdm import tqdm

    for c in tqdm(configs, desc="speed", unit="config"):
        args = {"checkpoint": str(checkpoint), "seconds": c["seconds"], "nfe": c["nfe"], "repeats": c["repeats"],
                "chunk_s": chunk_s, "overlap_s": overlap_s, "threads": threads, "device": device, "method": method,
                "candidates": c.get("candidates", 1), "judge": judge if c.get("candidates", 1) > 1 else None,
                "text": text, "variants": bool(variants)}
        r = _measure_isolated(args) if isolate else measure(**args)
        logger.info("%.0f s at NFE %d: median %.3f s (RTF %.3f), peak +%.1f MiB", c["seconds"], c["nfe"],
                    r["median_s"], r["rtf"], r["peak_delta_mb"])
        results.append(r)

    sweep = sorted((r for r in results if r["nfe"] == int(long_nfe) and r["candidates"] == 1), key=lambda r: r["audio_s"])
    lengths = [r["audio_s"] for r in sweep]
    slope, intercept = _fit_line(lengths, [r["median_s"] for r in sweep]) if len(sweep) >= 2 else (None, None)
    lin: dict[str, Any] = {"nfe": int(long_nfe), "points": [
        {"audio_s": r["audio_s"], "median_s": r["median_s"], "s_per_audio_s": r["median_s"] / r["audio_s"],
         "peak_delta_mb": r["peak_delta_mb"], "chunks": r["chunks"]} for r in sweep]}
    if len(sweep) >= 2:
        a, b = sweep[-2], sweep[-1]
        lin.update({
            "fit_s_per_audio_s": slope, "fit_intercept_s": intercept,
            "time_ratio": b["median_s"] / a["median_s"], "length_ratio": b["audio_s"] / a["audio_s"],
            "memory_ratio": (b["peak_delta_mb"] / a["peak_delta_mb"]) if a["peak_delta_mb"] > 0 else None,
            "memory_mb_per_minute": (b["peak_delta_mb"] - a["peak_delta_mb"]) / ((b["audio_s"] - a["audio_s"]) / 60),
        })
    dev = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"cpu, {results[0]['threads']} threads"
    base = next((r for r in results if r["candidates"] == 1 and r["audio_s"] == short_s and r["nfe"] == int(nfe[0])), None)
    rerank = [{"candidates": r["candidates"], "nfe": r["nfe"], "median_s": r["median_s"], "rtf": r["rtf"],
               "time_ratio_vs_one": r["median_s"] / base["median_s"] if base else None}
              for r in results if r["candidates"] > 1]
    report = {"checkpoint": str(checkpoint), "device": dev, "chunk_s": chunk_s, "overlap_s": overlap_s,
              "isolated": isolate, "command": command, "configs": results, "length_sweep": lin,
              "judge": judge, "rerank": rerank, "text": text, "variants": bool(variants)}
    tmp = out / "speed.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out / "speed.json")
    _write_md(report, out / "speed.md")
    return report


def _write_md(rep: dict[str, Any], path: Path) -> None:
    lines = ["# Speed", ""]
    if rep.get("command"):
        lines += ["```bash", rep["command"], "```", ""]
    lines += [f"Checkpoint `{rep['checkpoint']}` on {rep['device']}; chunks of {rep['chunk_s']} s with "
              f"{rep['overlap_s']} s overlap; {'one fresh process per row' if rep['isolated'] else 'one process'}. "
              "Time: median of the timed runs (after a warm-up); RTF = time / audio duration (< 1 is faster than "
              "real time). Peak memory: RSS high-water mark during a run minus RSS before it.", "",
              "| audio (s) | NFE | candidates | median (s) | RTF | runs | peak RSS delta (MiB) | RSS before (MiB) | chunks |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rep["configs"]:
        lines.append(f"| {r['audio_s']:g} | {r['nfe']} | {r.get('candidates', 1)} | {r['median_s']:.3f} | {r['rtf']:.3f} | "
                     f"{len(r['times'])} | {r['peak_delta_mb']:.1f} | {(r['rss_before_mb'] or 0):.0f} | {r['chunks']} |")
    lin = rep["length_sweep"]
    if lin.get("time_ratio") is not None:
        mems = " / ".join(f"{p['peak_delta_mb']:.0f}" for p in lin["points"])
        ratio = lin["memory_ratio"]
        pts = ", ".join(f"{p['audio_s']:g} s: {p['s_per_audio_s']:.3f}" for p in lin["points"])
        lines += ["", f"## Length sweep (NFE {lin['nfe']})", "",
                  f"- seconds of compute per second of audio: {pts} (constant = linear time)",
                  f"- fit: time = {lin['fit_s_per_audio_s']:.4f} x length + {lin['fit_intercept_s']:.3f} s",
                  f"- {lin['length_ratio']:g}x longer input -> {lin['time_ratio']:.2f}x time",
                  f"- peak memory: {mems} MiB (ratio of the two longest {ratio if ratio is None else round(ratio, 2)}, "
                  f"{lin['memory_mb_per_minute']:.1f} MiB per extra minute: the audio buffers; the model's "
                  "working set is per chunk)"]
    if rep.get("rerank"):
        lines += ["", f"## Re-ranking cost (judge `{rep.get('judge')}`)", ""]
        for r in rep["rerank"]:
            ratio = r["time_ratio_vs_one"]
            lines.append(f"- best of {r['candidates']} at NFE {r['nfe']}: {r['median_s']:.3f} s (RTF {r['rtf']:.3f})"
                         + (f", {ratio:.2f}x one candidate" if ratio is not None else ""))
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``promptsep bench speed --checkpoint DIR --out DIR [--quick]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--child":
        print(json.dumps(measure(**json.loads(argv[1]))), flush=True)
        return 0
    p = argparse.ArgumentParser(prog="promptsep bench speed", description="CPU real-time factor and peak memory.")
    from promptsep.cli import DEFAULT_CHECKPOINT

    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--out", default="runs/speed")
    p.add_argument("--nfe", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--short-s", type=float, default=10.0)
    p.add_argument("--long-s", type=float, nargs="*", default=[60.0, 300.0])
    p.add_argument("--long-nfe", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--long-repeats", type=int, default=2)
    p.add_argument("--chunk-s", type=float, default=10.0)
    p.add_argument("--overlap-s", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--in-process", action="store_true", help="measure in this process (no fresh subprocess per row)")
    p.add_argument("--method", default=None, help="sampler (default: the release's recommended)")
    p.add_argument("--candidates", type=int, nargs="*", default=[],
                   help="re-ranking rows: best of K by the judge on --short-s seconds at the first --nfe")
    from promptsep.cli import DEFAULT_JUDGE

    p.add_argument("--judge", default=str(DEFAULT_JUDGE), help="judge release for --candidates (default: shipped)")
    p.add_argument("--text", default="a steady tone", help="text prompt")
    p.add_argument("--variants", action="store_true",
                   help="re-ranking rows with prompt-variant candidates (give a known label's --text, e.g. trumpet)")
    p.add_argument("--quick", action="store_true",
                   help="seconds-fast smoke run: NFE 2 4 on 1 s, lengths 2 and 4 s, 1 s chunks, 2 runs")
    args = p.parse_args(argv)
    if args.quick:
        args.nfe, args.short_s, args.long_s, args.long_nfe = [2, 4], 1.0, [2.0, 4.0], 2
        args.repeats, args.long_repeats, args.chunk_s, args.overlap_s = 2, 1, 1.0, 0.25
    try:
        rep = run_speed(args.checkpoint, args.out, args.nfe, args.short_s, args.long_s, args.long_nfe, args.repeats,
                        args.long_repeats, args.chunk_s, args.overlap_s, args.threads, args.device,
                        isolate=not args.in_process, command="promptsep bench speed " + " ".join(argv),
                        candidates=args.candidates, judge=args.judge, method=args.method, text=args.text,
                        variants=args.variants)
    except (FileNotFoundError, ValueError) as exc:
        print(f"promptsep bench speed: error: {exc}", file=sys.stderr)
        return 2
    print((Path(args.out) / "speed.md").read_text())
    return 0 if rep else 1


if __name__ == "__main__":
    sys.exit(main())
