"""Training recipes on the tiny random-weight demo architecture: the loss falls on a fixed batch, checkpoints resume
where they stopped, and the outputs load through the runtime (``load_head`` / ``TorchEncoder``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from cir_milvus.errors import ConfigError, DatasetError, RecipeMismatchError  # noqa: E402
from cir_milvus.train.config import TrainConfig, load_config  # noqa: E402
from cir_milvus.train.data import epoch_indices, read_captions, read_images  # noqa: E402
from cir_milvus.train.lincir import LinCIRConfig, LinCIRRecipe, mask_keywords  # noqa: E402
from cir_milvus.train.loop import run  # noqa: E402

TINY = {"batch_size": 8, "progress": False, "repeat_batch": True, "seed": 0, "val": "none"}


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Random demo-architecture weights saved as a checkpoint file (so the base recipe has a sha256)."""
    from safetensors.torch import save_file

    from cir_milvus.encoders.torch import TorchEncoder

    torch.manual_seed(0)
    enc = TorchEncoder("cir-demo-tiny", None, device="cpu")
    path = tmp_path_factory.mktemp("base") / "base.safetensors"
    save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(path))
    return str(path)


def _falls(losses: list[float]) -> None:
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < first, f"loss did not fall: first {first:.4f}, last {last:.4f} ({losses})"


# -- pieces ---------------------------------------------------------------------------------------------------------


def test_mask_keywords_replaces_runs_and_falls_back() -> None:
    rng = np.random.default_rng(0)
    assert mask_keywords("a small red star on a black background", rng) == "$ on $"
    assert mask_keywords("a photo of a small red star", rng) == "$ of $"
    assert mask_keywords("small red star, black background", rng) == "$ , $"
    out = mask_keywords("it is on the", rng)  # no keyword: one random word
    assert out.split().count("$") == 1 and len(out.split()) == 4
    assert mask_keywords("!!!", rng) == "a photo of $"
    assert mask_keywords("a red star on grass", rng, keywords=frozenset({"star"})) == "a red $ on grass"


def test_config_defaults_file_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"noise-scale": 0.5, "steps": 7, "pretrained": None}))
    cfg = load_config(LinCIRConfig, f, {"steps": "9"})
    assert (cfg.noise_scale, cfg.steps, cfg.lr, cfg.pretrained, cfg.batch_size) == (0.5, 9, 1e-4, None, 256)
    with pytest.raises(ConfigError, match="noise_scal"):
        load_config(LinCIRConfig, None, {"noise_scal": 1})
    with pytest.raises(ConfigError, match="cannot be null"):
        load_config(LinCIRConfig, None, {"lr": None})
    with pytest.raises(ConfigError, match="expects int"):
        load_config(TrainConfig, None, {"steps": "many"})
    # a train_log.json / shipped sidecar carries its config under "config"
    (tmp_path / "log.json").write_text(json.dumps({"recipe": "lincir", "config": cfg.to_dict(), "losses": []}))
    assert load_config(LinCIRConfig, tmp_path / "log.json") == cfg


def test_readers(tmp_path: Path, make_image) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "c.txt").write_text("a red star\n\n a blue circle \n")
    (tmp_path / "c.jsonl").write_text('{"caption": "x"}\n{"text": "y"}\n')
    (tmp_path / "c.csv").write_text("id,caption\n1,a\n2,b\n3,c\n")
    assert read_captions(tmp_path / "c.txt").texts == ["a red star", "a blue circle"]
    assert read_captions(tmp_path / "c.jsonl").texts == ["x", "y"]
    src = read_captions(tmp_path / "c.csv")
    assert sorted(src.batch(3, seed=0, step=0)) == ["a", "b", "c"]  # one epoch = a permutation
    assert len(read_captions("synthetic").batch(5, 0, 3)) == 5
    with pytest.raises(DatasetError, match="columns"):
        (tmp_path / "bad.jsonl").write_text('{"nope": 1}\n')
        read_captions(tmp_path / "bad.jsonl")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        make_image(seed=i).save(folder / f"{i}.png")
    assert len(read_images(folder)) == 3 and not read_images(folder).has_captions
    (tmp_path / "pairs.csv").write_text("path,caption\nimgs/0.png,zero\nimgs/1.png,one\n")
    pairs = read_images(tmp_path / "pairs.csv")
    images, caps = pairs.batch(2, seed=0, step=0)
    assert pairs.has_captions and sorted(caps or []) == ["one", "zero"] and all(Path(p).is_file() for p in images)
    imgs, caps = read_images("synthetic").batch(2, seed=0, step=0)
    assert len(imgs) == 2 and len(caps or []) == 2
    from cir_milvus.synthetic import BACKGROUNDS, SIZES

    _, full = read_images("synthetic-full").batch(32, seed=0, step=0)
    _, mixed = read_images("synthetic").batch(32, seed=0, step=0)

    def names_all(c: str) -> bool:
        return any(s in c for s in SIZES) and any(b in c for b in BACKGROUNDS)

    assert all(names_all(c) for c in full or []) and not all(names_all(c) for c in mixed or [])
    assert all(names_all(c) for c in read_captions("synthetic-full").batch(16, 0, 0))


