"""``promptsep bench ...``: dispatch to the benchmark sub-commands.

Sub-commands::

    promptsep bench manifest --corpus DIR --split test --n N --seed S --out items.jsonl
    promptsep bench separation --manifest items.jsonl --checkpoint DIR --out DIR [--judge DIR] [--nfe 4 8 16 32]
    promptsep bench speed --checkpoint DIR --out DIR [--quick]
    promptsep bench embedding ...
    promptsep bench side-by-side --run test=DIR --run test_in=DIR --out DIR
    promptsep bench paired --base A=DIR --run B=DIR [--run C=DIR] --system separator_nfe2 --out DIR
    promptsep bench clap --checkpoint DIR --corpus DIR --split test,test_in --out DIR
    promptsep bench video --separator DIR --split valid --items 64 --out DIR

See docs/BENCH.md.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: sub-command -> "module:function" taking argv.
COMMANDS = {
    "separation": "bench.separation:main",
    "manifest": "bench.manifest:main",
    "speed": "bench.speed:main",
    "embedding": "bench.embedding.cli:main",
    "clap": "bench.clap_eval:main",
    "side-by-side": "bench.card:main",
    "paired": "bench.paired:main",
    "video": "bench.video_eval:main",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``promptsep bench``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv[0] not in COMMANDS:
        print(f"promptsep bench: unknown sub-command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    mod, fn = COMMANDS[argv[0]].split(":")
    rc = getattr(importlib.import_module(mod), fn)(argv[1:])
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
