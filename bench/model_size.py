"""Parameter counts and CPU seconds per function evaluation of the separator sizes.

``python -m bench.model_size --sizes tiny small --seconds 10 --repeats 7 --out model_size.json``

For each DiT size (on the tiny16k codec and the MiniLM text encoder) it reports the
parameters of each part and the median wall time of one velocity evaluation (one
function evaluation of the sampler) on ``--seconds`` of audio, plus the codec's encode
and decode time, all measured in one process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(size: str, seconds: float, repeats: int, text_kind: str = "minilm") -> dict:
    """Parameter counts and median seconds per NFE for one DiT size."""
    from prompts.text import TextEncoderConfig
    from separation.codec import codec_preset
    from separation.dit import dit_config
    from separation.model import SeparationModelConfig, build_separation_model

    cfg = SeparationModelConfig(codec=codec_preset("tiny16k"), dit=dit_config(size), text=TextEncoderConfig(kind=text_kind))
    model = build_separation_model(cfg).eval()
    sr = model.sample_rate
    wav = 0.1 * torch.randn(1, 1, int(seconds * sr))
    with torch.no_grad():
        z = model.encode_audio(wav)
        cond = model.encode_prompts(["dog barking"], [[("+", 1.0, 2.0)]], [None], z.shape[1], [seconds])
        x = torch.randn(1, z.shape[1], 2 * model.latent_dim)
        t = torch.full((1,), 0.5)
        nfe = _median_time(lambda: model.velocity(x, t, z, cond), repeats)
        enc = _median_time(lambda: model.encode_audio(wav), max(3, repeats // 2))
        dec = _median_time(lambda: model.decode_latents(z, wav.shape[-1]), max(3, repeats // 2))

    def count(m):
        return 0 if m is None else sum(p.numel() for p in m.parameters())

    return {
        "size": size, "audio_seconds": seconds, "latent_frames": int(z.shape[1]),
        "params": {"dit": count(model.dit), "codec": count(model.codec), "text_encoder": count(model.text_encoder),
                   "video_encoder": count(model.video_encoder)},
        "seconds_per_nfe": nfe, "codec_encode_s": enc, "codec_decode_s": dec,
        "threads": torch.get_num_threads(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.model_size", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the JSON here too")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [measure(s, args.seconds, args.repeats) for s in args.sizes]
    print("| size | DiT params | codec params | s / NFE | 16-step midpoint (s) | RTF at 16 NFE |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        total = 16 * r["seconds_per_nfe"] + r["codec_encode_s"] + 2 * r["codec_decode_s"]
        print(f"| {r['size']} | {r['params']['dit'] / 1e6:.2f} M | {r['params']['codec'] / 1e6:.2f} M | "
              f"{r['seconds_per_nfe']:.3f} | {total:.2f} | {total / r['audio_seconds']:.3f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