def test_epoch_indices_cover_each_epoch() -> None:
    seen = np.concatenate([epoch_indices(10, 5, seed=1, step=s) for s in range(2)])
    assert sorted(seen.tolist()) == list(range(10))
    assert not np.array_equal(epoch_indices(10, 5, 1, 0), epoch_indices(10, 5, 1, 2))  # reshuffled next epoch


def test_nt_xent_matches_searle_formula() -> None:
    from cir_milvus.train.rtd import nt_xent

    g = torch.Generator().manual_seed(0)
    v1, v2, tau = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g), 0.07
    # SEARLE utils.contrastive_loss, written out
    a, b = torch.nn.functional.normalize(v1, dim=1), torch.nn.functional.normalize(v2, dim=1)
    num = torch.exp(torch.diag(a @ b.T) / tau).repeat(2)
    z = torch.cat([a, b])
    pp = torch.exp(z @ z.T / tau)
    den = (pp - pp * torch.eye(12)).sum(0)
    ref = -torch.log(num / den).mean()
    assert torch.allclose(nt_xent(v1, v2, tau), ref, rtol=1e-4)


def test_multi_positive_infonce() -> None:
    from cir_milvus.train.pic2word import clip_infonce

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    torch.testing.assert_close(clip_infonce(a, b, 10.0, torch.eye(4)), clip_infonce(a, b, 10.0))
    pos = torch.eye(4)
    pos[0, 1] = 1  # caption 1 also describes image 0
    logits = 10.0 * torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T
    rows, cols = logits.log_softmax(1), logits.log_softmax(0)
    want = -0.5 * ((rows[0, 0] + rows[0, 1]) / 2 + rows[1, 1] + rows[2, 2] + rows[3, 3]) / 4 \
        - 0.5 * (cols[0, 0] + (cols[0, 1] + cols[1, 1]) / 2 + cols[2, 2] + cols[3, 3]) / 4
    torch.testing.assert_close(clip_infonce(a, b, 10.0, pos), want)
    images, caps, compat = read_images("synthetic").labelled_batch(16, seed=0, step=0)
    assert compat.shape == (16, 16) and np.all(np.diag(compat) == 1) and compat.sum() > 16
    assert read_images("synthetic").batch(16, seed=0, step=0)[1] == caps  # same stream as before


def test_synthetic_triplets_name_the_change() -> None:
    from cir_milvus.train.rtd import synthetic_text_triplets

    for t_r, t_c, t_t in synthetic_text_triplets(50, np.random.default_rng(0)):
        assert t_r != t_t and t_c


# -- recipes --------------------------------------------------------------------------------------------------------


def test_lincir_trains_resumes_ships(tmp_path: Path, base_weights: str) -> None:
    from cir_milvus.heads import load_head

    ship = tmp_path / "data" / "cir-demo-tiny.lincir.safetensors"
    cfg = load_config(LinCIRConfig, None, {**TINY, "pretrained": base_weights, "steps": 12, "lr": 1e-3,
                                           "ship": str(ship)})
    res = run(LinCIRRecipe(cfg), cfg, tmp_path / "run")
    _falls(res.losses)
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and res.samples_per_s > 0
    cfg2 = load_config(LinCIRConfig, None, {**cfg.to_dict(), "steps": 14})
    res2 = run(LinCIRRecipe(cfg2), cfg2, tmp_path / "run")
    assert (res2.start_step, res2.step, len(res2.losses)) == (12, 14, 14)
    folder, shipped = load_head("lincir", tmp_path / "run" / "head"), load_head("lincir", ship)
    x = torch.randn(3, 128)
    assert folder.kind == shipped.kind == "lincir" and shipped.input_dim == 128
    assert torch.allclose(folder(x), shipped(x), atol=1e-6)
    side = json.loads(ship.with_suffix(".json").read_text())
    assert side["steps"] == 14 and side["config"]["lr"] == 1e-3 and side["seconds"] > 0 and side["device"] == "cpu"
    assert load_config(LinCIRConfig, ship.with_suffix(".json")).steps == 14  # the sidecar reproduces the run


