"""``python -m cir_milvus.cli`` (the same as the ``cir-milvus`` command)."""

from __future__ import annotations

import sys

from cir_milvus.cli.parser import main

if __name__ == "__main__":
    sys.exit(main())
