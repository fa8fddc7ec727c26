"""How long a test waits for a subprocess or a notebook cell.

A guard against a hang, never a speed check: the suite must pass on a loaded 2-core
machine, where a notebook cell or a two-process DDP run can take many minutes. Test
modules import it as ``from timeouts import HANG_TIMEOUT_S`` (``tests/`` is on the path
through its conftest).
"""

HANG_TIMEOUT_S = 3600
