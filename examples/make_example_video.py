"""Write the bundled example video: a bundled example mixture as the sound track of two moving discs.

The picture is drawn with numpy: an orange disc (the target, "woman speaking") moves inside the
left part of the frame, which the box ``4,8,60,88`` encloses on every frame, and a blue disc (the
interferer, "door") moves in the right part. The sound is an existing bundled mixture
(``examples/woman_speaking_with_door.wav``, see ``examples/README.md`` for its sources and licence),
encoded as AAC; the picture as H.264 (MPEG-4 Part 2 where PyAV has no H.264 encoder). Run from the
repository root::

    python examples/make_example_video.py
    promptsep separate examples/woman_speaking_with_door.mp4 --box 4,8,60,88 -o separated
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
#: Box (x0, y0, x1, y1, pixels, x1/y1 exclusive) that holds the target disc on every frame.
TARGET_BOX = (4, 8, 60, 88)


def disc_positions(t: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Centres ``(x, y)`` of the target and interferer discs at time ``t`` seconds (128x96 frame)."""
    target = (32 + 12 * math.sin(2 * math.pi * t / 2.0), 48 + 24 * math.sin(2 * math.pi * 0.7 * t))
    other = (96 + 18 * math.cos(2 * math.pi * t / 1.5), 48 + 30 * math.sin(2 * math.pi * t / 1.5))
    return target, other


def draw_frame(t: float, width: int = 128, height: int = 96) -> np.ndarray:
    """One RGB frame ``[H, W, 3]`` uint8: grey background, orange target disc, blue interferer disc."""
    img = np.full((height, width, 3), 48, np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    (tx, ty), (ox, oy) = disc_positions(t)
    sx, sy = width / 128, height / 96
    img[(xx - ox * sx) ** 2 + (yy - oy * sy) ** 2 <= (10 * sx) ** 2] = (40, 90, 230)
    img[(xx - tx * sx) ** 2 + (yy - ty * sy) ** 2 <= (12 * sx) ** 2] = (245, 150, 30)
    return img


def video_codec() -> str:
    """``"libx264"`` (H.264) when PyAV can encode it here, else ``"mpeg4"``."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(audio: Path, out: Path, fps: int = 25, width: int = 128, height: int = 96) -> Path:
    """Encode ``audio`` (any file libsndfile reads) with the drawn frames into ``out`` (mp4).

    Args:
        audio: the sound track.
        out: the mp4 to write (replaced if it exists).
        fps: frames per second.
        width / height: frame size in pixels (even numbers: 4:2:0 chroma).

    Returns:
        ``out``.
    """
    import av

    wav, sr = sf.read(str(audio), dtype="float32", always_2d=True)  # [N, C]
    wav = wav.mean(axis=1, keepdims=True).T.copy()  # [1, N]: mono track
    n_frames = math.ceil(wav.shape[1] / sr * fps)
    codec = video_codec()
    with av.open(str(out), "w", format="mp4") as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            vs.options = {"crf": "30", "preset": "veryslow", "threads": "1"}
        else:
            vs.bit_rate = 200_000
        aus = c.add_stream("aac", rate=sr, layout="mono")
        aus.bit_rate = 48_000
        for j in range(n_frames):
            frame = av.VideoFrame.from_ndarray(draw_frame(j / fps, width, height), format="rgb24")
            frame.pts, frame.time_base = j, Fraction(1, fps)
            for pkt in vs.encode(frame):
                c.mux(pkt)
        for pkt in vs.encode():
            c.mux(pkt)
        mux_audio(c, aus, wav, sr)
    return out


def mux_audio(container, stream, audio: np.ndarray, sr: int, block: int = 1024) -> None:
    """Encode planar float audio ``[C, N]`` (1 or 2 channels) into ``stream`` and mux it, flushing at the end.

    Args:
        container: an ``av`` output container.
        stream: its audio stream (made with the matching layout).
        audio: samples ``[C, N]`` float32.
        sr: sample rate in Hz.
        block: samples per frame handed to the encoder.
    """
    import av

    layout = "stereo" if audio.shape[0] == 2 else "mono"
    for i in range(0, audio.shape[1], block):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, i:i + block]), format="fltp", layout=layout)
        af.sample_rate, af.pts, af.time_base = sr, i, Fraction(1, sr)
        for pkt in stream.encode(af):
            container.mux(pkt)
    for pkt in stream.encode():
        container.mux(pkt)


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``examples/woman_speaking_with_door.mp4`` (or ``--out``) and print its size."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--audio", type=Path, default=HERE / "woman_speaking_with_door.wav")
    p.add_argument("--out", type=Path, default=HERE / "woman_speaking_with_door.mp4")
    p.add_argument("--fps", type=int, default=25)
    args = p.parse_args(argv)
    out = write_video(args.audio, args.out, fps=args.fps)
    print(f"{out}: {out.stat().st_size / 1024:.1f} KiB, {video_codec()} + aac; target box {TARGET_BOX}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
