"""The page of ``cir-milvus serve`` on a mixed gallery (issue 27): the "match" toggle is offered only where the
collection has item texts, and choosing "images + texts" sends ``targets`` and shows the hybrid search's hits (the
library's, in order). Real headless Chromium, as tests/integration/test_serve_browser.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python driver)")

from serve_helpers import serving, write_gallery  # noqa: E402

from cir_milvus import CIRCollection, FakeEncoder  # noqa: E402
from cir_milvus.serve import create_app  # noqa: E402

pytestmark = pytest.mark.integration
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
        "--no-first-run"]


def test_page_offers_the_match_toggle_and_sends_targets(tmp_path: Path) -> None:
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        pytest.skip("no Chromium found: apt-get install -y chromium to run the browser test")
    paths, metadata = write_gallery(tmp_path / "gallery", n=16, seed=6)
    enc = FakeEncoder(dim=16, seed=1)
    mixed = CIRCollection.create(str(tmp_path / "m.db"), "mixed", encoder=enc, item_text=True)
    mixed.add(paths, metadata=metadata,
                         texts=[None if i % 4 == 0 else f"a {m['colour']} {m['shape']}" for i, m in enumerate(metadata)])
    plain = CIRCollection.create(str(tmp_path / "p.db"), "plain", encoder=enc)
    plain.add(paths[:4])
    want = [h.id for h in mixed.search(paths[1], "make it blue", k=12, targets=("image", "text"))]
    assert want != [h.id for h in mixed.search(paths[1], "make it blue", k=12)]  # the toggle matters
    try:
        with serving(create_app({"mixed": mixed, "plain": plain})) as (host, port), \
                playwright_api.sync_playwright() as p:
            base = f"http://{host}:{port}"
            browser = p.chromium.launch(executable_path=exe, args=ARGS)
            page = browser.new_page()
            page.goto(base + "/")
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            page.select_option("#collection", "plain")
            assert page.is_hidden("#targets-box")  # no item texts: nothing to toggle
            page.select_option("#collection", "mixed")
            assert page.is_visible("#targets-box")
            assert page.locator("#targets option").all_inner_texts() == ["images", "item texts", "images + texts"]
            page.select_option("#targets", "image,text")
            page.set_input_files("#file", paths[1])
            page.fill("#text", "make it blue")
            page.click("#go")
            page.wait_for_function("document.querySelectorAll('.tile').length > 0 || "
                                   "!document.getElementById('error').hidden", timeout=30_000)
            assert page.is_hidden("#error"), page.inner_text("#error")
            # the hybrid search's hits, in order (they differ from image-only: the toggle was sent)
            assert [t.get_attribute("data-id") for t in page.locator(".tile").all()] == want
            browser.close()
    finally:
        mixed.close()
        plain.close()
