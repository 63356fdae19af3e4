"""``python -m promptsep``: the ``promptsep`` command."""

import sys

from promptsep.cli import main

if __name__ == "__main__":
    sys.exit(main())
