"""On-the-fly augmentation of mixture sources (maintained libraries, seeded, resumable).

Per source, before mixing (:meth:`SourceAugmenter.source`), each with its own switch and
probability in :class:`AugmentConfig`:

- **speed** perturbation: the crop is read ``factor`` times longer (or shorter) and resampled
  back to its length (``torchaudio.functional.resample``): pitch and tempo move together;
- **pitch** shift without tempo change (``pedalboard.PitchShift``);
- **EQ**: a random low shelf, peak and high shelf (``pedalboard`` filters);
- **band limiting**: a random low-pass and/or high-pass (``pedalboard`` filters), what
  telephone speech or a small loudspeaker does;
- **room reverberation**: a simulated shoebox room impulse response (``pyroomacoustics``
  image-source method, random size, RT60, source and microphone positions), convolved
  with the source (the reverberant source is the target: the tail inside the segment is kept).

Per mixture (:meth:`SourceAugmenter.noise`): light coloured noise (white to brown,
``torch_audiomentations.AddColoredNoise``) at a random SNR; it belongs to the residual.
Random gain is the per-source ``level_db`` of :class:`~separation.data.mixing.MixConfig`,
and loudness normalisation stays as it is.

Every random choice comes from a ``numpy`` generator keyed by the item (see
:meth:`MixtureDataset.aug_rng`), independent of the generator that picks clips, so the
same seed and index give the same item, and turning pitch, EQ, band limiting, reverb or
noise on or off does not change which clips, crops and prompts an item has (speed
perturbation changes the crop lengths, hence possibly the later crops). torch-audiomentations draws from
torch's global generator: it runs inside ``torch.random.fork_rng`` seeded from the item's
generator, so the global state is left untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass
class AugmentConfig:
    """Switches and ranges of the on-the-fly augmentations (all off by default).

    Attributes:
        train_only: augment only ``train`` items (evaluation splits stay clean).
        speed / p_speed / speed_range: speed perturbation, factor range (1.0 = unchanged).
        pitch / p_pitch / pitch_semitones: pitch shift range in semitones.
        eq / p_eq / eq_gain_db: random low shelf / peak / high shelf, gain range in dB.
        bandlimit / p_bandlimit / lowpass_hz / highpass_hz: low-pass cutoff range and
            high-pass cutoff range (each applied with probability 0.5 once band limiting is on).
        reverb / p_reverb / rt60_s / room_dim_m: simulated room: RT60 range (s) and
            edge-length range (m) of the shoebox.
        max_order: cap on the image-source order (bounds the cost of long RT60s).
        rir_bank: rooms are drawn from a bank of this many simulated rooms (room ``j`` is a
            pure function of ``j``, simulated on first use and kept per worker), so the cost
            of the simulation is paid once per room; 0 simulates a fresh room every time.
        noise / p_noise / noise_snr_db / noise_f_decay: coloured noise per mixture: SNR range
            (dB re the mixture) and spectral decay range (0 white, 1 pink, 2 brown).
    """

    train_only: bool = True
    speed: bool = False
    p_speed: float = 0.3
    speed_range: tuple[float, float] = (0.9, 1.1)
    pitch: bool = False
    p_pitch: float = 0.2
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    eq: bool = False
    p_eq: float = 0.4
    eq_gain_db: tuple[float, float] = (-8.0, 8.0)
    bandlimit: bool = False
    p_bandlimit: float = 0.2
    lowpass_hz: tuple[float, float] = (2500.0, 7000.0)
    highpass_hz: tuple[float, float] = (60.0, 400.0)
    reverb: bool = False
    p_reverb: float = 0.3
    rt60_s: tuple[float, float] = (0.15, 0.8)
    room_dim_m: tuple[float, float] = (3.0, 10.0)
    max_order: int = 30
    rir_bank: int = 256
    noise: bool = False
    p_noise: float = 0.3
    noise_snr_db: tuple[float, float] = (25.0, 45.0)
    noise_f_decay: tuple[float, float] = (0.0, 2.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, tuple(v))
        for name in ("p_speed", "p_pitch", "p_eq", "p_bandlimit", "p_reverb", "p_noise"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {p}")
        for name in ("speed_range", "pitch_semitones", "eq_gain_db", "lowpass_hz", "highpass_hz", "rt60_s",
                     "room_dim_m", "noise_snr_db", "noise_f_decay"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                raise ValueError(f"augment.{name} must be a (low, high) pair, got {lo_hi}")
        if self.speed_range[0] <= 0:
            raise ValueError(f"augment.speed_range must be positive, got {self.speed_range}")
        if self.rt60_s[0] <= 0 or self.room_dim_m[0] < 1.5:
            raise ValueError("augment.rt60_s must be > 0 and augment.room_dim_m >= 1.5 m")

    @classmethod
    def from_dict(cls, d: dict | None) -> AugmentConfig:
        """Strict constructor from a config mapping: an unknown key is a ``ValueError`` naming it
        (:func:`promptsep.release.config_from_dict`)."""
        from promptsep.release import config_from_dict

        return config_from_dict(cls, dict(d or {}), "augment")

    def any_source(self) -> bool:
        """Whether any per-source augmentation is on."""
        return self.speed or self.pitch or self.eq or self.bandlimit or self.reverb


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


class SourceAugmenter:
    """Applies :class:`AugmentConfig` to single sources and to mixtures.

    Args:
        cfg: the switches and ranges.
        sample_rate: rate of every signal in Hz.
    """

    def __init__(self, cfg: AugmentConfig, sample_rate: int):
        self.cfg = cfg
        self.sr = int(sample_rate)
        self._bank: dict[int, np.ndarray] = {}

    # -------------------------------------------------------------- per source
    def speed_factor(self, rng: np.random.Generator) -> float:
        """Speed factor of a source (1.0 when off); draw it before cropping: the crop is ``factor`` x longer."""
        c = self.cfg
        if c.speed and rng.random() < c.p_speed:
            return _u(rng, c.speed_range)
        return 1.0

    def apply_speed(self, seg: np.ndarray, length: int) -> np.ndarray:
        """Resample a ``[M]`` crop to ``length`` samples (speed factor ``M / length``, in steps of 1 %),
        trimmed or zero-padded to exactly ``length``."""
        if seg.shape[0] == length:
            return seg
        import torchaudio.functional as AF

        pct = max(1, int(round(100 * seg.shape[0] / length)))
        g = math.gcd(pct, 100)
        out = AF.resample(torch.from_numpy(np.ascontiguousarray(seg, dtype=np.float32)), pct // g, 100 // g)
        out = out.numpy().astype(np.float64)
        if out.shape[0] >= length:
            return out[:length]
        return np.pad(out, (0, length - out.shape[0]))

    def source(self, seg: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
        """Pitch / EQ / band limit / reverb of one ``[M]`` float64 source crop.

        Returns:
            The augmented ``[M]`` float64 crop (the input itself if the result would not be
            finite or silent) and the names of the augmentations applied.
        """
        import pedalboard as pb

        c = self.cfg
        board, applied = [], []
        if c.pitch and rng.random() < c.p_pitch:
            board.append(pb.PitchShift(semitones=_u(rng, c.pitch_semitones)))
            applied.append("pitch")
        if c.eq and rng.random() < c.p_eq:
            nyq = self.sr / 2
            board += [pb.LowShelfFilter(cutoff_frequency_hz=_u(rng, (80.0, 400.0)), gain_db=_u(rng, c.eq_gain_db)),
                      pb.PeakFilter(cutoff_frequency_hz=_u(rng, (300.0, min(4000.0, 0.8 * nyq))),
                                    gain_db=_u(rng, c.eq_gain_db), q=_u(rng, (0.5, 3.0))),
                      pb.HighShelfFilter(cutoff_frequency_hz=_u(rng, (min(2000.0, 0.5 * nyq), 0.8 * nyq)),
                                         gain_db=_u(rng, c.eq_gain_db))]
            applied.append("eq")
        if c.bandlimit and rng.random() < c.p_bandlimit:
            lp, hp = rng.random() < 0.5, rng.random() < 0.5
            if not (lp or hp):
                lp = True
            if lp:
                board.append(pb.LowpassFilter(cutoff_frequency_hz=min(_u(rng, c.lowpass_hz), 0.45 * self.sr)))
            if hp:
                board.append(pb.HighpassFilter(cutoff_frequency_hz=_u(rng, c.highpass_hz)))
            applied.append("bandlimit")
        out = seg
        if board:
            x = np.ascontiguousarray(seg, dtype=np.float32)[None]
            out = pb.Pedalboard(board)(x, self.sr)[0].astype(np.float64)
            out = out[: seg.shape[0]] if out.shape[0] >= seg.shape[0] else np.pad(out, (0, seg.shape[0] - out.shape[0]))
        if c.reverb and rng.random() < c.p_reverb:
            out = _fftconvolve(out, self.room_ir(rng))[: seg.shape[0]]
            applied.append("reverb")
        if not np.isfinite(out).all() or np.abs(out).max() <= 1e-7:
            return seg, []
        return out, applied

    def room_ir(self, rng: np.random.Generator) -> np.ndarray:
        """``[L]`` impulse response of a random room of the bank (or a fresh one when ``rir_bank`` is 0)."""
        if self.cfg.rir_bank <= 0:
            return self.simulate_room(rng)
        j = int(rng.integers(self.cfg.rir_bank))
        ir = self._bank.get(j)
        if ir is None:
            ir = self._bank[j] = self.simulate_room(np.random.default_rng([0x5EED, j]))
        return ir

    def simulate_room(self, rng: np.random.Generator) -> np.ndarray:
        """``[L]`` impulse response of a random shoebox room (pyroomacoustics image sources),
        starting at the direct path, peak 1."""
        import pyroomacoustics as pra

        c = self.cfg
        dims = np.array([_u(rng, c.room_dim_m), _u(rng, c.room_dim_m), _u(rng, (2.4, 4.0))])
        rt60 = _u(rng, c.rt60_s)
        try:
            e_abs, order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # RT60 too short for this room: the most absorbent walls
            e_abs, order = 0.99, 1
        margin = 0.5
        src = margin + rng.random(3) * (dims - 2 * margin)
        mic = margin + rng.random(3) * (dims - 2 * margin)
        room = pra.ShoeBox(dims, fs=self.sr, materials=pra.Material(float(min(e_abs, 0.99))),
                           max_order=int(min(order, c.max_order)))
        room.add_source(src.tolist())
        room.add_microphone(mic.tolist())
        room.compute_rir()
        ir = np.asarray(room.rir[0][0], dtype=np.float64)
        start = int(np.argmax(np.abs(ir)))
        ir = ir[start:]
        return ir / (np.abs(ir).max() + 1e-12)

    # -------------------------------------------------------------- per mixture
    def noise(self, mixture: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """``[N]`` coloured noise to add to a ``[N]`` mixture (None when not drawn or off)."""
        c = self.cfg
        if not (c.noise and rng.random() < c.p_noise) or np.abs(mixture).max() <= 1e-7:
            return None
        from torch_audiomentations import AddColoredNoise

        snr = _u(rng, c.noise_snr_db)
        decay = _u(rng, c.noise_f_decay)
        seed = int(rng.integers(2**31 - 1))
        aug = AddColoredNoise(min_snr_in_db=snr, max_snr_in_db=snr, min_f_decay=decay, max_f_decay=decay, p=1.0,
                              sample_rate=self.sr, output_type="tensor")
        x = torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float32))[None, None]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            y = aug(x)
        noise = (y - x)[0, 0].double().numpy()
        return noise if np.isfinite(noise).all() else None


def _fftconvolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return fftconvolve(x, h, mode="full")


__all__ = ["AugmentConfig", "SourceAugmenter"]
