"""Reading the corpus: splits, clip and mixture datasets, augmentation, the reserved-source list.

Building the corpus is tooling outside the library (``corpus_build``, ``promptsep data
build``); this package never imports it. Nothing heavy is imported here: the submodules
load their own dependencies.
"""

#: Debian packages kept for external evaluation: the corpus builder refuses them.
RESERVED_PACKAGES = (
    "openttd-opensfx",
    "gcompris-qt-data",
    "asterisk-core-sounds-it-wav",
    "asterisk-core-sounds-it",
)
#: Any package whose name starts with one of these is reserved too.
RESERVED_PREFIXES = ("musescore-general-soundfont",)
#: music21 composers never rendered (their string quartets are reserved; the whole composer is excluded).
EXCLUDED_COMPOSERS = ("beethoven", "mozart", "haydn")


def is_reserved_package(name: str) -> bool:
    """True for a Debian package that must never feed the corpus."""
    return name in RESERVED_PACKAGES or any(name.startswith(p) for p in RESERVED_PREFIXES)
