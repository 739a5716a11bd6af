"""The ``cir-milvus`` command line on Milvus Lite: ingest, search (every composer, + contact sheet), info,
set-default, and the refusals that keep a collection from being built or changed by accident.

Every CLI run goes through :func:`run`, which also checks that the token (given through ``MILVUS_TOKEN``) never
appears in any output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("open_clip")

from PIL import Image  # noqa: E402

from cir_milvus import (
    CIRCollection,  # noqa: E402
    EncoderSpec,  # noqa: E402
)
from cir_milvus.cli import main  # noqa: E402
from cir_milvus.models.demo import DATA_DIR  # noqa: E402
from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

pytestmark = pytest.mark.integration

SECRET = "S3cret-Pw-4711"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns ``(exit code, stdout, stderr)``; the secret must never be printed."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert SECRET not in out and SECRET not in err, "a credential was printed"
    return code, out, err


@pytest.fixture(autouse=True)
def _token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_TOKEN", f"root:{SECRET}")


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "imgs"
    (root / "sub").mkdir(parents=True)
    world = SyntheticWorld(seed=5, instances=1)
    for i, it in enumerate(world.gallery()[:24]):
        folder = root / "sub" if i % 2 else root
        it.render().save(folder / f"{it.id}.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "junk.png").write_bytes(b"no image format at all")
    (root / "notes.txt").write_text("reported: not an image suffix")
    return root


@pytest.fixture(scope="module")
def demo_db(image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A collection of the image folder made with the demo model through the CLI."""
    db = str(tmp_path_factory.mktemp("db") / "cli.db")
    assert main(["ingest", str(image_dir), "--uri", db, "--collection", "imgs", "--model", "cir-demo-tiny",
                 "--device", "cpu", "--no-progress"]) == 0
    return db


