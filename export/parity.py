"""Parity of an exported bundle against torch: per-output max-abs and cosine, plus top-k retrieval agreement.

The inputs are fixed and seeded (:func:`make_feeds`): random pixels, a fixed list of modification texts tokenised by the
bundle's tokenizer, random pseudo tokens at the scale of the token embeddings, per-query slerp weights. The export
stores them (pixels as a seed + checksum) with the torch outputs in ``reference.npz``, so
``check_parity(bundle_dir)`` runs without torch; given the torch encoder it recomputes the reference.

Retrieval agreement follows faiss ``contrib.evaluation.check_ref_knn_with_draws``: a result returned by the bundle
counts as agreeing when torch ranks it inside its own top k, or scores it within ``tol`` of torch's k-th score (ties).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cir_milvus.bundle import REFERENCE, load_manifest, session_options
from cir_milvus.encoders.bundle_tokenizer import BundleTokenizer

__all__ = [
    "PARITY_TEXTS",
    "TOKENIZER_PROBES",
    "check_parity",
    "compare_outputs",
    "format_report",
    "load_reference",
    "make_feeds",
    "parity_pixels",
    "save_reference",
    "tokenizer_agreement",
    "torch_reference",
    "topk_agreement",
]


PARITY_TEXTS = [
    "is red",
    "make it blue and larger",
    "a small green star on a white background",
    "without the stripes",
    "same shape, but purple!",
    "two of them, in 3D",
    "the café's version — brighter",
    "change the colour to yellow and the background to black",
]
"""Modification texts of the parity inputs (batch 8)."""

TOKENIZER_PROBES = PARITY_TEXTS + [
    "A photo of $ that is RED", "a photo of * , with $19.99 price tag (50% off)", "It's the dog's toy; we'll see",
    "  lots   of\twhitespace\n here ", "naïve café résumé", "日本語のテキスト", "emoji 🐶🔥 ✨", "ﬁne ﬂower",
    "ＦＵＬＬ ｗｉｄｔｈ １２３", "“curly” ‘quotes’", "a&amp;b &lt;tag&gt;", "ΟΔΟΣ", "İstanbul", "C++ & C#",
    "e-mail@example.com http://x.y/z?q=1", "", "x" * 100, "word " * 60, "1234567890", "a--b__c...d",
]
"""Strings whose ids must be identical between open_clip and the bundle tokenizer (plus the parity texts)."""


def parity_pixels(seed: int, batch: int, size: int) -> np.ndarray:
    """Seeded standard-normal pixels ``[batch, 3, size, size]`` (already in normalised space)."""
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size), dtype=np.float32)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def make_feeds(manifest: Mapping[str, Any], tokenizer: BundleTokenizer, *, seed: int = 0,
               pseudo_scale: float = 0.02) -> dict[str, dict[str, np.ndarray]]:
    """The seeded inputs of every graph in the manifest, except ``head_*`` (fed the reference image embeddings).

    Returns:
        graph name → input name → array.
    """
    dims = manifest["dims"]
    batch = len(PARITY_TEXTS)
    rng = np.random.default_rng(seed + 1)
    pixels = parity_pixels(seed, batch, int(dims["image_size"]))
    ids = tokenizer(PARITY_TEXTS)  # [B, L]
    dollar = int(manifest["placeholders"]["$"])
    pseudo_ids = tokenizer([f"a photo of $ that {t}" for t in PARITY_TEXTS])
    tokens = (rng.standard_normal((batch, int(dims["token_width"]))) * pseudo_scale).astype(np.float32)  # [B, W]
    alpha = np.linspace(0.0, 1.0, batch, dtype=np.float32)  # [B]: one weight per query, 0 and 1 included
    feeds: dict[str, dict[str, np.ndarray]] = {
        "image": {"pixels": pixels},
        "text": {"input_ids": ids},
        "text_pseudo": {"input_ids": pseudo_ids, "pseudo_token": tokens,
                        "placeholder_id": np.asarray([dollar], dtype=np.int64)},
        "fused_slerp": {"pixels": pixels, "input_ids": ids, "alpha": alpha},
    }
    for name, meta in manifest.get("heads", {}).items():
        feeds[f"fused_{name}"] = {"pixels": pixels,
                                  "input_ids": tokenizer([meta["template"].format(t) for t in PARITY_TEXTS])}
    return {g: f for g, f in feeds.items() if g in manifest["graphs"]}


def compare_outputs(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Max-abs difference, relative max-abs, and min / mean row cosine between two ``[N, X]`` arrays."""
    ref64, out64 = np.asarray(ref, np.float64), np.asarray(out, np.float64)
    if ref64.shape != out64.shape:
        raise ValueError(f"shape mismatch: reference {ref64.shape} vs output {out64.shape}")
    cos = np.sum(ref64 * out64, -1) / np.maximum(np.linalg.norm(ref64, axis=-1) * np.linalg.norm(out64, axis=-1),
                                                 1e-30)
    max_abs = float(np.max(np.abs(ref64 - out64))) if ref64.size else 0.0
    scale = float(np.max(np.abs(ref64))) if ref64.size else 1.0
    return {"max_abs": max_abs, "rel_max_abs": max_abs / max(scale, 1e-30),
            "cosine_min": float(cos.min()) if cos.size else 1.0, "cosine_mean": float(cos.mean()) if cos.size else 1.0}


