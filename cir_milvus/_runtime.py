"""Process-wide runtime settings that must be in place before a native library loads.

One setting today: OpenMP threads that sleep instead of spinning while they wait (``OMP_WAIT_POLICY=PASSIVE``).
torch's CPU kernels run on GNU OpenMP, whose idle threads spin for about 300,000 iterations before sleeping. When
the encoder shares the cores with anything else (the decode workers of :func:`cir_milvus.ingest.ingest`, the
server's request threads, another job on the machine) a spinning thread holds a core that the other work needs, and
a thread waiting at a barrier for a preempted peer burns its whole time slice. Measured on the 2-core dev CPU
(``python benchmarks/bench_omp_wait.py``, figures in the README): ingest of photo JPEGs with the demo model and
query-text latency under load are several times faster with passive waiting.

libgomp reads the variable once, when it loads with ``import torch``; so this runs on ``import cir_milvus`` and only
sets the variable while torch is not yet imported and neither ``OMP_WAIT_POLICY`` nor ``GOMP_SPINCOUNT`` is set.
Set either yourself (``OMP_WAIT_POLICY=ACTIVE``) to keep spinning.
"""

from __future__ import annotations

import os
import sys

__all__ = ["openmp_spins", "passive_openmp"]


def passive_openmp() -> bool:
    """Ask OpenMP for passive waiting unless the user chose a policy or torch has loaded it already.

    Returns:
        Whether the variable was set by this call.
    """
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def openmp_spins() -> bool:
    """Whether torch's OpenMP threads spin while they wait: torch is loaded and no policy was set before it loaded
    (torch imported before cir_milvus, no variable set by the user)."""
    return "torch" in sys.modules and "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ


passive_openmp()
