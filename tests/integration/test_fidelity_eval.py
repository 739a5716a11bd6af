"""``cir-milvus eval`` decodes benchmark images as the official code does and records it, so the cached gallery
re-opens (without ``--model``) with the same loading mode and activation, and product collections stay as they were.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("milvus_lite")
pytest.importorskip("open_clip")

from cir_milvus.cli import main  # noqa: E402
from cir_milvus.collection import CIRCollection  # noqa: E402
from cir_milvus.eval import CIRCODataset, make_miniature  # noqa: E402
from cir_milvus.images import load_image  # noqa: E402
from cir_milvus.preprocess import preprocess_image  # noqa: E402


def test_eval_gallery_is_loaded_officially_and_reopens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_miniature("circo", tmp_path / "circo")
    first = CIRCODataset(root, "val").corpus()[0]
    exif = Image.Exif()
    exif[0x0112] = 6  # one gallery file becomes an EXIF-rotated noise image: the two loading modes now differ
    noise = np.random.default_rng(0).integers(0, 256, size=(48, 80, 3), dtype=np.uint8)
    Image.fromarray(noise).save(first.path, format="JPEG", exif=exif.tobytes(), quality=95)
    db = str(tmp_path / "eval.db")
    assert main(["eval", "circo", "--root", str(root), "--uri", db, "--model", "cir-demo-tiny",
                 "--pretrained", "cir-demo"]) == 0
    capsys.readouterr()
    with CIRCollection.open(db, "circo_val") as col:  # encoder rebuilt from the recipe alone
        rec = col.encoder.recipe
        assert rec["preprocess"]["loading"] == "official" and rec["activation"] == "gelu"
        vec = col.get_vectors([first.id])[first.id]
        pix = preprocess_image(load_image(first.path, mode="official"), col.encoder.preprocess_config)
        want = col.encoder.encode_pixels(pix[None], normalize=True)[0]  # [D]
        np.testing.assert_allclose(vec / np.linalg.norm(vec), want, atol=1e-5)
        product_pix = preprocess_image(load_image(first.path), col.encoder.preprocess_config)
        assert np.abs(product_pix - pix).max() > 0.5  # rotated vs not
        product = col.encoder.encode_pixels(product_pix[None], normalize=True)[0]
        assert np.abs(product - vec / np.linalg.norm(vec)).max() > 1e-4  # 40x the tolerance above, on the demo model
