"""``cir-milvus``: a thin command line over the library, one module per command.

Commands: ``demo``, ``ingest``, ``search``, ``info``, ``set-default``, ``eval``, ``serve``, ``export``, ``parity``
and ``train`` (:mod:`cir_milvus.cli.demo`, :mod:`~cir_milvus.cli.ingest`...). Shared flags mean the same in every
command (:mod:`cir_milvus.cli.options`): ``--uri``, ``--token`` and ``--timeout`` are Milvus's (address, credential,
connect timeout), ``--json`` prints machine-readable output, ``--head`` has one syntax. Inputs are checked before any
model loads. Every failure we can explain, a missing extra included, ends as one ``error: ...`` line on stderr with
exit code 2 (130 after Ctrl-C), never a traceback.

Start-up stays light: building the parser imports neither torch nor pymilvus; ``info`` reads the collection's
recipe without building a model, and ``search``/``ingest``/``serve``/``eval`` with ``--model bundle:DIR`` (or a
collection whose recipe names a bundle) run on onnxruntime alone.
"""

from __future__ import annotations

from cir_milvus.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