def topk_agreement(ref_queries: np.ndarray, test_queries: np.ndarray, gallery: np.ndarray, k: int = 5,
                   tol: float = 1e-5) -> dict[str, float]:
    """Tie-tolerant top-k agreement of inner-product search with reference and test query vectors.

    Args:
        ref_queries: ``[Q, D]`` queries from the reference (torch).
        test_queries: ``[Q, D]`` the same queries from the system under test (onnxruntime).
        gallery: ``[G, D]`` gallery vectors.
        k: cut-off.
        tol: a test result whose reference score is within ``tol`` of the reference k-th score counts as agreeing.

    Returns:
        ``{"k", "agreement", "exact_overlap", "top1"}``: the fraction of the test top-k accepted (ties tolerated),
        the plain set overlap, and the fraction of identical top-1 results.
    """
    ref_s = np.asarray(ref_queries, np.float64) @ np.asarray(gallery, np.float64).T  # [Q, G]
    test_s = np.asarray(test_queries, np.float64) @ np.asarray(gallery, np.float64).T  # [Q, G]
    k = min(k, ref_s.shape[1])
    ref_top = np.argsort(-ref_s, axis=1, kind="stable")[:, :k]  # [Q, k]
    test_top = np.argsort(-test_s, axis=1, kind="stable")[:, :k]  # [Q, k]
    kth = np.take_along_axis(ref_s, ref_top[:, -1:], axis=1)  # [Q, 1] reference k-th score
    accepted = np.take_along_axis(ref_s, test_top, axis=1) >= kth - tol  # [Q, k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(ref_top.tolist(), test_top.tolist(), strict=True)]
    return {"k": k, "agreement": float(accepted.mean()), "exact_overlap": float(np.mean(overlap)),
            "top1": float(np.mean(ref_top[:, 0] == test_top[:, 0]))}


def tokenizer_agreement(reference_tokenize: Any, tokenizer: BundleTokenizer,
                        texts: Sequence[str] = TOKENIZER_PROBES) -> dict[str, Any]:
    """How many probe strings get identical ids from ``reference_tokenize`` (open_clip) and the bundle tokenizer."""
    ref = np.asarray(reference_tokenize(list(texts)), dtype=np.int64)
    got = tokenizer(list(texts))
    same = [bool(np.array_equal(a, b)) for a, b in zip(ref, got, strict=True)]
    return {"strings": len(texts), "identical": int(sum(same)),
            "different": [t for t, s in zip(texts, same, strict=True) if not s]}


