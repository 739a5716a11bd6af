"""``CIRCollection``: the quick path — a Milvus collection of image vectors plus the recipe to query it.

Schema: ``id`` VARCHAR primary key (content hash unless given), ``vector`` FLOAT_VECTOR (L2-normalised image
embedding), ``norm`` FLOAT (the raw embedding's norm, so pseudo-token heads can reuse stored vectors), ``source``
VARCHAR (file path when known), ``metadata`` JSON. Index HNSW with metric IP (= cosine on normalised vectors).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cir_milvus.composers.base import Composer, get_composer
from cir_milvus.encoders.base import Encoder, create_encoder, text_truncation
from cir_milvus.errors import CollectionNotFoundError, ConfigError, StorageError
from cir_milvus.storage.client import (
    Capabilities,
    capabilities,
    connect,
    disconnect,
    milvus_errors,
    redact_uri,
)
from cir_milvus.storage.filters import render_filter
from cir_milvus.storage.ingest import (
    AddResult,
    chunk_rows_by_bytes,
    decode_batch,
    make_rows,
    read_paths,
    resolve_ids,
    with_retries,
)
from cir_milvus.storage.recipe import PROPERTY_KEY, Recipe, check_compatible
from cir_milvus.types import Embeddings, ImageInput

__all__ = ["CIRCollection", "Hit"]

log = logging.getLogger(__name__)

OUTPUT_FIELDS = ["id", "source", "metadata"]
READ_CONSISTENCY = "Session"
"""Consistency of searches and lookups: read-your-own-writes for this client without waiting for the server's time
tick. The collection's default (Strong) made every search on a Milvus 2.3.5 server wait ~200 ms (p50 200 ms vs
2 ms with Session, measured); ``len()`` still counts with Strong."""
DESCRIPTION_PREFIX = "cir_milvus.recipe="
"""Where the recipe goes on servers without collection properties (Milvus < 2.3): the collection description."""
DEFAULT_INDEX: dict[str, Any] = {"type": "HNSW", "params": {"M": 16, "efConstruction": 200}}
DEFAULT_SEARCH_PARAMS: dict[str, Any] = {"HNSW": {"ef": 128}, "HNSW_SQ": {"ef": 128}, "IVF_FLAT": {"nprobe": 32},
                                         "IVF_SQ8": {"nprobe": 32}}


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        id: the stored id.
        score: inner product with the query (cosine similarity; higher is better).
        metadata: the stored metadata dict.
        source: the file path the image came from ("" when added as bytes/PIL).
    """

    id: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def _version() -> str:
    from cir_milvus import __version__

    return __version__


