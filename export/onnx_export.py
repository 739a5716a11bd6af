"""Export a :class:`~cir_milvus.encoders.torch.TorchEncoder` (and projection heads) to an ONNX bundle.

``export_bundle`` writes, into one folder:

- ``image.onnx``, ``text.onnx``, ``text_pseudo.onnx``, ``head_{name}.onnx``, ``fused_slerp.onnx``,
  ``fused_{name}.onnx`` (TorchScript exporter, ``dynamo=False``, opset 17, dynamic batch; ``text`` and
  ``text_pseudo`` also take any sequence length up to ``L``, so onnxruntime runs only the pooled prefix);
- ``weights.bin``: the weights of all graphs as ONNX external data, each distinct tensor stored once (the fused graphs
  reuse the towers' weights, so the bundle is about the size of the model, not five times it);
- ``tokenizer.json`` (open_clip's CLIP BPE as a Hugging Face tokenizer), ``preprocess.json``;
- ``reference.npz`` (seeded parity inputs and the torch outputs), ``parity.json`` and ``manifest.json``.

fp16 converts the graphs with onnxruntime's float16 converter (float32 inputs/outputs kept); int8 is dynamic weight
quantisation (``onnxruntime.quantization.quantize_dynamic``, QInt8). Parity is always measured on the fp32 graphs first
(export fails below ``parity_threshold``), then on the converted ones; both are in ``parity.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from cir_milvus_export.parity import (
    PARITY_TEXTS,
    check_parity,
    format_report,
    make_feeds,
    parity_pixels,
    save_reference,
    tokenizer_agreement,
)
from cir_milvus_export.tokenizer import save_clip_tokenizer

from cir_milvus.bundle import (
    BUNDLE_FORMAT,
    MANIFEST,
    PARITY,
    PREPROCESS,
    REFERENCE,
    TOKENIZER,
    WEIGHTS,
    bundle_preprocess,
    write_manifest,
)
from cir_milvus.encoders.bundle_tokenizer import BundleTokenizer
from cir_milvus.errors import ConfigError, ExportError

if TYPE_CHECKING:
    import onnx
    from torch import nn

__all__ = ["PRECISIONS", "ResolvedHead", "convert_precision", "export_bundle", "export_demo_bundle", "resolve_heads",
           "store_exact_fp16", "write_graphs"]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
_ALIGN = 4096  # external-data offsets aligned to the page size so onnxruntime can mmap them
_MIN_EXTERNAL_BYTES = 1024  # smaller tensors stay inside the graph
_DEFAULT_TEMPLATE = "a photo of $ that {}"


@dataclass
class ResolvedHead:
    """A head ready for export: its module and the prompt conventions written into the manifest."""

    name: str
    module: Any
    placeholder_id: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def template(self) -> str:
        return str(self.meta["template"])

    @property
    def placeholder(self) -> str:
        return str(self.meta["placeholder"])


def fp32_cpu_model(encoder: Any) -> nn.Module:
    """The encoder's open_clip model as fp32 on the CPU in eval mode (a copy when it lives elsewhere)."""
    import torch

    model = encoder.model
    p = next(model.parameters())
    if p.dtype != torch.float32 or p.device.type != "cpu":
        model = copy.deepcopy(model).float().cpu()
    return model.eval()