def test_ingest_search_info(tmp_path: Path, image_dir: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    db = str(tmp_path / "cli.db")
    monkeypatch.setenv("MILVUS_URI", db)  # --uri falls back to $MILVUS_URI
    common = ["--collection", "imgs", "--device", "cpu"]
    report = tmp_path / "skipped.jsonl"
    code, out, err = run(capsys, "ingest", str(image_dir), *common, "--model", "cir-demo-tiny", "--skip-report",
                         str(report), "--no-progress", "--summary-json", str(tmp_path / "sum.json"))
    assert code == 0, err
    assert "27 images in" in out  # every entry of the folder is either stored or reported
    assert "skipped 3" in out and "corrupt.jpg" in out and "junk.png" in out
    assert "holds 24 images" in out
    skipped = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(Path(s["source"]).name for s in skipped) == ["corrupt.jpg", "junk.png", "notes.txt"]
    assert "object at 0x" not in out + report.read_text()
    assert json.loads((tmp_path / "sum.json").read_text())["stored"] == 24

    # re-ingesting the same folder (model from the recipe) leaves the count unchanged and encodes nothing
    code, out, _ = run(capsys, "ingest", str(image_dir), *common, "--no-progress")
    assert code == 0
    assert "stored 0 " in out and "already stored 24" in out and "holds 24 images" in out

    ref = sorted(image_dir.glob("syn-*.png"))[0]
    grid = tmp_path / "grid.png"
    code, out, _ = run(capsys, "search", *common, "--image", str(ref), "--text", "make it blue", "-k", "4",
                       "--grid", str(grid))
    assert code == 0
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 4
    assert ref.name not in out, "the reference itself is excluded from its hits"
    with Image.open(grid) as im:
        assert im.width > 5 * 224 and im.height >= 224

    code, out, _ = run(capsys, "search", *common, "--image", str(ref), "--text", "make it blue", "--json")
    hits = json.loads(out)
    assert len(hits) == 10 and all({"id", "score", "metadata", "source"} <= set(h) for h in hits)
    assert hits == sorted(hits, key=lambda h: -h["score"])
    assert all(len(repr(h["score"]).split(".")[-1]) <= 6 for h in hits), "scores are rounded"
    # the stored sources are absolute: the sheet finds the files from any working directory
    assert all(Path(h["source"]).is_absolute() and Path(h["source"]).is_file() for h in hits)

    code, out, _ = run(capsys, "info", *common[:2], "--json")
    info = json.loads(out)
    assert info["count"] == 24
    assert info["recipe"]["encoder"]["model"] == "cir-demo-tiny"
    assert info["recipe"]["encoder"]["pretrained"] == "cir-demo"
    assert info["recipe"]["composer"]["name"] == "slerp"
    assert info["index"]["index_type"] == "HNSW"

    code, out, _ = run(capsys, "info", *common[:2])
    table = dict(line.split(None, 1) for line in out.splitlines())
    assert table["images"] == "24"
    assert table["model"].startswith("cir-demo-tiny") and table["weights"].startswith("cir-demo")
    assert table["composer"] == "slerp (alpha=0.8)"


@pytest.fixture(scope="module")
def searle_head(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SEARLE-layout head for the demo model's widths (128 → 512 → 512 → 128), random weights, saved as the
    published release files are: ``{"epoch", "Phi": state_dict}`` in a ``.pt`` file (no SEARLE head is shipped)."""
    import torch

    g = torch.Generator().manual_seed(3)
    sd = {"layers.0.weight": torch.randn(512, 128, generator=g) / 128**0.5, "layers.0.bias": torch.zeros(512),
          "layers.3.weight": torch.randn(512, 512, generator=g) / 512**0.5, "layers.3.bias": torch.zeros(512),
          "layers.6.weight": torch.randn(128, 512, generator=g) / 512**0.5, "layers.6.bias": torch.zeros(128)}
    path = tmp_path_factory.mktemp("heads") / "SEARLE_demo.pt"
    torch.save({"epoch": 0, "Phi": sd}, path)
    return str(path)


def test_every_composer_from_the_cli_matches_the_api(demo_db: str, image_dir: Path, searle_head: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ref = sorted(image_dir.glob("syn-*.png"))[0]
    common = ["--uri", demo_db, "--collection", "imgs", "--device", "cpu", "-k", "5", "--json"]
    heads = {kind: str(DATA_DIR / f"cir-demo-tiny.{kind}.safetensors") for kind in ("pic2word", "lincir")}
    heads["searle"] = searle_head
    cases = [
        (["--composer", "text", "--text", "a blue circle"], {"composer": "text"}, None, "a blue circle"),
        (["--composer", "image", "--image", str(ref)], {"composer": "image"}, str(ref), None),
        (["--image", str(ref), "--text", "make it blue", "--alpha", "0.6"], {"alpha": 0.6}, str(ref), "make it blue"),
        (["--image", str(ref), "--text", "make it blue", "--head", "demo-lincir"],
         {"composer": "lincir", "head": heads["lincir"]}, str(ref), "make it blue"),
        (["--image", str(ref), "--text", "make it blue", "--composer", "pic2word", "--head", heads["pic2word"]],
         {"composer": "pic2word", "head": heads["pic2word"]}, str(ref), "make it blue"),
        (["--image", str(ref), "--text", "make it blue", "--composer", "searle", "--head", searle_head],
         {"composer": "searle", "head": searle_head}, str(ref), "make it blue"),
        (["--image", str(ref), "--text", "make it blue", "--composer", "combined", "--head", "demo-pic2word",
          "--alpha", "0.7"],
         {"composer": "combined", "head": heads["pic2word"], "base": "pic2word", "alpha": 0.7}, str(ref),
         "make it blue"),
    ]
    got = {}
    for argv, _, _, _ in cases:
        code, out, err = run(capsys, "search", *common, *argv)
        assert code == 0, (argv, err)
        got[tuple(argv)] = [h["id"] for h in json.loads(out)]
    with CIRCollection.open(demo_db, "imgs", encoder=EncoderSpec(device="cpu")) as col:
        for argv, kw, image, text in cases:
            want = [h.id for h in col.search(image, text, k=5, **kw)]
            assert got[tuple(argv)] == want, argv
    # the composers really differ (the flags are not ignored)
    assert len({tuple(v) for v in got.values()}) >= 5


def test_query_families_from_the_cli_match_the_api(demo_db: str, image_dir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Several references (files and stored ids, weighted), negative texts, relevance feedback, fused alphas and
    near-duplicate removal: each flag gives the hits the Python call gives, and changes them."""
    r0, r1 = (str(p) for p in sorted(image_dir.glob("syn-*.png"))[:2])
    with CIRCollection.open(demo_db, "imgs", encoder=EncoderSpec(device="cpu")) as col:
        ids = sorted(col.iter_ids())[:3]
        text = "make it blue"
        cases = [
            (["--image", r0, "--image", r1, "--weights", "0.7,0.3"], {"images": [r0, r1], "weights": [0.7, 0.3]}),
            (["--image", r0, "--ref-id", ids[0]], {"images": [r0], "ref_ids": [ids[0]]}),
            (["--image", r0, "--negative", "a red shape", "--negative", "small"],
             {"image": r0, "negative": ["a red shape", "small"]}),
            (["--image", r0, "--like", ids[1], "--unlike", ids[2]], {"image": r0, "like": [ids[1]], "unlike": [ids[2]]}),
            (["--image", r0, "--alpha", "0.5,0.9"], {"image": r0, "alpha": [0.5, 0.9]}),
            (["--image", r0, "--dedupe", "0.9"], {"image": r0, "dedupe": 0.9}),
        ]
        want = {tuple(argv): [h.id for h in col.search(text=text, k=8, **kw)] for argv, kw in cases}
        plain = [h.id for h in col.search(r0, text, k=8)]
    common = ["--uri", demo_db, "--collection", "imgs", "--device", "cpu", "-k", "8", "--json", "--text", text]
    for argv, _ in cases:
        code, out, err = run(capsys, "search", *common, *argv)
        assert code == 0, (argv, err)
        assert [h["id"] for h in json.loads(out)] == want[tuple(argv)], argv
    assert sum(hits != plain for hits in want.values()) >= 4  # the flags are not ignored


def test_set_default_and_ingest_refusing_a_different_composer(demo_db: str, image_dir: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    db = str(tmp_path / "copy.db")
    shutil.copytree(demo_db, db) if Path(demo_db).is_dir() else shutil.copy(demo_db, db)
    common = ["--uri", db, "--collection", "imgs"]
    code, _, err = run(capsys, "ingest", str(image_dir), *common, "--composer", "lincir", "--head", "demo-lincir",
                       "--no-progress")
    assert code == 2 and "set-default" in err and "slerp" in err
    code, out, err = run(capsys, "set-default", *common, "--device", "cpu", "--head", "demo-lincir")
    assert code == 0, err
    assert "slerp (alpha=0.8) -> lincir" in out
    code, out, _ = run(capsys, "info", *common, "--json")
    composer = json.loads(out)["recipe"]["composer"]
    assert composer["name"] == "lincir" and composer["params"]["head"]["kind"] == "lincir"
    # the same composer again is not a change: ingest proceeds
    code, out, err = run(capsys, "ingest", str(image_dir), *common, "--composer", "lincir", "--no-progress", "-q")
    assert code == 0 and out == "", err


def test_creation_needs_explicit_weights(tmp_path: Path, image_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "new.db")
    code, _, err = run(capsys, "ingest", str(image_dir), "--uri", db)
    assert code == 2 and "--model" in err and "cir-demo-tiny" in err and "bundle:" in err
    code, _, err = run(capsys, "ingest", str(image_dir), "--uri", db, "--model", "cir-demo-tiny",
                       "--random-weights", "--pretrained", "cir-demo")
    assert code == 2 and "contradict" in err
    # an open_clip model without weights is refused; --random-weights makes it explicit and loud
    code, _, err = run(capsys, "ingest", str(image_dir), "--uri", db, "--model", "cir-demo-tiny",
                       "--random-weights", "--no-progress", "--device", "cpu")
    assert code == 0 and "RANDOM" in err
    code, out, _ = run(capsys, "info", "--uri", db)
    assert "RANDOM" in out
    assert not Path(tmp_path / "cir.db").exists()


def test_zero_hits_and_quiet(demo_db: str, image_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = sorted(image_dir.glob("syn-*.png"))[0]
    code, out, _ = run(capsys, "search", "--uri", demo_db, "--collection", "imgs", "--image", str(ref), "--text",
                       "make it blue", "--filter", 'metadata["path"] == {p}', "--param", "p=nothing.png", "-q")
    assert code == 0 and out.startswith("no hits") and "filter" in out
    # -v: our progress messages, each once; no third-party lines
    code, out, err = run(capsys, "ingest", str(image_dir), "--uri", demo_db, "--collection", "imgs", "-v",
                         "--no-progress")
    assert code == 0, err
    assert (out + err).count("already stored 24") == 1
    assert (out + err).count("corrupt.jpg") == 1
    assert all(line.startswith(("INFO cir_milvus", "WARNING cir_milvus")) for line in err.splitlines() if line)


def test_help_on_every_flag_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    from cir_milvus import __version__
    from cir_milvus.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = []
    for name, p in [("", parser), *sub.choices.items()]:  # type: ignore[union-attr]
        for action in p._actions:
            if action.option_strings and not action.help:
                missing.append(f"{name} {action.option_strings[0]}")
            if not action.option_strings and action.dest not in ("command",) and not action.help:
                missing.append(f"{name} {action.dest}")
    assert missing == []
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "cirr_val" in capsys.readouterr().out


def test_every_cli_command_releases_its_lite_file(tmp_path: Path, image_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Milvus Lite allows one process per file: after each command, another process must be able to open it."""
    import subprocess
    import sys

    db = str(tmp_path / "rel.db")
    probe = ("import sys\nfrom pymilvus import MilvusClient\nc = MilvusClient(sys.argv[1])\n"
             "print(sorted(c.list_collections()))\nc.close()\n")
    ref = str(sorted(image_dir.glob("syn-*.png"))[0])
    common = ["--uri", db, "--collection", "imgs"]
    commands = [
        ["ingest", str(image_dir), *common, "--model", "cir-demo-tiny", "--device", "cpu", "--no-progress"],
        ["search", *common, "--device", "cpu", "--image", ref, "--text", "make it blue", "-k", "3"],
        ["info", *common],
        ["set-default", *common, "--device", "cpu", "--composer", "slerp", "--alpha", "0.7"],
        ["search", *common, "--device", "cpu", "--ref-id", "no-such-id", "--text", "x"],  # fails: still released
        ["eval", "synthetic", "--root", str(tmp_path / "world"), "--split", "val", "--uri", db, "--collection",
         "syn", "--model", "fake", "--composer", "text"],
    ]
    for argv in commands:
        run(capsys, *argv)
        proc = subprocess.run([sys.executable, "-c", probe, db], capture_output=True, text=True, timeout=300,
                              check=False)
        assert proc.returncode == 0 and "imgs" in proc.stdout, (argv[0], proc.stderr[-2000:])


def test_decode_and_precision_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--decode is recorded in the recipe and fixed for the collection's life; --precision changes the arithmetic
    only; bundles refuse --precision."""
    import numpy as np

    from cir_milvus import CIRCollection
    from cir_milvus.encoders.torch import TorchEncoder

    photos = tmp_path / "photos"
    photos.mkdir()
    for it in SyntheticWorld(seed=3, instances=1).gallery()[:4]:
        it.render(512).save(photos / f"{it.id}.jpg", quality=90)  # >= 4x the demo size: DCT scaling applies
    db = str(tmp_path / "d.db")
    common = ["--uri", db, "--collection", "fast", "--no-progress", "-q"]
    code, _, err = run(capsys, "ingest", str(photos), *common, "--model", "cir-demo-tiny", "--decode", "draft",
                       "--device", "cpu")
    assert code == 0, err
    code, out, _ = run(capsys, "info", "--uri", db, "--collection", "fast", "--json")
    assert json.loads(out)["recipe"]["encoder"]["preprocess"]["decode"] == "draft"
    files = sorted(str(p) for p in photos.iterdir())
    col = CIRCollection.open(db, "fast", encoder=EncoderSpec(device="cpu"))
    try:
        ids = list(col.iter_ids())
        got = col.get_vectors(ids)
        assert col.encoder.preprocess_config.decode == "draft"  # reopening decodes queries like the gallery
    finally:
        col.close()
    stored = np.stack([got[i] for i in ids])
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    draft = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu", decode="draft").encode_images(files)
    exact = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu").encode_images(files)
    best_draft = (stored @ np.asarray(draft).T).max(axis=1)
    assert np.all(best_draft > 0.99999)  # every stored vector is a draft-decoded one...
    assert not np.allclose(np.asarray(draft), np.asarray(exact), atol=1e-6)  # ...which differs from exact decoding
    code, _, err = run(capsys, "ingest", str(photos), *common, "--decode", "exact")
    assert code == 2 and "--decode draft" in err and "new" in err
    code, _, err = run(capsys, "ingest", str(photos), "--uri", db, "--collection", "b", "--no-progress",
                       "--model", f"bundle:{tmp_path / 'nowhere'}", "--precision", "bf16")
    assert code == 2 and "--precision" in err and "export" in err
    # bf16 arithmetic: a new collection of the same images, vectors within bf16 rounding of fp32
    code, _, err = run(capsys, "ingest", str(photos), "--uri", db, "--collection", "bf16", "--no-progress", "-q",
                       "--model", "cir-demo-tiny", "--precision", "bf16", "--device", "cpu")
    assert code == 0, err
    col = CIRCollection.open(db, "bf16", encoder=EncoderSpec(device="cpu"))
    try:
        got16 = col.get_vectors(list(col.iter_ids()))
    finally:
        col.close()
    v16 = np.stack([got16[i] for i in ids])
    v16 /= np.linalg.norm(v16, axis=1, keepdims=True)
    ex = np.asarray(exact)
    cos = (v16 @ ex.T).max(axis=1)
    assert np.all(cos > 0.999) and not np.allclose(v16, ex[np.argmax(v16 @ ex.T, axis=1)], atol=1e-6)
