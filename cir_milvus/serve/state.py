"""What the service holds while it runs (``app.state.service``): the served collections, their composers, limits.

Built once by :func:`build_state` before the app starts; routes reach it through the dependencies of
:mod:`cir_milvus.serve.deps`. A composer that cannot be built on a collection (a pseudo-token composer whose head
the bundle lacks, a head that needs torch where torch is missing) is listed as unavailable with the reason; the
service starts with the others.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cir_milvus.encoders.capabilities import HasBundleHeads
from cir_milvus.errors import CIRError, ConfigError
from cir_milvus.heads import list_heads
from cir_milvus.images import MAX_PIXELS
from cir_milvus.serve.batcher import EncoderWorker
from cir_milvus.serve.errors import RequestError
from cir_milvus.serve.gate import StorageGate
from cir_milvus.serve.paths import ImageRoots
from cir_milvus.serve.policy import FilterPolicy
from cir_milvus.storage.retry import RetryPolicy

__all__ = ["ComposerInfo", "Limits", "Served", "ServiceState", "build_state"]

log = logging.getLogger(__name__)


class LRU:
    """A small least-recently-used map (image sources by id, thumbnails by ETag)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)


@dataclass(frozen=True)
class Limits:
    """The service's caps; ``/info`` shows them to clients."""

    max_k: int = 100
    max_upload_bytes: int = 10 * 1024 * 1024
    max_batch_queries: int = 64
    max_add_images: int = 64
    max_text_chars: int = 1_000
    max_pixels: int = MAX_PIXELS
    request_timeout_s: float = 30.0
    storage_timeout_s: float = 3.0

    @property
    def max_body(self) -> int:
        # base64 in JSON grows the image by 4/3; a little room for the other fields
        return self.max_upload_bytes * 4 // 3 + 64 * 1024

    def public(self) -> dict[str, Any]:
        return {"max_k": self.max_k, "max_upload_bytes": self.max_upload_bytes,
                "max_batch_queries": self.max_batch_queries, "max_text_chars": self.max_text_chars,
                "request_timeout_s": self.request_timeout_s}


@dataclass
class ComposerInfo:
    """What a client can do with one composer on one collection."""

    name: str
    params: dict[str, Any]  # call overrides (a head), never from clients
    takes_alpha: bool
    default_alpha: float | None
    needs_image: bool
    needs_text: bool

    def public(self) -> dict[str, Any]:
        return {"alpha": self.takes_alpha, "default_alpha": self.default_alpha, "needs_image": self.needs_image,
                "needs_text": self.needs_text}


@dataclass
class Served:
    """A collection as the service holds it."""

    name: str
    collection: Any
    worker: EncoderWorker
    composers: dict[str, ComposerInfo]
    unavailable: dict[str, str]  # composer name -> why it cannot run here
    default_composer: str
    roots: ImageRoots
    policy: FilterPolicy
    sources: LRU = field(default_factory=lambda: LRU(100_000))
    thumbs: LRU = field(default_factory=lambda: LRU(2_048))

    @property
    def store(self) -> Any:
        """The collection's :class:`~cir_milvus.storage.store.VectorStore` (searches and lookups go there)."""
        return self.collection.store


@dataclass
class ServiceState:
    """Everything the routes share."""

    served: dict[str, Served]
    limits: Limits
    token: str | None
    allow_add: bool
    storage_retry: RetryPolicy
    gate: StorageGate
    saved_retry: dict[str, RetryPolicy] = field(default_factory=dict)

    def pick(self, name: str | None) -> Served:
        """The collection a request names (the first one served by default).

        Raises:
            RequestError: 404, not served here.
        """
        s = self.served.get(name or next(iter(self.served)))
        if s is None:
            raise RequestError(404, f"no collection {name!r} on this server; served: {', '.join(self.served)}",
                               "CollectionNotFound")
        return s

    def start(self) -> None:
        """Bound every storage call of a request to the service's retry policy (restored by :meth:`close`): the
        store's default retries for minutes, far past a request's deadline, where the service must answer 503 fast;
        and open the storage gate (:mod:`cir_milvus.serve.gate`), which bounds a request's storage work by
        wall-clock."""
        for s in self.served.values():
            self.saved_retry.setdefault(s.name, s.store.retry)
            s.store.retry = self.storage_retry
        self.gate.start()

    def close(self) -> None:
        self.gate.close()
        for s in self.served.values():
            s.worker.close()
            if s.name in self.saved_retry:
                s.store.retry = self.saved_retry.pop(s.name)


