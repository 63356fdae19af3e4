"""Fresh child processes for isolated measurements (speed, memory)."""

from __future__ import annotations

import os
import sys


def child_env() -> dict[str, str]:
    """The environment for a ``python -m bench.…`` child that imports the very code this process imports.

    The child's ``PYTHONPATH`` is this process's ``sys.path`` (a source checkout, a worktree or an
    installed wheel alike), so a measurement never runs other code than its parent.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    return env
