"""The Node.js example (export/node/compose.mjs, onnxruntime-node) reproduces the Python query vector of a bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

NODE = shutil.which("node")
if NODE is None:
    pytest.skip("node is not installed", allow_module_level=True)

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnxruntime")

from cir_milvus.composers.slerp import slerp  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "export" / "node"


@pytest.fixture(scope="module")
def node_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """export/node with onnxruntime-node installed (reused when already installed there, else into a temp copy)."""
    if (EXAMPLE / "node_modules" / "onnxruntime-node").is_dir():
        return EXAMPLE
    work = tmp_path_factory.mktemp("node")
    for name in ("compose.mjs", "package.json"):
        shutil.copy(EXAMPLE / name, work / name)
    npm = shutil.which("npm")
    assert npm, "node is installed but npm is not"
    # --ignore-scripts: onnxruntime-node's install script downloads from a host that may be unreachable; the CPU
    # binaries for linux/macOS/windows are already inside the package
    proc = subprocess.run([npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--no-package-lock"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return work


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_node_compose_matches_python(precision: str, node_example: Path, tiny_torch_encoder,  # type: ignore[no-untyped-def]
                                     tiny_bundles, tmp_path: Path) -> None:
    bundle = tiny_bundles.get(precision=precision, heads=precision == "fp32")  # fp32: the common tiny_bundle
    enc = tiny_torch_encoder
    pix = np.random.default_rng(5).standard_normal((3, 3, 64, 64)).astype(np.float32)
    texts = ["make it red", "a blue star", "same but larger"]
    ids = enc.tokenize(texts)
    alpha = [0.8, 0.5, 1.0]
    want = slerp(enc.encode_pixels(pix), enc.encode_texts(texts), np.asarray(alpha).reshape(-1, 1))
    inp = tmp_path / "input.json"
    inp.write_text(json.dumps({"pixels": pix.tolist(), "input_ids": ids.tolist(), "alpha": alpha}))
    floor = 0.9999 if precision == "fp32" else 0.999
    for flags in ([], ["--separate"]):
        proc = subprocess.run([NODE, str(node_example / "compose.mjs"), str(bundle), str(inp), *flags],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout)
        assert out["graph"] == ("image+text" if flags else "fused_slerp")
        got = np.asarray(out["query"], dtype=np.float64)
        assert got.shape == (3, 128)
        cos = np.sum(got * want, -1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert cos.min() > floor, (flags, cos)


def test_node_refuses_tampered_bundle(node_example: Path, tiny_bundles, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tiny_bundles.copy(tmp_path / "bundle", fused=False)
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "preprocess.json").write_text("{}")
    inp = tmp_path / "input.json"
    inp.write_text(json.dumps({"pixels": [0.0] * (3 * 64 * 64), "input_ids": [[49406, 49407] + [0] * 30]}))
    proc = subprocess.run([NODE, str(node_example / "compose.mjs"), str(bundle), str(inp)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "preprocess.json was altered" in proc.stderr
    assert "fused_slerp" not in manifest["graphs"]
