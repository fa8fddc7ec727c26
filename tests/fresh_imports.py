"""What importing a module pulls in, measured in a fresh interpreter.

The layering tests use it as ``from fresh_imports import imported_by`` and assert that the
list is empty (``tests/`` is on the path through its conftest).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported_by(module: str, prefixes: Sequence[str], allowed: Sequence[str] = ()) -> list[str]:
    """Modules loaded by ``import module`` in a new Python process whose names start with one
    of ``prefixes`` and with none of ``allowed``, sorted."""
    code = (
        f"import json, sys, {module}, geofm; print(json.dumps([geofm.__file__, list(sys.modules)]))"
    )
    # from the root of the tree under test, whose geofm/ then comes first on the path
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"`import {module}` failed in a fresh interpreter:\n{done.stderr}")
    where, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(where).resolve().is_relative_to(REPO):
        raise RuntimeError(f"the fresh interpreter imported geofm from {where}, not from {REPO}")
    return sorted(
        m for m in loaded if m.startswith(tuple(prefixes)) and not m.startswith(tuple(allowed))
    )
