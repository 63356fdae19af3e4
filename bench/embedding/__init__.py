"""Embedding-fidelity benchmark: do downstream audio embeddings survive separation?

The project's tasks (probe classification, clustering, zero-shot, pair classification,
text-to-audio and audio-to-reference retrieval) are mteb task classes over local data
whose splits are the conditions (reference, separated, mixture); the models are mteb
encoders with ``ModelMeta``; ``mteb.evaluate`` scores them and writes its TaskResult files.
On top: fidelity = (separated - mixture) / (reference - mixture) with paired bootstrap CIs
from mteb's predictions, the long-audio segment x aggregation study, reports and plots.
See ``docs/EMBEDDING_BENCH.md``.

Modules: ``models`` (the :class:`~bench.embedding.models.AudioEmbedder` interface, the
registry and the mteb wrappers), ``tasks`` (mteb task classes), ``fidelity`` (bootstrap
and fidelity on mteb's predictions), ``data`` (items and conditions), ``long_audio``
(segment x aggregation study), ``cache``, ``report``, ``run`` (``run_benchmark``),
``cli`` (``promptsep bench embedding``) and ``train`` (trainer of the project's models).
"""
