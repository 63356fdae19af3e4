"""The learned reference-free judge: (mixture, estimate, prompt) -> precision, recall, faithfulness, overall.

* :mod:`judge.model`: :class:`~judge.model.Judge`, :class:`~judge.model.JudgeConfig`,
  :class:`~judge.model.JudgeScores`, :func:`~judge.model.build_judge`.
* :mod:`judge.targets`: the reference-based training targets (one function per axis).
* :mod:`judge.data`: training / evaluation pairs with candidate estimates of graded quality.
* :mod:`judge.train`: Lightning + Hydra training (``conf/train_judge.yaml``).
* :mod:`judge.evaluate`: correlations with the reference targets beside two baselines.
* ``promptsep judge MIX.wav EST.wav --text "..."`` lives in :mod:`promptsep.judge_cli` (the CLI layer).

Importing this package is light; the model module is imported on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Judge", "JudgeConfig", "JudgeScores", "build_judge", "AXES"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from judge import model

        return getattr(model, name)
    raise AttributeError(f"module 'judge' has no attribute {name!r}")