def resolve_heads(encoder: Any, heads: Mapping[str, Any]) -> dict[str, ResolvedHead]:
    """Turn ``{name: nn.Module | cir_milvus.heads.Head}`` into :class:`ResolvedHead` (checked dims, placeholder id).

    A bare ``nn.Module`` mapping ``[B, D] → [B, W]`` gets the SEARLE/LinCIR prompt ``"a photo of $ that {}"``; a
    :class:`~cir_milvus.heads.Head` brings its kind, template, placeholder and provenance.
    """
    import torch

    from cir_milvus.heads import Head

    out: dict[str, ResolvedHead] = {}
    for name, head in heads.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
            raise ConfigError(f"head name {name!r} must be letters, digits, '_' or '-' (it becomes a file name)")
        module = head.module if isinstance(head, Head) else head
        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"head {name!r} must be a torch.nn.Module or a cir_milvus Head, got {type(head).__name__}")
        module = copy.deepcopy(module).float().cpu().eval()
        meta: dict[str, Any] = {"kind": name, "template": _DEFAULT_TEMPLATE, "placeholder": "$",
                                "preprocess": encoder.preprocess_config.mode, "fiq_join": "both"}
        if isinstance(head, Head):
            cfg = dict(head.config())
            meta.update({k: v for k, v in cfg.items() if v is not None})
        with torch.no_grad():
            probe = module(torch.zeros(2, encoder.dim))  # [2, D] -> [2, W]
        if tuple(probe.shape) != (2, encoder.token_width()):
            raise ConfigError(
                f"head {name!r} maps [B, {encoder.dim}] to {list(probe.shape)[1:]} but the text tower's token width is "
                f"{encoder.token_width()}; a head only works with the backbone it was trained on"
            )
        pid = encoder.placeholder_id(meta["placeholder"])
        meta["placeholder_id"] = pid
        out[name] = ResolvedHead(name, module, pid, meta)
    return out


def _example_inputs(name: str, inputs: list[str], dims: Mapping[str, int], ids: Any) -> tuple[Any, ...]:
    """Batch-2 example inputs for tracing (batch 2, so no size-1 broadcast is baked into the graph)."""
    import torch

    ex = {
        "pixels": torch.zeros(2, 3, dims["image_size"], dims["image_size"]),
        "input_ids": torch.as_tensor(ids[:2], dtype=torch.long),
        "pseudo_token": torch.zeros(2, dims["token_width"]),
        "placeholder_id": torch.tensor([259], dtype=torch.long),
        "image_embeds": torch.zeros(2, dims["embed"]),
        "alpha": torch.full((2,), 0.8),
    }
    return tuple(ex[i] for i in inputs)


def _export_one(spec: Any, args: tuple[Any, ...], path: Path, opset: int) -> None:
    import contextlib

    import torch
    from cir_milvus_export.graphs import traceable_attention

    tracing = traceable_attention(spec.module.clip) if spec.any_length else contextlib.nullcontext()
    with warnings.catch_warnings(), tracing:
        warnings.simplefilter("ignore")  # TracerWarnings about Python-side shape checks in open_clip
        torch.onnx.export(
            spec.module, args, str(path), dynamo=False, opset_version=opset, input_names=spec.inputs,
            output_names=[spec.output], dynamic_axes=spec.dynamic, do_constant_folding=True,
        )


