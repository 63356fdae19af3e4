"""Benchmarks: batch separation quality and speed (``bench.separation``, ``bench.speed``),
manifests (``bench.manifest``), oracle baselines (``bench.oracles``), reports
(``bench.report``) and the embedding-fidelity benchmark (``bench.embedding``).
Entry point: ``promptsep bench ...`` (:mod:`bench.cli`)."""
