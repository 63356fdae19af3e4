"""Trained audio(-text) embedding models used by both the judge and the benchmarks.

* :mod:`embeddings.clap`: ``clap-tiny``, the project's audio-text joint embedding.
* :mod:`embeddings.mosaic`: ``mosaic-tiny``, a self-supervised audio encoder (AudioMosaic style).
* :mod:`embeddings.logmel`: their shared audio front-end (batching, resampling, log-mel).

May import :mod:`promptsep` and :mod:`prompts`; nothing here imports ``judge`` or ``bench``.
"""
