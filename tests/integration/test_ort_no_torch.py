"""Serving a bundle without torch: a subprocess where torch/open_clip cannot be imported encodes images and texts with
the OrtEncoder (compared with the torch vectors computed here) and runs a composed search through Milvus Lite."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

from no_torch import BLOCKER  # noqa: E402

from cir_milvus.composers.slerp import slerp  # noqa: E402

pytestmark = pytest.mark.integration


CHILD = '''
import json, sys
import numpy as np
from cir_milvus.encoders import create_encoder
from cir_milvus.encoders.ort import OrtEncoder

root = sys.argv[1]
cfg = json.load(open(f"{root}/case.json"))
want = np.load(f"{root}/want.npz")
enc = create_encoder("bundle:" + cfg["bundle"])
assert isinstance(enc, OrtEncoder), type(enc)

def cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float((np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).min())

report = {}
got = enc.encode_images(cfg["images"], normalize=False)
report["images"] = [cos(got, want["images"]), float(np.abs(got - want["images"]).max())]
got = enc.encode_texts(cfg["texts"], normalize=False)
report["texts"] = [cos(got, want["texts"]), float(np.abs(got - want["texts"]).max())]
got = enc.encode_texts_with_pseudo_tokens(cfg["prompts"], want["tokens"], normalize=False)
report["pseudo"] = [cos(got, want["pseudo"]), float(np.abs(got - want["pseudo"]).max())]
report["ids_equal"] = bool(np.array_equal(enc.tokenize(cfg["texts"]), want["ids"]))

if cfg.get("milvus"):
    from cir_milvus import CIRCollection

    col = CIRCollection.create(f"{root}/c.db", "c", model="bundle:" + cfg["bundle"])
    col.add(cfg["gallery"], ids=cfg["gallery_ids"])
    hits = col.search(cfg["reference"], cfg["query_text"], k=5, alpha=0.8)
    report["hits"] = [[h.id, h.score] for h in hits]
    # the recipe finds the bundle again; the bundle's own head serves the pseudo-token composer
    again = CIRCollection.open(f"{root}/c.db", "c")
    report["reopened"] = [type(again.encoder).__name__, len(again)]
    searle = again.search(cfg["reference"], cfg["query_text"], k=3, composer="searle",
                          head=again.encoder.heads["searle"])
    report["searle_hits"] = [h.id for h in searle]
    # issue 26's query features are vector operations over the bundle's encoders: no torch either
    feats = col.search(images=[cfg["reference"], cfg["gallery"][1]], weights=[0.7, 0.3], text=cfg["query_text"],
                       k=3, alpha=0.8, negative="a red one", like=["g2"], return_query_vector=True,
                       output_vectors=True)
    report["feature_query"] = [float(x) for x in feats[0].query_vector]
    report["feature_hits"] = [[h.id, len(h.vector)] for h in feats]
    fused = col.search(cfg["reference"], cfg["query_text"], k=3, alpha=[0.6, 0.9], dedupe=0.99)
    report["fused_hits"] = len(fused)
    col.close()

report["torch_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "open_clip", "torchvision"})
print(json.dumps(report))
'''


def _milvus_ready() -> bool:
    try:
        import milvus_lite  # noqa: F401

        from cir_milvus import CIRCollection  # noqa: F401
    except ImportError:
        return False
    return True


def test_bundle_serves_without_torch(tiny_torch_encoder, tiny_bundle: Path, make_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tiny_bundle  # with the SEARLE head

    images = []
    for i in range(14):
        p = tmp_path / f"img{i}.png"
        make_image(72, 64, seed=10 + i).save(p)
        images.append(str(p))
    texts = ["make it red", "a blue star on white", "the café's one — but BIGGER!", "a small green diamond on brown, now large"]
    prompts = [f"a photo of $ that {t}" for t in texts]
    tokens = (np.random.default_rng(0).standard_normal((4, 128)) * 0.02).astype(np.float32)
    enc = tiny_torch_encoder
    want = {
        "images": enc.encode_images(images, normalize=False),
        "texts": enc.encode_texts(texts, normalize=False),
        "pseudo": enc.encode_texts_with_pseudo_tokens(prompts, tokens, normalize=False),
        "tokens": tokens,
        "ids": enc.tokenize(texts),
    }
    np.savez(tmp_path / "want.npz", **want)
    milvus = _milvus_ready()
    gallery, reference = images[1:], images[0]
    case = {"bundle": str(bundle), "images": images, "texts": texts, "prompts": prompts, "milvus": milvus,
            "gallery": gallery, "gallery_ids": [f"g{i}" for i in range(len(gallery))], "reference": reference,
            "query_text": texts[0]}
    (tmp_path / "case.json").write_text(json.dumps(case))

    script = BLOCKER + textwrap.dedent(CHILD)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    assert report["torch_loaded"] == []
    assert report["ids_equal"]
    for key in ("images", "texts", "pseudo"):
        cos, max_abs = report[key]
        assert cos > 0.9999 and max_abs < 1e-4, (key, cos, max_abs)

    if not milvus:
        pytest.skip("Milvus Lite / CIRCollection unavailable: encoder-level checks passed")
    # brute force with the torch vectors: slerp(reference image, text, 0.8) against the gallery
    gal = want["images"][1:] / np.linalg.norm(want["images"][1:], axis=1, keepdims=True)
    q = slerp(want["images"][:1] / np.linalg.norm(want["images"][:1]), enc.encode_texts(texts[:1]), 0.8)[0]
    scores = gal @ q
    order = np.argsort(-scores)[:5]
    hits = report["hits"]
    assert report["reopened"] == ["OrtEncoder", len(gallery)]
    assert len(report["searle_hits"]) == 3
    from cir_milvus.query import combine_references, negate, rocchio

    ref = combine_references(want["images"][[0, 2]], [0.7, 0.3])
    qf = slerp(ref[None] / np.linalg.norm(ref), enc.encode_texts(texts[:1]), 0.8)[0]
    qf = negate(rocchio(qf, want["images"][3:4]), enc.encode_texts(["a red one"])[0])
    assert float(np.dot(report["feature_query"], qf)) > 0.9999
    assert [h[1] for h in report["feature_hits"]] == [128] * 3 and "g2" not in [h[0] for h in report["feature_hits"]]
    assert report["fused_hits"] == 3
    assert [h[0] for h in hits] == [f"g{i}" for i in order]
    np.testing.assert_allclose([h[1] for h in hits], scores[order], atol=1e-4)
