"""Embedding-fidelity benchmark: do downstream audio embeddings survive separation?

MAEB/mteb-style tasks (probe classification, clustering, zero-shot, text-to-audio and
audio-to-reference retrieval, pair classification, paired cosine) scored on clean
reference stems, separated stems and mixtures, with fidelity =
(separated - mixture) / (reference - mixture). See ``docs/EMBEDDING_BENCH.md``.

Modules: ``models`` (the :class:`~bench.embedding.models.AudioEmbedder` interface and the
registry), ``clap`` / ``mosaic`` (the project's own embedding models), ``train`` (their
trainer), ``tasks`` (evaluators), ``data`` (items and conditions), ``long_audio``
(segment x aggregation study), ``cache``, ``report``, ``run`` (``run_benchmark``) and
``cli`` (``promptsep bench embedding``).
"""