def load_heads(collection: Any, heads: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Projection heads by kind: the operator's, then a bundle's own, then the demo model's shipped ones; and the
    kinds that could not be loaded, with the reason.

    Raises:
        ConfigError: an operator head of an unknown kind.
    """
    kinds = list_heads()
    out: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for kind, src in (heads or {}).items():
        if kind not in kinds:
            raise ConfigError(f"heads: unknown kind {kind!r}; use one of {kinds}")
        if isinstance(src, (str, os.PathLike)):
            from cir_milvus.heads import load_head

            src = load_head(kind, src)  # the operator named it: a broken file stops the start
        out[kind] = src
    if isinstance(collection.encoder, HasBundleHeads):
        for bh in collection.encoder.heads.values():
            out.setdefault(bh.kind, bh)
    enc = collection.recipe.encoder
    from cir_milvus.models.demo import DEMO_MODEL, DEMO_WEIGHTS, demo_heads

    if enc.get("model") == DEMO_MODEL and enc.get("pretrained") == DEMO_WEIGHTS and enc.get("backend") == "torch":
        for kind, path in demo_heads().items():
            if kind not in out:
                from cir_milvus.heads import load_head

                try:
                    out[kind] = load_head(kind, path)
                except CIRError as e:  # e.g. torch missing for a head the bundle does not carry
                    failed[kind] = str(e)
    out.pop("", None)
    return out, failed


def composers(collection: Any, heads: Mapping[str, Any],
              head_errors: Mapping[str, str]) -> tuple[dict[str, ComposerInfo], dict[str, str], str]:
    """Every composer this collection can run (each built once here), the ones it cannot with the reason, and the
    default composer (the recipe's; when that cannot run, the first that can, with a warning).

    Raises:
        ConfigError: no composer can run on the collection.
    """
    from cir_milvus.composers import list_composers

    default = collection.recipe.composer["name"]
    kinds = list_heads()
    any_head = next((heads[k] for k in kinds if k in heads), None)
    out: dict[str, ComposerInfo] = {}
    unavailable: dict[str, str] = {}
    for name in list_composers():
        params: dict[str, Any] = {}
        if name in kinds and name in heads:
            params = {"head": heads[name]}
        elif name == "combined" and any_head is not None and name != default:
            params = {"head": any_head}
        try:
            comp = collection.composer(name, **params)
        except CIRError as e:
            reason = head_errors.get(name) or str(e)
            unavailable[name] = reason
            log.info("composer %r is not offered for %r: %s", name, collection.name, reason)
            continue
        alpha = comp.params.get("alpha")
        out[name] = ComposerInfo(name, params, "alpha" in comp.params,
                                 float(alpha) if isinstance(alpha, (int, float)) else None,
                                 bool(comp.needs_image), bool(comp.needs_text))
    if not out:
        raise ConfigError(f"no composer can run on collection {collection.name!r}: {unavailable}")
    if default not in out:
        fallback = "slerp" if "slerp" in out else next(iter(out))
        log.warning("the default composer %r of %r cannot run here (%s); serving %r as the default", default,
                    collection.name, unavailable.get(default, "unknown composer"), fallback)
        default = fallback
    return out, unavailable, default


def probe(served: Mapping[str, Served]) -> None:
    """Milvus answers a one-hit search on every served collection (the storage gate's probe; raises otherwise)."""
    for s in served.values():
        dim = int(s.store.dim)
        s.store.search_vectors(np.full((1, dim), dim ** -0.5, dtype=np.float32), 1)


def build_state(collections: Mapping[str, Any], *, limits: Limits, token: str | None, allow_add: bool,
                policy: FilterPolicy, image_roots: Sequence[Any] | Mapping[str, Sequence[Any]],
                heads: Mapping[str, Any] | None, max_batch: int, max_wait_s: float) -> ServiceState:
    """Load heads, build composers and start one encoder thread per collection."""
    served: dict[str, Served] = {}
    try:
        for name, col in collections.items():
            roots = ImageRoots(image_roots.get(name, ()) if isinstance(image_roots, Mapping) else image_roots)
            comps, unavailable, default = composers(col, *load_heads(col, heads))
            worker = EncoderWorker(col, max_batch=max_batch, max_wait_s=max_wait_s, name=name)
            served[name] = Served(name, col, worker, comps, unavailable, default, roots, policy)
    except BaseException:
        for s in served.values():
            s.worker.close()
        raise
    retry = RetryPolicy(timeout=limits.storage_timeout_s, initial_delay=0.25, max_delay=1.0)
    gate = StorageGate(functools.partial(probe, served), budget_s=limits.storage_timeout_s)
    return ServiceState(served, limits, token, allow_add, retry, gate)
