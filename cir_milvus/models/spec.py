"""Resolving a backbone to something open_clip can build, with errors that say where we looked.

Accepted forms (open_clip's own conventions):

- ``model="ViT-B-32", pretrained="openai"``: an open_clip name and pretrained tag (downloaded by open_clip
  into its cache; offline, only a cached copy works).
- ``model="ViT-B-32", pretrained="/path/to/open_clip_pytorch_model.bin"``: a local checkpoint file
  (``.bin``, ``.pt``, ``.pth`` or ``.safetensors``).
- ``model="hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"``: config and weights from the Hugging Face hub.
- ``model="local-dir:/path/to/dir"``: an ``open_clip_config.json`` + weights folder.
- ``model="cir-demo-tiny", pretrained="cir-demo"``: the demo model shipped with the package.
- ``pretrained=None``: random weights (tests, training from scratch).

Tags are normalised as open_clip does (case-insensitive, ``-`` = ``_``: ``LAION2B-S34B-B79K`` is
``laion2b_s34b_b79k``), and model names accept ``/`` for ``-`` (``ViT-B/32``). For a tag, open_clip's own pretrained
config decides the architecture's activation (``quick_gelu``: every OpenAI tag, MetaCLIP, DFN) and the
preprocessing (``resize_mode``, ``interpolation``, ``mean``/``std``, ``fill_color``); open_clip 3.x itself builds
``ViT-B-32`` + ``openai`` with plain GELU and only warns, so :func:`load_open_clip` forces QuickGELU for such tags.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cir_milvus._optional import require
from cir_milvus.errors import CheckpointError, ModelNotFoundError
from cir_milvus.hashing import file_sha256
from cir_milvus.models.demo import DEMO_MODEL, DEMO_WEIGHTS, MODEL_CONFIG_DIR, demo_weights_path
from cir_milvus.recipe_fields import recorded_activation

__all__ = [
    "ModelSpec",
    "checkpoint_activation",
    "list_models",
    "local_dir_sha256",
    "local_dir_weights",
    "load_open_clip",
    "model_activation",
    "normalize_tag",
    "pretrained_config",
    "recorded_activation",
    "register_model_config",
    "resolve_model",
]

_CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")


_LOCAL_DIR_WEIGHTS = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
)


def local_dir_sha256(folder: str | os.PathLike[str]) -> str | None:
    """sha256 of the weights file of a ``local-dir:`` model folder (``None`` when it has none)."""
    w = local_dir_weights(folder)
    return file_sha256(w) if w is not None else None


def local_dir_weights(folder: str | os.PathLike[str]) -> Path | None:
    """The weights file of a ``local-dir:`` model folder (open_clip's preferred names first), if any."""
    d = Path(folder)
    for name in _LOCAL_DIR_WEIGHTS:
        if (d / name).is_file():
            return d / name
    found = sorted(p for ext in ("*.safetensors", "*.bin", "*.pth") for p in d.glob(ext))
    return found[0] if found else None


@dataclass(frozen=True)
class ModelSpec:
    """A resolved backbone.

    Attributes:
        model: open_clip model name (or ``hf-hub:``/``local-dir:`` id).
        pretrained: the tag or checkpoint path as the user gave it (``None`` = random weights).
        checkpoint: local weights file when known (``None`` for tags until downloaded, hub ids and random); for
            ``local-dir:`` the folder's weights file, so that its sha256 identifies the weights.
        kind: ``"tag"``, ``"file"``, ``"hf-hub"``, ``"local-dir"``, ``"demo"`` or ``"random"``.
    """

    model: str
    pretrained: str | None
    checkpoint: Path | None
    kind: str

    def sha256(self) -> str | None:
        """Checksum of the weights file, when there is one on disk."""
        return file_sha256(self.checkpoint) if self.checkpoint is not None and self.checkpoint.is_file() else None


def register_model_config(path: str | os.PathLike[str]) -> None:
    """Make an open_clip model config JSON (or a folder of them) available by name, like the demo model's."""
    open_clip = require("open_clip", purpose="building open_clip models")
    open_clip.add_model_config(Path(path))


_registered_demo = False


def _ensure_demo_config() -> None:
    global _registered_demo
    if not _registered_demo:
        register_model_config(MODEL_CONFIG_DIR)
        _registered_demo = True


def list_models() -> list[str]:
    """open_clip model names (including the demo model)."""
    _ensure_demo_config()
    open_clip = require("open_clip")
    return list(open_clip.list_models())


def normalize_tag(tag: str) -> str:
    """open_clip's pretrained-tag normalisation: lower case, ``-`` → ``_`` (``LAION2B-S34B-B79K`` → ``laion2b_s34b_b79k``)."""
    return tag.lower().replace("-", "_")


def pretrained_config(spec: ModelSpec) -> dict[str, Any]:
    """open_clip's pretrained config of a tag spec (``quick_gelu``, ``resize_mode``, ``mean``...); ``{}`` otherwise."""
    if spec.kind != "tag" or spec.pretrained is None:
        return {}
    open_clip = require("open_clip", purpose="building open_clip models")
    return dict(open_clip.get_pretrained_cfg(spec.model, spec.pretrained) or {})


def model_activation(model: Any) -> str:
    """``"quick_gelu"`` when the open_clip model's transformer MLPs use QuickGELU, else ``"gelu"``."""
    from open_clip.transformer import QuickGELU

    return "quick_gelu" if any(isinstance(m, QuickGELU) for m in model.modules()) else "gelu"


def checkpoint_activation(path: str | os.PathLike[str]) -> bool | None:
    """Whether a ``.safetensors`` checkpoint says its towers ran QuickGELU (metadata ``"activation"``, written by
    ``cir_milvus.train``); ``None`` when the file does not say (other formats, other producers)."""
    if not str(path).endswith(".safetensors"):
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 - unreadable metadata: open_clip reports the file itself
        return None
    return {"quick_gelu": True, "gelu": False}.get(str(meta.get("activation")))


def resolve_model(model: str, pretrained: str | None = None) -> ModelSpec:
    """Turn the user's ``model``/``pretrained`` into a :class:`ModelSpec` without loading weights.

    Raises:
        ModelNotFoundError: unknown model name, unknown tag or missing checkpoint file; the message lists the
            choices and how to pass a local file.
    """
    _ensure_demo_config()
    open_clip = require("open_clip", purpose="building open_clip models")
    if model.startswith("hf-hub:"):
        return ModelSpec(model, None, None, "hf-hub")
    if model.startswith("local-dir:"):
        folder = Path(model.split(":", 1)[1])
        if not folder.is_dir():
            raise ModelNotFoundError(f"local-dir model folder not found: {folder}")
        return ModelSpec(model, None, local_dir_weights(folder), "local-dir")  # the file gives its sha256
    names = open_clip.list_models()
    if model not in names and model.replace("/", "-") in names:
        model = model.replace("/", "-")  # open_clip accepts "ViT-B/32" for "ViT-B-32"
    if model not in names:
        close = difflib.get_close_matches(model, names, n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(
            f"unknown open_clip model {model!r}.{hint} See open_clip.list_models(), use 'hf-hub:org/repo', or "
            "register your own config with cir_milvus.models.register_model_config(path)."
        )
    if model == DEMO_MODEL and pretrained in (None, DEMO_WEIGHTS):
        if pretrained is None:
            return ModelSpec(model, None, None, "random")
        path = demo_weights_path()
        if not path.is_file():
            raise ModelNotFoundError(
                f"demo weights missing at {path}; reinstall cir_milvus or rebuild them with "
                "`python -m cir_milvus.train.demo_clip`"
            )
        return ModelSpec(model, DEMO_WEIGHTS, path, "demo")
    if pretrained is None:
        return ModelSpec(model, None, None, "random")
    looks_like_path = pretrained.endswith(_CHECKPOINT_SUFFIXES) or os.sep in pretrained or pretrained.startswith(".")
    if Path(pretrained).is_file():
        return ModelSpec(model, pretrained, Path(pretrained), "file")
    if looks_like_path:
        raise ModelNotFoundError(
            f"checkpoint file not found for {model}: {pretrained} (looked at {Path(pretrained).resolve()})"
        )
    tags = open_clip.list_pretrained_tags_by_model(model)
    canonical = {normalize_tag(t): t for t in tags}
    tag = canonical.get(normalize_tag(pretrained))
    if tag is None:
        raise ModelNotFoundError(
            f"unknown pretrained tag {pretrained!r} for {model}; available: {', '.join(tags) or 'none'}. "
            "Pass a local checkpoint path as pretrained= to use your own weights."
        )
    return ModelSpec(model, tag, None, "tag")


# -- failing fast offline -------------------------------------------------------------------------------------------
HUB_PROBE_TIMEOUT = 3.0
"""Seconds the connectivity probe waits for the download host before declaring it unreachable."""
_TRUE = {"1", "on", "yes", "true"}


def _download_source(spec: ModelSpec) -> tuple[str | None, str | None]:
    """``(hf repo id, url)`` that open_clip would download ``spec``'s weights from (``None`` when nothing is)."""
    if spec.kind == "hf-hub":
        return spec.model[len("hf-hub:"):], None
    if spec.kind != "tag":
        return None, None
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(spec.model, spec.pretrained or "") or {}
    hub = str(cfg.get("hf_hub") or "").strip("/")
    if hub:
        return "/".join(hub.split("/")[:2]), None
    return None, str(cfg.get("url") or "") or None


def _hf_cache_dir() -> Path:
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
        return Path(os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub"))


def _hf_cached(repo_id: str) -> bool:
    snapshots = _hf_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(p.is_file() for p in snapshots.glob("*/*"))


def _hf_offline() -> bool:
    if str(os.environ.get("HF_HUB_OFFLINE", "")).strip().lower() in _TRUE:
        return True
    try:
        from huggingface_hub import constants

        return bool(getattr(constants, "HF_HUB_OFFLINE", False))
    except ImportError:
        return False


def _reachable(url: str, timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds (DNS included)."""
    import socket
    import threading
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"https://{url}")
    host, port = parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)
    if not host:
        return False
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def check_download_possible(spec: ModelSpec) -> None:
    """Fail within seconds when ``spec``'s weights must be downloaded and cannot be.

    Nothing happens for local files, the demo model, random weights, or weights already in the Hugging Face cache.
    Otherwise ``HF_HUB_OFFLINE`` set (to 1/true/on/yes), or no TCP connection to the hub (``HF_ENDPOINT``, default
    huggingface.co) within :data:`HUB_PROBE_TIMEOUT` seconds, raises at once instead of waiting for the hub client's
    retries (tens of seconds).

    Raises:
        ModelNotFoundError: the weights are not cached and cannot be fetched; the message names the cache, the
            variable, and how to pass a local file.
    """
    try:
        repo, url = _download_source(spec)
    except ImportError:
        return
    if repo is None and url is None:
        return
    what = f"{spec.model}" + (f" (pretrained tag {spec.pretrained!r})" if spec.kind == "tag" else "")
    if spec.kind == "hf-hub":
        fix = ("Download the repo (open_clip_config.json + weights) where the hub is reachable and pass "
               "model='local-dir:/path/to/folder' (--model local-dir:/path/to/folder on the CLI).")
    else:
        fix = (f"Download the checkpoint where the hub is reachable and pass it as a local file: "
               f"CIRCollection.create(..., model={spec.model!r}, pretrained='/path/to/open_clip_pytorch_model.bin') "
               f"or `--model {spec.model} --pretrained /path/to/file` on the CLI.")
    if repo is not None:
        if _hf_cached(repo):
            return
        where = f"the Hugging Face hub repo {repo!r} (local cache {_hf_cache_dir()})"
        if _hf_offline():
            raise ModelNotFoundError(
                f"the weights of {what} are not in the local copy of {where} and HF_HUB_OFFLINE="
                f"{os.environ.get('HF_HUB_OFFLINE', '1')} forbids downloading them. Unset HF_HUB_OFFLINE where the "
                f"hub is reachable, or: {fix}")
        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    else:
        assert url is not None
        cached = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if cached.is_file():
            return
        endpoint, where = url, f"{url} (local copy {cached})"
    if not _reachable(endpoint):
        raise ModelNotFoundError(
            f"the weights of {what} are not cached locally ({where}) and {endpoint} cannot be reached (no "
            f"connection within {HUB_PROBE_TIMEOUT:.0f} s; offline?). Set HF_ENDPOINT if you use a hub mirror, "
            f"or: {fix}")


def load_open_clip(
    spec: ModelSpec, device: str = "cpu", precision: str = "fp32", *, quick_gelu: bool | None = None
) -> tuple[Any, Any]:
    """Build the open_clip model and tokenizer for a spec.

    Args:
        spec: the resolved backbone.
        device: torch device.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        quick_gelu: the activation of the transformer MLPs: ``None`` follows open_clip's pretrained config of the
            tag (QuickGELU for OpenAI weights, as OpenAI CLIP and every official method run them) or the model
            config (``hf-hub:``, ``local-dir:``, ``*-quickgelu`` names), or for a local ``.safetensors`` file the
            ``activation`` its metadata records (``cir_milvus.train`` writes it); ``True``/``False`` force it (a
            local file of OpenAI weights from elsewhere needs ``True``).

    Returns:
        ``(model, tokenizer)``, the model in eval mode on ``device``.

    Raises:
        ModelNotFoundError: the weights cannot be fetched or read; the message names the model, where it looked
            and how to pass a local file.
        CheckpointError: a local checkpoint file does not fit the architecture.
    """
    open_clip = require("open_clip", purpose="building open_clip models")
    _ensure_demo_config()
    pretrained = str(spec.checkpoint) if spec.kind in ("demo", "file") else spec.pretrained
    check_download_possible(spec)  # offline: fail in seconds, not after the hub client's retries
    if quick_gelu is None:
        quick_gelu = True if pretrained_config(spec).get("quick_gelu") else None
    if quick_gelu is None and spec.kind == "file" and spec.checkpoint is not None:
        quick_gelu = checkpoint_activation(spec.checkpoint)  # our trainers record it in the file's metadata
    kwargs: dict[str, Any] = {}
    if quick_gelu:
        kwargs["force_quick_gelu"] = True
    elif quick_gelu is False:
        kwargs["quick_gelu"] = False  # a model kwarg: overrides a "-quickgelu" config
    try:
        model = open_clip.create_model(spec.model, pretrained=pretrained, device=device, precision=precision, **kwargs)
    except Exception as e:  # noqa: BLE001 - open_clip raises many types for "cannot fetch"
        if spec.kind in ("file", "demo") and not isinstance(e, FileNotFoundError):
            # the file is there (resolve_model checked) but does not hold weights for this architecture
            raise CheckpointError(
                f"the checkpoint {spec.checkpoint} does not load into {spec.model}: {type(e).__name__}: {e}. Pass "
                "an open_clip checkpoint (.bin/.pt/.pth/.safetensors) of this architecture, or set model= to the "
                "architecture it was trained with."
            ) from e
        try:
            from huggingface_hub import constants as hf_constants

            cache = f" (cache folder {hf_constants.HF_HUB_CACHE})"
        except ImportError:
            cache = ""
        where = {
            "tag": f"the open_clip cache / Hugging Face hub for tag {spec.pretrained!r}{cache}",
            "hf-hub": f"the Hugging Face hub repo {spec.model[7:]!r} (and the local HF cache){cache}",
            "file": f"the local file {spec.checkpoint}",
            "demo": f"the shipped demo weights {spec.checkpoint}",
            "local-dir": f"the folder {spec.model[10:]}",
        }.get(spec.kind, spec.kind)
        if spec.kind == "hf-hub":
            # the repo id is not an open_clip architecture name: point at a local copy of the whole repo instead
            fix = (
                "Without network access, download the repo's open_clip_config.json and weights into a folder "
                "elsewhere and pass model='local-dir:/path/to/folder'."
            )
        else:
            fix = (
                "Without network access, download the checkpoint elsewhere and pass it as a local file: "
                f"CIRCollection.create(..., model={spec.model!r}, pretrained='/path/to/"
                "open_clip_pytorch_model.bin') or `--pretrained /path/to/file` on the CLI."
            )
        raise ModelNotFoundError(
            f"could not load weights for {spec.model} from {where}: {type(e).__name__}: {e}. {fix}"
        ) from e
    model.eval()
    tokenizer = open_clip.get_tokenizer(spec.model)
    return model, tokenizer
