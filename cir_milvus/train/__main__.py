"""``python -m cir_milvus.train ...`` (see :mod:`cir_milvus.train.cli`)."""

from __future__ import annotations

from cir_milvus.train.cli import main

if __name__ == "__main__":
    main()
