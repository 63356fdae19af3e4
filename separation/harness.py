"""The one training harness of promptsep: resume, safe checkpoints, Trainer, EMA, Hydra entry.

The codec (:mod:`separation.train_codec`), separator (:mod:`separation.train`), judge
(:mod:`judge.train`) and embedding (:mod:`bench.embedding.train`) trainers all go through it:

* :func:`resume_checkpoint` / :func:`resume_step`: ``resume=auto`` (``out_dir/last.ckpt`` when
  there is one) or an explicit path; read with ``torch.load(..., weights_only=True)``.
* :class:`SafeCheckpointIO`: Lightning's checkpoint I/O with atomic writes (temporary file +
  rename, so a kill never leaves a torn file) and *safe* reads (``weights_only=True``): a
  resume file that would need to unpickle arbitrary objects is refused, never executed.
* :func:`build_trainer`: one Trainer construction (checkpoint callback, progress bar,
  TensorBoard, safe I/O) and :func:`fit`, which resumes, trains and writes ``last.ckpt``.
* :class:`EMA`: one exponential moving average of a set of tensors (warm-up ``(1+s)/(10+s)``),
  saved in the resume checkpoint.
* :func:`hydra_entry`: the thin ``main(argv)`` of every trainer (no ``sys.argv`` rewriting:
  overrides given in ``argv`` are composed with Hydra's compose API).

Lightning and Hydra are imported only inside these functions, so importing this module
(and the library) does not need the training stack.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Sampler

from promptsep.release import atomic_file, config_dir

logger = logging.getLogger(__name__)

#: The Hydra config tree (``conf/``; packaged in a wheel as ``promptsep/conf``).
CONF_DIR = str(config_dir())


class ResumeError(ValueError):
    """A resume checkpoint that cannot be (safely) loaded."""


# --------------------------------------------------------------------- data
class StepSampler(Sampler[int]):
    """Yields global item indices ``start, start + 1, ...``: the data order is a function of the step."""

    def __init__(self, start: int = 0, length: int = 10**9):
        self.start = start
        self.length = length

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.start + self.length))

    def __len__(self) -> int:
        return self.length


# ------------------------------------------------------------------- resume
def safe_load(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a resume checkpoint with ``torch.load(..., weights_only=True)``.

    Raises:
        ResumeError: the file needs arbitrary unpickling (refused, nothing executed) or is unreadable.
        FileNotFoundError: no such file.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"resume checkpoint not found: {str(path)!r}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError for torn / foreign files ...
        raise ResumeError(f"refusing to load resume checkpoint {str(path)!r}: it is not a plain tensor/state "
                          f"file that loads with weights_only=True ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from e


def resume_checkpoint(cfg: Any, out_dir: str | os.PathLike) -> str | None:
    """The checkpoint a run resumes from: ``resume=auto`` -> ``out_dir/last.ckpt`` if it exists,
    ``resume=PATH`` -> that file, otherwise None."""
    r = cfg.get("resume")
    if r == "auto":
        last = Path(out_dir) / "last.ckpt"
        return str(last) if last.is_file() else None
    return str(r) if r else None


def resume_step(ckpt_path: str | None) -> int:
    """The global step stored in a resume checkpoint (0 without one); loaded safely."""
    if not ckpt_path:
        return 0
    step = int(safe_load(ckpt_path)["global_step"])
    logger.info("resuming from %s at step %d", ckpt_path, step)
    return step


def _safe_checkpoint_io():
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class SafeCheckpointIO(TorchCheckpointIO):
        """Atomic writes (temporary file + rename) and ``weights_only=True`` reads."""

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            with atomic_file(path) as f:
                torch.save(checkpoint, f)

        def load_checkpoint(self, path, map_location=None, weights_only=None):
            return safe_load(path, map_location if map_location is not None else "cpu")

    return SafeCheckpointIO()


# ---------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of named tensors (parameters and buffers).

    ``decay`` is capped by ``(1 + step) / (10 + step)`` early in training.

    Args:
        tensors: name -> tensor to track (typically ``named_parameters()`` of the trained parts).
        decay: the long-run decay.
    """

    def __init__(self, tensors: Iterable[tuple[str, torch.Tensor]], decay: float):
        self.decay = float(decay)
        self.shadow: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in tensors}

    @torch.no_grad()
    def update(self, tensors: Iterable[tuple[str, torch.Tensor]], step: int) -> None:
        """Move the average towards the current ``tensors`` after training step ``step``."""
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in tensors:
            s = self.shadow[k]
            if s.device != v.device:
                s = self.shadow[k] = s.to(v.device)
            s.lerp_(v.detach(), 1 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = set(self.shadow) - set(state), set(state) - set(self.shadow)
        if missing or unexpected:
            raise ResumeError(f"EMA state mismatch: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        for k, v in state.items():
            self.shadow[k] = v.detach().clone().to(self.shadow[k].device)


def cosine_warmup(total_steps: int, warmup_steps: int, floor: float = 0.05) -> Callable[[int], float]:
    """LR multiplier: linear warm-up then cosine decay to ``floor``."""
    import math

    total, warm = max(1, int(total_steps)), max(1, int(warmup_steps))

    def lr_lambda(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm)))) * (1 - floor) + floor

    return lr_lambda


