#!/usr/bin/env node
// Compose zero-shot CIR query vectors from a cir_milvus ONNX bundle with onnxruntime-node.
//
// Usage:
//   node compose.mjs BUNDLE_DIR INPUT.json [--separate] [--no-verify]
//
// INPUT.json:
//   { "pixels": [B x 3 x S x S] (nested or flat numbers, already preprocessed: see the bundle's preprocess.json),
//     "input_ids": [B x L] token ids (from tokenizer.json, e.g. with @huggingface/tokenizers),
//     "alpha": 0.8 or [B] (weight of the TEXT, slerp of Jang et al., ECCV'24) }
//
// Prints {"graph": ..., "dim": D, "query": [[...], ...]}: one L2-normalised query vector per row, ready for a
// Milvus search with metric IP. By default it runs fused_slerp.onnx (one pass); --separate runs image.onnx and
// text.onnx and does the slerp here (the same formula as cir_milvus.composers.slerp).

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import ort from "onnxruntime-node";

const DOT_THRESHOLD = 0.9995;

function fail(msg) {
  process.stderr.write(`error: ${msg}\n`);
  process.exit(2);
}

function loadManifest(dir, verify) {
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  if (manifest.format !== "cir_milvus-onnx-bundle") fail(`${dir} is not a cir_milvus bundle`);
  if (verify) {
    for (const [name, want] of Object.entries(manifest.files)) {
      const got = createHash("sha256").update(readFileSync(join(dir, name))).digest("hex");
      if (got !== want) fail(`bundle file ${name} was altered after export (sha256 mismatch)`);
    }
  }
  return manifest;
}

async function session(dir, manifest, graph) {
  const meta = manifest.graphs[graph];
  if (!meta) fail(`bundle has no graph ${graph}; it has ${Object.keys(manifest.graphs).join(", ")}`);
  const level = manifest.runtime?.graph_optimization_level ?? "all"; // fp16 bundles ask for "extended"
  // loading from a path lets onnxruntime resolve the shared external weights (weights.bin) next to the graph
  return ort.InferenceSession.create(join(dir, meta.file), { graphOptimizationLevel: level });
}

function l2normalize(rows) {
  return rows.map((r) => {
    const n = Math.max(Math.sqrt(r.reduce((s, x) => s + x * x, 0)), 1e-12);
    return r.map((x) => x / n);
  });
}

// slerp(v0 = image, v1 = text, alpha), inputs L2-normalised; normalised lerp when nearly parallel.
function slerp(v0, v1, alpha) {
  const dot = Math.min(1, Math.max(-1, v0.reduce((s, x, i) => s + x * v1[i], 0)));
  const theta = Math.acos(dot);
  const sinT = Math.sin(theta);
  let out;
  if (Math.abs(dot) > DOT_THRESHOLD || Math.abs(sinT) <= 1e-8) {
    out = v0.map((x, i) => x + alpha * (v1[i] - x));
  } else {
    const s0 = Math.sin((1 - alpha) * theta) / sinT;
    const s1 = Math.sin(alpha * theta) / sinT;
    out = v0.map((x, i) => s0 * x + s1 * v1[i]);
  }
  return l2normalize([out])[0];
}

function rows(tensor) {
  const [n, d] = tensor.dims;
  const data = Array.from(tensor.data);
  return Array.from({ length: n }, (_, i) => data.slice(i * d, (i + 1) * d));
}

async function main() {
  const args = process.argv.slice(2);
  const flags = new Set(args.filter((a) => a.startsWith("--")));
  const [dir, inputPath] = args.filter((a) => !a.startsWith("--"));
  if (!dir || !inputPath) fail("usage: node compose.mjs BUNDLE_DIR INPUT.json [--separate] [--no-verify]");
  const manifest = loadManifest(dir, !flags.has("--no-verify"));
  const input = JSON.parse(readFileSync(inputPath, "utf8"));
  const { image_size: S, context_length: L, embed: D } = manifest.dims;

  const ids = input.input_ids;
  const B = ids.length;
  if (!ids.every((r) => r.length === L)) fail(`input_ids rows must have length ${L} (the bundle's context length)`);
  const pixels = Float32Array.from(input.pixels.flat(Infinity));
  if (pixels.length !== B * 3 * S * S) fail(`pixels must hold ${B}x3x${S}x${S} numbers, got ${pixels.length}`);
  const alphaIn = input.alpha ?? manifest.composers?.slerp?.alpha ?? 0.8;
  const alpha = Float32Array.from(Array.isArray(alphaIn) ? alphaIn : [alphaIn]);

  const pixelT = new ort.Tensor("float32", pixels, [B, 3, S, S]);
  const idsT = new ort.Tensor("int64", BigInt64Array.from(ids.flat().map((x) => BigInt(x))), [B, L]);

  let graph;
  let query;
  if (!flags.has("--separate") && manifest.graphs.fused_slerp) {
    graph = "fused_slerp";
    const s = await session(dir, manifest, graph);
    const out = await s.run({ pixels: pixelT, input_ids: idsT, alpha: new ort.Tensor("float32", alpha, [alpha.length]) });
    query = rows(out.query);
  } else {
    graph = "image+text";
    const [si, st] = await Promise.all([session(dir, manifest, "image"), session(dir, manifest, "text")]);
    const img = l2normalize(rows((await si.run({ pixels: pixelT })).image_embeds));
    const txt = l2normalize(rows((await st.run({ input_ids: idsT })).text_embeds));
    query = img.map((v, i) => slerp(v, txt[i], alpha.length === 1 ? alpha[0] : alpha[i]));
  }
  process.stdout.write(JSON.stringify({ graph, dim: D, query }) + "\n");
}

main().catch((e) => fail(e?.stack ?? String(e)));
