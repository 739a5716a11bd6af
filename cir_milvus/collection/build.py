"""Building what a :class:`~cir_milvus.collection.CIRCollection` is made of: the one code path under
``CIRCollection.create`` / ``open`` and ``Database.create_collection`` / ``open_collection``.

Everything is validated (encoder, composer, index) before anything is dropped or created; the recipe is written at
creation and rebuilt (or checked against the given encoder) at open.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cir_milvus.artifacts import SearchPath
from cir_milvus.collection.mixed import item_text_recipe, text_tower_change
from cir_milvus.collection.specs import (
    ComposerSpec,
    ConnectOptions,
    EncoderSpec,
    FieldSpec,
    IndexSpec,
    check_if_exists,
)
from cir_milvus.collection.verify import verify_serving_encoder
from cir_milvus.composers.base import Composer, get_composer
from cir_milvus.encoders.base import Encoder
from cir_milvus.encoders.capabilities import SupportsDecodeModes
from cir_milvus.encoders.rebuild import encoder_from_recipe
from cir_milvus.errors import ConfigError
from cir_milvus.preprocess import DECODE_MODES, PreprocessConfig, recorded_decode
from cir_milvus.storage.recipe import Recipe, check_compatible, lite_base_dir
from cir_milvus.storage.store import VectorStore

__all__ = ["Connection", "EncoderChoice", "adopt_recorded_decode", "create_parts", "mean_image_norm", "open_parts"]

log = logging.getLogger(__name__)

NORM_SAMPLE = 16
"""Synthetic images encoded to estimate the mean raw image-embedding norm for attached collections without a norm
field (pseudo-token heads need raw embeddings)."""

EncoderChoice = Encoder | EncoderSpec | None
"""A ready encoder, a spec to build one, or ``None`` (open: rebuild from the recipe)."""


@dataclass(frozen=True)
class Connection:
    """Where a collection lives: a Milvus Lite path, a server URI or a ``MilvusClient``, and how to reach it."""

    uri: Any
    options: ConnectOptions = dataclasses.field(default_factory=ConnectOptions)

    def store_kwargs(self) -> dict[str, Any]:
        """The store's connection keywords."""
        o = self.options
        return {"token": o.token, "timeout": o.timeout, "connect_kwargs": dict(o.client_options),
                "consistency": o.consistency, "retry": o.retry}


def _version() -> str:
    from cir_milvus import __version__

    return __version__


def encoder_spec(model: str | None, pretrained: str | None, encoder: EncoderChoice) -> Encoder | EncoderSpec:
    """One encoder choice from ``model``/``pretrained`` and ``encoder`` (a spec, a ready encoder or ``None``).

    Raises:
        ConfigError: a ready encoder together with ``model``/``pretrained``.
    """
    if encoder is None or isinstance(encoder, EncoderSpec):
        return (encoder or EncoderSpec()).with_model(model, pretrained)
    if model is not None or pretrained is not None:
        raise ConfigError("pass either a ready encoder (encoder=...) or model=/pretrained=, not both")
    return encoder


def adopt_recorded_decode(name: str, stored_encoder: Mapping[str, Any], encoder: Encoder) -> Encoder:
    """The encoder that serves a collection: ``encoder`` decoding images with the mode the collection records.

    A collection owns its decode mode (:mod:`cir_milvus.preprocess`; a recipe without ``"decode"`` means
    ``"exact"``): its gallery was decoded so, and its queries must be too. An encoder that differs only there is not
    a mismatch: the collection gets ``encoder.with_decode(recorded)``, a copy sharing the model (logged at INFO).
    Encoders that are not :class:`~cir_milvus.encoders.SupportsDecodeModes` (FakeEncoder, plugins) are returned
    unchanged, and any other preprocessing difference is left for :func:`~cir_milvus.storage.recipe.check_compatible`
    to refuse.

    Args:
        name: the collection (for the log line).
        stored_encoder: the collection's recipe ``encoder`` dict.
        encoder: the encoder built or given.
    """
    if not isinstance(encoder, SupportsDecodeModes):
        return encoder
    cfg = encoder.preprocess_config
    stored = stored_encoder.get("preprocess")
    if not isinstance(cfg, PreprocessConfig) or not isinstance(stored, Mapping):
        return encoder
    recorded = recorded_decode(stored)
    if recorded == cfg.decode or recorded not in DECODE_MODES:
        return encoder
    log.info("collection %r decodes images with decode=%r (recorded in its recipe); the encoder's decode=%r is not "
             "used for it", name, recorded, cfg.decode)
    adopted: Encoder = encoder.with_decode(recorded)
    return adopted


def mean_image_norm(encoder: Encoder, n: int = NORM_SAMPLE) -> float:
    """The mean raw image-embedding norm of ``encoder`` over ``n`` images of the synthetic world: the documented
    default norm of attached collections that store only normalised vectors."""
    from cir_milvus.synthetic import SyntheticWorld

    items = SyntheticWorld(seed=0, instances=1).gallery()[:n]
    raw = np.asarray(encoder.encode_images([it.render() for it in items], normalize=False), dtype=np.float32)
    return float(np.linalg.norm(raw, axis=1).mean())