class CIRCollection:
    """A composed-image-retrieval collection in Milvus.

    Build with :meth:`create` or :meth:`open`, not the constructor.

    Example:
        >>> col = CIRCollection.create("./cir.db", "products", model="ViT-B-32", pretrained="openai")  # doctest: +SKIP
        >>> col.add(["shoe.jpg"], metadata=[{"brand": "acme"}])  # doctest: +SKIP
        >>> col.search("shoe.jpg", "in red", k=5)  # doctest: +SKIP
    """

    def __init__(self, client: Any, name: str, encoder: Encoder, recipe: Recipe, caps: Capabilities,
                 uri: str = "") -> None:
        self._client = client
        self.name = name
        self.encoder = encoder
        self.recipe = recipe
        self.capabilities = caps
        self.uri = uri
        self._composers: dict[str, Composer] = {}
        self._heads: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------------------
    # construction
    @staticmethod
    def _build_encoder(model: str | None, pretrained: str | None, encoder: Encoder | None,
                       encoder_kwargs: Mapping[str, Any]) -> Encoder:
        if encoder is not None:
            return encoder
        if model is None:
            raise ConfigError("pass model= (e.g. model='ViT-B-32', pretrained='openai') or encoder=")
        return create_encoder(model, pretrained, **encoder_kwargs)

    @classmethod
    def create(
        cls,
        uri: str,
        name: str,
        *,
        model: str | None = None,
        pretrained: str | None = None,
        encoder: Encoder | None = None,
        composer: str = "slerp",
        composer_params: Mapping[str, Any] | None = None,
        alpha: float | None = None,
        head: Any = None,
        index: str = "HNSW",
        index_params: Mapping[str, Any] | None = None,
        exist_ok: bool = False,
        overwrite: bool = False,
        token: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> CIRCollection:
        """Create a collection (or open it when ``exist_ok`` and the recipe matches).

        Args:
            uri: Milvus Lite file (``"./cir.db"``) or server URI (``"http://host:19530"``).
            name: collection name.
            model: backbone (open_clip name, ``hf-hub:`` id, ``bundle:PATH``, ``"cir-demo-tiny"``).
            pretrained: open_clip tag, checkpoint path, or ``"cir-demo"``.
            encoder: a ready encoder instead of ``model``/``pretrained``.
            composer: default composer (``slerp``, ``pic2word``, ``searle``, ``lincir``, ``combined``,
                ``image``, ``text``, ``sum`` or a plugin).
            composer_params: its parameters (e.g. ``{"head": "/path/phi.pt"}`` for the pseudo-token composers).
            alpha: shortcut for ``composer_params["alpha"]``.
            head: shortcut for ``composer_params["head"]``: a projection head (file, ``hf-hub:`` id or
                :class:`~cir_milvus.heads.Head`) for ``pic2word``/``searle``/``lincir``/``combined``. Heads act
                on the query side only: switching heads later needs no re-ingestion.
            index: ``HNSW`` (default), ``IVF_FLAT``, ``FLAT``... validated against the backend.
            index_params: build parameters (HNSW: ``M``, ``efConstruction``).
            exist_ok: open the collection if it exists (the recipe must match).
            overwrite: drop an existing collection of this name first.
            token: ``"user:password"`` or API key for servers.
            device, precision: encoder options (default: CUDA + fp16 when available, else CPU fp32).
            connect_kwargs: extra ``MilvusClient`` arguments (TLS: ``secure``, ``server_pem_path``, ...).

        Raises:
            ConfigError: the collection exists (and neither ``exist_ok`` nor ``overwrite``), bad index type.
            RecipeMismatchError: ``exist_ok`` but the stored recipe differs.
        """
        client = connect(uri, token=token, **dict(connect_kwargs or {}))
        caps = capabilities(client)
        with milvus_errors(f"check collection {name!r}"):
            exists = client.has_collection(name)
        if exists and overwrite:
            with milvus_errors(f"drop collection {name!r}"):
                client.drop_collection(name)
            exists = False
        enc = cls._build_encoder(model, pretrained, encoder, {"device": device, "precision": precision})
        if exists:
            if not exist_ok:
                raise ConfigError(
                    f"collection {name!r} already exists at {redact_uri(uri)}; use CIRCollection.open(), exist_ok=True, or "
                    "overwrite=True to drop it"
                )
            return cls._open_with(client, caps, uri, name, enc)
        params = dict(composer_params or {})
        if alpha is not None:
            params["alpha"] = alpha
        if head is not None:
            params["head"] = head
        comp = get_composer(composer, **params)
        index = index.upper()
        if index not in caps.index_types:
            backend = "Milvus Lite" if caps.is_lite else f"Milvus {caps.version}"
            raise ConfigError(f"index {index!r} is not built by {backend}; choose one of {sorted(caps.index_types)}")
        idx = {"type": index, "params": dict(index_params or DEFAULT_INDEX["params"] if index == "HNSW" else
                                             index_params or {})}
        recipe = Recipe(encoder=enc.recipe, composer=comp.config(), index=idx, package_version=_version())
        cls._create_collection(client, name, enc.dim, recipe, properties=caps.collection_properties)
        col = cls(client, name, enc, recipe, caps, uri)
        col._composers[comp.name] = comp
        return col

    @staticmethod
    def _create_collection(client: Any, name: str, dim: int, recipe: Recipe, properties: bool = True) -> None:
        from pymilvus import DataType, MilvusClient

        # Milvus < 2.3 takes no collection properties: the recipe then goes into the description (see _read_recipe)
        description = "" if properties else DESCRIPTION_PREFIX + recipe.to_json()
        schema = MilvusClient.create_schema(enable_dynamic_field=False, auto_id=False, description=description)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("norm", DataType.FLOAT)
        schema.add_field("source", DataType.VARCHAR, max_length=2048)
        schema.add_field("metadata", DataType.JSON)
        ip = client.prepare_index_params()
        ip.add_index("vector", index_type=recipe.index["type"], metric_type=recipe.metric,
                     params=recipe.index["params"])
        with milvus_errors(f"create collection {name!r}"):
            extra = {"properties": {PROPERTY_KEY: recipe.to_json()}} if properties else {}
            client.create_collection(name, schema=schema, index_params=ip, consistency_level="Strong", **extra)
            client.load_collection(name)

    @classmethod
    def open(
        cls,
        uri: str,
        name: str,
        *,
        model: str | None = None,
        pretrained: str | None = None,
        encoder: Encoder | None = None,
        text_weights: str | None = None,
        token: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> CIRCollection:
        """Open an existing collection; the encoder is rebuilt from the stored recipe unless one is given.

        ``text_weights`` swaps a tuned text tower (an RTD checkpoint) into the rebuilt (or ``model=``) torch
        encoder: queries change, the stored image vectors stay valid (see :class:`~cir_milvus.encoders.torch.
        TorchEncoder`). Without it, a text tower recorded in the recipe is restored.

        Raises:
            CollectionNotFoundError: no such collection (the message lists the existing ones).
            RecipeMismatchError: the given model/encoder differs from the recipe (both are named).
        """
        if encoder is not None and text_weights is not None:
            raise ConfigError("pass text_weights= to the encoder you build, or drop encoder= and let open() build it")
        client = connect(uri, token=token, **dict(connect_kwargs or {}))
        caps = capabilities(client)
        recipe = cls._read_recipe(client, name, uri)
        if encoder is None and model is None:
            enc_recipe = recipe.encoder
            if enc_recipe.get("backend") == "fake":
                raise ConfigError("this collection was built with a FakeEncoder; pass encoder=FakeEncoder(...)")
            model_ref = enc_recipe.get("location") or enc_recipe["model"]  # an ONNX bundle is found by location
            tw = text_weights or enc_recipe.get("text_weights")
            if text_weights and enc_recipe.get("backend", "torch") != "torch":
                raise ConfigError(f"text_weights= swaps a text tower in a torch encoder, but {name!r} is served by "
                                  f"the {enc_recipe.get('backend')} backend; export a bundle from "
                                  "TorchEncoder(model, pretrained, text_weights=PATH) and open with encoder= instead")
            extra = {"text_weights": tw} if tw else {}
            if enc_recipe.get("preprocess", {}).get("decode"):  # queries decode like the gallery did
                extra["decode"] = enc_recipe["preprocess"]["decode"]
            encoder = create_encoder(model_ref, enc_recipe.get("pretrained"),
                                     backend=enc_recipe.get("backend"), device=device, precision=precision,
                                     preprocess=enc_recipe.get("preprocess", {}).get("mode", "clip"), **extra)
        kwargs = {"device": device, "precision": precision, **({"text_weights": text_weights} if text_weights else {})}
        enc = cls._build_encoder(model, pretrained, encoder, kwargs)
        return cls._open_with(client, caps, uri, name, enc, recipe)

    @staticmethod
    def _read_recipe(client: Any, name: str, uri: str) -> Recipe:
        with milvus_errors(f"check collection {name!r}"):
            if not client.has_collection(name):
                existing = client.list_collections()
                raise CollectionNotFoundError(
                    f"no collection {name!r} at {redact_uri(uri)}; existing: {', '.join(existing) or 'none'}. "
                    "Create it with CIRCollection.create()."
                )
            desc = client.describe_collection(name)
        props = desc.get("properties", {}) or {}
        if PROPERTY_KEY in props:
            return Recipe.from_json(props[PROPERTY_KEY])
        text = str(desc.get("description") or "")
        if text.startswith(DESCRIPTION_PREFIX):  # created on a server without collection properties
            return Recipe.from_json(text[len(DESCRIPTION_PREFIX):])
        raise ConfigError(f"collection {name!r} at {redact_uri(uri)} was not created by cir_milvus (no recipe "
                          "property)")

    @classmethod
    def _open_with(cls, client: Any, caps: Capabilities, uri: str, name: str, enc: Encoder,
                   recipe: Recipe | None = None) -> CIRCollection:
        recipe = recipe or cls._read_recipe(client, name, uri)
        check_compatible(name, recipe, enc.recipe)
        with milvus_errors(f"load collection {name!r}"):
            client.load_collection(name)  # Lite and servers return reopened collections released
        return cls(client, name, enc, recipe, caps, uri)

    def close(self) -> None:
        """Release the connection (a Lite file can then be opened by another process)."""
        with milvus_errors("close"):
            disconnect(self._client, self.uri)

    def __enter__(self) -> CIRCollection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CIRCollection({redact_uri(self.uri)!r}, {self.name!r}, {self.recipe.describe()})"

    # ------------------------------------------------------------------------------------------------------------
    # writing
    def add(
        self,
        images: Sequence[ImageInput],
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        batch_size: int = 64,
        *,
        skip_existing: bool = True,
        progress: bool = False,
        retries: int = 5,
    ) -> AddResult:
        """Encode and upsert images. Re-adding the same images stores no duplicates.

        Args:
            images: paths, encoded bytes or PIL images.
            ids: primary keys; default: sha256 of the file bytes / pixels (so re-adding is idempotent).
            metadata: one JSON-able dict per image (filterable as ``metadata["key"]``).
            batch_size: images per encoder batch.
            skip_existing: do not re-encode ids already stored (resume after an interruption).
            progress: show a progress bar with images/s.
            retries: retries with backoff when Milvus fails transiently.

        Returns:
            The stored ids (a list) with ``.skipped`` (unreadable inputs and reasons), ``.already_stored``,
            ``.encoded`` and ``.summary()``.
        """
        from tqdm.auto import tqdm

        start = time.perf_counter()
        result = AddResult()
        if metadata is not None and len(metadata) != len(images):
            raise ConfigError(f"metadata has {len(metadata)} entries but there are {len(images)} images")
        mds = [dict(m) for m in metadata] if metadata is not None else [{} for _ in images]
        bar = tqdm(total=len(images), desc=f"add → {self.name}", unit="img", disable=not progress)
        seen: set[str] = set()
        for s in range(0, len(images), batch_size):
            chunk = list(images[s : s + batch_size])
            given = ids[s : s + batch_size] if ids is not None else None
            data = read_paths(chunk) if given is None else chunk  # hash and decode the same bytes: one read
            chunk_ids = resolve_ids(data, given, result)
            todo = [(im, i, md, name) for im, i, md, name in zip(data, chunk_ids, mds[s : s + batch_size], chunk)
                    if i is not None and i not in seen]
            seen.update(t[1] for t in todo)
            if skip_existing and todo:
                present = self._existing_ids([t[1] for t in todo])
                result.already_stored.extend(t[1] for t in todo if t[1] in present)
                result.extend(t[1] for t in todo if t[1] in present)
                todo = [t for t in todo if t[1] not in present]
            if todo:
                batch = decode_batch([t[0] for t in todo], [t[1] for t in todo], [t[2] for t in todo], result,
                                     names=[t[3] for t in todo])
                if batch.images:
                    raw = self.encoder.encode_images(batch.images, batch_size=batch_size, normalize=False)
                    rows = make_rows(batch, np.asarray(raw, dtype=np.float32))
                    self._upsert(rows, retries)
                    result.encoded += len(rows)
                    result.extend(batch.ids)
            bar.update(len(chunk))
            elapsed = time.perf_counter() - start
            bar.set_postfix(img_s=f"{result.encoded / max(elapsed, 1e-9):.1f}", skipped=len(result.skipped))
        bar.close()
        result.seconds = time.perf_counter() - start
        for sk in result.skipped:
            log.info("skipped %s: %s", sk.source, sk.reason)
        return result

    def _upsert(self, rows: list[dict[str, Any]], retries: int) -> None:
        for part in chunk_rows_by_bytes(rows):
            def call(part: list[dict[str, Any]] = part) -> None:
                with milvus_errors(f"upsert {len(part)} rows into {self.name!r}"):
                    self._client.upsert(self.name, part)

            with_retries(call, f"upsert into {self.name!r}", retries=retries)

    def _existing_ids(self, ids: list[str]) -> set[str]:
        with milvus_errors(f"look up ids in {self.name!r}"):
            got = self._client.get(self.name, ids=ids, output_fields=["id"], consistency_level=READ_CONSISTENCY)
        return {r["id"] for r in got}

    def add_vectors(self, ids: Sequence[str], raw_embeddings: np.ndarray,
                    metadata: Sequence[Mapping[str, Any]] | None = None, sources: Sequence[str] | None = None) -> None:
        """Upsert precomputed raw (un-normalised) image embeddings from this collection's encoder.

        Raises:
            ConfigError: wrong dimension or lengths.
        """
        raw = np.asarray(raw_embeddings, dtype=np.float32)
        if raw.ndim != 2 or raw.shape[1] != self.encoder.dim:
            raise ConfigError(f"embeddings must be [N, {self.encoder.dim}] for this collection; got {raw.shape}")
        if len(ids) != raw.shape[0]:
            raise ConfigError(f"{len(ids)} ids for {raw.shape[0]} embeddings")
        from cir_milvus.storage.ingest import PreparedBatch

        batch = PreparedBatch(ids=list(ids), sources=list(sources or [""] * len(ids)),
                              metadata=[dict(m) for m in metadata] if metadata else [{} for _ in ids])
        self._upsert(make_rows(batch, raw), retries=5)

    def delete(self, ids: Sequence[str] | None = None, *, filter: str | None = None,
               filter_params: Mapping[str, Any] | None = None) -> int:
        """Delete by ids or by filter; returns the number deleted (as reported by Milvus)."""
        if ids is None and filter is None:
            raise ConfigError("delete needs ids= or filter=")
        with milvus_errors(f"delete from {self.name!r}"):
            if ids is not None:
                res = self._client.delete(self.name, ids=list(ids))
            else:
                res = self._client.delete(self.name, filter=self._filter(filter, filter_params))
        return int(res.get("delete_count", 0)) if isinstance(res, dict) else 0

    def flush(self) -> None:
        """Seal growing segments so they get indexed."""
        with milvus_errors(f"flush {self.name!r}"):
            self._client.flush(self.name)

    def wait_for_index(self, timeout: float = 600.0, poll: float = 0.5) -> dict[str, Any]:
        """Flush, then wait until ``indexed_rows == total_rows`` (search is slow until then)."""
        self.flush()
        deadline = time.monotonic() + timeout
        while True:
            info = self.index_info()
            if info.get("indexed_rows", 0) >= info.get("total_rows", 0) or info.get("state") == "Finished":
                return info
            if time.monotonic() > deadline:
                raise StorageError(f"index of {self.name!r} not finished after {timeout}s: {info}")
            time.sleep(poll)

    def index_info(self) -> dict[str, Any]:
        with milvus_errors(f"describe the index of {self.name!r}"):
            return dict(self._client.describe_index(self.name, "vector"))

    def __len__(self) -> int:
        with milvus_errors(f"count {self.name!r}"):
            res = self._client.query(self.name, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return int(res[0]["count(*)"])

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored RAW embeddings (normalised vector × stored norm) by id."""
        with milvus_errors(f"get vectors from {self.name!r}"):
            rows = self._client.get(self.name, ids=list(ids), output_fields=["id", "vector", "norm"],
                                    consistency_level=READ_CONSISTENCY)
        return {r["id"]: np.asarray(r["vector"], dtype=np.float32) * np.float32(r["norm"]) for r in rows}

    # ------------------------------------------------------------------------------------------------------------
    # querying
    def composer(self, name: str | None = None, **params: Any) -> Composer:
        """The composer for a call: the recipe's default, or ``name``, with parameter overrides."""
        default = self.recipe.composer
        name = name or default["name"]
        overrides = {k: v for k, v in params.items() if v is not None}
        base = self._composers.get(name)
        if base is None:
            stored = self._restore_params(default.get("params", {})) if name == default["name"] else {}
            if overrides:  # e.g. a head given per call: build with it (the stored params may be insufficient)
                return get_composer(name, **{**stored, **overrides})
            base = get_composer(name, **stored)
            self._composers[name] = base
        return base.with_params(**overrides) if overrides else base

    def _restore_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Recipe params → constructor params. A stored head config is re-loaded from its source and checked
        against its recorded checksum by the composer; an encoder served from an ONNX bundle that carries a head
        of the same kind uses that head instead (no torch needed)."""
        out = dict(params)
        head = out.get("head")
        bundle_heads = getattr(self.encoder, "heads", None)
        if isinstance(head, dict) and isinstance(bundle_heads, dict):
            for bh in bundle_heads.values():
                same_kind = getattr(bh, "kind", None) == head.get("kind")
                want = head.get("weights_sha256")
                have = bh.config().get("weights_sha256") if hasattr(bh, "config") else None
                if same_kind and (not want or not have or want == have):
                    out["head"] = bh
                    break
        return out

    def _filter(self, expr: str | None, params: Mapping[str, Any] | None) -> str:
        if not expr:
            if params:
                raise ConfigError("filter_params given without a filter expression")
            return ""
        return render_filter(expr, params)

    def _query_image_embeddings(self, comp: Composer, images: Sequence[ImageInput] | None,
                                ref_ids: Sequence[str] | None, n: int) -> Embeddings | None:
        if not comp.needs_image:
            return None
        if ref_ids is not None:
            stored = self.get_vectors(ref_ids)
            missing = [r for r in ref_ids if r not in stored]
            if missing:
                raise ConfigError(f"ref_id {missing[0]!r} is not stored in {self.name!r}")
            return np.stack([stored[r] for r in ref_ids])
        if images is None:
            raise ConfigError(f"composer {comp.name!r} needs a reference image or ref_id")
        return np.asarray(self.encoder.encode_images(list(images), normalize=False, preprocess=comp.preprocess),
                          dtype=np.float32)

    def compose(self, images: Sequence[ImageInput] | None, texts: Sequence[Any], *,
                ref_ids: Sequence[str] | None = None, composer: str | None = None, alpha: float | None = None,
                truncate: bool = False, **composer_params: Any) -> Embeddings:
        """Query vectors ``[N, D]`` for (image or stored id, text) pairs, without searching.

        Raises:
            ConfigError: an empty text, a text longer than the encoder's context length (unless ``truncate=True``,
                which warns and keeps the first tokens), an unknown composer, mismatched lengths.
        """
        comp = self.composer(composer, alpha=alpha, **composer_params)
        n = len(texts)
        if comp.needs_text:
            bad = [t for t in texts if t is None or (isinstance(t, str) and not t.strip())]
            if bad:
                raise ConfigError(f"composer {comp.name!r} needs a non-empty modification text")
        img = self._query_image_embeddings(comp, images, ref_ids, n)
        if img is not None and img.shape[0] != n:
            raise ConfigError(f"{img.shape[0]} reference images for {n} texts")
        with text_truncation(truncate):
            q = comp.compose(self.encoder, img, list(texts))
        return np.asarray(q, dtype=np.float32)

    def search(
        self,
        image: ImageInput | None = None,
        text: Any = None,
        k: int = 10,
        filter: str | None = None,
        composer: str | None = None,
        alpha: float | None = None,
        *,
        ref_id: str | None = None,
        filter_params: Mapping[str, Any] | None = None,
        output_fields: Sequence[str] | None = None,
        exclude_reference: bool = True,
        search_params: Mapping[str, Any] | None = None,
        truncate: bool = False,
        **composer_params: Any,
    ) -> list[Hit]:
        """Composed search: reference image (or stored ``ref_id``) + modification text → top-``k`` hits.

        Args:
            image: reference image (path, bytes or PIL); or use ``ref_id``.
            text: modification text (a pair of captions for FashionIQ-style queries).
            k: number of hits.
            filter: Milvus filter template, e.g. ``'metadata["brand"] == {brand}'``.
            composer: override the recipe's composer.
            alpha: override the composer's alpha.
            ref_id: id of a stored image to use as the reference (its stored vector is reused).
            filter_params: values for the filter's ``{placeholders}``.
            output_fields: fields to return besides ``id`` (default ``source`` and ``metadata``; never vectors).
            exclude_reference: drop the reference (by id) from the hits.
            search_params: index search parameters (HNSW ``ef``, IVF ``nprobe``).
            truncate: cut texts longer than the encoder's context length (with a warning) instead of raising.
            **composer_params: other composer overrides (``template``, ``head``...).
        """
        if image is None and ref_id is None and (composer or self.recipe.composer["name"]) != "text":
            raise ConfigError("search needs image= or ref_id= (or composer='text')")
        texts = [text if text is not None else ""]
        images = [image] if image is not None else None
        q = self.compose(images, texts, ref_ids=[ref_id] if ref_id is not None else None, composer=composer,
                         alpha=alpha, truncate=truncate, **composer_params)
        exclude = self._reference_ids(images, [ref_id] if ref_id is not None else None, 1, exclude_reference)
        return self.search_vectors(q, k=k, filter=filter, filter_params=filter_params, output_fields=output_fields,
                                   exclude_ids=exclude, search_params=search_params)[0]

    @staticmethod
    def _reference_ids(images: Sequence[ImageInput] | None, ref_ids: Sequence[str] | None, n: int,
                       exclude: bool) -> list[str | None]:
        """Ids to drop from each query's hits: the stored reference (ref_id, or the content id of a file/bytes)."""
        if not exclude:
            return [None] * n
        if ref_ids is not None:
            return list(ref_ids)
        if images is None:
            return [None] * n
        from cir_milvus.images import content_id

        out: list[str | None] = []
        for im in images:
            try:
                out.append(content_id(im) if isinstance(im, (str, bytes, os.PathLike)) else None)
            except Exception:  # noqa: BLE001 - an unreadable reference fails later with a clear error
                out.append(None)
        return out

    def search_batch(
        self,
        images: Sequence[ImageInput] | None,
        texts: Sequence[Any],
        k: int = 10,
        filter: str | None = None,
        composer: str | None = None,
        alpha: float | None = None,
        *,
        ref_ids: Sequence[str] | None = None,
        filter_params: Mapping[str, Any] | None = None,
        output_fields: Sequence[str] | None = None,
        exclude_reference: bool = True,
        search_params: Mapping[str, Any] | None = None,
        truncate: bool = False,
        **composer_params: Any,
    ) -> list[list[Hit]]:
        """Many composed queries: one encoder pass per modality and one Milvus search call per 1,024 queries."""
        if images is not None and len(images) != len(texts):
            raise ConfigError(f"{len(images)} images for {len(texts)} texts")
        q = self.compose(images, list(texts), ref_ids=ref_ids, composer=composer, alpha=alpha, truncate=truncate,
                         **composer_params)
        exclude = self._reference_ids(images, ref_ids, len(q), exclude_reference)
        return self.search_vectors(q, k=k, filter=filter, filter_params=filter_params, output_fields=output_fields,
                                   exclude_ids=exclude, search_params=search_params)

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int = 10,
        *,
        filter: str | None = None,
        filter_params: Mapping[str, Any] | None = None,
        output_fields: Sequence[str] | None = None,
        exclude_ids: Sequence[str | None] | None = None,
        search_params: Mapping[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """ANN search with ready query vectors ``[N, D]`` (normalised)."""
        q = np.asarray(vectors, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.encoder.dim:
            raise ConfigError(f"query vectors must be [N, {self.encoder.dim}] for this collection; got {q.shape}")
        if not 1 <= k <= 16384:
            raise ConfigError(f"k must be between 1 and 16384, got {k}")
        exclude = list(exclude_ids) if exclude_ids is not None else [None] * len(q)
        extra = 1 if any(e is not None for e in exclude) else 0
        fields = ["id", *[f for f in (output_fields or OUTPUT_FIELDS[1:]) if f not in ("id", "vector")]]
        expr = self._filter(filter, filter_params)
        idx_type = self.recipe.index.get("type", "HNSW")
        params = dict(search_params or DEFAULT_SEARCH_PARAMS.get(idx_type, {}))
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), k + extra)
        out: list[list[Hit]] = []
        for s in range(0, len(q), 1024):
            with milvus_errors(f"search {self.name!r}"):
                res = self._client.search(
                    self.name, data=q[s : s + 1024].tolist(), limit=min(k + extra, 16384), filter=expr,
                    output_fields=fields, search_params={"metric_type": self.recipe.metric, "params": params},
                    anns_field="vector", consistency_level=READ_CONSISTENCY,
                )
            for j, hits in enumerate(res):
                ex = exclude[s + j]
                row = [self._hit(h) for h in hits if h["id"] != ex]
                out.append(row[:k])
        return out

    @staticmethod
    def _hit(h: Mapping[str, Any]) -> Hit:
        ent = h.get("entity", {}) or {}
        md = ent.get("metadata") or {}
        extra = {key: v for key, v in ent.items() if key not in ("id", "metadata", "source")}
        return Hit(id=h["id"], score=float(h["distance"]), metadata={**md, **extra}, source=ent.get("source") or "")

    def iter_ids(self, batch_size: int = 1000) -> Iterator[str]:
        """Every stored id (query iterator)."""
        with milvus_errors(f"iterate {self.name!r}"):
            it = self._client.query_iterator(self.name, batch_size=batch_size, filter="", output_fields=["id"])
            try:
                while True:
                    page = it.next()
                    if not page:
                        return
                    for r in page:
                        yield r["id"]
            finally:
                it.close()

    def info(self) -> dict[str, Any]:
        """Recipe, count, index state and backend, for ``cir-milvus info``."""
        return {
            "name": self.name,
            "uri": redact_uri(self.uri),
            "backend": "Milvus Lite" if self.capabilities.is_lite else "Milvus server",
            "server_version": self.capabilities.version,
            "count": len(self),
            "index": self.index_info(),
            "recipe": {"encoder": self.recipe.encoder, "composer": self.recipe.composer, "metric": self.recipe.metric,
                       "index": self.recipe.index, "package_version": self.recipe.package_version},
        }

    def set_default_composer(self, name: str, **params: Any) -> None:
        """Change the composer stored in the recipe (e.g. the best alpha from a sweep). Gallery unchanged."""
        comp = get_composer(name, **params)
        if not self.capabilities.collection_properties:
            raise ConfigError(
                f"Milvus {self.capabilities.version} cannot alter collection properties, so the recipe stored at "
                f"creation cannot change; pass composer=/alpha= per query instead (or upgrade to Milvus >= 2.3)"
            )
        self.recipe.composer = comp.config()
        with milvus_errors(f"update the recipe of {self.name!r}"):
            self._client.alter_collection_properties(self.name, properties={PROPERTY_KEY: self.recipe.to_json()})
        self._composers[name] = comp

