"""Every CLI error path ends as ONE clear ``error: ...`` line on stderr with exit code 2: no traceback, no
third-party log lines, no credentials, and input mistakes are reported before any model is built."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("open_clip")

from cir_milvus.cli import main  # noqa: E402
from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

pytestmark = pytest.mark.integration

SECRET = "Pw-9f1e-secret"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("errs")
    imgs = root / "imgs"
    imgs.mkdir()
    for it in SyntheticWorld(seed=3, instances=1).gallery()[:4]:
        it.render().save(imgs / f"{it.id}.png")
    db = str(root / "e.db")
    assert main(["ingest", str(imgs), "--uri", db, "--collection", "c", "--model", "cir-demo-tiny", "--device",
                 "cpu", "--no-progress", "-q"]) == 0
    return {"db": db, "imgs": str(imgs), "ref": str(sorted(imgs.glob("*.png"))[0]), "root": str(root)}


def _one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, f"stderr is not one line:\n{err}"
    assert lines[0].startswith("error: ") and "Traceback" not in err
    assert SECRET not in err
    assert "object at 0x" not in err
    return lines[0]


# (argv after the subcommand's collection flags, a fragment the message must contain)
INPUT_ERRORS = [
    (["search", "--image", "{ref}", "--ref-id", "x", "--text", "t", "--weights", "1"], "give one weight each"),
    (["search", "--image", "{root}/missing.png", "--text", "t"], "does not exist"),
    (["search", "--image", "{ref}"], "--text"),
    (["search", "--text", "make it red"], "--ref-id"),
    (["search", "--composer", "text", "--image", "{ref}", "--text", "t"], "text alone"),
    (["search", "--composer", "image", "--image", "{ref}", "--text", "t"], "image alone"),
    (["search", "--image", "{ref}", "--text", "t", "--head", "demo-lincir", "--composer", "pic2word"], "lincir"),
    (["search", "--image", "{ref}", "--text", "t", "--composer", "lincir", "--head", "demo-lincir",
      "--alpha", "0.5"], "--alpha"),
    (["search", "--image", "{ref}", "--text", "t", "--composer", "slerp", "--head", "x.pt"], "takes no head"),
    (["search", "--image", "{ref}", "--text", "t", "-k", "0"], "-k"),
    (["search", "--image", "{ref}", "--text", "t", "--grid", "{root}/sheet.txt"], ".png"),
    (["search", "--image", "{ref}", "--text", "t", "--param", "nope"], "NAME=VALUE"),
    (["ingest", "{root}/nope"], "not a folder"),
    (["ingest", "{imgs}", "--list", "{root}/l.csv"], "exactly one"),
    (["ingest", "{imgs}", "--collection", "new"], "--model"),
    (["ingest", "{imgs}", "--collection", "new", "--model", "ViT-B-32"], "--pretrained"),
    (["ingest", "{imgs}", "--collection", "new", "--model", "bundle:/x", "--pretrained", "openai"], "own weights"),
    (["ingest", "{imgs}", "--collection", "c", "--random-weights"], "exists already"),
    (["ingest", "{imgs}", "--collection", "c", "--alpha", "0.3"], "set-default"),
    (["set-default", "--alpha", "0.3"], "--composer"),
]


@pytest.mark.parametrize(("argv", "fragment"), INPUT_ERRORS, ids=[" ".join(a[:3]) for a, _ in INPUT_ERRORS])
def test_input_errors_are_one_line_and_come_before_any_model(
        argv: list[str], fragment: str, setup: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_model(*a: object, **k: object) -> None:
        raise AssertionError("a model was built before the inputs were checked")

    monkeypatch.setattr("cir_milvus.encoders.base.create_encoder", no_model)  # EncoderSpec.build() looks it up here
    args = [a.format(**setup) for a in argv]
    collection = [] if "--collection" in args else ["--collection", "c"]
    code = main([*args, "--uri", setup["db"], *collection, "--token", f"root:{SECRET}"])
    line = _one_line_error(code, capsys.readouterr().err)
    assert fragment in line


def test_storage_and_model_errors_are_one_line(setup: dict[str, str], capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    db = setup["db"]
    cases = [
        (["info", "--uri", db, "--collection", "missing"], "no collection 'missing'"),
        (["search", "--uri", db, "--collection", "missing", "--image", setup["ref"], "--text", "t"], "existing: c"),
        (["search", "--uri", db, "--collection", "c", "--ref-id", "not-stored", "--text", "t"], "not-stored"),
        (["info", "--uri", str(tmp_path / "x.txt")], ".db"),
        (["ingest", setup["imgs"], "--uri", str(tmp_path / "n.db"), "--model", "no-such-model", "--pretrained", "x"],
         "unknown open_clip model"),
        (["ingest", setup["imgs"], "--uri", str(tmp_path / "n.db"), "--model", "cir-demo-tiny", "--pretrained",
          str(tmp_path / "missing.safetensors")], "not found"),
        (["eval", "cirr", "--root", str(tmp_path / "no-cirr"), "--uri", db, "--model", "fake"], "cirr"),
        (["eval", "synthetic", "--root", str(tmp_path / "w"), "--uri", str(tmp_path / "ev.db")], "--model"),
        (["export", "--model", "ViT-B-32", "--out", str(tmp_path / "b")], "--random-weights"),
        # a server URI with a password: refused connection, the password never printed
        (["info", "--uri", f"http://root:{SECRET}@127.0.0.1:1", "--timeout", "2"], "http://***@127.0.0.1:1"),
    ]
    import cir_milvus_export

    if Path(cir_milvus_export.__file__).parent != Path(__file__).resolve().parents[2] / "export":
        cases = [c for c in cases if c[0][0] != "export"]  # a worktree whose export/ is not the installed one
    for argv, fragment in cases:
        line = _one_line_error(main(argv), capsys.readouterr().err)
        assert fragment in line, (argv, line)


def test_offline_weights_fail_fast_naming_the_variable(setup: dict[str, str], capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pretrained='openai' without a hub: HF_HUB_OFFLINE, or an unreachable endpoint, fail in seconds."""
    import huggingface_hub.constants

    from cir_milvus import ModelNotFoundError, create_encoder

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    code = main(["ingest", setup["imgs"], "--uri", str(tmp_path / "o.db"), "--model", "ViT-B-32", "--pretrained",
                 "openai", "--device", "cpu"])
    line = _one_line_error(code, capsys.readouterr().err)
    assert time.perf_counter() - t0 < 10
    assert "HF_HUB_OFFLINE" in line and "--pretrained /path/to/file" in line

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: the hub is unreachable
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="cannot be reached") as exc:
        create_encoder("ViT-B-32", "openai", device="cpu")
    assert time.perf_counter() - t0 < 10
    assert "local file" in str(exc.value)