def _built(choice: Encoder | EncoderSpec) -> Encoder:
    return choice.build() if isinstance(choice, EncoderSpec) else choice


def create_parts(
    conn: Connection, name: str, encoder: Encoder | EncoderSpec, composer: ComposerSpec, index: IndexSpec,
    fields: FieldSpec, if_exists: str, item_text: bool = False, full_text: bool = False,
) -> tuple[VectorStore, Encoder, Composer | None]:
    """Create a collection's store (or open it, ``if_exists="open"``, when the recipe matches).

    Returns:
        ``(store, encoder, composer)``; the composer is ``None`` when an existing collection was opened.
    """
    check_if_exists(if_exists)
    enc = _built(encoder)
    comp = get_composer(composer.name, **composer.all_params())
    recipe = Recipe(encoder=enc.recipe, composer=comp.config(), index=index.to_recipe(), package_version=_version(),
                    item_text=item_text_recipe(enc, full_text) if item_text else None).portable(lite_base_dir(conn.uri))
    store = VectorStore.create(conn.uri, name, dim=enc.dim, recipe=recipe, fields=dict(fields.types) or None,
                               partition_key=fields.partition_key,
                               overwrite=if_exists == "overwrite", exist_ok=if_exists == "open", item_text=item_text,
                               full_text=full_text, **conn.store_kwargs())
    try:
        if store.recipe is not recipe:  # if_exists="open": opened an existing one
            assert store.recipe is not None
            enc = adopt_recorded_decode(name, store.recipe.encoder, enc)
            check_compatible(name, store.recipe, enc.recipe)
            verify_serving_encoder(store, name, store.recipe.encoder, enc)
            return store, enc, None
        return store, enc, comp
    except BaseException:
        store.close()
        raise


def open_parts(conn: Connection, name: str, encoder: Encoder | EncoderSpec, composer: ComposerSpec | None,
               schema: Mapping[str, Any] | None, search_path: SearchPath) -> tuple[VectorStore, Encoder]:
    """Open a collection's store and the encoder that serves it (rebuilt from the recipe when ``encoder`` is a spec
    without a model)."""
    store = VectorStore.open(conn.uri, name, schema=schema, **conn.store_kwargs())
    try:
        if store.recipe is None:  # attaching: the recipe comes from the encoder we are given
            enc = _attach(store, name, _built(encoder), composer or ComposerSpec(), conn.uri)
        else:
            enc = _rebuild(store.recipe, name, encoder, conn.uri, search_path)
            verify_serving_encoder(store, name, store.recipe.encoder, enc, search_path=search_path)
            change = text_tower_change(name, store.recipe.item_text, enc.recipe)
            if change is not None:
                log.warning(change)
        if store.fields.norm_field is None and store.fields.default_norm is None:
            norm = (store.recipe.encoder if store.recipe else {}).get("mean_image_norm")
            if norm:
                store.fields = dataclasses.replace(store.fields, default_norm=float(norm))
        return store, enc
    except BaseException:
        store.close()
        raise


def _rebuild(recipe: Recipe, name: str, encoder: Encoder | EncoderSpec, uri: Any, search_path: SearchPath) -> Encoder:
    if isinstance(encoder, EncoderSpec) and encoder.model is None:
        if encoder.options or encoder.backend or encoder.decode:
            raise ConfigError("backend=, decode= and options= build a new encoder: name its model= as well (the "
                              "collection's own encoder is rebuilt from its recipe with device=, precision= and "
                              "text_weights= only)")
        built: Encoder = encoder_from_recipe(recipe.encoder, device=encoder.device, precision=encoder.precision,
                                             text_weights=encoder.text_weights, base_dir=lite_base_dir(uri),
                                             search_path=search_path)
    else:
        built = _built(encoder)
    enc = adopt_recorded_decode(name, recipe.encoder, built)
    check_compatible(name, recipe, enc.recipe)
    return enc


def _attach(store: VectorStore, name: str, enc: Encoder, composer: ComposerSpec, uri: Any) -> Encoder:
    """Attach a collection cir_milvus did not create: its recipe is ``enc``'s, stored when the server allows."""
    if enc.dim != store.dim:
        raise ConfigError(f"the encoder makes {enc.dim}-d vectors but {store.fields.vector_field!r} of {name!r} has "
                          f"dim {store.dim}")
    enc_recipe = dict(enc.recipe)
    if store.fields.norm_field is None and store.fields.default_norm is None:
        enc_recipe["mean_image_norm"] = mean_image_norm(enc)
    comp = get_composer(composer.name, **composer.all_params())
    recipe = Recipe(encoder=enc_recipe, composer=comp.config(), metric=store.fields.metric,
                    index={"type": str(store.index_info().get("index_type", "HNSW")), "params": {}},
                    package_version=_version()).portable(lite_base_dir(uri))
    if store.capabilities.collection_properties:
        try:
            store.set_recipe(recipe)
        except Exception as e:  # noqa: BLE001 - read-only users: keep the recipe in memory
            log.warning("could not store the recipe in %r (%s); pass model= on every open", name, e)
            store.recipe = recipe
    else:
        store.recipe = recipe
    return enc