def test_pic2word_trains_resumes_and_loads(tmp_path: Path) -> None:
    from cir_milvus.heads import load_head
    from cir_milvus.train.pic2word import Pic2WordConfig, Pic2WordRecipe

    cfg = load_config(Pic2WordConfig, None, {**TINY, "pretrained": None, "steps": 10, "lr": 1e-3, "warmup": 0})
    res = run(Pic2WordRecipe(cfg), cfg, tmp_path)
    _falls(res.losses)
    cfg2 = load_config(Pic2WordConfig, None, {**cfg.to_dict(), "steps": 11})
    res2 = run(Pic2WordRecipe(cfg2), cfg2, tmp_path)
    assert (res2.start_step, res2.step) == (10, 11)
    head = load_head("pic2word", tmp_path / "head")
    assert head.placeholder == "*" and head.output_dim == 128


def test_tat_merges_into_a_loadable_checkpoint_that_needs_reingestion(tmp_path: Path, base_weights: str) -> None:
    pytest.importorskip("peft")
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.storage.recipe import Recipe, check_compatible
    from cir_milvus.train.tat import TATConfig, TATRecipe

    cfg = load_config(TATConfig, None, {**TINY, "pretrained": base_weights, "steps": 8, "lr": 2e-3,
                                        "save_dtype": "fp32"})
    res = run(TATRecipe(cfg), cfg, tmp_path / "run", export=False)
    _falls(res.losses)
    cfg2 = load_config(TATConfig, None, {**cfg.to_dict(), "steps": 9})
    recipe = TATRecipe(cfg2)
    res2 = run(recipe, cfg2, tmp_path / "run")
    assert (res2.start_step, res2.step) == (8, 9)
    pixels = recipe.batch(0)["pixels"]
    with torch.no_grad():
        tuned = recipe.model.encode_image(pixels).numpy()  # the merged in-memory model
    enc = TorchEncoder("cir-demo-tiny", res2.outputs["weights"], device="cpu")
    base = TorchEncoder("cir-demo-tiny", base_weights, device="cpu")
    pix = pixels.numpy()
    np.testing.assert_allclose(enc.encode_pixels(pix, normalize=False), tuned, atol=1e-4)
    assert not np.allclose(base.encode_pixels(pix), enc.encode_pixels(pix), atol=1e-4)  # image tower changed
    np.testing.assert_allclose(base.encode_texts(["a red star"]), enc.encode_texts(["a red star"]), atol=1e-6)
    note = json.loads(Path(res2.outputs["note"]).read_text())
    assert note["reingest_required"] and note["base_weights_sha256"] == base.recipe["weights_sha256"]
    with pytest.raises(RecipeMismatchError, match="weights_sha256"):
        check_compatible("gallery", Recipe(encoder=base.recipe), enc.recipe)


