"""The training recipes against the official scripts (Pic2Word ``src/trainer.py``/``main.py``, LinCIR
``train_phi.py``/``loader.py``, RTD ``train_text_encoder.py``/``loader.py``/``utils.py``, TAT from the paper).

Each loss is recomputed here by an independent implementation written from the official code's semantics (never
the library's helpers), on the same inputs as the recipe's batch, and one optimisation step of the recipe is compared
with one step of ``torch.optim.AdamW`` built as the official script builds it (its parameter groups, betas, eps,
schedule). Tiny random-weight demo architecture, a few steps.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
F = torch.nn.functional

from cir_milvus.train.config import TrainConfig, load_config  # noqa: E402
from cir_milvus.train.lincir import (  # noqa: E402
    LinCIRConfig,
    LinCIRRecipe,
    clean_caption,
    keyword_spans,
    mask_keywords_spacy,
)
from cir_milvus.train.loop import run  # noqa: E402
from cir_milvus.train.optim import decay_groups, lr_at  # noqa: E402

TINY = {"batch_size": 8, "progress": False, "seed": 0, "val": "none", "pretrained": None}


# -- independent references (official semantics) ----------------------------------------------------------------------


def ref_text_features(model: Any, ids: Any, tok: Any, slot: int) -> Any:
    """LinCIR/RTD ``encode_with_pseudo_tokens_HF``: token embeddings with every ``slot`` row := tok, + positions,
    causal transformer, final LayerNorm, the EOT row (argmax id), the text projection."""
    x = model.token_embedding(ids)  # [B, L, W]
    x = torch.where((ids == slot).unsqueeze(-1), tok.unsqueeze(1).to(x.dtype), x)
    x = x + model.positional_embedding
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
    return x[torch.arange(len(ids)), ids.argmax(dim=-1)] @ model.text_projection


def ref_pic2word_text(model: Any, tokenizer: Any, tok: Any) -> Any:
    """Pic2Word ``encode_text_img`` (training path): tokenize "a photo of", INSERT the token at the EOT position (EOT
    and padding shift right by one), run the text tower, take the shifted EOT row."""
    ids = tokenizer(["a photo of"])[0]  # [L]
    eot = int(ids.argmax())
    emb = model.token_embedding(ids)  # [L, W]
    rows = []
    for t in tok:
        rows.append(torch.cat([emb[:eot], t[None].to(emb.dtype), emb[eot:-1]]))  # [L, W]
    x = torch.stack(rows) + model.positional_embedding
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
    return x[:, eot + 1] @ model.text_projection


def ref_clip_loss(image: Any, text: Any, scale: Any) -> Any:
    """Pic2Word ``get_loss_img2text`` (one device): normalise, logits both ways, (CE_img + CE_txt) / 2."""
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    gt = torch.arange(len(image))
    return (F.cross_entropy(scale * image @ text.t(), gt) + F.cross_entropy(scale * text @ image.t(), gt)) / 2


def ref_contrastive_loss(v1: Any, v2: Any, tau: float) -> Any:
    """RTD/SEARLE ``utils.contrastive_loss(v1, v2, temperature)``."""
    v1, v2 = F.normalize(v1, dim=1), F.normalize(v2, dim=1)
    num = torch.exp(torch.diag(v1 @ v2.t()) / tau)
    num = torch.cat((num, num), 0)
    joint = torch.cat((v1, v2), 0)
    pp = torch.exp(joint @ joint.t() / tau)
    den = torch.sum(pp - pp * torch.eye(joint.shape[0]), 0)
    return -torch.mean(torch.log(num / den))


def ref_clean_caption(caption: str | None) -> str:
    """LinCIR/RTD ``loader.clean_caption`` without the 75-token decode step."""
    if caption is None:
        caption = ""
    if "<PERSON>" in caption:
        caption = caption.replace("<PERSON>", "person")
    return caption.lower().replace("$", "").strip()


def _params(module: Any) -> list[Any]:
    return [p.detach().clone() for p in module.parameters()]


def _assert_same_params(got: Any, want: Any) -> None:
    """Parameters equal after one step. Adam divides each gradient by its own magnitude, so an element whose true
    gradient is 0 or at round-off level takes a step of up to lr from round-off alone: such elements are left out.
    They are the attention key biases (their true gradient is 0: softmax ignores a shift shared by all keys) and
    elements whose reference gradient is below 1e-5 of the tensor's largest (a handful of 65,536 in φ's weights, once
    the recipe's text forward, over the pooled prefix, rounds differently from the reference's full context)."""
    for (name, a), b in zip(got.named_parameters(), want.parameters(), strict=True):
        keep = torch.ones_like(b, dtype=torch.bool)
        if b.grad is not None:
            g = b.grad.abs()
            keep &= g >= 1e-5 * g.max()
        if name.endswith("in_proj_bias"):
            w = b.numel() // 3
            keep[w:2 * w] = False  # [q; k; v] biases
        torch.testing.assert_close(a.detach()[keep], b.detach()[keep], rtol=1e-4, atol=1e-5)


# -- LinCIR -------------------------------------------------------------------------------------------------------


def test_lincir_step_matches_train_phi(tmp_path: Path) -> None:
    cfg = load_config(LinCIRConfig, None, {**TINY, "steps": 1, "lr": 1e-2, "weight_decay": 0.5, "dropout": 0.0,
                                           "keyword_tagger": "rule"})
    recipe = LinCIRRecipe(cfg)
    assert cfg.decay_filter == "all" and (cfg.beta1, cfg.beta2, cfg.eps) == (0.9, 0.999, 1e-8)
    phi = copy.deepcopy(recipe.phi)
    batch = recipe.batch(0)
    model = recipe.model
    with torch.no_grad():
        e = model.encode_text(batch["ids"])  # text_embeds of the original caption (un-normalised)
    tok = phi(e + 1.0 * batch["noise"])  # noise_scale 1.0: e + 1.0 · u · n
    pred = ref_text_features(model, batch["ids_masked"], tok, 259)
    want = F.mse_loss(pred.float(), e.float(), reduction="mean")
    torch.testing.assert_close(recipe.loss(batch), want, rtol=1e-5, atol=1e-6)
    # one step of train_phi.py's optimizer: AdamW(phi.parameters(), lr, weight_decay) -- every parameter decays
    opt = torch.optim.AdamW(phi.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    want.backward()
    opt.step()
    run(recipe, cfg, tmp_path)
    _assert_same_params(recipe.phi, phi)


def test_lincir_cleans_captions_before_masking(tmp_path: Path) -> None:
    f = tmp_path / "caps.txt"
    f.write_text("A <PERSON> Holding a $5 Note\n")
    cfg = load_config(LinCIRConfig, None, {**TINY, "captions": str(f), "keyword_tagger": "rule"})
    recipe = LinCIRRecipe(cfg)
    b = recipe.batch(0)
    assert b["captions"][0] == "a person holding a 5 note"
    assert not (b["ids"] == 259).any()  # the caption's "$" is gone: no placeholder slot in the target caption
    assert recipe.validation is None  # file data: no validation split


@pytest.mark.parametrize(("caption", "want"), [
    ("<PERSON> at The Beach", "person at the beach"),
    ("  Price: $5  ", "price: 5"),
    (None, ""),
    ("a red star", "a red star"),
])
def test_clean_caption_examples(caption: str | None, want: str) -> None:
    assert clean_caption(caption) == ref_clean_caption(caption) == want


def test_mask_keywords_spacy_follows_the_official_loop() -> None:
    rng = np.random.default_rng(0)
    # every span replaced (all occurrences, as str.replace)
    assert mask_keywords_spacy("a red star and a red star", ["a red star", "a red star"], rng) == "$ and $"
    # a span spaCy split ("t - shirt" is not in the caption): one random word instead, and the loop stops
    cap = "a t-shirt with long sleeves"
    out = mask_keywords_spacy(cap, ["a t - shirt", "long sleeves"], rng)
    assert out.count("$") == 1 and sum(a != b for a, b in zip(out.split(), cap.split(), strict=True)) == 1
    # replacements made before the fallback stay
    out = mask_keywords_spacy("blue sky over a t-shirt", ["blue sky", "a t - shirt"], np.random.default_rng(1))
    assert out.startswith("$ ") and out.count("$") >= 1
    # no span at all: one random word
    out = mask_keywords_spacy("runs fast", [], rng)
    assert out.split().count("$") == 1 and len(out.split()) == 2
    # official str.replace semantics: a span also matches inside longer words
    assert mask_keywords_spacy("art on a cart", ["art"], rng) == "$ on a c $"


def test_keyword_spans_with_spacy() -> None:
    from cir_milvus.errors import BackendUnavailableError
    from cir_milvus.train.lincir import load_spacy

    try:
        nlp = load_spacy()
    except BackendUnavailableError:
        pytest.skip("spaCy or an English model is not installed (extra train-spacy)")
    # NOUN/PROPN/ADJ/DET runs, the rest breaks a run
    assert keyword_spans(nlp("a small red star on a black background")) == ["a small red star", "a black background"]
    doc = nlp("is more colorful and has long sleeves")
    assert keyword_spans(doc) == ["colorful", "long sleeves"]
    cfg = load_config(LinCIRConfig, None, {**TINY, "keyword_tagger": "spacy"})
    recipe = LinCIRRecipe(cfg)
    assert recipe.tagger == "spacy"
    assert recipe.mask(["a small red star on a black background"], np.random.default_rng(0)) == ["$ on $"]


def test_keyword_tagger_spacy_refused_without_spacy(monkeypatch: pytest.MonkeyPatch) -> None:
    import cir_milvus.train.lincir as lincir
    from cir_milvus.errors import BackendUnavailableError

    def missing(model: str | None = None) -> Any:
        raise BackendUnavailableError("no spaCy here; pip install 'cir_milvus[train-spacy]'")

    monkeypatch.setattr(lincir, "load_spacy", missing)
    with pytest.raises(BackendUnavailableError, match="train-spacy"):
        LinCIRRecipe(load_config(LinCIRConfig, None, {**TINY, "keyword_tagger": "spacy"}))
    recipe = LinCIRRecipe(load_config(LinCIRConfig, None, {**TINY, "keyword_tagger": "auto"}))
    assert recipe.tagger == "rule"  # auto: the stop-word fallback


# -- Pic2Word -----------------------------------------------------------------------------------------------------


def test_pic2word_step_matches_the_official_trainer(tmp_path: Path) -> None:
    from cir_milvus.train.pic2word import Pic2WordConfig, Pic2WordRecipe

    cfg = load_config(Pic2WordConfig, None, {**TINY, "steps": 1, "lr": 0.5, "dropout": 0.0})
    assert (cfg.beta1, cfg.beta2, cfg.eps, cfg.warmup, cfg.weight_decay) == (0.9, 0.98, 1e-6, 10000, 0.1)
    recipe = Pic2WordRecipe(cfg)
    mapper = copy.deepcopy(recipe.mapper)
    batch = recipe.batch(0)
    model = recipe.model
    image = batch["image_embeds"]  # model.encode_image(images) under no_grad
    text = ref_pic2word_text(model, recipe.encoder.tokenizer, mapper(image))
    want = ref_clip_loss(image, text, model.logit_scale.exp())
    torch.testing.assert_close(recipe.loss(batch), want, rtol=1e-4, atol=1e-5)
    # main.py: no decay for names with bn/ln/bias/logit_scale; AdamW(betas=(0.9, 0.98), eps=1e-6); cosine_lr warm-up
    named = list(mapper.named_parameters())
    exclude = [p for n, p in named if "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n]
    rest = [p for n, p in named if not ("bn" in n or "ln" in n or "bias" in n or "logit_scale" in n)]
    opt = torch.optim.AdamW([{"params": exclude, "weight_decay": 0.0}, {"params": rest, "weight_decay": 0.1}],
                            lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    for g in opt.param_groups:
        g["lr"] = cfg.lr * (0 + 1) / 10000  # _warmup_lr(base_lr, 10000, step=0)
    want.backward()
    opt.step()
    res = run(recipe, cfg, tmp_path)
    _assert_same_params(recipe.mapper, mapper)
    assert any("warm-up (10000 steps) is longer than the run (1 steps)" in n for n in res.notes)
    assert json.loads((tmp_path / "train_log.json").read_text())["notes"] == res.notes


def test_pic2word_random_resized_crop_as_official() -> None:
    from PIL import Image
    from torchvision import transforms as T

    from cir_milvus.train.pic2word import Pic2WordConfig, Pic2WordRecipe

    recipe = Pic2WordRecipe(load_config(Pic2WordConfig, None, {**TINY, "steps": 1}))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (90 + 7 * i, 80, 3), dtype=np.uint8)) for i in range(3)]
    pc = recipe.encoder.preprocess_config
    official = T.Compose([  # model/clip.py _transform(n_px, is_train=True), written out
        T.RandomResizedCrop(pc.size, scale=(0.9, 1.0), interpolation=Image.BICUBIC),
        lambda im: im.convert("RGB"),
        T.ToTensor(),
        T.Normalize(pc.mean, pc.std),
    ])
    state = torch.get_rng_state()
    got = recipe.pixels(images, step=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    seed = int(np.random.default_rng([0, 3, 6]).integers(2**62))
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    want = torch.stack([official(im) for im in images])
    torch.set_rng_state(gen_state)
    torch.testing.assert_close(got, want)
    assert got.shape == (3, 3, pc.size, pc.size)
    assert torch.equal(recipe.pixels(images, step=3), got)  # a resumed run sees the same crops
    assert not torch.equal(recipe.pixels(images, step=4), got)
    plain = torch.from_numpy(recipe.encoder.pixels(images))
    assert not torch.allclose(plain, got, atol=1e-3)  # evaluation preprocessing differs (resize + centre crop)
    recipe.cfg.augment = "none"
    torch.testing.assert_close(recipe.pixels(images, step=3), plain)


# -- RTD ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lincir_head(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("head")
    cfg = load_config(LinCIRConfig, None, {**TINY, "steps": 1, "keyword_tagger": "rule"})
    run(LinCIRRecipe(cfg), cfg, out)
    return str(out / "head")


def test_rtd_step_matches_train_text_encoder(tmp_path: Path, lincir_head: str) -> None:
    from cir_milvus.train.rtd import RTDConfig, RTDRecipe

    cfg = load_config(RTDConfig, None, {**TINY, "steps": 1, "lr": 1e-3, "weight_decay": 0.5, "head": lincir_head,
                                        "loss_group": 4})
    assert cfg.decay_filter == "all" and cfg.temperature == 0.07
    recipe = RTDRecipe(cfg)
    text = copy.deepcopy(recipe.text)
    b = recipe.batch(0)
    q = ref_text_features(text, b["ids_query"], b["tok"], 259)  # "a photo of $ that {T_c}"
    q_ref = ref_text_features(text, b["ids_ref"], b["tok"], 259)  # "a photo of $"
    losses = []
    for dev in range(2):  # two "GPUs" of 4 triplets, each its own loss (no gathering); DDP averages
        s = slice(4 * dev, 4 * dev + 4)
        concat = torch.cat((q[s], q_ref[s]))  # refined batch sampling, per device
        target = torch.cat((b["target"][s], b["reference"][s]))
        losses.append(ref_contrastive_loss(target, concat, 0.07))
    want = sum(losses) / 2
    torch.testing.assert_close(recipe.loss(b), want, rtol=1e-4, atol=1e-5)
    whole = ref_contrastive_loss(torch.cat((b["target"], b["reference"])), torch.cat((q, q_ref)), 0.07)
    recipe.cfg.loss_group = 0  # the whole-batch option
    torch.testing.assert_close(recipe.loss(b), whole, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(whole, want)
    recipe.cfg.loss_group = 4
    # AdamW(text_encoder_train.parameters(), lr, weight_decay): every parameter decays
    opt = torch.optim.AdamW(text.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    want.backward()
    opt.step()
    run(recipe, cfg, tmp_path)
    _assert_same_params(recipe.text, text)


def test_rtd_cleans_reference_and_target_not_condition(tmp_path: Path, lincir_head: str) -> None:
    from cir_milvus.train.rtd import RTDConfig, RTDRecipe

    f = tmp_path / "LLM_triplets.json"  # the official file: JSON lines read by datasets.load_dataset("json")
    f.write_text(json.dumps({"reference_caption": "<PERSON> With A $ Sign", "conditioning_caption": "make it $ red",
                             "target_caption": "A RED Sign"}) + "\n")
    cfg = load_config(RTDConfig, None, {**TINY, "steps": 1, "head": lincir_head, "triplets": str(f)})
    recipe = RTDRecipe(cfg)
    b = recipe.batch(0)
    tok, enc = recipe.encoder.tokenizer, recipe.frozen.encode_text
    with torch.no_grad():
        torch.testing.assert_close(b["reference"][:1], enc(tok(["person with a  sign"])).float())
        torch.testing.assert_close(b["target"][:1], enc(tok(["a red sign"])).float())
    assert int((b["ids_query"][0] == 259).sum()) == 2  # T_c as written: its "$" stays (as in the official loader)
    assert recipe.validation is None


# -- TAT ----------------------------------------------------------------------------------------------------------


def test_tat_step_matches_the_paper_loss(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from PIL import Image

    from cir_milvus.train.tat import TATConfig, TATRecipe

    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "caption": f"a photo number {i}"})
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = load_config(TATConfig, None, {**TINY, "images": str(tmp_path / "pairs.jsonl"), "lora_dropout": 0.0,
                                        "steps": 1})
    recipe = TATRecipe(cfg)
    b = recipe.batch(0)
    assert "positives" not in b  # file data: the paper's one-positive loss
    image = recipe.model.encode_image(b["pixels"])
    img, txt = F.normalize(image, dim=-1), F.normalize(b["text"], dim=-1)
    logits = img @ txt.t() / 0.07
    gt = torch.arange(len(img))
    want = (F.cross_entropy(logits, gt) + F.cross_entropy(logits.t(), gt)) / 2
    torch.testing.assert_close(recipe.loss(b), want, rtol=1e-5, atol=1e-6)
    groups = recipe.param_groups()
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0
    assert all("lora_" in n for n, _ in recipe.trainable) and len(groups[0]["params"]) == len(recipe.trainable)


# -- optimizer pieces ---------------------------------------------------------------------------------------------


def test_decay_groups_rules() -> None:
    net = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    named = list(net.named_parameters())
    ids = lambda groups: [{id(p) for p in g["params"]} for g in groups]  # noqa: E731
    everything = {id(p) for _, p in named}
    assert ids(decay_groups(named, 0.1, "all")) == [everything]
    assert ids(decay_groups(named, 0.1, "skip-1d")) == [{id(net[0].weight), id(net[1].weight)},
                                                        {id(net[1].bias), id(net[2].weight), id(net[2].bias)}]
    p2w = decay_groups([("layers.0.0.weight", net[1].weight), ("layers.0.0.bias", net[1].bias),
                        ("ln.weight", net[2].weight)], 0.1, "pic2word")
    assert ids(p2w) == [{id(net[1].weight)}, {id(net[1].bias), id(net[2].weight)}]
    assert p2w[0]["weight_decay"] == 0.1 and p2w[1]["weight_decay"] == 0.0


def test_warmup_is_official_unless_capped() -> None:
    cfg = TrainConfig(steps=800, lr=1.0, warmup=10000, schedule="cosine")
    assert lr_at(cfg, 0) == 1 / 10000 and math.isclose(lr_at(cfg, 799), 800 / 10000)  # only ramps
    capped = TrainConfig(steps=800, lr=1.0, warmup=10000, warmup_cap=0.1, schedule="cosine")
    assert lr_at(capped, 79) == 1.0 and lr_at(capped, 80) == 1.0 and lr_at(capped, 799) < 1e-4


def test_old_config_files_keep_their_settings(tmp_path: Path) -> None:
    from cir_milvus.train.pic2word import Pic2WordConfig

    old = {"recipe": "pic2word", "steps": 800, "lr": 3e-4, "warmup": 10000}  # written before decay_filter existed
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = load_config(Pic2WordConfig, tmp_path / "config.json")
    assert (cfg.beta2, cfg.eps, cfg.warmup_cap, cfg.decay_filter, cfg.augment, cfg.keep) == \
        (0.999, 1e-8, 0.1, "skip-1d", "none", "last")
    new = load_config(Pic2WordConfig, None, {"steps": 800})
    (tmp_path / "new.json").write_text(json.dumps(new.to_dict()))
    assert load_config(Pic2WordConfig, tmp_path / "new.json") == new


# -- best checkpoint ----------------------------------------------------------------------------------------------


class _ScriptedLinCIR(LinCIRRecipe):
    """LinCIR whose validation R@1 follows a script (peaks at the second validation); it records φ at each one."""

    script = (10.0, 50.0, 20.0, 5.0)

    def __init__(self, cfg: LinCIRConfig) -> None:
        super().__init__(cfg)
        self.seen: list[dict[str, Any]] = []

    @property
    def has_validation(self) -> bool:
        return True

    def validate(self) -> float:
        self.seen.append({k: v.clone() for k, v in self.phi.state_dict().items()})
        return self.script[len(self.seen) - 1]


@pytest.mark.parametrize("keep", ["best", "last"])
def test_best_validation_step_is_kept(tmp_path: Path, keep: str) -> None:
    from cir_milvus.heads import load_head

    cfg = load_config(LinCIRConfig, None, {**TINY, "steps": 8, "val_every": 2, "lr": 1e-2, "keep": keep,
                                           "keyword_tagger": "rule"})
    recipe = _ScriptedLinCIR(cfg)
    res = run(recipe, cfg, tmp_path)
    assert [v["step"] for v in res.validation] == [2, 4, 6, 8]
    early, last = recipe.seen[1], recipe.seen[3]
    assert any(not torch.equal(early[k], last[k]) for k in early)
    want = early if keep == "best" else last
    for k, v in recipe.phi.state_dict().items():
        torch.testing.assert_close(v, want[k])
    head = load_head("lincir", tmp_path / "head")  # the exported head is the kept one
    x = torch.randn(2, 128)
    ref = copy.deepcopy(recipe.phi).eval()
    ref.load_state_dict(want)
    torch.testing.assert_close(head(x), ref(x))
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["kept"] == keep and (log["best_step"] == 4 if keep == "best" else log["best_step"] is None)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # resume state = last step, best remembered
    for k, v in ckpt["trainable"].items():
        torch.testing.assert_close(v, last[k])
    assert ckpt["best"]["step"] == 4 and ckpt["best"]["metric"] == 50.0


def test_synthetic_validation_scores_composed_queries() -> None:
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.train.validation import SyntheticValidation

    torch.manual_seed(0)
    val = SyntheticValidation(TorchEncoder("cir-demo-tiny", None, device="cpu"), n_queries=40)
    g = val.gallery()
    first_target = torch.tensor([min(t) for t in val.targets])
    calls: list[int] = []

    def oracle(ref: Any, texts: Any) -> Any:  # the query IS a target image: always a hit
        calls.append(len(texts))
        return g[first_target[sum(calls) - len(texts):sum(calls)]]

    assert val.recall_at_1(oracle, batch_size=16) == 100.0 and calls == [16, 16, 8]
    assert val.recall_at_1(lambda ref, texts: ref) < 100.0  # the reference itself is excluded from the ranking


def test_lincir_validates_on_the_synthetic_split(tmp_path: Path) -> None:
    cfg = load_config(LinCIRConfig, None, {**TINY, "steps": 2, "val": "auto", "val_every": 1, "val_queries": 30,
                                           "keyword_tagger": "rule"})
    recipe = LinCIRRecipe(cfg)
    assert recipe.has_validation
    res = run(recipe, cfg, tmp_path)
    assert [v["step"] for v in res.validation] == [1, 2] and all(0 <= v["R@1"] <= 100 for v in res.validation)
    assert res.kept == "best" and res.best_step in (1, 2)