def _ort_sessions(bundle: Path, manifest: Mapping[str, Any], providers: Sequence[Any] | None) -> dict[str, Any]:
    import onnxruntime as ort

    opts = session_options(ort, dict(manifest))
    return {g: ort.InferenceSession(str(bundle / meta["file"]), sess_options=opts,
                                    providers=list(providers or ["CPUExecutionProvider"]))
            for g, meta in manifest["graphs"].items()}


def load_reference(bundle_dir: str | os.PathLike[str], *, check_pixels: bool = True
                   ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The stored parity feeds (pixels regenerated from the seed) and torch outputs of a bundle.

    Raises:
        ExportError: ``check_pixels`` and the regenerated pixels differ from the export's (checksum).
    """
    bundle = Path(bundle_dir)
    manifest = load_manifest(bundle)
    meta = manifest["parity"]
    feeds: dict[str, dict[str, np.ndarray]] = {}
    outs: dict[str, np.ndarray] = {}
    with np.load(bundle / REFERENCE) as z:
        for key in z.files:
            kind, graph, *rest = key.split("/")
            if kind == "feed":
                feeds.setdefault(graph, {})[rest[0]] = z[key]
            elif kind == "out":
                outs[graph] = z[key]
    pixels = parity_pixels(int(meta["seed"]), int(meta["batch"]), int(manifest["dims"]["image_size"]))
    if check_pixels and _sha(pixels) != meta["pixels_sha256"]:
        from cir_milvus.errors import ExportError

        raise ExportError("the seeded parity pixels differ from the ones used at export (numpy's generator changed); "
                          "compare against torch instead: check_parity(bundle, encoder) / `cir-milvus parity --torch`")
    for f in feeds.values():
        if f.pop("pixels_from_seed", None) is not None:
            f["pixels"] = pixels
    return feeds, outs


def save_reference(path: Path, feeds: Mapping[str, Mapping[str, np.ndarray]], outs: Mapping[str, np.ndarray]) -> None:
    """Write ``reference.npz`` (pixels are stored as a marker: they are regenerated from the seed)."""
    arrays: dict[str, np.ndarray] = {}
    for graph, f in feeds.items():
        for name, arr in f.items():
            if name == "pixels":
                arrays[f"feed/{graph}/pixels_from_seed"] = np.zeros(1, np.int8)
            else:
                arrays[f"feed/{graph}/{name}"] = np.asarray(arr)
    for graph, arr in outs.items():
        arrays[f"out/{graph}"] = np.asarray(arr, dtype=np.float32)
    with path.open("wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]


def torch_reference(encoder: Any, manifest: Mapping[str, Any], feeds: Mapping[str, Mapping[str, np.ndarray]],
                    heads: Mapping[str, Any] | None = None) -> tuple[dict[str, dict[str, np.ndarray]],
                                                                     dict[str, np.ndarray]]:
    """Torch outputs of every graph that can be rebuilt from ``encoder`` (and ``heads``); adds the head feeds."""
    from cir_milvus_export.graphs import build_graph_specs, run_torch
    from cir_milvus_export.onnx_export import fp32_cpu_model, resolve_heads

    clip = fp32_cpu_model(encoder)
    resolved = resolve_heads(encoder, heads or {})
    specs = {s.name: s for s in build_graph_specs(clip, {n: (h.module, h.placeholder_id) for n, h in resolved.items()})}
    feeds = {g: dict(f) for g, f in feeds.items()}
    outs: dict[str, np.ndarray] = {}
    for name in ("image", "text", "text_pseudo", "fused_slerp"):
        if name in manifest["graphs"] and name in feeds:
            outs[name] = run_torch(specs[name], feeds[name])
    for hname in resolved:
        if f"head_{hname}" in manifest["graphs"]:
            feeds[f"head_{hname}"] = {"image_embeds": outs["image"]}
            outs[f"head_{hname}"] = run_torch(specs[f"head_{hname}"], feeds[f"head_{hname}"])
        if f"fused_{hname}" in manifest["graphs"] and f"fused_{hname}" in feeds:
            outs[f"fused_{hname}"] = run_torch(specs[f"fused_{hname}"], feeds[f"fused_{hname}"])
    return feeds, outs


def check_parity(bundle_dir: str | os.PathLike[str], encoder: Any = None, *, heads: Mapping[str, Any] | None = None,
                 providers: Sequence[Any] | None = None, k: int = 5, gallery_size: int = 64,
                 seed: int | None = None) -> dict[str, Any]:
    """Compare every graph of a bundle (run with onnxruntime) with torch on the fixed seeded inputs.

    Args:
        bundle_dir: the bundle folder.
        encoder: the :class:`~cir_milvus.encoders.torch.TorchEncoder` the bundle was exported from; ``None`` compares
            against the torch outputs stored at export time (``reference.npz``), which needs no torch.
        heads: the head modules (by name) when ``encoder`` is given; heads not given use the stored reference.
        providers: onnxruntime providers (default CPU).
        k: top-k cut-off of the retrieval check.
        gallery_size: number of random gallery vectors of the retrieval check.
        seed: gallery seed (default the bundle's parity seed).

    Returns:
        ``{"precision", "reference", "outputs": {graph: {max_abs, rel_max_abs, cosine_min, cosine_mean}},
        "retrieval": {graph: {k, agreement, exact_overlap, top1}}, "min_cosine", "max_abs", "tokenizer"?}``.
    """
    bundle = Path(bundle_dir)
    manifest = load_manifest(bundle)
    feeds, stored = load_reference(bundle, check_pixels=encoder is None)
    reference = "stored"
    report: dict[str, Any] = {"precision": manifest.get("precision", "fp32")}
    if encoder is not None:
        tok = BundleTokenizer(bundle / manifest["tokenizer"], int(manifest["dims"]["context_length"]))
        feeds, fresh = torch_reference(encoder, manifest, feeds, heads)
        stored = {**stored, **fresh}
        reference = "torch" if len(fresh) == len(manifest["graphs"]) else "torch+stored"
        report["tokenizer"] = tokenizer_agreement(encoder.tokenize, tok)
    sessions = _ort_sessions(bundle, manifest, providers)
    outputs: dict[str, dict[str, float]] = {}
    got: dict[str, np.ndarray] = {}
    for graph, sess in sessions.items():
        feed = feeds.get(graph)
        if feed is None and graph.startswith("head_"):
            feed = {"image_embeds": stored["image"]}
        if feed is None or graph not in stored:
            continue
        got[graph] = np.asarray(sess.run(None, dict(feed))[0], dtype=np.float32)
        outputs[graph] = compare_outputs(stored[graph], got[graph])
    rng = np.random.default_rng((manifest["parity"]["seed"] if seed is None else seed) + 2)
    gallery = rng.standard_normal((gallery_size, int(manifest["dims"]["embed"])))
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)  # [G, D] unit rows
    retrieval = {g: topk_agreement(stored[g], got[g], gallery, k=k) for g in got if not g.startswith("head_")}
    report.update({
        "reference": reference,
        "outputs": outputs,
        "retrieval": retrieval,
        "min_cosine": min((o["cosine_min"] for o in outputs.values()), default=1.0),
        "max_abs": max((o["max_abs"] for o in outputs.values()), default=0.0),
        "min_topk_agreement": min((r["agreement"] for r in retrieval.values()), default=1.0),
    })
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """A human-readable table of a parity report (one line per graph)."""
    lines = [f"precision {report.get('precision')}  reference {report.get('reference')}"]
    for g, o in sorted(report.get("outputs", {}).items()):
        r = report.get("retrieval", {}).get(g)
        top = f"  top{r['k']} agreement {r['agreement']:.3f}" if r else ""
        lines.append(f"  {g:<18} cosine min {o['cosine_min']:.7f}  max-abs {o['max_abs']:.2e}{top}")
    if "tokenizer" in report:
        t = report["tokenizer"]
        lines.append(f"  tokenizer          {t['identical']}/{t['strings']} probe strings identical")
    return "\n".join(lines)


def dumps(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False)
