"""Prompt variants: other wordings of a text prompt, for diverse re-ranking candidates.

Candidates that differ only by their noise seed agree closely (the one-step flow is nearly
deterministic), so picking the best of K of them gains little. Candidates prompted with other
wordings of the same sound ("acoustic guitar", "guitar playing", "nylon string guitar") differ
far more, and a judge that scores each of them against the user's own text can pick among them
(``docs/JUDGE.md``, "Prompt-variant candidates"). The wordings come from the label table the
corpus is built with (``separation/data/labels.json``: label -> prompts).

Lookup is exact and conservative: a text (compared case- and whitespace-insensitively) gets the
other prompts of *the one* label whose prompt list holds it; a text no label holds, or one that
several labels share (e.g. "bass"), gets no variants, so free text is never replaced by another
sound's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _key(text: str) -> str:
    return " ".join(str(text).lower().split())


class PromptVariants:
    """Look up other wordings of a prompt in a ``label -> prompts`` table.

    Args:
        table: ``{label: [prompt, ...]}`` or ``{label: {"prompts": [...], ...}}`` (the labels-file layout).
    """

    def __init__(self, table: Mapping[str, Any]):
        self.prompts: dict[str, list[str]] = {}
        owners: dict[str, set[str]] = {}
        for label, info in table.items():
            prompts = info.get("prompts") if isinstance(info, Mapping) else info
            prompts = [str(p) for p in (prompts or [])]
            self.prompts[str(label)] = prompts
            for p in prompts:
                owners.setdefault(_key(p), set()).add(str(label))
        self._label_of = {k: next(iter(v)) for k, v in owners.items() if len(v) == 1}

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> PromptVariants:
        """The table of a labels file (default: the packaged ``separation/data/labels.json``)."""
        from separation.data.mixing import load_labels

        return cls(load_labels(path))

    def label(self, text: str | None) -> str | None:
        """The one label whose prompts hold ``text``, else None (unknown or ambiguous text)."""
        return None if not text else self._label_of.get(_key(text))

    def variants(self, text: str) -> list[str]:
        """``text`` itself first, then its label's other prompts in table order (just ``[text]``
        when the text has no unique label)."""
        lab = self.label(text)
        if lab is None:
            return [text]
        return [text] + [p for p in self.prompts[lab] if _key(p) != _key(text)]

    def candidates(self, text: str, k: int) -> list[str]:
        """``k`` prompts for ``k`` candidates: the variants, cycling (the first is always ``text``)."""
        v = self.variants(text)
        return [v[i % len(v)] for i in range(int(k))]


def candidate_texts(variants: PromptVariants | None, texts: Sequence[str | None], k: int) -> list[list[str | None]]:
    """Per item, the ``k`` texts its candidates are prompted with (no variants: the item's text K times)."""
    return [[t] * k if (variants is None or not t) else variants.candidates(t, k) for t in texts]


__all__ = ["PromptVariants", "candidate_texts"]
