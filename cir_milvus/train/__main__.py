"""``python -m cir_milvus.train ...`` (the same as ``cir-milvus train ...``; see :mod:`cir_milvus.train.cli`)."""

from __future__ import annotations

import sys

from cir_milvus.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
