"""The benchmark's tasks as mteb task classes over local data, evaluated by mteb itself.

Every task is an mteb ``AbsTask`` subclass whose *eval splits* are the benchmark
conditions (``reference``, ``separated``, ``mixture``) of the same items, so one
``mteb.evaluate`` call scores all conditions with mteb's own evaluators and writes one
mteb ``TaskResult`` file per task. The data is built in memory from
:class:`~bench.embedding.data.BenchItems` (no hub download; ``load_data`` only marks it
loaded).

| key | mteb base class | what |
| --- | --- | --- |
| ``classification`` | ``AbsTaskClassification`` (cross-validation) | logistic probe, K folds inside each condition |
| ``clustering`` | ``AbsTaskClustering`` | MiniBatchKMeans, V-measure over mteb's bootstrap experiments |
| ``zero_shot`` | ``AbsTaskZeroShotClassification`` | nearest label prompt (text models) |
| ``pair_classification`` | ``AbsTaskPairClassification`` | (condition stem i, reference stem j), positive if same label |
| ``text_to_audio`` | ``AbsTaskRetrieval`` | one text query per label over the condition's stems |
| ``audio_to_reference`` | ``AbsTaskRetrieval`` | each condition stem queries all reference stems |

What mteb does not have lives in :mod:`bench.embedding.fidelity` (paired bootstrap of the
mteb predictions, fidelity).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

TASKS: tuple[str, ...] = (
    "classification", "clustering", "zero_shot", "text_to_audio", "audio_to_reference", "pair_classification",
)
#: Tasks that need an embedding model with a text tower.
TEXT_TASKS: tuple[str, ...] = ("zero_shot", "text_to_audio")
#: Tasks that compare a condition with the references.
REFERENCE_TASKS: tuple[str, ...] = ("audio_to_reference", "pair_classification")
MAIN_SCORE: dict[str, str] = {
    "classification": "accuracy", "clustering": "v_measure", "zero_shot": "accuracy",
    "text_to_audio": "precision_at_5", "audio_to_reference": "recall_at_1", "pair_classification": "cosine_ap",
}
TASK_NAMES: dict[str, str] = {
    "classification": "PromptSepStemClassification",
    "clustering": "PromptSepStemClustering",
    "zero_shot": "PromptSepStemZeroShot",
    "text_to_audio": "PromptSepTextToStemRetrieval",
    "audio_to_reference": "PromptSepStemToReferenceRetrieval",
    "pair_classification": "PromptSepStemPairClassification",
}
_TYPES = {
    "classification": ("AudioClassification", "a2c", ["audio"]),
    "clustering": ("AudioClustering", "a2a", ["audio"]),
    "zero_shot": ("AudioZeroshotClassification", "a2t", ["audio", "text"]),
    "text_to_audio": ("Any2AnyRetrieval", "t2a", ["audio", "text"]),
    "audio_to_reference": ("Any2AnyRetrieval", "a2a", ["audio"]),
    "pair_classification": ("AudioPairClassification", "a2a", ["audio"]),
}


def _metadata(task: str, splits: Sequence[str], revision: str, description: str, suffix: str = "",
              subsets: Sequence[str] = ("all",)):
    from mteb.abstasks.task_metadata import TaskMetadata

    typ, cat, mods = _TYPES[task]
    return TaskMetadata(
        name=TASK_NAMES[task] + suffix, description=description, reference=None,
        dataset={"path": "promptsep/local-corpus", "revision": revision},
        type=typ, category=cat, eval_splits=list(splits), eval_langs={s: ["zxx-Zxxx"] for s in subsets}, main_score=MAIN_SCORE[task],
        date=None, domains=None, task_subtypes=None, license="not specified", annotations_creators="derived",
        dialect=[], modalities=mods, sample_creation="created", bibtex_citation="",
    )


def _audio_rows(wavs, sample_rate: int) -> list[dict[str, Any]]:
    return [{"array": np.asarray(w, dtype=np.float32), "sampling_rate": int(sample_rate)} for w in wavs]


class _Local:
    """Mixin: data built in memory by :func:`build_task`, never downloaded."""

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:  # noqa: D102
        if self.dataset is None:
            raise RuntimeError(f"{self.metadata.name}: local data was not attached (use build_task)")
        self.data_loaded = True

    def unload_data(self) -> None:  # keep the in-memory data for the bootstrap and later splits
        pass


def _classes():
    """The task classes (imported lazily: mteb is a heavy import)."""
    from mteb.abstasks import AbsTaskClustering, AbsTaskPairClassification, AbsTaskZeroShotClassification
    from mteb.abstasks.classification import AbsTaskClassification
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    class Probe(BaseEstimator, ClassifierMixin):
        """Standardised logistic regression; a training fold of one label predicts that label
        (mteb's folds are not stratified, so a small category can have one)."""

        def __init__(self, max_iter: int = 1000, random_state: int | None = None):
            self.max_iter = max_iter
            self.random_state = random_state

        def fit(self, x, y):
            y = np.asarray(y)
            self.classes_ = np.unique(y)
            self.model_ = None
            if len(self.classes_) > 1:
                self.model_ = make_pipeline(StandardScaler(), LogisticRegression(
                    max_iter=self.max_iter, random_state=self.random_state)).fit(x, y)
            return self

        def predict(self, x):
            if self.model_ is None:
                return np.full(len(x), self.classes_[0])
            return self.model_.predict(x)

    class StemClassification(_Local, AbsTaskClassification):
        """Cross-validated probe inside each condition (the condition is both train and eval split)."""

        input_column_name = "audio"
        label_column_name = "label"
        is_cross_validation = True
        samples_per_label = 10**9  # every training item of a fold (mteb undersamples to 8 by default)
        evaluator_model = Probe()

        def evaluate(self, model, split="test", subsets_to_run=None, **kwargs):
            self.train_split = split  # cross-validation inside the condition
            self.n_experiments = self.n_splits
            return super().evaluate(model, split, subsets_to_run, **kwargs)

        def _calculate_scores(self, y_test, y_pred):
            # mteb scores a fold holding 2 labels as a binary task (average precision with pos_label 1,
            # which fails unless the labels are 0 and 1); relabel bijectively (the accuracy, F1,
            # precision and recall do not change) and drop that meaningless AP
            y_test, y_pred = np.asarray(y_test), np.asarray(y_pred)
            present = np.unique(y_test)
            if len(present) != 2 or len(self.info["labels"]) <= 2:
                return super()._calculate_scores(y_test, y_pred)
            order = list(present) + sorted(set(np.unique(y_pred).tolist()) - set(present.tolist()))
            remap = {lab: k for k, lab in enumerate(order)}
            scores = super()._calculate_scores(np.array([remap[v] for v in y_test]),
                                               np.array([remap[v] for v in y_pred]))
            scores["ap"] = scores["ap_weighted"] = None
            return scores

    class StemClustering(_Local, AbsTaskClustering):
        """mteb's bootstrapped MiniBatchKMeans; the resamples are the same items in every condition."""

        input_column_name = "audio"
        label_column_name = "label"
        max_fraction_of_documents_to_embed = None

        def evaluate(self, model, split="test", subsets_to_run=None, **kwargs):
            self.rng_state = random.Random(self.seed)  # paired resamples across conditions
            return super().evaluate(model, split, subsets_to_run, **kwargs)

    class StemZeroShot(_Local, AbsTaskZeroShotClassification):
        input_column_name = "audio"
        label_column_name = "label"
        candidate_labels: list[str] = []

        def get_candidate_labels(self) -> list[str]:
            return list(self.candidate_labels)

    class StemPairClassification(_Local, AbsTaskPairClassification):
        input1_column_name = "audio1"
        input2_column_name = "audio2"
        label_column_name = "label"

    class StemRetrieval(_Local, AbsTaskRetrieval):
        pass

    return {"classification": StemClassification, "clustering": StemClustering, "zero_shot": StemZeroShot,
            "pair_classification": StemPairClassification, "text_to_audio": StemRetrieval,
            "audio_to_reference": StemRetrieval}


def pair_indices(y: np.ndarray, per_item: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i != j``: each item with up to ``per_item // 2`` items of its label
    (positives) and the rest of other labels (negatives), drawn at random.

    About half the pairs are positive when labels repeat; random pairs among many labels
    would be almost all negative, and every pair stores two waveforms in the mteb dataset.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    ii, jj = [], []
    for i in range(len(y)):
        same = np.nonzero((y == y[i]) & (np.arange(len(y)) != i))[0]
        other = np.nonzero(y != y[i])[0]
        n_pos = min(len(same), per_item // 2)
        n_neg = min(len(other), per_item - n_pos)
        for j in [*rng.choice(same, n_pos, replace=False), *rng.choice(other, n_neg, replace=False)]:
            ii.append(i)
            jj.append(int(j))
    return np.asarray(ii, dtype=np.int64), np.asarray(jj, dtype=np.int64)


def build_task(task: str, conditions: Mapping[str, Sequence], sample_rate: int, labels: Sequence[str],
               revision: str, label_texts: Mapping[str, str] | None = None, folds: int = 5,
               clustering_boot: int = 10, pairs_per_item: int = 4, seed: int = 42, suffix: str = "",
               subsets: Mapping[str, Sequence[int]] | None = None, shared: dict | None = None):
    """One benchmark task as an mteb task instance with its data attached.

    Args:
        task: a key of :data:`TASKS`.
        conditions: condition name -> ``[N]`` waveforms (same items, same order in each).
        sample_rate: rate of every waveform.
        labels: ``N`` label names.
        revision: dataset revision recorded in the TaskResult (SHA-1 of the corpus manifest).
        label_texts: label -> text prompt (text tasks).
        folds: cross-validation folds of the probe.
        clustering_boot: mteb clustering experiments (bootstrap resamples of the items).
        pairs_per_item: pair classification: pairs per item (half positives where possible).
        seed: mteb task seed.
        suffix: appended to the task name (``Clean`` for the clean-clip tasks).
        subsets: mteb ``hf_subsets``: name -> item indices (default ``{"all": every item}``),
            e.g. one per sound category. Each subset is its own mteb evaluation (its own probe
            folds, clusters, retrieval gallery and pairs); zero-shot always ranks all labels.
        shared: a dict reused across calls with the same items: classification, clustering
            and zero-shot then share one in-memory dataset per (subset, condition).

    Returns:
        The task; ``task.info["subsets"][name]`` holds what the bootstrap layer needs to map
        mteb's predictions to items.
    """
    from datasets import Dataset, DatasetDict

    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; known: {TASKS}")
    conds = list(conditions)
    if task in REFERENCE_TASKS and "reference" not in conditions:
        raise ValueError(f"{task} needs a reference condition")
    if task in TEXT_TASKS and not label_texts:
        raise ValueError(f"{task} needs label texts")
    subsets = {str(k): np.asarray(v, dtype=np.int64) for k, v in (subsets or {"all": range(len(labels))}).items()}
    names = sorted(set(labels))
    y_all = np.array([names.index(lab) for lab in labels])
    if task in ("classification", "clustering", "pair_classification"):  # need two labels in a subset
        subsets = {k: v for k, v in subsets.items() if len(np.unique(y_all[v])) >= 2}
        if not subsets:
            raise ValueError(f"{task} needs items of at least two labels")
    cls = _classes()[task]
    desc = f"promptsep {task} on reference / separated / mixture stems of the same items"
    t = cls.__new__(cls)
    t.metadata = _metadata(task, conds, revision, desc, suffix, list(subsets))
    cls.__init__(t, seed=seed)
    t.info = {"task": task, "n": len(labels), "labels": names, "conditions": conds, "subsets": {}}
    t.dataset = {}
    if task == "classification":
        smallest = min(int(np.bincount(y_all[idx]).max()) for idx in subsets.values())
        t.n_splits = int(max(2, min(folds, smallest, *(len(idx) for idx in subsets.values()))))
        t.info["folds"] = t.n_splits
    if task == "clustering":
        t.n_clusters = int(clustering_boot)
        t.max_documents_per_cluster = max(len(idx) for idx in subsets.values())
    if task == "zero_shot":
        t.candidate_labels = [label_texts[n] for n in names]
    if task in ("text_to_audio", "audio_to_reference"):
        t.k_values = (1, 3, 5, 10, 20, 100, 1000)
    for sub, idx in subsets.items():
        y = y_all[idx]
        rows = {c: _audio_rows([conditions[c][k] for k in idx], sample_rate) for c in conds}  # views, no copy
        info: dict[str, Any] = {"n": len(y), "y": y, "items": idx}
        data: dict[str, Any] = {}
        if task in ("classification", "clustering", "zero_shot"):
            for c in conds:
                key = (suffix, sub, c, id(conditions[c]))
                if shared is None or key not in shared:
                    ds = Dataset.from_dict({"audio": rows[c], "label": y.tolist()})
                    if shared is not None:
                        shared[key] = ds
                data[c] = shared[key] if shared is not None else ds
        elif task == "pair_classification":
            i, j = pair_indices(y, pairs_per_item, seed)
            for c in conds:
                data[c] = Dataset.from_dict({"audio1": [rows[c][k] for k in i],
                                             "audio2": [rows["reference"][k] for k in j],
                                             "label": (y[i] == y[j]).astype(int).tolist()})
            info["pairs"] = (i, j)
        else:
            for c in conds:
                if task == "text_to_audio":
                    corpus = Dataset.from_dict({"id": [f"d{k}" for k in range(len(y))], "audio": rows[c]})
                    present = sorted(set(y.tolist()))
                    queries = Dataset.from_dict({"id": [f"q{k}" for k in present],
                                                 "text": [label_texts[names[k]] for k in present]})
                    qrels = {f"q{k}": {f"d{d}": 1 for d in np.nonzero(y == k)[0]} for k in present}
                else:
                    corpus = Dataset.from_dict({"id": [f"d{k}" for k in range(len(y))], "audio": rows["reference"]})
                    queries = Dataset.from_dict({"id": [f"q{k}" for k in range(len(y))], "audio": rows[c]})
                    qrels = {f"q{k}": {f"d{k}": 1} for k in range(len(y))}
                data[c] = {"corpus": corpus, "queries": queries, "relevant_docs": qrels, "top_ranked": None}
            info["qrels"] = data[conds[0]]["relevant_docs"]
        t.dataset[sub] = data if task in ("text_to_audio", "audio_to_reference") else DatasetDict(data)
        t.info["subsets"][sub] = info
    return t
