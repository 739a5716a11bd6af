"""The command line's cheap checks and its one-line errors, without Milvus and without a model.

Every command refuses an unknown composer or head kind, an alpha or k out of range, a missing file and a malformed
URI before any model loads or Milvus is touched: the model factory, the collection constructors and the Milvus
connection are replaced by functions that fail the test. A missing optional package is one ``error:`` line naming the
extra that installs it, with exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import cir_milvus
from cir_milvus.cli import main
from cir_milvus.cli.options import HeadSpec, parse_head
from cir_milvus.errors import BackendUnavailableError, ConfigError


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building an encoder, opening or creating a collection, or connecting to Milvus fails the test."""

    def forbidden(*a: Any, **k: Any) -> None:
        raise AssertionError("a model was built or Milvus was touched before the inputs were checked")

    monkeypatch.setattr("cir_milvus.encoders.base.create_encoder", forbidden)
    monkeypatch.setattr(cir_milvus.CIRCollection, "open", forbidden)
    monkeypatch.setattr(cir_milvus.CIRCollection, "create", forbidden)
    monkeypatch.setattr("cir_milvus.storage.client.connect", forbidden)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    ref = imgs / "ref.png"
    ref.write_bytes(b"not read by any check")
    db = tmp_path / "there.db"  # exists: the URI check passes, nothing ever opens it
    db.mkdir()
    return {"imgs": str(imgs), "ref": str(ref), "db": str(db), "tmp": str(tmp_path)}


# (argv, a fragment of the one error line)
CASES = [
    (["search", "--uri", "{db}", "--image", "{ref}", "--text", "t", "--composer", "slepr"], "not a composer"),
    (["search", "--uri", "{db}", "--image", "{ref}", "--text", "t", "--alpha", "1.5"], "between 0 and 1"),
    (["search", "--uri", "{db}", "--image", "{ref}", "--text", "t", "--alpha", "nan"], "between 0 and 1"),
    (["search", "--uri", "{db}", "--image", "{ref}", "--text", "t", "-k", "0"], "-k must be between 1"),
    (["search", "--uri", "{db}", "--image", "{ref}", "--text", "t", "-k", "20000"], "-k must be between 1"),
    (["search", "--uri", "{db}", "--image", "{tmp}/missing.png", "--text", "t"], "does not exist"),
    (["search", "--uri", "{db}", "--image", "{ref}", "--text", "t", "--head", "lincon=phi.pt"], "unknown head kind"),
    (["search", "--uri", "{tmp}/typo.db", "--image", "{ref}", "--text", "t"], "no Milvus Lite file"),
    (["search", "--uri", "{db}", "--image", "{ref}", "--text", "t", "--alpha", "0.6,1.5"], "between 0 and 1"),
    (["search", "--uri", "{db}", "--image", "{ref}", "--text", "t", "--dedupe", "1.5"], "--dedupe 1.5"),
    (["search", "--uri", "{db}", "--image", "{ref}", "--text", "t", "--weights", "1,2"], "several references"),
    (["search", "--uri", "{db}", "--image", "{ref}", "--ref-id", "x", "--text", "t", "--weights", "1,2,3"],
     "give one weight each"),
    (["search", "--uri", "{db}", "--image", "{ref}", "--image", "{tmp}/gone.png", "--text", "t"], "does not exist"),
    (["search", "--uri", "{db}", "--image", "{ref}", "--text", "t", "--negative", " "], "--negative needs a text"),
    (["search", "--uri", "ftp://host:19530", "--image", "{ref}", "--text", "t"], "not a Milvus address"),
    (["search", "--uri", "{tmp}/cir.txt", "--image", "{ref}", "--text", "t"], "ending in .db"),
    (["info", "--uri", "{tmp}/typo.db"], "no Milvus Lite file"),
    (["ingest", "{imgs}", "--uri", "{tmp}/new.db", "--model", "cir-demo-tiny", "--composer", "slepr"], "not a composer"),
    (["ingest", "{imgs}", "--uri", "{tmp}/new.db", "--model", "cir-demo-tiny", "--alpha", "-0.1"], "between 0 and 1"),
    (["ingest", "{tmp}/nope", "--uri", "{tmp}/new.db", "--model", "cir-demo-tiny"], "not a folder"),
    (["ingest", "--list", "{tmp}/l.csv", "--uri", "{tmp}/new.db", "--model", "cir-demo-tiny"], "does not exist"),
    (["ingest", "{imgs}", "--uri", "http://", "--model", "cir-demo-tiny"], "not a Milvus address"),
    (["ingest", "{imgs}", "--uri", "{tmp}/new.db", "--model", "cir-demo-tiny", "--batch-size", "0"], "--batch-size"),
    (["set-default", "--uri", "{db}", "--composer", "slepr"], "not a composer"),
    (["set-default", "--uri", "{db}", "--composer", "slerp", "--alpha", "7"], "between 0 and 1"),
    (["eval", "synthetic", "--root", "{tmp}/w", "--uri", "{tmp}/e.db", "--model", "fake", "--composer", "slepr"],
     "not a composer"),
    (["eval", "synthetic", "--root", "{tmp}/w", "--uri", "{tmp}/e.db", "--model", "fake", "--alpha", "2"],
     "between 0 and 1"),
    (["eval", "synthetic", "--root", "{tmp}/w", "--uri", "mysql://h", "--model", "fake"], "not a Milvus address"),
    (["serve", "--uri", "{tmp}/typo.db"], "no Milvus Lite file"),
    (["serve", "--uri", "{db}", "--head", "phi.pt"], "needs the head's kind"),
    (["serve", "--uri", "{db}", "--head", "lincon=phi.pt"], "unknown head kind"),
    (["serve", "--uri", "{db}", "--max-k", "0"], "--max-k"),
    (["export", "--model", "cir-demo-tiny", "--head", "searle={tmp}/missing.pt", "--out", "{tmp}/b"], "does not exist"),
    (["export", "--model", "cir-demo-tiny", "--head", "lincon=x.pt", "--out", "{tmp}/b"], "unknown head kind"),
    (["parity", "{tmp}/no-bundle"], "not a bundle folder"),
]