def convert_precision(model: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """Convert an fp32 graph: ``"fp16"`` (weights and compute, float32 I/O kept) or ``"int8"`` (dynamic QInt8)."""
    if precision == "fp32":
        return model
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the model has values out of fp16 range" notices
            return convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    if precision == "int8":
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
            onnx.save(model, str(src))
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
            return onnx.load(str(dst))
    raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def store_exact_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Large float32 initializers whose every value is exactly a float16 are stored as float16 and cast back to
    float32 where the graph reads them (onnxruntime folds the casts when it loads the graph): half the bytes on
    disk, the same float32 arithmetic and results. Weights saved in float16 (the demo model, OpenAI's checkpoints)
    shrink by half; any other tensor is left as it is."""
    import onnx
    from onnx import helper, numpy_helper

    model = copy.deepcopy(model)
    graph = model.graph
    kept, casts = [], []
    for t in graph.initializer:
        arr = numpy_helper.to_array(t)
        half = arr.astype(np.float16) if t.data_type == onnx.TensorProto.FLOAT and arr.nbytes >= 2 * _MIN_EXTERNAL_BYTES \
            else None
        if half is None or not np.array_equal(half.astype(np.float32), arr):
            kept.append(t)
            continue
        kept.append(numpy_helper.from_array(half, f"{t.name}.fp16"))
        casts.append(helper.make_node("Cast", [f"{t.name}.fp16"], [t.name], to=onnx.TensorProto.FLOAT,
                                      name=f"{t.name}.to_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)  # the casts first: every reader of the old name now reads the cast
    return model


def write_graphs(models: Mapping[str, onnx.ModelProto], out_dir: Path, weights: str = WEIGHTS) -> dict[str, Any]:
    """Write graphs whose large initializers live in one shared external-data file, each distinct tensor once.

    Returns:
        graph name → ``{"file", "inputs", "outputs"}`` (names, element types and shapes, for the manifest).
    """
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import set_external_data

    index: dict[tuple[int, str], tuple[int, int]] = {}
    meta: dict[str, Any] = {}
    with (out_dir / weights).open("wb") as fw:
        for name, model in models.items():
            model = copy.deepcopy(model)
            for t in model.graph.initializer:
                arr = numpy_helper.to_array(t)
                data = np.ascontiguousarray(arr).tobytes()
                if len(data) < _MIN_EXTERNAL_BYTES:
                    continue
                key = (t.data_type, hashlib.sha256(data).hexdigest())
                if key not in index:
                    pad = (-fw.tell()) % _ALIGN
                    fw.write(b"\0" * pad)
                    index[key] = (fw.tell(), len(data))
                    fw.write(data)
                offset, length = index[key]
                new = numpy_helper.from_array(arr, t.name)
                set_external_data(new, weights, offset=offset, length=length)
                new.ClearField("raw_data")
                new.data_location = onnx.TensorProto.EXTERNAL
                t.CopyFrom(new)
            file = f"{name}.onnx"
            (out_dir / file).write_bytes(model.SerializeToString())
            meta[name] = {"file": file, "inputs": _io(model.graph.input), "outputs": _io(model.graph.output)}
    return meta


def _set_output_shape(model: onnx.ModelProto, width: int) -> onnx.ModelProto:
    """Declare the single output as ``[batch, width]`` (shape inference loses it through ``where``/broadcasts)."""
    dims = model.graph.output[0].type.tensor_type.shape.dim
    while len(dims) < 2:
        dims.add()
    dims[0].Clear()
    dims[0].dim_param = "batch"
    dims[1].Clear()
    dims[1].dim_value = int(width)
    return model


def _io(values: Any) -> dict[str, Any]:
    import onnx

    out = {}
    for v in values:
        tt = v.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in tt.shape.dim]
        out[v.name] = {"dtype": onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name, "shape": shape}
    return out


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for dist in ("cir_milvus", "torch", "open_clip_torch", "onnx", "onnxruntime", "tokenizers"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"output folder {out} is not empty; pass overwrite=True (--overwrite) or another --out")
        if not (out / MANIFEST).is_file():
            raise ConfigError(f"refusing to overwrite {out}: it is not empty and holds no bundle {MANIFEST}")
        for p in out.iterdir():
            if p.is_file() and (p.suffix in (".onnx", ".json", ".npz", ".bin")):
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def export_bundle(
    encoder: Any,
    out_dir: str | Path,
    *,
    heads: Mapping[str, Any] | None = None,
    precision: str = "fp32",
    opset: int = 17,
    parity_threshold: float = 0.9999,
    fused: bool = True,
    composer_defaults: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    seed: int = 0,
) -> Path:
    """Export an open_clip encoder (and heads) to an ONNX bundle and check it against torch.

    Args:
        encoder: a :class:`~cir_milvus.encoders.torch.TorchEncoder` (any device/precision; exported as fp32 CPU).
        out_dir: the bundle folder (created; must be empty unless ``overwrite``).
        heads: projection heads by name: :class:`~cir_milvus.heads.Head` objects or any ``nn.Module`` mapping the raw
            image embedding ``[B, D]`` to a token ``[B, W]``. Each gives ``head_{name}.onnx`` and ``fused_{name}.onnx``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` for the written graphs.
        opset: ONNX opset (17).
        parity_threshold: minimum row cosine of every fp32 output against torch.
        fused: also write the fused slerp / fused head graphs.
        composer_defaults: composer parameters to record (default slerp ``alpha`` 0.8).
        overwrite: replace an existing bundle in ``out_dir``.
        seed: seed of the parity inputs.

    Returns:
        The bundle folder.

    Raises:
        ConfigError: bad precision/opset/head, or a non-empty ``out_dir`` without ``overwrite``.
        ExportError: the fp32 graphs do not match torch (cosine below ``parity_threshold``), or the bundle tokenizer
            does not reproduce the encoder's token ids; ``parity.json`` is written before raising.

    Example:
        >>> from cir_milvus.encoders.torch import TorchEncoder  # doctest: +SKIP
        >>> export_bundle(TorchEncoder("cir-demo-tiny", "cir-demo"), "bundle/")  # doctest: +SKIP
        PosixPath('bundle')
    """
    import onnx

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not 14 <= int(opset) <= 20:
        raise ConfigError(f"opset must be between 14 and 20 (17 recommended), got {opset}")
    out = Path(out_dir)
    _prepare_out(out, overwrite)

    clip = fp32_cpu_model(encoder)
    resolved = resolve_heads(encoder, heads or {})
    dims = {"embed": int(encoder.dim), "token_width": int(encoder.token_width()),
            "context_length": int(encoder.context_length), "image_size": int(encoder.preprocess_config.size)}
    placeholders = {p: encoder.placeholder_id(p) for p in ("$", "*")}
    placeholders.update({h.placeholder: h.placeholder_id for h in resolved.values()})

    # tokenizer + preprocessing
    save_clip_tokenizer(out / TOKENIZER, dims["context_length"])
    tok = BundleTokenizer(out / TOKENIZER, dims["context_length"])
    agreement = tokenizer_agreement(encoder.tokenize, tok)
    if agreement["different"]:
        raise ExportError(
            f"the bundle tokenizer (CLIP BPE) does not reproduce {encoder.spec.model}'s token ids for "
            f"{agreement['different'][:3]}; only open_clip models with the CLIP SimpleTokenizer can be exported"
        )
    # the decode mode is written only when it is not the library default (the bundle rule: bundle_preprocess)
    (out / PREPROCESS).write_text(json.dumps(bundle_preprocess(encoder.preprocess_config), indent=2) + "\n")

    src = encoder.recipe
    from cir_milvus.composers.slerp import SlerpComposer

    composers: dict[str, Any] = {"slerp": {"alpha": float(SlerpComposer.defaults["alpha"])}}
    for name, h in resolved.items():
        composers[name] = {"composer": h.meta.get("kind", name), "head": name, "template": h.template,
                           "placeholder": h.placeholder, "preprocess": h.meta.get("preprocess"),
                           "fiq_join": h.meta.get("fiq_join")}
    composers.update(dict(composer_defaults or {}))
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "format_version": 1,
        "package_version": _versions()["cir_milvus"],
        "versions": _versions(),
        "source": {"model": src["model"], "pretrained": src["pretrained"], "weights_sha256": src["weights_sha256"],
                   "kind": encoder.spec.kind,
                   **({"activation": src["activation"]} if src.get("activation") else {}),
                   **({"random_weights": True} if src.get("random_weights") else {}),  # said loudly, as in torch
                   **({"text_weights": src["text_weights"], "text_weights_sha256": src["text_weights_sha256"]}
                      if src.get("text_weights_sha256") else {})},
        "precision": "fp32",
        "opset": int(opset),
        "dims": dims,
        "placeholders": placeholders,
        "composers": composers,
        "heads": {n: {**h.meta, "file": f"head_{n}.onnx", **({"fused": f"fused_{n}.onnx"} if fused else {})}
                  for n, h in resolved.items()},
        "tokenizer": TOKENIZER,
        "preprocess": PREPROCESS,
        "weights": WEIGHTS,
        "reference": REFERENCE,
        "parity": {"seed": seed, "batch": len(PARITY_TEXTS), "texts": PARITY_TEXTS,
                   "pixels_sha256": hashlib.sha256(
                       parity_pixels(seed, len(PARITY_TEXTS), dims["image_size"]).tobytes()).hexdigest()},
    }

    from cir_milvus_export.graphs import build_graph_specs, run_torch

    specs = build_graph_specs(clip, {n: (h.module, h.placeholder_id) for n, h in resolved.items()}, fused=fused)
    manifest["graphs"] = {s.name: {"file": s.file} for s in specs}
    if any(s.any_length for s in specs):  # text graphs take the pooled prefix (the end-of-text token is the
        manifest["text_prefix"] = {"pool": "argmax"}  # largest CLIP BPE id, so argmax finds it for both poolings)

    # torch reference on the seeded inputs
    scale = float(_token_embedding_std(clip))
    feeds = make_feeds(manifest, tok, seed=seed, pseudo_scale=scale)
    manifest["parity"]["pseudo_scale"] = scale
    refs: dict[str, np.ndarray] = {}
    for s in specs:
        if s.name.startswith("head_"):
            continue
        refs[s.name] = run_torch(s, feeds[s.name])
    for s in specs:
        if s.name.startswith("head_"):
            feeds[s.name] = {"image_embeds": refs["image"]}
            refs[s.name] = run_torch(s, feeds[s.name])
    save_reference(out / REFERENCE, feeds, refs)

    with tempfile.TemporaryDirectory(prefix=".staging-", dir=out) as staging:
        fp32: dict[str, onnx.ModelProto] = {}
        ids = feeds["text"]["input_ids"]
        for s in specs:
            path = Path(staging) / s.file
            _export_one(s, _example_inputs(s.name, s.inputs, dims, ids), path, int(opset))
            fp32[s.name] = _set_output_shape(onnx.load(str(path)),
                                             dims["token_width"] if s.name.startswith("head_") else dims["embed"])

        manifest["graphs"] = write_graphs({n: store_exact_fp16(m) for n, m in fp32.items()}, out)
        write_manifest(out, manifest)
        reports = {"fp32": check_parity(out)}
        if precision != "fp32":
            converted = {name: convert_precision(m, precision) for name, m in fp32.items()}
            manifest["graphs"] = write_graphs(converted, out)
            manifest["precision"] = precision
            if precision == "fp16":
                # onnxruntime's CPU NchwcTransformer (part of ORT_ENABLE_ALL) segfaults on fp16 graphs (ORT 1.32):
                # runtimes should load fp16 bundles with the "extended" optimisation level.
                manifest["runtime"] = {"graph_optimization_level": "extended"}
            write_manifest(out, manifest)
            reports[precision] = check_parity(out)

    passed = reports["fp32"]["min_cosine"] >= parity_threshold
    parity = {"threshold": parity_threshold, "passed": passed, "precision": precision, "tokenizer": agreement,
              **reports}
    (out / PARITY).write_text(json.dumps(parity, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    write_manifest(out, manifest)
    for name, rep in reports.items():
        log.info("parity of %s (%s):\n%s", out, name, format_report(rep))
    if not passed:
        worst = min(reports["fp32"]["outputs"].items(), key=lambda kv: kv[1]["cosine_min"])
        raise ExportError(
            f"ONNX export of {src['model']} does not match torch: {worst[0]} has cosine {worst[1]['cosine_min']:.6f} "
            f"< threshold {parity_threshold} (max-abs {worst[1]['max_abs']:.3g}); see {out / PARITY}"
        )
    if precision != "fp32" and reports[precision]["min_cosine"] < 0.99:
        log.warning("the %s bundle is far from torch: min cosine %.4f (see %s)", precision,
                    reports[precision]["min_cosine"], out / PARITY)
    return out


def _token_embedding_std(clip: Any) -> float:
    from cir_milvus.encoders.torch import _text_tower

    return float(_text_tower(clip).token_embedding.weight.detach().float().std())



def export_demo_bundle(out: str | Path | None = None) -> Path:
    """Export the demo model and its shipped heads to an ONNX bundle, by default over the one shipped in the
    package (:func:`cir_milvus.models.demo.demo_bundle_path`); run it after retraining the demo model."""
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.heads import load_head
    from cir_milvus.models.demo import DEMO_MODEL, DEMO_WEIGHTS, demo_bundle_path, demo_heads

    encoder = TorchEncoder(DEMO_MODEL, DEMO_WEIGHTS, device="cpu", precision="fp32")
    heads = {kind: load_head(kind, path) for kind, path in demo_heads().items()}
    return export_bundle(encoder, out or demo_bundle_path(), heads=heads, fused=False, overwrite=True)
