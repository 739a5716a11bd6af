"""The CLI on a mixed gallery on the Milvus 2.3.5 server (issue 27), served by an ONNX bundle: ``cir-milvus ingest
--text-column`` fills the text mirror with the bundle's text tower, and ``cir-milvus search --targets ... --ranker``
gives what the library gives on the same collection (client-side fusion over the mirror)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cir_milvus import CIRCollection
from cir_milvus.cli import main
from cir_milvus.encoders.base import create_encoder
from cir_milvus.synthetic import SyntheticWorld

pytestmark = pytest.mark.server
N = 10
COLOURS = ["red", "green", "blue", "yellow"]


def _caption(i: int) -> str | None:
    return None if i % 4 == 0 else f"a {COLOURS[i % 4]} thing number{i}"  # items 0, 4, 8 have no text


def test_cli_ingest_and_search_a_mixed_gallery_with_a_bundle(server_uri: str, tiny_bundle: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    rows = []
    for i, it in enumerate(SyntheticWorld(seed=5, instances=1).gallery()[:N]):
        it.render().save(tmp_path / f"{i}.png")
        rows.append({"id": f"i{i}", "path": f"{i}.png", **({} if _caption(i) is None else {"caption": _caption(i)})})
    listing = tmp_path / "items.jsonl"
    listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    name = f"mc{uuid.uuid4().hex[:10]}"
    model = ["--model", f"bundle:{tiny_bundle}", "--device", "cpu"]
    assert main(["ingest", "--list", str(listing), "--uri", server_uri, "--collection", name, *model,
                 "--no-progress", "--workers", "0", "--text-column", "caption"]) == 0
    capsys.readouterr()
    ids = [f"i{i}" for i in range(N)]
    with CIRCollection.open(server_uri, name) as col:  # the bundle, rebuilt from the stored recipe
        assert col.store.fields.text_collection == f"{name}__cir_text" and len(col) == N
        stored = col.store.stored_text_vectors(ids)  # the mirror holds the bundle's text vectors of the captions
        want = col.encoder.encode_texts([c for i in range(N) if (c := _caption(i)) is not None])
        assert [i for i in ids if stored[i] is None] == ["i0", "i4", "i8"]
        np.testing.assert_allclose(np.stack([v for v in stored.values() if v is not None]), want, atol=1e-5)
        ref = str(tmp_path / "1.png")
        cases: list[tuple[list[str], dict[str, Any]]] = [
            (["--targets", "image,text", "--ranker", "rrf"], {"targets": ("image", "text"), "ranker": "rrf"}),
            (["--targets", "image,text", "--ranker", "weighted", "--ranker-weights", "0.3,0.7"],
             {"targets": ("image", "text"), "ranker": "weighted", "ranker_weights": (0.3, 0.7)})]
        lib = [col.search(ref, "make it red", k=6, **kw) for _, kw in cases]
        own = col.search(text=_caption(6), composer="text", k=N, targets=("text",))
    assert own[0].id == "i6" and len(own) == N - 3  # its own caption first; items without text are not in the list
    base = ["search", "--uri", server_uri, "--collection", name, "--device", "cpu", "-k", "6", "--json"]
    for (argv, _), want_hits in zip(cases, lib):
        assert main([*base, "--image", ref, "--text", "make it red", *argv]) == 0
        got = json.loads(capsys.readouterr().out)
        assert [h["id"] for h in got] == [h.id for h in want_hits] and len(got) == 6, argv
        assert [h["score"] for h in got] == pytest.approx([h.score for h in want_hits], rel=1e-5)
    assert main([*base, "--composer", "text", "--text", str(_caption(6)), "--targets", "text"]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)] == [h.id for h in own[:6]]

    plain = f"mp{uuid.uuid4().hex[:10]}"  # a gallery without item texts: --targets text is a user error
    CIRCollection.create(server_uri, plain, encoder=create_encoder(f"bundle:{tiny_bundle}"), index="FLAT").close()
    code = main(["search", "--uri", server_uri, "--collection", plain, "--device", "cpu", "--json",
                 "--composer", "text", "--text", "a red thing", "--targets", "text"])
    err = capsys.readouterr().err
    assert code == 2 and f"collection {plain!r} has no item-text field" in err and "item_text=True" in err
    assert "Traceback" not in err