@pytest.mark.parametrize(("argv", "fragment"), CASES, ids=[f"{a[0]} {fr}" for a, fr in CASES])
def test_cheap_checks_refuse_before_any_model_or_milvus(
        argv: list[str], fragment: str, files: dict[str, str], no_model: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    if argv[0] == "serve":
        pytest.importorskip("fastapi")
        pytest.importorskip("uvicorn")
    code = main([a.format(**files) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0]


def test_a_mistyped_lite_path_creates_nothing(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Commands that only read refuse a Lite file that is not there, so nothing is left behind."""
    typo = Path(files["tmp"]) / "photoz.db"
    for argv in (["info"], ["search", "--image", files["ref"], "--text", "t"], ["set-default", "--composer", "text"]):
        assert main([*argv, "--uri", str(typo)]) == 2
        assert "no Milvus Lite file" in capsys.readouterr().err
    assert not typo.exists()


def test_head_has_one_syntax() -> None:
    assert parse_head("lincir=phi.pt") == HeadSpec("phi.pt", "lincir")
    assert parse_head("mine:searle=a/b.pt") == HeadSpec("a/b.pt", "searle", "mine")
    assert parse_head("demo-pic2word") == HeadSpec("demo-pic2word", "pic2word")
    assert parse_head("hf-hub:org/repo/lincir.pt") == HeadSpec("hf-hub:org/repo/lincir.pt")
    assert parse_head("lincir=hf-hub:org/repo/x.pt") == HeadSpec("hf-hub:org/repo/x.pt", "lincir")
    assert parse_head("phi.pt") == HeadSpec("phi.pt")
    with pytest.raises(ConfigError, match="unknown head kind"):
        parse_head("phi=x.pt")
    with pytest.raises(ConfigError, match="KIND"):
        parse_head("lincir=")


# -- missing extras: one line naming the extra --------------------------------------------------------------------


EXTRA_CASES = [
    ("onnx", ["export", "--model", "cir-demo-tiny", "--out", "{tmp}/b"], "cir_milvus[export]"),
    ("onnxruntime", ["parity", "{imgs}"], "cir_milvus[onnx]"),
    ("fastapi", ["serve", "--uri", "{db}"], "cir_milvus[serve]"),
    ("uvicorn", ["serve", "--uri", "{db}"], "cir_milvus[serve]"),
    ("torch", ["train", "lincir", "--out", "{tmp}/r"], "cir_milvus[torch]"),
    ("ray", ["ingest", "{imgs}", "--uri", "{tmp}/n.db", "--model", "cir-demo-tiny", "--ray-address", "local"],
     "cir_milvus[ray]"),
    ("matplotlib", ["eval", "synthetic", "--root", "{tmp}/w", "--uri", "{tmp}/e.db", "--model", "fake", "--sweep",
                    "0.5", "--plot", "{tmp}/p.png"], "cir_milvus[plot]"),
    ("open_clip", ["ingest", "{imgs}", "--uri", "{tmp}/n.db", "--model", "ViT-B-32", "--pretrained", "openai"],
     "cir_milvus[torch]"),
]


@pytest.mark.parametrize(("module", "argv", "extra"), EXTRA_CASES, ids=[c[0] for c in EXTRA_CASES])
def test_a_missing_extra_is_one_line_naming_it(module: str, argv: list[str], extra: str, files: dict[str, str],
                                               no_model: None, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ModuleNotFoundError
    code = main([a.format(**files) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert f"pip install '{extra}'" in lines[0]


def test_demo_without_torch_or_onnxruntime_names_both_extras(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    for module in ("torch", "open_clip", "onnxruntime"):
        monkeypatch.setitem(sys.modules, module, None)
    assert main(["demo", "--workdir", str(tmp_path / "demo")]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: ") and "cir_milvus[onnx]" in line and "cir_milvus[torch]" in line, line
    assert not (tmp_path / "demo" / "demo.db").exists()


def test_require_names_the_extra_of_the_module_actually_missing(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that needs onnx, required while onnx is missing: the export extra is named, not the module's own."""
    from cir_milvus._optional import missing_extra, require

    (tmp_path / "needs_onnx_probe.py").write_text("import onnx\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(BackendUnavailableError, match=r"onnx is required.*cir_milvus\[export\]"):
        require("needs_onnx_probe")
    try:
        import needs_onnx_probe  # noqa: F401
    except ImportError as e:
        assert missing_extra(e) == "onnx is not installed; pip install 'cir_milvus[export]'"
    else:
        raise AssertionError("the probe imported although onnx is blocked")
