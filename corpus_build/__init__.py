"""Corpus building tooling (``promptsep data build``, ``python -m corpus_build.build``).

Debian downloads and extraction, the curated source tables (:mod:`corpus_build.sources`),
MIDI writing and soundfont rendering, and the build CLI (:mod:`corpus_build.build`). The
library (``separation`` and the rest) never imports this package: it only reads the
manifests this tooling writes (:mod:`separation.data`).
"""
