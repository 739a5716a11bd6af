"""``cir-milvus serve``'s HTTP API through FastAPI's test client, on a Milvus Lite demo collection: every endpoint,
every composer (answers equal the library's), filters, images and their roots, limits, tokens, malformed requests."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")
torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from serve_helpers import write_gallery  # noqa: E402

from cir_milvus import CIRCollection, EncoderSpec  # noqa: E402
from cir_milvus.errors import ConfigError  # noqa: E402
from cir_milvus.heads import Head, SearlePhi, load_head  # noqa: E402
from cir_milvus.models.demo import DATA_DIR  # noqa: E402
from cir_milvus.serve import create_app  # noqa: E402

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
ALL_COMPOSERS = ["combined", "image", "lincir", "pic2word", "searle", "slerp", "sum", "text"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("serve")
    root = base / "gallery"
    paths, metadata = write_gallery(root, n=40)
    outside = base / "outside"
    outside.mkdir()
    secret = outside / "secret.png"
    Image.new("RGB", (32, 32), (250, 10, 10)).save(secret)
    (root / "escape.png").symlink_to(secret)  # a link inside the root that points out of it
    torch.manual_seed(5)
    searle = str(Head("searle", SearlePhi(128, 256, 128)).save(base / "searle_head"))
    col = CIRCollection.create(str(base / "c.db"), "demo", model="cir-demo-tiny", pretrained="cir-demo",
                               encoder=EncoderSpec(device="cpu"), fields={"background": ("varchar", 16)})
    ids = list(col.add(paths, metadata=metadata))
    # stored with sources the server must refuse: a symlink out of the root, and a file outside every root
    escape_id, outside_id = col.add([str(root / "escape.png"), str(secret)], ids=["escape", "outside"])
    heads = {"searle": searle}
    app = create_app({"demo": col}, image_roots=[root], filter_fields=["colour", "shape"], heads=heads,
                     filters={"not_colour": 'metadata["colour"] != {colour}', "sized": 'metadata["size"] == {size}'})
    with TestClient(app) as client:
        yield {"col": col, "client": client, "paths": paths, "metadata": metadata, "ids": ids, "root": root,
               "base": base, "heads": heads, "secret": secret}
    col.close()


def _library_params(name: str, heads: dict[str, str]) -> dict[str, Any]:
    """The head the library call needs for the same query (the files the server loaded)."""
    files = {"lincir": str(DATA_DIR / "cir-demo-tiny.lincir.safetensors"),
             "pic2word": str(DATA_DIR / "cir-demo-tiny.pic2word.safetensors"), "searle": heads["searle"]}
    if name in files:
        return {"head": load_head(name, files[name])}
    if name == "combined":
        return {"head": load_head("lincir", files["lincir"])}
    return {}


def _error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"] and body["error"]["type"]
    assert "Traceback" not in r.text
    assert r.headers["connection"] == "close"  # an error answer closes its connection
    return body["error"]


# -- endpoints ---------------------------------------------------------------------------------------------------
def test_info_and_healthz(env: Any) -> None:
    c = env["client"]
    info = c.get("/info").json()
    (col,) = info["collections"]
    assert col["name"] == "demo" and col["count"] == len(env["col"]) and col["dim"] == 128
    assert sorted(col["composers"]) == ALL_COMPOSERS
    assert col["composers"]["slerp"]["alpha"] and not col["composers"]["image"]["alpha"]
    assert not col["composers"]["text"]["needs_image"]
    assert col["filters"] == {"templates": {"not_colour": ["colour"], "sized": ["size"]},
                              "fields": ["colour", "shape"]}
    assert col["images"] is True and col["add"] is False and info["auth"] is False
    assert str(env["base"]) not in c.get("/info").text  # no server paths (the db file, the bundle) leak
    assert c.get("/healthz").json()["status"] == "ok"
    assert "/search" in c.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("composer", ALL_COMPOSERS)
def test_search_every_composer_equals_the_library(env: Any, composer: str) -> None:
    c, col, ref = env["client"], env["col"], env["paths"][0]
    alpha = {"slerp": 0.6, "combined": 0.7}.get(composer)
    form = {"text": "make it blue", "composer": composer, "k": "6", **({"alpha": str(alpha)} if alpha else {})}
    if composer == "text":
        r = c.post("/search", data=form)
    else:
        r = c.post("/search", data=form, files={"image": ("ref.png", Path(ref).read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["composer"] == composer and body["collection"] == "demo"
    want = col.search(None if composer == "text" else ref, "make it blue", k=6, composer=composer, alpha=alpha,
                      **_library_params(composer, env["heads"]))
    assert [h["id"] for h in body["hits"]] == [h.id for h in want]
    np.testing.assert_allclose([h["score"] for h in body["hits"]], [h.score for h in want], atol=1e-5)
    hit = body["hits"][0]
    assert hit["metadata"] == next(h.metadata for h in want if h.id == hit["id"])
    assert hit["thumbnail_url"].startswith("/images/demo/") and "size=" in hit["thumbnail_url"]
    if composer != "text":  # the reference itself (by content) is left out
        assert env["ids"][0] not in [h["id"] for h in body["hits"]]


def test_json_base64_and_ref_id_and_batch(env: Any) -> None:
    c, ids = env["client"], env["ids"]
    data = Path(env["paths"][2]).read_bytes()
    up = c.post("/search", data={"text": "a big star", "k": "5"}, files={"image": ("x.png", data, "image/png")})
    js = c.post("/search", json={"text": "a big star", "k": 5, "image_b64": base64.b64encode(data).decode()})
    assert up.status_code == js.status_code == 200
    assert [h["id"] for h in up.json()["hits"]] == [h["id"] for h in js.json()["hits"]]

    by_ref = c.post("/search", json={"ref_id": ids[2], "text": "a big star", "k": 5, "composer": "lincir"}).json()
    want = env["col"].search(ref_id=ids[2], text="a big star", k=5, composer="lincir",
                             **_library_params("lincir", env["heads"]))
    assert [h["id"] for h in by_ref["hits"]] == [h.id for h in want] and ids[2] not in [h.id for h in want]

    queries = [{"ref_id": ids[i], "text": t, "k": 4} for i, t in [(1, "make it red"), (3, "turn it into a circle"),
                                                                   (5, "on a white background")]]
    queries.append({"image_b64": base64.b64encode(data).decode(), "text": "a big star", "k": 5})
    queries.append({"ref_id": ids[7], "text": "make it red", "negative": "a circle", "like": [ids[8]], "k": 4})
    batch = c.post("/search/batch", json={"queries": queries})
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert len(results) == 5
    for q, res in zip(queries, results):
        single = c.post("/search", json=q).json()
        assert [h["id"] for h in res["hits"]] == [h["id"] for h in single["hits"]]
    err = _error(c.post("/search/batch", json={"queries": [queries[0], {"ref_id": "nope", "text": "x"}]}), 400)
    assert err["message"].startswith("queries[1]:")
    _error(c.post("/search/batch", json={"queries": [queries[0]] * 65}), 400)


@pytest.mark.parametrize("extra, library", [
    ({"negative": "on a white background"}, {"negative": "on a white background"}),
    ({"negative": ["red", "a star"]}, {"negative": ["red", "a star"]}),
    ({"like": ["ID5"], "unlike": ["ID6", "ID7"]}, {"like": ["ID5"], "unlike": ["ID6", "ID7"]}),
    ({"alpha": [0.6, 0.8, 0.9]}, {"alpha": [0.6, 0.8, 0.9]}),
    ({"dedupe": 0.9}, {"dedupe": 0.9}),
])
def test_query_arguments_equal_the_library(env: Any, extra: dict[str, Any], library: dict[str, Any]) -> None:
    c, col, ids = env["client"], env["col"], env["ids"]

    def real(v: Any) -> Any:
        return [ids[int(x[2:])] if isinstance(x, str) and x.startswith("ID") else x for x in v] \
            if isinstance(v, list) else v

    extra, library = {k: real(v) for k, v in extra.items()}, {k: real(v) for k, v in library.items()}
    r = c.post("/search", json={"ref_id": ids[1], "text": "make it blue", "k": 8, **extra})
    assert r.status_code == 200, r.text
    want = col.search(ref_id=ids[1], text="make it blue", k=8, **library)
    assert [h["id"] for h in r.json()["hits"]] == [h.id for h in want]
    np.testing.assert_allclose([h["score"] for h in r.json()["hits"]], [h.score for h in want], atol=1e-5)
    plain = col.search(ref_id=ids[1], text="make it blue", k=8)
    assert [h.id for h in want] != [h.id for h in plain] or "dedupe" in extra  # the argument changed the answer


def test_several_references_equal_the_library(env: Any) -> None:
    c, col, ids, paths = env["client"], env["col"], env["ids"], env["paths"]
    a, b = Path(paths[2]).read_bytes(), Path(paths[9]).read_bytes()
    body = {"images_b64": [base64.b64encode(a).decode(), base64.b64encode(b).decode()], "text": "make it red",
            "k": 6, "weights": [2, 1]}
    r = c.post("/search", json=body)
    assert r.status_code == 200, r.text
    want = col.search(images=[a, b], text="make it red", k=6, weights=[2, 1])
    assert [h["id"] for h in r.json()["hits"]] == [h.id for h in want]
    assert ids[2] not in [h.id for h in want] and ids[9] not in [h.id for h in want]  # both references left out
    # the same two references as two uploaded files, and as stored ids
    up = c.post("/search", data={"text": "make it red", "k": "6", "weights": "[2, 1]"},
                files=[("image", ("a.png", a, "image/png")), ("image", ("b.png", b, "image/png"))])
    assert [h["id"] for h in up.json()["hits"]] == [h.id for h in want], up.text
    by_id = c.post("/search", json={"ref_ids": [ids[2], ids[9]], "text": "make it red", "k": 6, "weights": [2, 1]})
    assert [h["id"] for h in by_id.json()["hits"]] == \
        [h.id for h in col.search(ref_ids=[ids[2], ids[9]], text="make it red", k=6, weights=[2, 1])]


@pytest.mark.parametrize("extra", [
    {"like": ["not-stored"]}, {"unlike": []}, {"ref_ids": ["ID2", "ID3"], "weights": [1.0]}, {"dedupe": 1.5},
    {"dedupe": 0.0}, {"negative": []}, {"ref_ids": ["ID2", "ID3"], "ref_id": "ID4"},
])
def test_bad_query_arguments_get_the_library_message(env: Any, extra: dict[str, Any]) -> None:
    ids = env["ids"]
    extra = {k: [ids[int(x[2:])] if x.startswith("ID") else x for x in v] if isinstance(v, list) and v
             and isinstance(v[0], str) else ids[int(v[2:])] if isinstance(v, str) and v.startswith("ID") else v
             for k, v in extra.items()}
    args = {"ref_id": ids[1], **extra} if "ref_ids" not in extra else extra
    with pytest.raises(ConfigError) as refused:
        env["col"].search(text="x", k=5, **args)
    assert _error(env["client"].post("/search", json={"text": "x", "k": 5, **args}), 400)["message"] == \
        str(refused.value)


def test_filters_are_values_only(env: Any) -> None:
    c, ids = env["client"], env["ids"]
    colour = env["metadata"][0]["colour"]
    r = c.post("/search", json={"ref_id": ids[0], "text": "make it green", "k": 20, "where": {"colour": colour}})
    hits = r.json()["hits"]
    assert hits and all(h["metadata"]["colour"] == colour for h in hits)
    r = c.post("/search", json={"ref_id": ids[0], "text": "x", "k": 20, "where": {"shape": ["circle", "star"]}})
    assert all(h["metadata"]["shape"] in ("circle", "star") for h in r.json()["hits"])
    # an injection attempt is a value like any other: it matches nothing
    evil = c.post("/search", json={"ref_id": ids[0], "text": "x", "k": 20, "where": {"colour": f'{colour}" or 1==1'}})
    assert evil.status_code == 200 and evil.json()["hits"] == []
    braces = c.post("/search", json={"ref_id": ids[0], "text": "x", "k": 5, "where": {"colour": "{colour}"}})
    assert braces.status_code == 200 and braces.json()["hits"] == []
    # named templates take values only
    r = c.post("/search", json={"ref_id": ids[0], "text": "x", "k": 20, "filter": "not_colour",
                                "filter_params": {"colour": colour}})
    assert r.json()["hits"] and all(h["metadata"]["colour"] != colour for h in r.json()["hits"])
    r = c.post("/search", json={"ref_id": ids[0], "text": "x", "k": 20, "filter": "sized",
                                "filter_params": {"size": "large"}, "where": {"colour": colour}})
    assert all(h["metadata"]["size"] == "large" and h["metadata"]["colour"] == colour for h in r.json()["hits"])
    # filter text, undeclared fields, bad values: 400 with the reason
    msg = _error(c.post("/search", json={"ref_id": ids[0], "text": "x", "filter": 'metadata["colour"] == "red"'}),
                 400)["message"]
    assert "never filter text" in msg
    assert "not allowed" in _error(c.post("/search", json={"ref_id": ids[0], "text": "x",
                                                          "where": {"background": "white"}}), 400)["message"]
    _error(c.post("/search", json={"ref_id": ids[0], "text": "x", "where": {"colour": {"$ne": 1}}}), 400)
    _error(c.post("/search", json={"ref_id": ids[0], "text": "x", "filter": "not_colour"}), 400)
    _error(c.post("/search", json={"ref_id": ids[0], "text": "x", "filter": "not_colour",
                                   "filter_params": {"colour": "red", "extra": 1}}), 400)
    _error(c.post("/search", json={"ref_id": ids[0], "text": "x", 'where': {'colour"] or 1==1 or metadata["x': 1}}),
           400)


def test_group_by_goes_through_the_store(env: Any) -> None:
    c, ids, col = env["client"], env["ids"], env["col"]
    assert c.get("/info").json()["collections"][0]["group_by"] == ["background"]
    hits = c.post("/search", json={"ref_id": ids[0], "text": "make it red", "k": 3, "group_by": "background"})
    assert hits.status_code == 200, hits.text
    got = hits.json()["hits"]
    backgrounds = [h["metadata"]["background"] for h in got]
    assert len(got) == 3 and len(set(backgrounds)) == 3
    want = col.search(ref_id=ids[0], text="make it red", k=3, group_by="background")  # the library's answer
    assert [h["id"] for h in got] == [h.id for h in want]
    # the best hit of each value, in score order (the reference kept: the store excludes after grouping)
    q = {"ref_id": ids[0], "text": "make it red", "exclude_reference": False}
    grouped = c.post("/search", json={**q, "k": 3, "group_by": "background"}).json()["hits"]
    first_of_each: dict[str, str] = {}
    for h in c.post("/search", json={**q, "k": 40}).json()["hits"]:
        first_of_each.setdefault(h["metadata"]["background"], h["id"])
    assert [h["id"] for h in grouped] == list(first_of_each.values())[:3]
    # a JSON metadata key is not a field the library groups by: the library's refusal, as a 400
    with pytest.raises(ConfigError, match="typed scalar field") as refused:
        col.search(ref_id=ids[0], text="x", group_by="colour")
    assert _error(c.post("/search", json={"ref_id": ids[0], "text": "x", "group_by": "colour"}),
                  400)["message"] == str(refused.value)


# -- images --------------------------------------------------------------------------------------------------------
def test_images_thumbnails_and_caching(env: Any) -> None:
    c, ids, paths = env["client"], env["ids"], env["paths"]
    full = c.get(f"/images/demo/{ids[0]}")
    assert full.status_code == 200 and full.content == Path(paths[0]).read_bytes()
    assert full.headers["content-type"] == "image/png" and "max-age" in full.headers["cache-control"]
    thumb = c.get(f"/images/demo/{ids[0]}?size=32")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as im:
        assert max(im.size) == 32
    etag = thumb.headers["etag"]
    assert c.get(f"/images/demo/{ids[0]}?size=32", headers={"If-None-Match": etag}).status_code == 304
    assert c.get(f"/images/demo/{ids[0]}?size=64", headers={"If-None-Match": etag}).status_code == 200
    _error(c.get(f"/images/demo/{ids[0]}?size=5000"), 422)
    _error(c.get("/images/nope/x"), 404)


@pytest.mark.parametrize("path", [
    "/images/demo/..%2F..%2F..%2Fetc%2Fpasswd",
    "/images/demo/%2Fetc%2Fpasswd",
    "/images/demo//etc/passwd",
    "/images/demo/....//....//etc/passwd",
    "/images/demo/%252e%252e%252fetc%252fpasswd",
    "/images/demo/escape",   # stored source: a symlink inside the root pointing out of it
    "/images/demo/outside",  # stored source: a file outside every root
    "/images/demo/escape?size=64",
    "/images/demo/outside?size=64",
    "/images/..%2Fdemo/x",
])
def test_path_traversal_is_refused(env: Any, path: str) -> None:
    r = env["client"].get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert "image" not in r.headers.get("content-type", "")
    assert str(env["base"]) not in r.text and "secret" not in r.text and "passwd" not in r.text


def test_image_roots_resolution(tmp_path: Path) -> None:
    from cir_milvus.serve import ImageRoots

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    inside = root / "sub" / "a.png"
    inside.write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"y")
    (root / "link.png").symlink_to(tmp_path / "b.png")
    (root / "dirlink").symlink_to(tmp_path)
    roots = ImageRoots([root])
    assert roots.resolve(str(inside)) == inside.resolve()
    assert roots.resolve("sub/a.png") == inside.resolve()  # relative to the root
    assert roots.resolve("sub/../sub/a.png") == inside.resolve()
    for bad in (str(tmp_path / "b.png"), "../b.png", "sub/../../b.png", str(root / "link.png"), "link.png",
                "dirlink/b.png", str(root), "sub", "/etc/passwd", "", "a\x00.png", str(root / "missing.png")):
        assert roots.resolve(bad) is None, bad
    assert ImageRoots([]).resolve(str(inside)) is None
    with pytest.raises(ConfigError, match="--image-root"):
        ImageRoots([tmp_path / "missing"])


# -- limits, tokens, malformed requests ------------------------------------------------------------------------------
def test_oversize_uploads_and_bombs(env: Any, image_bytes: Any) -> None:
    col = env["col"]
    app = create_app({"demo": col}, max_upload_bytes=4096, max_pixels=200 * 200)
    big = image_bytes(Image.effect_noise((128, 128), 60).convert("RGB"), "PNG")
    assert len(big) > 4096 * 4 // 3 + 64 * 1024 or len(big) > 4096
    with TestClient(app) as c:
        err = _error(c.post("/search", data={"text": "x"}, files={"image": ("b.png", big * 8, "image/png")}), 413)
        assert "4,096" in err["message"] or "bytes" in err["message"]
        # without a Content-Length (chunked): the stream is counted as it arrives
        body = b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"b.png\"\r\n\r\n" + big * 30

        def chunks():  # type: ignore[no-untyped-def]
            for i in range(0, len(body), 8192):
                yield body[i:i + 8192]

        r = c.post("/search", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
        _error(r, 413)
        for path in ("/search", "/search/batch"):  # JSON bodies too, also when FastAPI parses them
            body = b'{"queries": [{"text": "' + b"x" * 200_000 + b'"}]}'
            r = c.post(path, content=chunks(), headers={"Content-Type": "application/json"})
            _error(r, 413)
        # within the body cap but over the image cap (base64 in JSON)
        _error(c.post("/search", json={"text": "x", "image_b64": base64.b64encode(big).decode()}), 413)
        # a small file that decodes to many pixels: the decompression-bomb guard
        bomb = image_bytes(Image.new("1", (3000, 3000)), "PNG")
        assert len(bomb) < 4096
        err = _error(c.post("/search", data={"text": "x"}, files={"image": ("bomb.png", bomb, "image/png")}), 400)
        assert "pixel cap" in err["message"]


def test_token(env: Any) -> None:
    app = create_app({"demo": env["col"]}, token=TOKEN, image_roots=[env["root"]])
    ids = env["ids"]
    with TestClient(app) as c:
        for path in ("/info", "/healthz", "/openapi.json", f"/images/demo/{ids[0]}"):
            r = c.get(path)
            _error(r, 401)
            assert r.headers["www-authenticate"] == "Bearer"
            _error(c.get(path, headers={"Authorization": "Bearer wrong"}), 401)
            _error(c.get(path, headers={"Authorization": TOKEN}), 401)
            assert c.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        _error(c.post("/search", json={"ref_id": ids[0], "text": "x"}), 401)
        ok = c.post("/search", json={"ref_id": ids[0], "text": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["hits"]
        # the page itself carries no data and loads without the token (it asks for it)
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        assert c.get("/info", headers={"Authorization": f"Bearer {TOKEN}"}).json()["auth"] is True


def test_add(env: Any, tmp_path: Path) -> None:
    col, c = env["col"], env["client"]
    img = Image.new("RGB", (64, 64), (12, 200, 40))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    _error(c.post("/add", files={"images": ("n.png", data, "image/png")}), 403)  # off unless enabled
    with pytest.raises(ConfigError, match="token"):
        create_app({"demo": col}, allow_add=True)
    app = create_app({"demo": col}, token=TOKEN, allow_add=True)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as c2:
        _error(c2.post("/add", files={"images": ("n.png", data, "image/png")}), 401)
        before = len(col)
        r = c2.post("/add", files=[("images", ("n.png", data, "image/png"))],
                    data={"ids": '["added-1"]', "metadata": '[{"colour": "green", "shape": "square"}]'}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == ["added-1"] and len(col) == before + 1
        hits = c2.post("/search", json={"image_b64": base64.b64encode(data).decode(), "text": "x", "composer": "image",
                                        "k": 1, "exclude_reference": False}, headers=auth).json()["hits"]
        assert hits[0]["id"] == "added-1" and hits[0]["metadata"]["colour"] == "green"
        _error(c2.post("/add", files={"images": ("n.png", b"not an image", "image/png")}, headers=auth), 400)
        _error(c2.post("/add", files={"images": ("n.png", data, "image/png")}, data={"ids": '["a", "b"]'},
                       headers=auth), 400)
        _error(c2.post("/add", data={"ids": "[]"}, headers=auth), 400)
    col.delete(["added-1"])


@pytest.mark.parametrize("kwargs, status, needle", [
    ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
    ({"json": ["a", "list"]}, 400, "object"),
    ({"json": {"ref_id": "x", "text": "t", "bogus": 1}}, 422, "bogus"),
    ({"json": {"text": "t", "k": 0}}, 422, "k"),
    ({"json": {"text": "t", "k": "many"}}, 422, "k"),
    ({"json": {"text": "t", "alpha": 2}}, 422, "alpha"),
    ({"json": {"text": "t", "image_b64": "!!!not-base64!!!"}}, 400, "base64"),
    ({"json": {"text": "t", "image_b64": base64.b64encode(b"hello, not an image").decode()}}, 400, "not a readable"),
    ({"json": {"text": "t"}}, 400, "exactly one reference"),
    ({"json": {"text": "t", "ref_id": "REF", "image_b64": "REFB64"}}, 400, "exactly one reference"),
    ({"json": {"text": "", "ref_id": "REF"}}, 400, "text"),
    ({"json": {"text": "t", "ref_id": "REF", "composer": "nope"}}, 400, "available"),
    ({"json": {"text": "t", "ref_id": "REF", "composer": "image", "alpha": 0.5}}, 400, "alpha"),
    ({"json": {"text": "t", "ref_id": "REF", "k": 101}}, 400, "k must be"),
    ({"json": {"text": "t" * 1001, "ref_id": "REF"}}, 400, "characters"),
    ({"json": {"text": "t", "ref_id": "not-stored"}}, 400, "not-stored"),
    ({"json": {"text": "t", "ref_id": "REF", "collection": "other"}}, 404, "no collection"),
    ({"content": b"text=x", "headers": {"Content-Type": "text/plain"}}, 415, "multipart"),
    ({"data": {"text": "t", "filter_params": "{bad json"}}, 400, "JSON"),
    ({"data": {"text": "t", "path": "/etc/passwd"}}, 400, "unknown form field"),
    ({"files": {"image": ("e.png", b"", "image/png")}, "data": {"text": "t"}}, 400, "empty"),
    ({"content": b"--x\r\ngarbage", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, 400, ""),
])
def test_malformed_requests_get_clear_4xx(env: Any, kwargs: dict[str, Any], status: int, needle: str) -> None:
    ids = env["ids"]
    if "json" in kwargs and isinstance(kwargs["json"], dict):
        kwargs = {**kwargs, "json": {k: (ids[0] if v == "REF" else base64.b64encode(Path(env["paths"][0]).read_bytes())
                                         .decode() if v == "REFB64" else v) for k, v in kwargs["json"].items()}}
    err = _error(env["client"].post("/search", **kwargs), status)
    assert needle.lower() in err["message"].lower(), err


def test_timeout_and_cors(env: Any) -> None:
    ids = env["ids"]
    slow = create_app({"demo": env["col"]}, request_timeout_s=0.001)
    with TestClient(slow) as c:
        err = _error(c.post("/search", json={"ref_id": ids[0], "text": "make it red"}), 504)
        assert "0.001" in err["message"]
    app = create_app({"demo": env["col"]}, cors_origins=["https://app.example"], token=TOKEN)
    with TestClient(app) as c:
        pre = c.options("/search", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://app.example"
        other = c.options("/search", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers
        r = c.get("/healthz", headers={"Origin": "https://app.example", "Authorization": f"Bearer {TOKEN}"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
    plain = create_app({"demo": env["col"]})
    with TestClient(plain) as c:
        r = c.get("/healthz", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in r.headers


def test_page_is_served_and_self_contained(env: Any) -> None:
    c = env["client"]
    html = c.get("/").text
    assert '<script src="static/app.js">' in html
    for asset in ("/static/app.js", "/static/style.css"):
        r = c.get(asset)
        assert r.status_code == 200
        assert "http://" not in r.text and "https://" not in r.text  # nothing from a CDN
    assert "http://" not in html and "https://" not in html
    _error(c.get("/static/../app.py"), 404)


def test_cli_builds_the_app(env: Any, tmp_path: Path) -> None:
    from cir_milvus.cli import build_parser
    from cir_milvus.cli.serve import build_app_from_args

    args = build_parser().parse_args(["serve", "--uri", str(tmp_path / "none.db"), "--collection", "x"])
    assert args.host == "127.0.0.1" and args.collection == ["x"] and not args.allow_add
    from cir_milvus.errors import CollectionNotFoundError

    with pytest.raises(CollectionNotFoundError):
        build_app_from_args(args)
    bad = build_parser().parse_args(["serve", "--filter-template", "nothing"])
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        build_app_from_args(bad)
    assert os.environ.get("CIR_SERVE_TOKEN") is None


def test_storage_errors_say_nothing_inside() -> None:
    from cir_milvus.errors import PermanentStorageError, StorageUnavailableError
    from cir_milvus.serve.errors import status_of

    where = "Milvus failed to search 'demo' at http://user:pw@10.0.0.5:19530"
    for error, want in ((StorageUnavailableError(where), 503), (PermanentStorageError(where), 500)):
        status, message = status_of(error)  # an outage: try again; a refusal: not the client's fault either
        assert status == want and "10.0.0.5" not in message and "pw" not in message and "server log" in message
    status, message = status_of(ConfigError("k must be between 1 and 16384, got 0"))
    assert (status, message) == (400, "k must be between 1 and 16384, got 0")  # the library's message, as it is