# ------------------------------------------------------------------ trainer
def build_trainer(trainer_cfg: Any, out_dir: str | os.PathLike, max_steps: int, *, grad_clip: float,
                  ckpt_every: int, val_every: int | None = None, max_time: Any = None, extra_callbacks: Sequence = (),
                  progress: bool = True, **kwargs: Any):
    """A Lightning Trainer with the project's checkpointing, logging and safe checkpoint I/O.

    Args:
        trainer_cfg: the ``trainer`` config node (accelerator, devices, precision, log_every, ...).
        out_dir: run folder (checkpoints, TensorBoard).
        max_steps: optimizer steps in all (a resumed run trains only the remaining ones).
        grad_clip: gradient-norm clip.
        ckpt_every: steps between resume checkpoints (``last.ckpt`` is kept).
        val_every: steps between validations through Lightning's loop; None disables validation.
        max_time: Lightning ``max_time``.
        extra_callbacks: more callbacks.
        progress: show a progress bar.
        **kwargs: passed to ``L.Trainer``.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    t = trainer_cfg
    ckpt_cb = ModelCheckpoint(dirpath=str(out_dir), filename="step{step}", save_last=True, save_top_k=0,
                              every_n_train_steps=int(ckpt_every), auto_insert_metric_name=False)
    val_kw: dict[str, Any] = {"limit_val_batches": 0} if val_every is None else {
        "val_check_interval": int(val_every), "check_val_every_n_epoch": None, "num_sanity_val_steps": 0}
    opt = {k: t.get(k) for k in ("num_nodes", "strategy") if t.get(k) is not None}
    bar = [TQDMProgressBar(refresh_rate=10)] if progress else []
    return L.Trainer(
        accelerator=t.get("accelerator", "cpu"), devices=t.get("devices", 1), precision=t.get("precision", "32-true"),
        max_steps=int(max_steps), max_time=max_time if max_time is not None else t.get("max_time"),
        log_every_n_steps=int(t.log_every), gradient_clip_val=float(grad_clip),
        callbacks=[ckpt_cb, *bar, *extra_callbacks], logger=TensorBoardLogger(str(out_dir), name="tb"),
        plugins=[_safe_checkpoint_io()], enable_model_summary=False, enable_progress_bar=progress,
        use_distributed_sampler=False, **opt, **val_kw, **kwargs,
    )


def fit(trainer: Any, module: Any, loader: Any, ckpt_path: str | None, out_dir: str | os.PathLike,
        val_loader: Any = None) -> Path:
    """Train (resuming from ``ckpt_path`` when given, loaded safely) and write ``out_dir/last.ckpt``."""
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=val_loader, ckpt_path=ckpt_path, weights_only=True)
    last = Path(out_dir) / "last.ckpt"
    trainer.save_checkpoint(str(last))
    return last


# -------------------------------------------------------------------- hydra
def hydra_entry(config_name: str, fn: Callable[[Any], Any], argv: Sequence[str] | None = None,
                config_dir: str = CONF_DIR, record_overrides: bool = False) -> int:
    """The ``main(argv)`` of a trainer.

    ``argv=None``: a regular ``@hydra.main`` run on ``sys.argv`` (multirun and launchers work).
    ``argv`` given (e.g. by ``promptsep train ...``): the overrides are composed with Hydra's
    compose API and ``fn`` is called once (Hydra flags such as ``-m`` go through ``@hydra.main``).
    ``record_overrides``: store the command-line overrides in ``cfg.overrides`` (provenance).
    """
    import sys

    import hydra

    def _run(cfg, overrides: Sequence[str] | None = None) -> None:
        if record_overrides:
            from omegaconf import open_dict

            if overrides is None:
                from hydra.core.hydra_config import HydraConfig

                overrides = list(HydraConfig.get().overrides.task)
            with open_dict(cfg):
                cfg.overrides = list(overrides)
        result = fn(cfg)
        logger.info("done: %s", result)
        print(result)

    if argv is not None and not any(a.startswith("-") for a in argv):
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(argv))
        _run(cfg, list(argv))
        return 0
    saved = sys.argv
    try:
        if argv is not None:
            sys.argv = [saved[0], *argv]
        hydra.main(config_path=config_dir, config_name=config_name, version_base="1.3")(_run)()
    finally:
        sys.argv = saved
    return 0