def test_locked_lite_file_is_one_line_without_third_party_tracebacks(setup: dict[str, str], tmp_path: Path) -> None:
    """A second process on a Lite file another holds: the milvus_lite traceback is silenced, our error remains."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom cir_milvus.storage.client import connect\n"
         f"c = connect({setup['db']!r})\nprint('held', flush=True)\ntime.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        env = {**os.environ, "MILVUS_TOKEN": f"root:{SECRET}"}
        proc = subprocess.run([sys.executable, "-m", "cir_milvus.cli", "info", "--uri", setup["db"], "--collection",
                               "c"], capture_output=True, text=True, timeout=120, env=env)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    line = _one_line_error(proc.returncode, proc.stderr)
    assert "another process" in line


def test_a_missing_collection_is_fixed_with_cli_commands(setup: dict[str, str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The library suggests Python calls; the command line suggests commands (issue 24 item 12)."""
    db = setup["db"]
    for argv in (["info"], ["search", "--image", setup["ref"], "--text", "t"], ["set-default", "--composer", "text"]):
        line = _one_line_error(main([*argv, "--uri", db, "--collection", "missing"]), capsys.readouterr().err)
        assert "existing: c" in line and "cir-milvus ingest DIR" in line and "--collection missing" in line
        assert "VectorStore" not in line and "CIRCollection" not in line, line
