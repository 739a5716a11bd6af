"""``CIRCollection``: the thin facade — an encoder, a composer and a :class:`~cir_milvus.storage.store.VectorStore`.

Everything Milvus-side (schema, ids, the one upsert path, reads, deletes, search) is the store's; this class turns
images into vectors (the encoder) and (image, text) queries into query vectors (the composer). See
:mod:`cir_milvus.storage.store` for the schema.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from cir_milvus.artifacts import SearchPath
from cir_milvus.collection.build import Connection, EncoderChoice, create_parts, encoder_spec, open_parts
from cir_milvus.collection.mixed import target_kw
from cir_milvus.collection.queries import batch_specs, run_search, single_spec
from cir_milvus.collection.report import IngestReport, SkipLog
from cir_milvus.collection.specs import ComposerSpec, FieldSpec, IfExists, IndexSpec, ItemText
from cir_milvus.collection.stage import Record, RecordStage
from cir_milvus.collection.text_features import TextFeatures
from cir_milvus.composers.base import Composer, get_composer
from cir_milvus.encoders.base import Encoder, text_truncation
from cir_milvus.encoders.capabilities import BundleHeadLike, HasBundleHeads
from cir_milvus.errors import ConfigError
from cir_milvus.storage.client import Capabilities, redact_uri
from cir_milvus.storage.hybrid import Ranker
from cir_milvus.storage.recipe import Recipe, lite_base_dir, portable_composer
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.storage.store import Hit, Hits, Id, VectorStore, WriteResult
from cir_milvus.types import Embeddings, ImageInput

__all__ = ["CIRCollection", "Hit", "Hits"]

log = logging.getLogger(__name__)



def _connection(uri: Any) -> Connection:
    """A :func:`cir_milvus.connect` database as it is; a path, URI or ``MilvusClient`` with default options."""
    return uri if isinstance(uri, Connection) else Connection(uri)


class CIRCollection:
    """A composed-image-retrieval collection in Milvus: encoder + composer + :class:`VectorStore`.

    Build with :meth:`create` or :meth:`open`, not the constructor.

    Attributes:
        store: the :class:`~cir_milvus.storage.store.VectorStore` (reads, writes, deletes; no encoder).
        encoder: the image / text encoder.
        name, uri, recipe, capabilities: the store's.

    Example:
        >>> col = CIRCollection.create("./cir.db", "products", model="ViT-B-32", pretrained="openai")  # doctest: +SKIP
        >>> col.add(["shoe.jpg"], metadata=[{"brand": "acme"}])  # doctest: +SKIP
        >>> col.search("shoe.jpg", "in red", k=5)  # doctest: +SKIP
    """

    def __init__(self, store: VectorStore, encoder: Encoder) -> None:
        if store.recipe is None:
            raise ConfigError("a CIRCollection needs a store with a recipe")
        self.store = store
        self.encoder = encoder
        self._composers: dict[str, Composer] = {}
        self._heads: dict[str, Any] = {}
        self.search_path: SearchPath = None  # extra folders where recipe heads are looked up (see open())

    @property
    def name(self) -> str:
        return self.store.name

    @property
    def uri(self) -> str:
        return self.store.uri

    @property
    def recipe(self) -> Recipe:
        assert self.store.recipe is not None
        return self.store.recipe

    @property
    def capabilities(self) -> Capabilities:
        return self.store.capabilities

    # ------------------------------------------------------------------------------------------------------------
    # construction: shortcuts over the one path (cir_milvus.collection.build) that Database uses too
    @classmethod
    def create(
        cls,
        uri: Any,
        name: str,
        model: str | None = None,
        pretrained: str | None = None,
        *,
        encoder: EncoderChoice = None,
        composer: str | ComposerSpec = "slerp",
        index: str | IndexSpec = "HNSW",
        fields: Mapping[str, Any] | FieldSpec | None = None,
        if_exists: IfExists = "fail",
        item_text: ItemText = False,
    ) -> CIRCollection:
        """Create a collection (the shortcut of :meth:`cir_milvus.Database.create_collection`).

        The encoder, composer, index type and fields are all validated before anything is dropped
        (``if_exists="overwrite"``) or created.

        Args:
            uri: a :func:`cir_milvus.connect` database (connection options given there), a Milvus Lite file
                (``"./cir.db"``), a server URI (``"http://host:19530"``) or a ``MilvusClient``.
            name: collection name.
            model: backbone (open_clip name, ``hf-hub:`` id, ``bundle:PATH``, ``"cir-demo-tiny"``).
            pretrained: open_clip tag, checkpoint path, or ``"cir-demo"``.
            encoder: an :class:`~cir_milvus.EncoderSpec` (device, precision, decode...; ``model=`` fills its model) or
                a ready encoder instead of ``model``/``pretrained``.
            composer: the default composer, by name (``slerp``, ``pic2word``, ``searle``, ``lincir``, ``combined``,
                ``image``, ``text``, ``sum`` or a plugin) or as a :class:`~cir_milvus.ComposerSpec` with its
                ``alpha``, ``head`` (pseudo-token composers; heads act on the query side only: switching heads
                later needs no re-ingestion) and other parameters.
            index: ``"HNSW"`` (default), ``"IVF_FLAT"``, ``"FLAT"``... or an :class:`~cir_milvus.IndexSpec` with
                build parameters; validated against the backend.
            fields: typed scalar fields, e.g. ``{"price": "double", "product": ("varchar", 64)}``: metadata keys
                of these names are stored in them (numeric filters such as ``price < 20``, ``group_by``).
                A :class:`~cir_milvus.FieldSpec` adds the one to partition by (multi-tenant catalogues):
                ``fields=FieldSpec({"tenant": "varchar", ...}, partition_key="tenant")``.
            item_text: a mixed gallery: a second vector field holds each item's text (``add(..., texts=...)``)
                embedded with the text tower; search it with ``targets=`` (see :mod:`cir_milvus.collection.mixed`).
                ``item_text="full_text"`` also keeps the item text for BM25 full-text search (target ``"bm25"``; Milvus
                Lite >= 3.0 or Milvus >= 2.5, else a ConfigError naming the version).
            if_exists: ``"fail"`` (default), ``"open"`` (the recipe must match; the existing collection keeps its
                recorded decode mode, see :meth:`open`) or ``"overwrite"`` (dropped after validating everything).

        Raises:
            ConfigError: the collection exists (with ``if_exists="fail"``), bad index type.
            RecipeMismatchError: ``if_exists="open"`` but the stored recipe differs.
        """
        store, enc, comp = create_parts(_connection(uri), name, encoder_spec(model, pretrained, encoder),
                                        ComposerSpec.of(composer), IndexSpec.of(index), FieldSpec.of(fields),
                                        if_exists, bool(item_text), item_text == "full_text")
        col = cls(store, enc)
        if comp is not None:
            col._composers[comp.name] = comp
        return col

    @classmethod
    def open(
        cls,
        uri: Any,
        name: str,
        model: str | None = None,
        pretrained: str | None = None,
        *,
        encoder: EncoderChoice = None,
        composer: str | ComposerSpec | None = None,
        schema: Mapping[str, Any] | None = None,
        search_path: SearchPath = None,
    ) -> CIRCollection:
        """Open an existing collection (the shortcut of :meth:`cir_milvus.Database.open_collection`); the encoder is
        rebuilt from the stored recipe unless one is given.

        Files the recipe names (checkpoint, text tower, ONNX bundle, heads) are found by their recorded sha256
        through hints: the collection's folder (Lite), ``search_path`` and ``$CIR_MILVUS_PATH`` (see
        :mod:`cir_milvus.artifacts`). ``model=``/``pretrained=`` naming the same bytes at another path is accepted.
        Relative stored sources re-encoded to verify another kind of encoder are looked for there too (after the
        working folder; :func:`~cir_milvus.collection.verify.source_bases`).

        ``encoder=EncoderSpec(device=..., precision=..., text_weights=...)`` without a model runs the rebuilt
        encoder so. ``text_weights`` swaps a tuned text tower (an RTD checkpoint) into the rebuilt (or ``model=``)
        torch encoder: queries change, the stored image vectors stay valid (see :class:`~cir_milvus.encoders.torch.
        TorchEncoder`). Without it, a text tower recorded in the recipe is restored.

        **Attaching a collection cir_milvus did not create** (someone else's schema): name its fields with
        ``schema={"vector_field": "emb", "id_field": "pk", "metric": "COSINE"}`` (optionally ``norm_field``,
        ``source_field``, ``metadata_field``, ``default_norm``) and say which encoder made its vectors
        (``model=``/``pretrained=`` or ``encoder=``) and, optionally, its default ``composer``. The recipe is then
        stored in the collection's properties (when the server allows it), so later opens need only ``schema=``.
        Without a norm field, pseudo-token composers get raw embeddings rebuilt with ``default_norm``: by default the
        encoder's mean image-embedding norm on a synthetic sample (:func:`~cir_milvus.collection.build.
        mean_image_norm`; recorded in the recipe as ``mean_image_norm``).

        The collection decodes images with the mode its recipe records (``decode``; none recorded: ``"exact"``):
        a ``model=``/``encoder=`` built with another decode mode serves it through a copy that decodes with the
        recorded one (:func:`~cir_milvus.collection.build.adopt_recorded_decode`; ``col.encoder`` is that copy), so
        queries decode like the gallery.

        Raises:
            CollectionNotFoundError: no such collection (the message lists the existing ones).
            RecipeMismatchError: the given model/encoder differs from the recipe (both are named); a different
                decode mode alone is not a mismatch (see above). An encoder of another backend, or an ONNX bundle
                opening a collection that records no bundle id, must also re-encode a few stored items with
                readable sources to their stored vectors (:mod:`cir_milvus.collection.verify`).
        """
        spec = ComposerSpec.of(composer) if composer is not None else None
        store, enc = open_parts(_connection(uri), name, encoder_spec(model, pretrained, encoder), spec, schema,
                                search_path)
        col = cls(store, enc)
        col.search_path = search_path
        return col

    def close(self) -> None:
        """Release the connection (a Lite file can then be opened by another process)."""
        self.store.close()

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
        ids: Sequence[Id] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        batch_size: int = 64,
        *,
        texts: Sequence[str | None] | None = None,
        skip_existing: bool = True,
        progress: bool = False,
    ) -> IngestReport:
        """Encode and upsert images: the record stage (:mod:`cir_milvus.collection.stage`) in this process, through
        the store's one write path. Re-adding the same images stores no duplicates.

        Args:
            images: paths, encoded bytes or PIL images.
            ids: primary keys; default: sha256 of the file bytes / pixels (so re-adding is idempotent).
            metadata: one JSON-able dict per image (filterable as ``metadata["key"]``; keys of typed fields go to
                those fields). NaN/inf become null, numpy scalars numbers; a cycle skips the record.
            batch_size: images per encoder batch.
            texts: item texts, one string (or ``None``: no text) per image, for collections created with
                ``item_text=True`` (an already-stored id keeps its text unless ``skip_existing=False``).
            skip_existing: do not re-encode ids already stored (resume after an interruption).
            progress: show a progress bar with images/s.

        Returns:
            An :class:`~cir_milvus.collection.report.IngestReport`, the report :func:`~cir_milvus.ingest.ingest`
            returns too: iterating it gives one id per input in input order (``None`` for skipped inputs);
            ``.stored``, ``.already_stored``, ``.duplicates``, ``.skipped`` (reasons and kinds), ``.encoded`` and
            ``.summary()``.

        Raises:
            ConfigError: ``ids`` / ``metadata`` / ``texts`` of the wrong length, texts without an item-text field, a
                bad ``batch_size``.
            StorageError: Milvus stayed unavailable for longer than the store's retry policy allows.
        """
        from tqdm.auto import tqdm

        from cir_milvus.collection.mixed import check_item_texts

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        images = list(images)
        for given, what in ((ids, "ids"), (metadata, "metadata")):
            if given is not None and len(given) != len(images):
                raise ConfigError(f"{what} has {len(given)} entries but there are {len(images)} images")
        item_texts = check_item_texts(texts, len(images), self.store.fields.text_vector_field is not None, self.name)
        report = IngestReport(ids=[None] * len(images))
        stage = RecordStage(self.store, self.encoder, SkipLog(report), skip_existing=skip_existing,
                            batch_size=batch_size, read_once=True, pixels=False, item_texts=item_texts is not None)
        records = (Record(ids[n] if ids is not None else None, im, metadata[n] if metadata is not None else None,
                          text=item_texts[n] if item_texts is not None else None) for n, im in enumerate(images))
        with tqdm(total=len(images), desc=f"add → {self.name}", unit="img", disable=not progress) as bar:
            return stage.run(records, progress=bar.update)

    def add_vectors(self, ids: Sequence[Id], raw_embeddings: np.ndarray,
                    metadata: Sequence[Mapping[str, Any]] | None = None,
                    sources: Sequence[str] | None = None) -> list[Id]:
        """Upsert precomputed raw (un-normalised) image embeddings from this collection's encoder.

        Returns:
            The ids written (rows refused by the id / metadata policy are logged and left out).

        Raises:
            ConfigError: wrong dimension or lengths.
        """
        wr = self.store.upsert(list(ids), np.asarray(raw_embeddings, dtype=np.float32), sources=sources,
                               metadata=metadata)
        for _, sk in wr.skipped:
            log.warning("not stored: %s (%s)", sk.source, sk.reason)
        return wr.written

    def delete(self, ids: Sequence[Id] | None = None, *, filter: str | None = None,
               filter_params: Mapping[str, Any] | None = None) -> int:
        """Delete by ids or by a filter template; returns the number of rows deleted."""
        return self.store.delete(ids, filter=filter, filter_params=filter_params)

    # The store's reads and writes, forwarded with the store's own signatures and return types
    # (tests/unit/test_collection_api.py keeps them equal); everything else is reached as ``col.store``.
    def update_metadata(self, ids: Sequence[Id], metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]], *,
                        replace: bool = False) -> WriteResult:
        """See :meth:`VectorStore.update_metadata`: change stored metadata without re-encoding."""
        return self.store.update_metadata(ids, metadata, replace=replace)

    def get(self, ids: Sequence[Id], *, output_fields: Sequence[str] | None = None,
            vectors: bool = False) -> list[dict[str, Any]]:
        """See :meth:`VectorStore.get`: stored rows by id, in the order of ``ids``; missing ids left out."""
        return self.store.get(ids, output_fields=output_fields, vectors=vectors)

    def query(self, filter: str = "", filter_params: Mapping[str, Any] | None = None, *,
              output_fields: Sequence[str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """See :meth:`VectorStore.query`: stored rows matching a filter template."""
        return self.store.query(filter, filter_params, output_fields=output_fields, limit=limit)

    def flush(self, *, retry: RetryPolicy | None = None) -> None:
        """See :meth:`VectorStore.flush`: seal growing segments so they get indexed."""
        self.store.flush(retry=retry)

    def wait_for_index(self, timeout: float = 600.0, poll: float = 0.5) -> dict[str, Any]:
        """Flush, then wait until ``indexed_rows == total_rows`` (search is slow until then)."""
        return self.store.wait_for_index(timeout, poll)

    def index_info(self) -> dict[str, Any]:
        return self.store.index_info()

    def __len__(self) -> int:
        return self.store.count()

    def get_vectors(self, ids: Sequence[Id]) -> dict[Id, np.ndarray]:
        """See :meth:`VectorStore.vectors`: stored RAW embeddings (normalised vector × stored norm) by id."""
        return self.store.vectors(ids)

    # ------------------------------------------------------------------------------------------------------------
    # querying
    def composer(self, name: str | None = None, **params: Any) -> Composer:
        """The composer for a call: the recipe's default, or ``name``, with parameter overrides."""
        default = self.recipe.composer
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"composer must be a composer name such as 'slerp' (or None for the collection's "
                              f"default {default['name']!r}); got {name!r}")
        name = name or default["name"]
        overrides = {k: v for k, v in params.items() if v is not None}
        base = self._composers.get(name)
        if base is None:
            stored = (self._restore_params(default.get("params", {}), locate_head="head" not in overrides)
                      if name == default["name"] else {})
            if overrides:  # e.g. a head given per call: build with it (the stored params may be insufficient)
                return get_composer(name, **{**stored, **overrides})
            base = get_composer(name, **stored)
            self._composers[name] = base
        return base.with_params(**overrides) if overrides else base

    def _restore_params(self, params: dict[str, Any], locate_head: bool = True) -> dict[str, Any]:
        """Recipe params → constructor params. A stored head config is found by its recorded sha256 (its source
        is a hint: see :func:`cir_milvus.heads.locate_head`), re-loaded and checked against its weights checksum
        by the composer; an encoder served from an ONNX bundle that carries a head of the same kind uses that
        head instead (no torch needed)."""
        out = dict(params)
        head = out.get("head")
        if isinstance(head, dict) and isinstance(self.encoder, HasBundleHeads):
            for bh in self.encoder.heads.values():
                if not isinstance(bh, BundleHeadLike):
                    continue
                same_kind = bh.kind == head.get("kind")
                want = head.get("weights_sha256")
                have = bh.config().get("weights_sha256")
                if same_kind and (not want or not have or want == have):
                    out["head"] = bh
                    break
        if locate_head and isinstance(head, dict) and out["head"] is head and head.get("source"):
            from cir_milvus.heads import locate_head as find_head

            out["head"] = find_head(head, base_dir=lite_base_dir(self.uri), search_path=self.search_path)
        return out

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
                truncate: bool = False, reference_embeddings: Embeddings | None = None,
                **composer_params: Any) -> Embeddings:
        """Query vectors ``[N, D]`` for (image or stored id, text) pairs, without searching.

        ``reference_embeddings`` gives RAW reference embeddings ``[N, D]`` already computed (e.g. several references
        combined with :func:`cir_milvus.query.combine_references`) instead of ``images`` / ``ref_ids``.

        Raises:
            ConfigError: an empty text, a text longer than the encoder's context length (unless ``truncate=True``,
                which warns and keeps the first tokens), an unknown composer, mismatched lengths.
        """
        comp = self.composer(composer, alpha=alpha, **composer_params)
        n = len(texts)
        if n == 0:  # no queries, no encoder call (an empty batch is not an error)
            return np.zeros((0, self.store.dim), dtype=np.float32)
        if comp.needs_text:
            bad = [t for t in texts if t is None or (isinstance(t, str) and not t.strip())]
            if bad:
                raise ConfigError(f"composer {comp.name!r} needs a non-empty modification text")
        with text_truncation(truncate):
            early = TextFeatures(comp, self.encoder, list(texts)) if images is not None and ref_ids is None else None
            try:
                img = (np.asarray(reference_embeddings, dtype=np.float32)
                       if reference_embeddings is not None and comp.needs_image
                       else self._query_image_embeddings(comp, images, ref_ids, n))
            except BaseException:
                if early is not None:
                    early.discard()  # the image's error is the one to report
                raise
            features = early.result() if early is not None else None
            if img is not None and img.shape[0] != n:
                raise ConfigError(f"{img.shape[0]} reference images for {n} texts")
            if features is not None:
                q = comp.compose(self.encoder, img, list(texts), text_features=features)  # type: ignore[call-arg]
            else:
                q = comp.compose(self.encoder, img, list(texts))
        return np.asarray(q, dtype=np.float32)

    def search(
        self,
        image: ImageInput | None = None,
        text: Any = None,
        k: int = 10,
        filter: str | None = None,
        composer: str | None = None,
        alpha: float | Sequence[float] | None = None,
        *,
        ref_id: Id | None = None,
        images: Sequence[ImageInput] | None = None,
        ref_ids: Sequence[Id] | None = None,
        weights: Sequence[float] | None = None,
        negative: str | Sequence[str] | None = None,
        like: Sequence[Id] | None = None,
        unlike: Sequence[Id] | None = None,
        dedupe: float | None = None,
        return_query_vector: bool = False,
        output_vectors: bool = False,
        filter_params: Mapping[str, Any] | None = None,
        output_fields: Sequence[str] | None = None,
        exclude_reference: bool = True,
        search_params: Mapping[str, Any] | None = None,
        truncate: bool = False,
        group_by: str | None = None,
        targets: Sequence[str] | None = None,
        ranker: Ranker = "rrf",
        ranker_weights: Sequence[float] | None = None,
        **composer_params: Any,
    ) -> Hits:
        """Composed search: reference image(s) (or stored ids) + modification text → top-``k`` hits.

        The query rules (several references, negation, feedback, fused alphas, near-duplicates) and their sources
        are in ``docs/queries.md``.

        Args:
            image: reference image (path, bytes or PIL); or use ``ref_id``.
            text: modification text (a pair of captions for FashionIQ-style queries).
            k: number of hits.
            filter: Milvus filter template, e.g. ``'metadata["brand"] == {brand}'``.
            composer: override the recipe's composer.
            alpha: override the composer's alpha; a list (``[0.6, 0.7, 0.8, 0.9]``) runs one query per alpha and
                fuses the lists by reciprocal rank (k = 60).
            ref_id: id of a stored image to use as the reference (its stored vector is reused).
            images: several reference images, combined on the sphere (weighted spherical mean) before composing.
            ref_ids: several references: stored ids (strings, integers), mixed freely with images given as a
                ``Path``, bytes or a PIL image (with ``images``: those first, then ``ref_ids``, in ``weights`` order).
            weights: one non-negative weight per reference (default equal).
            negative: a text or list of texts to move the query away from (orthogonal negation).
            like, unlike: stored ids to move towards / away from (Rocchio on their stored vectors); they are left
                out of the hits.
            dedupe: drop a hit whose cosine to a better kept hit reaches this threshold in (0, 1], e.g. 0.98.
            return_query_vector: give each hit the query vector (``hit.query_vector``).
            output_vectors: give each hit its stored, L2-normalised vector (``hit.vector``).
            filter_params: values for the filter's ``{placeholders}``.
            output_fields: fields to return besides ``id`` (default ``source`` and ``metadata``).
            exclude_reference: drop the reference(s) (by id) from the hits.
            search_params: index search parameters (HNSW ``ef``, IVF ``nprobe``).
            truncate: cut texts longer than the encoder's context length (with a warning) instead of raising.
            group_by: a typed field (declared with ``fields=``): at most one hit per value, e.g. per product.
            targets: the fields the query is matched against: ``("image",)`` (default), ``("text",)`` (item texts,
                ``item_text=True``), ``("image", "text")``: one hybrid search (see :mod:`cir_milvus.storage.hybrid`);
                ``"bm25"`` (``item_text="full_text"``) matches the modification text against the item texts by BM25.
            ranker: ``"rrf"`` or ``"weighted"`` (fusing several targets).
            ranker_weights: with ``"weighted"``: one weight in [0, 1] per target, e.g. ``(0.7, 0.3)``.
            **composer_params: other composer overrides (``template``, ``head``...).

        Raises:
            ConfigError: a target the collection lacks, weights that do not match the targets; no reference for a composer that needs one, unknown ids in ``ref_ids``/``like``/``unlike``,
                weights that do not match the references, empty lists, a threshold outside (0, 1], an alpha outside
                [0, 1].
        """
        spec = single_spec(text if text is not None else "", image=image, ref_id=ref_id, images=images,
                           ref_ids=ref_ids, weights=weights, negative=negative, like=like, unlike=unlike)
        if not spec.references and (composer or self.recipe.composer["name"]) != "text":
            raise ConfigError("search needs image= or ref_id= (or images=/ref_ids=, or composer='text')")
        return run_search(self, [spec], k=k, alpha=alpha, dedupe=dedupe, return_query_vector=return_query_vector,
                          output_vectors=output_vectors, exclude_reference=exclude_reference,
                          compose_kw={"composer": composer, "truncate": truncate, "composer_params": composer_params},
                          search_kw={"filter": filter, "filter_params": filter_params, "group_by": group_by,
                                     "output_fields": output_fields, "search_params": search_params,
                                     **target_kw(targets, ranker, ranker_weights)})[0]

    def search_batch(
        self,
        images: Sequence[ImageInput | Sequence[ImageInput] | None] | None,
        texts: Sequence[Any],
        k: int = 10,
        filter: str | None = None,
        composer: str | None = None,
        alpha: float | Sequence[float] | None = None,
        *,
        ref_ids: Sequence[Id | Sequence[Id] | None] | None = None,
        weights: Sequence[Sequence[float] | None] | None = None,
        negative: str | Sequence[str | Sequence[str] | None] | None = None,
        like: Sequence[Sequence[Id] | None] | None = None,
        unlike: Sequence[Sequence[Id] | None] | None = None,
        dedupe: float | None = None,
        return_query_vector: bool = False,
        output_vectors: bool = False,
        filter_params: Mapping[str, Any] | None = None,
        output_fields: Sequence[str] | None = None,
        exclude_reference: bool = True,
        search_params: Mapping[str, Any] | None = None,
        truncate: bool = False,
        group_by: str | None = None,
        targets: Sequence[str] | None = None,
        ranker: Ranker = "rrf",
        ranker_weights: Sequence[float] | None = None,
        **composer_params: Any,
    ) -> list[Hits]:
        """Many composed queries: one encoder pass per modality and one Milvus search call per 1,024 query vectors.

        Takes :meth:`search`'s arguments with one entry per text: ``images[i]`` (an image, or a list of them for
        several references), ``ref_ids[i]`` (an id or a list), ``weights[i]``, ``negative[i]`` (a single string
        applies to every query), ``like[i]``, ``unlike[i]``; ``None`` where a query has none. ``alpha``,
        ``dedupe`` and the rest apply to every query.
        """
        if images is not None and len(images) != len(texts):
            raise ConfigError(f"{len(images)} images for {len(texts)} texts")
        if len(texts) == 0:
            return []  # zero queries, zero result lists (no encoder or Milvus call)
        specs = batch_specs(list(texts), images=images, ref_ids=ref_ids, weights=weights, negative=negative,
                            like=like, unlike=unlike)
        return run_search(self, specs, k=k, alpha=alpha, dedupe=dedupe, return_query_vector=return_query_vector,
                          output_vectors=output_vectors, exclude_reference=exclude_reference,
                          compose_kw={"composer": composer, "truncate": truncate, "composer_params": composer_params},
                          search_kw={"filter": filter, "filter_params": filter_params, "group_by": group_by,
                                     "output_fields": output_fields, "search_params": search_params,
                                     **target_kw(targets, ranker, ranker_weights)})

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int = 10,
        *,
        filter: str | None = None,
        filter_params: Mapping[str, Any] | None = None,
        group_by: str | None = None,
        exclude_ids: Sequence[Any] | None = None,
        output_fields: Sequence[str] | None = None,
        search_params: Mapping[str, Any] | None = None,
        partition_names: Sequence[str] | None = None,
    ) -> list[Hits]:
        """See :meth:`VectorStore.search_vectors`: ANN search with ready query vectors ``[N, D]`` (normalised)."""
        return self.store.search_vectors(vectors, k, filter=filter, filter_params=filter_params, group_by=group_by,
                                         exclude_ids=exclude_ids, output_fields=output_fields,
                                         search_params=search_params, partition_names=partition_names)

    def iter_ids(self, batch_size: int = 1000) -> Iterator[Id]:
        """Every stored id (query iterator)."""
        return self.store.iter_ids(batch_size)

    def info(self) -> dict[str, Any]:
        """Recipe, count, index state and backend, for ``cir-milvus info`` (the store's; no encoder needed)."""
        return self.store.info()

    def set_default_composer(self, name: str, **params: Any) -> None:
        """Change the composer stored in the recipe (e.g. the best alpha from a sweep). Gallery unchanged."""
        comp = get_composer(name, **params)
        recipe = dataclasses.replace(self.recipe, composer=portable_composer(comp.config(), lite_base_dir(self.uri)))
        self.store.set_recipe(recipe)
        self._composers[name] = comp
