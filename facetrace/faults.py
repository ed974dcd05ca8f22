"""Deterministic crash points for the fault-injection tests (``tests/test_faults.py``).

``FACETRACE_FAULT_POINT=NAME`` (or ``NAME@N``: at its N-th pass) makes the process kill itself with
SIGKILL when it reaches :func:`fault_point` ``NAME``, exactly as ``kill -9`` would at that moment. Unset (the
default) it does nothing but read one environment variable.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "FACETRACE_FAULT_POINT"
_passes: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL if ``FACETRACE_FAULT_POINT`` names ``name`` (at this pass); else return."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    wanted, _, nth = spec.partition("@")
    if wanted != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
