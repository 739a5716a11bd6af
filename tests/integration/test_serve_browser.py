"""The web page of ``cir-milvus serve`` in a real headless Chromium (Debian's ``chromium`` driven by Playwright; its own
browser download is never used): upload a reference, type a modification, see result tiles; click a tile to search
from it; the same with an API token. Set ``CIR_SERVE_SCREENSHOT=PATH`` to save the README screenshot."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("torch")
pytest.importorskip("open_clip")
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python driver)")

from serve_helpers import free_port, write_gallery  # noqa: E402

from cir_milvus import CIRCollection, EncoderSpec  # noqa: E402
from cir_milvus.serve import create_app  # noqa: E402

pytestmark = pytest.mark.integration

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-default-apps", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
TOKEN = "browser-token"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium found: apt-get install -y chromium (the Debian package) to run the browser test")


class _Server:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("browser")
    paths, metadata = write_gallery(base / "gallery", n=48, seed=6)
    col = CIRCollection.create(str(base / "c.db"), "shapes", model="cir-demo-tiny", pretrained="cir-demo",
                               encoder=EncoderSpec(device="cpu"))
    ids = list(col.add(paths[1:], metadata=metadata[1:]))
    names = {i: os.path.basename(p) for i, p in zip(ids, paths[1:])}
    yield {"col": col, "root": base / "gallery", "reference": paths[0], "ids": ids, "names": names,
           "second": paths[5]}
    col.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = _chromium()
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _run_query(page: Any, base: str, reference: str, text: str) -> None:
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    page.set_input_files("#file", reference)
    page.fill("#text", text)
    page.click("#go")
    page.wait_for_selector(".tile img[src]", timeout=30_000)


def test_page_renders_result_tiles(gallery: dict[str, Any], browser: Any) -> None:
    app = create_app({"shapes": gallery["col"]}, image_roots=[gallery["root"]], filter_fields=["colour", "shape"])
    with _Server(app) as base:
        page = browser.new_page(viewport={"width": 1180, "height": 760})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        failed: list[str] = []
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        _run_query(page, base, gallery["reference"], "make it blue")
        tiles = page.locator(".tile")
        assert tiles.count() == 12  # the page's default number of hits
        first_id = tiles.first.get_attribute("data-id")
        assert first_id in gallery["ids"]
        # tiles are labelled with the source file name, the id on hover
        name = tiles.first.locator(".name")
        assert name.inner_text() == gallery["names"][first_id] and first_id in (name.get_attribute("title") or "")
        scores = [float(s) for s in page.locator(".tile .score").all_inner_texts()]
        assert scores == sorted(scores, reverse=True)
        # every thumbnail really loaded (naturalWidth > 0), and metadata shows on hover
        page.wait_for_function("[...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth > 0)")
        tiles.first.hover()
        assert "colour:" in tiles.first.locator(".meta").inner_text()
        assert "hits" in page.inner_text("#status")
        # composers without alpha disable the slider
        page.select_option("#composer", "image")
        assert page.is_disabled("#alpha")
        page.select_option("#composer", "slerp")
        assert page.is_enabled("#alpha")
        if os.environ.get("CIR_SERVE_SCREENSHOT"):
            page.mouse.move(1, 1)
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            page.screenshot(path=os.environ["CIR_SERVE_SCREENSHOT"])
        # the alpha slider searches again (debounced), the old tiles marked stale meanwhile, and the tiles change
        page.evaluate("window.__stale = false; new MutationObserver(() => { if (document.getElementById('results')"
                      ".classList.contains('stale')) window.__stale = true; }).observe(document.getElementById("
                      "'results'), {attributes: true})")
        before = page.locator(".tile .score").all_inner_texts()
        searches: list[str] = []
        page.on("request", lambda r: searches.append(r.url) if r.url.endswith("/search") else None)
        for value in ("0.3", "0.1"):  # two moves in a row: one search, with the resting value
            page.eval_on_selector("#alpha", f"(el) => {{ el.value = '{value}'; "
                                            "el.dispatchEvent(new Event('input', {bubbles: true})); }")
        page.wait_for_function("document.getElementById('status').textContent.includes('alpha 0.10')")
        page.wait_for_function("!document.getElementById('results').classList.contains('stale')")
        assert page.evaluate("window.__stale") is True and len(searches) == 1
        assert page.locator(".tile .score").all_inner_texts() != before
        # keyboard: a focused tile searches from it on Enter
        page.locator(".tile").nth(2).focus()
        third = page.locator(".tile").nth(2).get_attribute("data-id")
        page.keyboard.press("Enter")
        page.wait_for_function(f"document.getElementById('ref-label').textContent.includes('{third}')")
        page.wait_for_function(f"[...document.querySelectorAll('.tile')].length > 0 && "
                               f"![...document.querySelectorAll('.tile')].some(t => t.dataset.id === '{third}')")
        # clicking a hit makes it the reference (by stored id) and searches again
        tiles = page.locator(".tile")
        second = second_ref = tiles.nth(1).get_attribute("data-id")
        tiles.nth(1).click()
        page.wait_for_function(f"document.getElementById('ref-label').textContent.includes('{second}')")
        page.wait_for_function(f"[...document.querySelectorAll('.tile')].length > 0 && "
                               f"![...document.querySelectorAll('.tile')].some(t => t.dataset.id === '{second}')")
        # "more like this" searches again with that tile liked: it leaves the hits, which change; "clear" undoes it
        shown = [t.get_attribute("data-id") for t in page.locator(".tile").all()]
        liked = shown[3]
        page.locator(f".tile[data-id='{liked}'] button.like").click()
        page.wait_for_function("document.getElementById('feedback-text').textContent === '1 more like' && "
                               "!document.getElementById('results').classList.contains('stale')")
        after = [t.get_attribute("data-id") for t in page.locator(".tile").all()]
        assert liked not in after and after != shown
        unliked = after[0]
        page.locator(f".tile[data-id='{unliked}'] button.unlike").click()
        page.wait_for_function("document.getElementById('feedback-text').textContent === '1 more like · 1 less like' "
                               "&& !document.getElementById('results').classList.contains('stale')")
        assert unliked not in [t.get_attribute("data-id") for t in page.locator(".tile").all()]
        page.click("#feedback-clear")
        page.wait_for_function("document.getElementById('feedback').hidden && "
                               "!document.getElementById('results').classList.contains('stale')")
        assert [t.get_attribute("data-id") for t in page.locator(".tile").all()] == shown  # the query before feedback
        # a negative text and a second reference (two references go as JSON: images_b64 / ref_ids)
        page.fill("#negative", "on a black background")
        page.set_input_files("#file2", gallery["second"])
        with page.expect_request(lambda r: r.url.endswith("/search")) as sent:
            page.click("#go")
        body = sent.value.post_data_json
        assert body["negative"] == "on a black background" and body["ref_ids"] == [second_ref]
        assert len(body["images_b64"]) == 1 and "ref_id" not in body
        page.wait_for_function("document.getElementById('status').textContent.includes('hits')")
        assert page.is_hidden("#error") and page.locator(".tile").count() == 12
        page.click("#second-clear")
        page.fill("#negative", "")
        # a metadata filter restricts every tile
        page.fill("#filter-fields input[data-field='colour']", "red")
        page.click("#go")
        page.wait_for_function("document.getElementById('status').textContent.includes('hits') && "
                               "[...document.querySelectorAll('.tile .meta')].every(m => m.textContent.includes('"
                               "colour: \"red\"'))")
        assert errors == [] and failed == []  # no 404 for the favicon, no failed thumbnail
        assert all(u.startswith(base) or u.startswith(("blob:", "data:")) for u in requests), requests
        page.close()


def test_page_with_api_token(gallery: dict[str, Any], browser: Any) -> None:
    app = create_app({"shapes": gallery["col"]}, image_roots=[gallery["root"]], token=TOKEN)
    with _Server(app) as base:
        page = browser.new_page()
        page.goto(base + "/")
        page.wait_for_selector("#token-box:not([hidden])", timeout=30_000)
        assert "token" in page.inner_text("#error")
        page.fill("#token", TOKEN)
        page.dispatch_event("#token", "change")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert page.is_hidden("#filters") and page.is_hidden("#group-box")  # no filter fields: no empty boxes
        page.set_input_files("#file", gallery["reference"])
        page.fill("#text", "make it green")
        page.click("#go")
        page.wait_for_selector(".tile img[src^='blob:']", timeout=30_000)  # images fetched with the Bearer header
        page.wait_for_function("[...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth > 0)")
        assert page.locator(".tile").count() == 12
        page.close()