def test_grad_checkpointing_recomputes_the_same_gradients(base_weights: str) -> None:
    pytest.importorskip("peft")
    from cir_milvus.train.tat import TATConfig, TATRecipe

    grads = []
    for ckpt in (False, True):
        cfg = load_config(TATConfig, None, {**TINY, "pretrained": base_weights, "steps": 1, "lora_dropout": 0.0,
                                            "grad_checkpointing": ckpt})
        recipe = TATRecipe(cfg)
        assert recipe.model.visual.transformer.grad_checkpointing is ckpt
        torch.manual_seed(0)
        for _, p in recipe.trainable:  # LoRA B starts at zero: give it values so every adapter gets gradients
            torch.nn.init.normal_(p, std=0.02)
        recipe.train(True)
        recipe.loss(recipe.batch(0)).backward()
        grads.append(torch.cat([p.grad.flatten() for _, p in recipe.trainable]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_rtd_changes_only_the_text_tower(tmp_path: Path, base_weights: str) -> None:
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.storage.recipe import Recipe, check_compatible
    from cir_milvus.train.rtd import RTDConfig, RTDRecipe

    head_cfg = load_config(LinCIRConfig, None, {**TINY, "pretrained": base_weights, "steps": 1})
    run(LinCIRRecipe(head_cfg), head_cfg, tmp_path / "head")
    cfg = load_config(RTDConfig, None, {**TINY, "pretrained": base_weights, "steps": 8, "lr": 1e-4,
                                        "head": str(tmp_path / "head" / "head"), "save_dtype": "fp32"})
    res = run(RTDRecipe(cfg), cfg, tmp_path / "rtd")
    _falls(res.losses)
    cfg2 = load_config(RTDConfig, None, {**cfg.to_dict(), "steps": 10})
    res2 = run(RTDRecipe(cfg2), cfg2, tmp_path / "rtd")
    assert (res2.start_step, res2.step) == (8, 10)
    enc = TorchEncoder("cir-demo-tiny", base_weights, device="cpu", text_weights=res2.outputs["weights"])
    base = TorchEncoder("cir-demo-tiny", base_weights, device="cpu")
    pix = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(base.encode_pixels(pix), enc.encode_pixels(pix))  # gallery still valid
    assert not np.allclose(base.encode_texts(["a red star"]), enc.encode_texts(["a red star"]), atol=1e-5)
    with torch.no_grad():  # the written tower is the trained one
        prompt = torch.tensor(base.tokenize(["a photo of $ that is red"]))
        tok = torch.ones(1, 128)
        from cir_milvus.encoders.torch import inject_pseudo_tokens

        trained = RTDRecipe(cfg2)
        trained.load_state_dict(torch.load(tmp_path / "rtd" / "checkpoint.pt", weights_only=True)["trainable"])
        want = inject_pseudo_tokens(trained.text, prompt, tok, 259)
        got = inject_pseudo_tokens(enc.model, prompt, tok, 259)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)
    note = json.loads(Path(res2.outputs["note"]).read_text())
    assert note["reingest_required"] is False and note["head"]["kind"] == "lincir"
    # the recipe keeps the base weights' image-side fields, so the RTD encoder serves the base gallery
    check_compatible("gallery", Recipe(encoder=base.recipe), enc.recipe)
    assert enc.recipe["text_weights_sha256"] == note["text_weights_sha256"]


def test_cli_runs_a_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cir_milvus.cli import main

    assert main(["train", "lincir", "--out", str(tmp_path), "--pretrained", "none", "--steps", "2", "--batch-size",
                 "4", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2 and Path(summary["outputs"]["head"]).is_dir()
    assert json.loads((tmp_path / "config.json").read_text())["batch_size"] == 4
    # a user error is one line and exit code 2, as in every command
    assert main(["train", "rtd", "--out", str(tmp_path / "r"), "--pretrained", "none", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "needs a pretrained projection head" in err and "\n" not in err
    from cir_milvus.train.cli import main as train_main  # python -m cir_milvus.train: the same parser and exit code

    assert train_main(["rtd", "--out", str(tmp_path / "r"), "--pretrained", "none", "--steps", "1"]) == 2
    assert "needs a pretrained projection head" in capsys.readouterr().err


def test_training_reads_lists_and_folders_as_ingestion_does(tmp_path: Path, make_image) -> None:  # type: ignore[no-untyped-def]
    """One list-file reader and one folder walk: what ingestion's ListSource / FolderSource take, training takes."""
    from cir_milvus.ingest import FolderSource, ListSource

    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    make_image(seed=0).save(folder / "a.png")
    make_image(seed=1).save(folder / "sub" / "b.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").symlink_to(folder / "missing.png")
    assert read_images(folder).paths == FolderSource(folder).files() == [folder / "a.png", folder / "sub" / "b.jpg"]
    # a TSV with ingestion's image_path column (a column the old training reader did not know)
    (tmp_path / "pairs.tsv").write_text("image_path\tcaption\timgs/a.png\tzero\n".replace("\timgs", "\nimgs"))
    pairs = read_images(tmp_path / "pairs.tsv")
    assert pairs.paths == [Path(r.source) for r in ListSource(tmp_path / "pairs.tsv")] == [tmp_path / "imgs/a.png"]
    assert pairs.captions == ["zero"]
    (tmp_path / "c.tsv").write_text("caption\tn\n1984\t1\nin red\t2\n")
    assert read_captions(tmp_path / "c.tsv").texts == ["1984", "in red"]  # text, as written
    with pytest.raises(ConfigError, match=r"\.csv, \.tsv, \.jsonl"):
        (tmp_path / "c.json").write_text('["a"]')
        read_captions(tmp_path / "c.json")
    with pytest.raises(DatasetError, match="JSON object"):
        (tmp_path / "s.jsonl").write_text('"a bare string"\n')
        read_captions(tmp_path / "s.jsonl")


def test_recipes_are_one_registry() -> None:
    from cir_milvus.train.pic2word import Pic2WordConfig, Pic2WordRecipe
    from cir_milvus.train.recipes import get_recipe, list_recipes

    assert {"lincir", "pic2word", "rtd", "tat"} <= set(list_recipes())
    assert get_recipe("pic2word") == (Pic2WordConfig, Pic2WordRecipe)
    with pytest.raises(ConfigError, match="available: .*lincir"):
        get_recipe("lincr")


def test_a_registered_recipe_trains_by_name_and_on_the_command_line(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A recipe from outside the package: registered once, it trains through train() and gets its CLI command."""
    from dataclasses import dataclass

    from cir_milvus.train.base import RECIPES, Recipe, TrainResult
    from cir_milvus.train.cli import main
    from cir_milvus.train.recipes import train

    @dataclass
    class ToyConfig(TrainConfig):
        recipe = "toy"
        target: float = 3.0

    class Toy(Recipe[ToyConfig]):
        """Toy: fit one number."""

        config_class = ToyConfig

        def __init__(self, cfg: ToyConfig) -> None:
            from cir_milvus.train.device import select_precision

            self.cfg, self.samples_per_step = cfg, 1
            self.precision = select_precision(cfg.device, cfg.precision)
            self.w = torch.nn.Parameter(torch.zeros(()))

        def param_groups(self) -> list[dict[str, object]]:
            return [{"params": [self.w]}]

        def batch(self, step: int) -> float:
            return self.cfg.target

        def loss(self, batch: float) -> torch.Tensor:
            return (self.w - batch) ** 2

        def train(self, mode: bool = True) -> Toy:
            return self

        def state_dict(self) -> dict[str, torch.Tensor]:
            return {"w": self.w.detach()}

        def load_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
            self.w.data.copy_(sd["w"])

        def export(self, out: Path, result: TrainResult) -> dict[str, str]:
            (out / "w.txt").write_text(f"{float(self.w.detach()):.4f}")
            return {"w": str(out / "w.txt")}

    RECIPES.add("toy", Toy)
    try:
        res = train("toy", tmp_path / "py", steps=60, lr=0.2, progress=False, pretrained=None)
        assert res.step == 60 and abs(float(Path(res.outputs["w"]).read_text()) - 3.0) < 0.5  # from 0
        assert main(["toy", "--out", str(tmp_path / "cli"), "--steps", "5", "--target", "1", "--no-progress"]) == 0
        assert json.loads(capsys.readouterr().out)["step"] == 5
        with pytest.raises(ConfigError, match="must agree"):
            RECIPES.add("toy2", type("Toy2", (Toy,), {}))
        assert "toy2" not in RECIPES
        # another recipe's checkpoint in the folder: refused, with the fix in Python's and the command line's words
        from cir_milvus.errors import CheckpointError
        from cir_milvus.train.config import load_config as load

        other = type("OtherConfig", (ToyConfig,), {"recipe": "other"})
        cfg = load(other, None, {"steps": 2, "progress": False, "pretrained": None})
        with pytest.raises(CheckpointError, match=r"'toy' checkpoint.*resume=False.*--no-resume"):
            run(Toy(cfg), cfg, tmp_path / "py")
        assert run(Toy(cfg), cfg, tmp_path / "py", resume=False).step == 2
    finally:
        RECIPES.unregister("toy")


def test_trained_outputs_export_to_onnx_with_parity(tmp_path: Path, base_weights: str) -> None:
    """All four recipes' outputs in one ONNX bundle: the TAT backbone with the RTD text tower (tuned on top of it)
    and the LinCIR and Pic2Word heads trained on it; every graph matches torch."""
    pytest.importorskip("peft")
    pytest.importorskip("onnxruntime")
    from cir_milvus_export.onnx_export import export_bundle

    from cir_milvus.encoders.ort import OrtEncoder
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.heads import load_head
    from cir_milvus.train.pic2word import Pic2WordConfig, Pic2WordRecipe
    from cir_milvus.train.rtd import RTDConfig, RTDRecipe
    from cir_milvus.train.tat import TATConfig, TATRecipe

    tat_cfg = load_config(TATConfig, None, {**TINY, "pretrained": base_weights, "steps": 2, "lr": 2e-3,
                                            "save_dtype": "fp32"})
    tat = run(TATRecipe(tat_cfg), tat_cfg, tmp_path / "tat")
    backbone = tat.outputs["weights"]
    head_cfg = load_config(LinCIRConfig, None, {**TINY, "pretrained": backbone, "steps": 2})
    run(LinCIRRecipe(head_cfg), head_cfg, tmp_path / "lincir")
    p2w_cfg = load_config(Pic2WordConfig, None, {**TINY, "pretrained": backbone, "steps": 2})
    run(Pic2WordRecipe(p2w_cfg), p2w_cfg, tmp_path / "p2w")
    rtd_cfg = load_config(RTDConfig, None, {**TINY, "pretrained": backbone, "steps": 2, "lr": 1e-3,
                                            "head": str(tmp_path / "lincir" / "head"), "save_dtype": "fp32"})
    rtd = run(RTDRecipe(rtd_cfg), rtd_cfg, tmp_path / "rtd")
    enc = TorchEncoder("cir-demo-tiny", backbone, device="cpu", text_weights=rtd.outputs["weights"])
    heads = {"lincir": load_head("lincir", tmp_path / "lincir" / "head"),
             "pic2word": load_head("pic2word", tmp_path / "p2w" / "head")}
    bundle = export_bundle(enc, tmp_path / "bundle", heads=heads, fused=False)
    parity = json.loads((bundle / "parity.json").read_text())
    assert parity["fp32"]["min_cosine"] > 0.9999
    ort = OrtEncoder(bundle)
    assert ort.recipe["weights_sha256"] == enc.recipe["weights_sha256"]
    assert ort.recipe["text_weights_sha256"] == enc.recipe["text_weights_sha256"]
    texts = ["a red star", "make it green"]
    np.testing.assert_allclose(ort.encode_texts(texts), enc.encode_texts(texts), atol=1e-4)  # the RTD tower
    base_text = TorchEncoder("cir-demo-tiny", backbone, device="cpu").encode_texts(texts)
    assert not np.allclose(ort.encode_texts(texts), base_text, atol=1e-4)
    for name, head in heads.items():
        x = np.ones((1, 128), np.float32)
        np.testing.assert_allclose(head(x), ort.heads[name](x), atol=1e-4)


def test_paired_r1_counts_discordant_queries() -> None:
    from types import SimpleNamespace

    from cir_milvus.train.report import paired_r1

    qs = [SimpleNamespace(query_id=str(i), reference_id=f"r{i}", target_ids=(f"t{i}",)) for i in range(6)]
    hit = {str(i): [f"r{i}", f"t{i}", "x"] for i in range(6)}  # the reference is skipped
    miss = {str(i): ["x", f"t{i}"] for i in range(6)}
    base = SimpleNamespace(rankings={**hit, "4": miss["4"], "5": miss["5"]})  # 4 hits
    new = SimpleNamespace(rankings={**hit, "0": miss["0"]})  # 5 hits: gains 4 and 5, loses 0
    d = paired_r1(qs, base, new)
    assert (d["gained"], d["lost"], d["n"]) == (2, 1, 6)
    assert d["delta_R@1"] == round(100 / 6, 2) and d["se"] == round(100 * 3**0.5 / 6, 2)
    assert d["p_mcnemar"] == 1.0  # 2 vs 1 discordant: no evidence
    assert paired_r1(qs, base, base)["p_mcnemar"] == 1.0


def test_demo_clip_stage3_text_term_uses_full_captions(tmp_path: Path) -> None:
    from cir_milvus.train import demo_clip

    open_clip = pytest.importorskip("open_clip")
    _, preprocess, tokenizer = demo_clip.build_model(0)
    pixels, tokens, full, compat = next(demo_clip._batches(6, 0, 0.8, preprocess, tokenizer, 0, full_captions=True))
    assert pixels.shape == (6, 3, 64, 64) and compat.shape == (6, 6) and not torch.equal(tokens, full)
    texts = [open_clip.decode(t).replace("<start_of_text>", "").split("<end_of_text>")[0].strip() for t in full]
    assert all(len(t.split()) >= 4 for t in texts), texts  # a full caption names all four attributes
    out = tmp_path / "s3.safetensors"
    summary = demo_clip.train(out, steps=2, batch_size=8, init=None, multi_positive=True, p_shape=0.8,
                              text_weight=1.0, ramp_times_cosine=True, warmup=100)
    assert out.is_file() and summary["text_weight"] == 1.0 and np.isfinite(summary["final_loss"])
    with pytest.raises(ValueError, match="multi_positive"):
        demo_clip.train(out, steps=1, batch_size=4, text_weight=1.0)
