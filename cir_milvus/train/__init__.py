"""Training recipes (never imported by the runtime ``cir_milvus`` package; needs the ``train`` extra).

- :mod:`cir_milvus.train.lincir`: LinCIR's text-only self-masking projection (a ``lincir`` head).
- :mod:`cir_milvus.train.pic2word`: Pic2Word's image-only mapping network (a ``pic2word`` head).
- :mod:`cir_milvus.train.tat`: Text-Anchored-Tuning, LoRA on the image tower (merged open_clip checkpoint).
- :mod:`cir_milvus.train.rtd`: RTD, text-encoder tuning on text triplets (open_clip checkpoint, text tower changed).
- :mod:`cir_milvus.train.demo_clip`: the tiny demo CLIP itself.
- :mod:`cir_milvus.train.report`: ``synthetic-report``, every recipe measured on the synthetic world.
- :mod:`cir_milvus.train.validation`: validation R@1 inside the loop (LinCIR/RTD keep their best step).

What the recipes share: :mod:`~cir_milvus.train.recipes` (the recipes by name, :func:`~cir_milvus.train.recipes.train`),
:mod:`~cir_milvus.train.config` (config dataclasses, JSON files, flags), :mod:`~cir_milvus.train.loop` (the loop,
checkpoints, the best step), :mod:`~cir_milvus.train.device` (device, precision, the frozen backbone),
:mod:`~cir_milvus.train.optim` (decay groups, learning-rate schedule), :mod:`~cir_milvus.train.data` (captions and
images from files or the synthetic world) and :mod:`~cir_milvus.train.ship` (exporting and shipping trained heads).

The defaults follow the official training scripts (README, "Training recipes vs the official scripts");
``tests/unit/test_train_fidelity.py`` recomputes one step of each recipe from the official code's semantics.

The recipes register in :data:`cir_milvus.train.base.RECIPES` (one registry mechanism, :mod:`cir_milvus.registry`;
plugins use the entry-point group ``cir_milvus.train``) when this package is imported.

Command line::

    python -m cir_milvus.train {lincir,pic2word,tat,rtd} --out DIR [--config FILE.json] [--steps N] [--batch-size B] ...
    python -m cir_milvus.train synthetic-report --out runs/synthetic-report
"""

from __future__ import annotations

from cir_milvus.train import lincir, pic2word, rtd, tat  # noqa: F401  (the built-in recipes register themselves)
