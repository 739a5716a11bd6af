"""Projection heads φ: raw CLIP image embedding → one pseudo word token (Pic2Word, SEARLE, LinCIR).

All three heads map the **raw** (un-normalised) image embedding ``[N, D]`` to a token ``[N, W]`` (W = text width)
that overwrites the placeholder's token-embedding row (methods.md §0, §9):

- **Pic2Word** (Saito et al., CVPR'23; google-research/composed_image_retrieval ``IM2TEXT``): ``n_layer`` blocks of
  ``Linear → Dropout → ReLU`` then ``fc_out``. Checkpoint: ``{"epoch", "state_dict", "state_dict_img2text",
  "optimizer"}`` with ``module.``-prefixed keys. ViT-L/14: 768 → 512 → 512 → 768. Placeholder ``*`` (id 265).
- **SEARLE** (Baldrati et al., ICCV'23; miccunifi/SEARLE ``phi.py``): ``Linear(d, 4d) → GELU → Dropout → Linear(4d,
  4d) → GELU → Dropout → Linear(4d, W)``. Checkpoint ``{"epoch", "Phi": state_dict}``. B/32: 512 → 2048 → 2048 → 512;
  SEARLE-XL L/14: 768 → 3072 → 3072 → 768. Placeholder ``$`` (id 259), targetpad preprocessing.
- **LinCIR** (Gu et al., CVPR'24; navervision/lincir): SEARLE's class and checkpoint format, trained on text only.
  L/14: 768 → 3072 → 3072 → 768. Placeholder ``$``, Hugging Face ``CLIPImageProcessor`` preprocessing (``hf_clip``).

The nn.Module classes :class:`Pic2WordMapper` and :class:`SearlePhi` are built on first access, so importing this
module does not import torch. :class:`Head` wraps a loaded module with its provenance (source, sha256) and the
prompt defaults of its method, and saves/loads as ``config.json`` + ``model.safetensors``.

Head kinds and their defaults live in :mod:`cir_milvus.heads.kinds` (``list_heads()``, ``head_defaults(kind)``).

Example:
    >>> from cir_milvus.heads import list_heads
    >>> list_heads()
    ['lincir', 'pic2word', 'searle']
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cir_milvus._optional import require
from cir_milvus.artifacts import SearchPath, locate
from cir_milvus.checkpoints import read_checkpoint, strip_prefix
from cir_milvus.errors import CheckpointError, ConfigError, ModelNotFoundError
from cir_milvus.hashing import file_sha256
from cir_milvus.heads.kinds import HEAD_DEFAULTS, head_defaults
from cir_milvus.heads.modules import EXPECTED_LAYOUT, module_class

if TYPE_CHECKING:
    import torch

__all__ = [
    "Head",
    "Pic2WordMapper",
    "SearlePhi",
    "head_file_sha256",
    "load_head",
    "locate_head",
    "state_dict_sha256",
]

_PURPOSE = "projection heads (Pic2Word / SEARLE / LinCIR)"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


if TYPE_CHECKING:  # resolved at runtime by the module __getattr__ below
    Pic2WordMapper: type[torch.nn.Module]
    SearlePhi: type[torch.nn.Module]


def __getattr__(name: str) -> Any:
    # PEP 562: the nn.Module classes exist only once torch is imported.
    if name in ("Pic2WordMapper", "SearlePhi"):
        return module_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _build_module(kind: str, arch: Mapping[str, Any]) -> Any:
    cls = module_class(head_defaults(kind).arch)
    try:
        return cls(**arch)
    except TypeError as e:
        raise CheckpointError(f"bad {kind} head architecture {dict(arch)}: {e}") from e


# -- state-dict handling --------------------------------------------------------------------------------------------


def _shape(v: Any) -> list[int]:
    return [int(s) for s in getattr(v, "shape", ())]


def _describe(sd: Mapping[str, Any], keys: Any = None, limit: int = 12) -> str:
    keys = sorted(sd) if keys is None else sorted(keys)
    shown = [f"{k} {_shape(sd[k])}" if hasattr(sd[k], "shape") else f"{k} ({type(sd[k]).__name__})"
             for k in keys[:limit]]
    more = f", … ({len(keys) - limit} more)" if len(keys) > limit else ""
    return (", ".join(shown) + more) if shown else "nothing"


def state_dict_sha256(state_dict: Mapping[str, Any]) -> str:
    """A format-independent checksum of a state dict: names, shapes and float32 values, in key order.

    The same weights give the same digest whether read from a ``.pt``, a ``.safetensors`` or a saved head folder,
    so a collection can pin the head it was built with.
    """
    torch = require("torch", purpose=_PURPOSE)
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().to("cpu", torch.float32).contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _extract_state_dict(kind: str, obj: Any, where: str) -> dict[str, Any]:
    """Find the head's state dict in a checkpoint object (wrapper dict or plain state dict)."""
    torch = require("torch", purpose=_PURPOSE)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: expected a dict (a state dict or a checkpoint dict), found {type(obj).__name__}")
    key = HEAD_DEFAULTS[kind].wrapper_key
    if key in obj:
        sd = obj[key]
        if not isinstance(sd, Mapping):
            raise CheckpointError(f"{where}: {key!r} should hold a state dict, found {type(sd).__name__}")
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj
    else:
        others = {d.wrapper_key: k for k, d in HEAD_DEFAULTS.items() if d.wrapper_key != key}
        hint = next((f"; it looks like a {others[k]} checkpoint (key {k!r}): use kind={others[k]!r}"
                     for k in others if k in obj), "")
        raise CheckpointError(
            f"{where} is not a {kind} head checkpoint: expected a dict with key {key!r} or a plain state dict "
            f"({EXPECTED_LAYOUT[head_defaults(kind).arch]}); found top-level keys {sorted(map(str, obj))[:12]}{hint}"
        )
    sd = strip_prefix(sd)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{where}: state dict entries must be tensors; found {_describe(sd, bad)}")
    return sd


def _require_keys(kind: str, sd: Mapping[str, Any], keys: list[str], where: str) -> None:
    missing = [k for k in keys if k not in sd or len(_shape(sd[k])) != (2 if k.endswith("weight") else 1)]
    if missing:
        raise CheckpointError(
            f"{where} does not hold a {kind} head: expected {EXPECTED_LAYOUT[head_defaults(kind).arch]}; "
            f"missing or malformed {missing[:6]}; found {_describe(sd)}"
        )


def _infer_arch(kind: str, sd: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Read the architecture off the state-dict shapes."""
    if head_defaults(kind).arch == "Pic2WordMapper":
        idx = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"layers\.(\d+)\.0\.weight", k)))
        if idx != list(range(len(idx))):
            idx = []  # non-contiguous blocks: report as missing below
        _require_keys(kind, sd, ["layers.0.0.weight", "fc_out.weight"], where)
        w0, wo = sd["layers.0.0.weight"], sd["fc_out.weight"]  # [middle, embed], [output, middle]
        return {"embed_dim": _shape(w0)[1], "middle_dim": _shape(w0)[0], "output_dim": _shape(wo)[0],
                "n_layer": max(len(idx), 1), "dropout": 0.1}
    _require_keys(kind, sd, ["layers.0.weight", "layers.6.weight"], where)
    w0, w6 = sd["layers.0.weight"], sd["layers.6.weight"]  # [hidden, in], [out, hidden]
    return {"input_dim": _shape(w0)[1], "hidden_dim": _shape(w0)[0], "output_dim": _shape(w6)[0], "dropout": 0.5}


def _load_strict(kind: str, module: Any, sd: Mapping[str, Any], where: str) -> None:
    """``load_state_dict(strict=True)`` with a message listing expected vs found keys and shapes."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    mismatched = sorted(k for k in set(sd) & set(expected) if _shape(sd[k]) != _shape(expected[k]))
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {_describe(expected, missing)}")
        if unexpected:
            parts.append(f"unexpected {_describe(sd, unexpected)}")
        if mismatched:
            parts.append("shape mismatch " + ", ".join(
                f"{k} expected {_shape(expected[k])} found {_shape(sd[k])}" for k in mismatched[:6]))
        raise CheckpointError(
            f"{where} does not fit a {kind} head {module.get_config_dict()}: " + "; ".join(parts)
            + f". Expected {_describe(expected)}; found {_describe(sd)}"
        )
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # pragma: no cover - the checks above catch what strict loading rejects
        raise CheckpointError(f"{where}: {e}") from e


# -- sources --------------------------------------------------------------------------------------------------------


def _download_hf(source: str, kind: str) -> Path:
    """``hf-hub:org/repo/path/in/repo.pt`` → local cached file."""
    rest = source[len("hf-hub:"):].strip("/")
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts):
        raise ConfigError(
            f"head source {source!r} must look like 'hf-hub:org/repo/filename' "
            "(e.g. 'hf-hub:navervision/zeroshot-cir-models/lincir_large.pt')"
        )
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    hub = require("huggingface_hub", extra="torch", purpose="downloading heads from the Hugging Face hub")
    try:
        return Path(hub.hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as e:  # noqa: BLE001 - hub errors (offline, 404, auth) all end here
        cache = os.environ.get("HF_HUB_CACHE") or getattr(getattr(hub, "constants", None), "HF_HUB_CACHE", "?")
        raise ModelNotFoundError(
            f"could not fetch head file {filename!r} from Hugging Face repo {repo_id!r} "
            f"({type(e).__name__}: {e}); the hub cache is {cache}. Download it where the hub is reachable "
            f"(huggingface-cli download {repo_id} {filename}) or pass a local file: "
            f"load_head({kind!r}, '/path/to/{Path(filename).name}')"
        ) from e


def load_head(
    kind: str,
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    embed_dim: int | None = None,
    token_dim: int | None = None,
    device: str = "cpu",
) -> Head:
    """Load a published (or self-trained) projection head.

    Args:
        kind: ``"pic2word"``, ``"searle"`` or ``"lincir"``.
        source: a ``.pt``/``.pth``/``.bin`` checkpoint (read with ``weights_only=True``), a ``.safetensors`` file, a
            folder written by :meth:`Head.save`, ``"hf-hub:org/repo/filename"``, or an in-memory dict. Checkpoints may
            be the published wrapper dicts (``state_dict_img2text`` for Pic2Word, ``Phi`` for SEARLE/LinCIR;
            ``module.`` prefixes are stripped) or a plain state dict.
        embed_dim: if given, the image-embedding dimension the head must accept.
        token_dim: if given, the token width the head must produce.
        device: where the module lives.

    Returns:
        A :class:`Head` in eval mode; dimensions are read from the state-dict shapes.

    Raises:
        ConfigError: unknown kind or malformed ``hf-hub:`` id.
        ModelNotFoundError: the file does not exist or cannot be downloaded.
        CheckpointError: the file does not hold a head of this kind (the message lists expected and found keys).

    Example:
        >>> head = load_head("searle", "hf-hub:...")  # doctest: +SKIP
    """
    defaults = head_defaults(kind)
    sha: str | None = None
    if isinstance(source, Mapping):
        where, src, obj = f"the given {kind} state dict", None, source
    else:
        src = os.fspath(source)
        if src.startswith("hf-hub:"):
            path = _download_hf(src, kind)
        else:
            path = Path(src).expanduser()
            if path.is_dir():
                head = Head.load(path, device=device)
                if head.kind != kind:
                    raise CheckpointError(f"{path} holds a {head.kind!r} head, not {kind!r}; use kind={head.kind!r}")
                _check_dims(head, embed_dim, token_dim, str(path))
                return head
            if not path.is_file():
                raise ModelNotFoundError(
                    f"head file {src!r} does not exist; pass a local .pt/.pth/.safetensors file, a folder saved with "
                    f"Head.save(), or 'hf-hub:org/repo/filename' (e.g. "
                    f"'hf-hub:navervision/zeroshot-cir-models/lincir_large.pt')"
                )
        where, sha, obj = str(path), file_sha256(path), read_checkpoint(path, _PURPOSE)
    sd = _extract_state_dict(kind, obj, where)
    arch = _infer_arch(kind, sd, where)
    module = _build_module(kind, arch)
    _load_strict(kind, module, sd, where)
    head = Head(kind, module.to(device), source=src, sha256=sha, template=defaults.template,
                placeholder=defaults.placeholder, preprocess=defaults.preprocess, fiq_join=defaults.fiq_join)
    _check_dims(head, embed_dim, token_dim, where)
    return head


def head_file_sha256(path: str | os.PathLike[str]) -> str | None:
    """The checksum :class:`Head` records as ``sha256``: of the file, or of a saved folder's weights file."""
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    return file_sha256(p / WEIGHTS_NAME) if (p / WEIGHTS_NAME).is_file() else None


def locate_head(
    config: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    search_path: SearchPath = None,
) -> dict[str, Any]:
    """Find the file (or saved folder) of a head recorded in a collection recipe, by its sha256.

    A recipe stores a head's ``source`` as a hint (see :mod:`cir_milvus.artifacts`): it is looked up in the
    collection's folder, ``search_path`` and ``$CIR_MILVUS_PATH``, and accepted only with the recorded checksum.

    Args:
        config: the head config (``Head.config()``: ``kind``, ``source``, ``sha256``, ...).
        base_dir: the collection's folder (Milvus Lite).
        search_path: extra folders.

    Returns:
        A copy of ``config`` whose ``source`` is the located path (unchanged for ``hf-hub:`` ids and heads
        without a source).

    Raises:
        ModelNotFoundError: no file with the recorded checksum (the message names where it looked).
    """
    out = dict(config)
    src = out.get("source")
    if not src or str(src).startswith("hf-hub:"):
        return out
    kind = out.get("kind", "projection")
    found = locate(str(src), what=f"{kind} head", sha256=out.get("sha256"), checksum=head_file_sha256,
                   want_dir=None, base_dir=base_dir, search_path=search_path,
                   fix=f"pass it again: search(..., head='/path/to/{Path(str(src)).name}') or "
                       f"CIRCollection.open(..., search_path='/folder/with/it')")
    out["source"] = str(found)
    return out


def _check_dims(head: Head, embed_dim: int | None, token_dim: int | None, where: str) -> None:
    if embed_dim is not None and head.input_dim != embed_dim:
        raise CheckpointError(
            f"{where}: the {head.kind} head takes {head.input_dim}-d image embeddings but embed_dim={embed_dim} "
            "was requested (a head only works with the backbone it was trained on)"
        )
    if token_dim is not None and head.output_dim != token_dim:
        raise CheckpointError(
            f"{where}: the {head.kind} head produces {head.output_dim}-d tokens but token_dim={token_dim} was "
            "requested (the text tower width of the backbone)"
        )


# -- the wrapper ----------------------------------------------------------------------------------------------------


class Head:
    """A loaded projection head with its provenance and prompt defaults.

    Args:
        kind: ``"pic2word"``, ``"searle"`` or ``"lincir"``.
        module: a :class:`Pic2WordMapper` / :class:`SearlePhi` (put in eval mode).
        source: where it came from (file path, ``hf-hub:`` id, folder), ``None`` for in-memory weights.
        sha256: sha256 of the file it was read from.
        template, placeholder, preprocess, fiq_join: overrides of the method's defaults (:data:`HEAD_DEFAULTS`).

    Attributes:
        weights_sha256: format-independent checksum of the weights (:func:`state_dict_sha256`).

    Example:
        >>> head = load_head("searle", "SEARLE_ViT-B32.pt")  # doctest: +SKIP
        >>> head(raw_image_embeddings).shape  # doctest: +SKIP
        (4, 512)
    """

    def __init__(
        self,
        kind: str,
        module: Any,
        *,
        source: str | None = None,
        sha256: str | None = None,
        template: str | None = None,
        placeholder: str | None = None,
        preprocess: str | None = None,
        fiq_join: str | None = None,
    ) -> None:
        defaults = head_defaults(kind)
        self.kind = kind
        self.module = module.eval()
        self.source = source
        self.sha256 = sha256
        self.template = template or defaults.template
        self.placeholder = placeholder or defaults.placeholder
        self.preprocess = preprocess or defaults.preprocess
        self.fiq_join = fiq_join or defaults.fiq_join
        self._weights_sha: str | None = None

    # -- properties -----------------------------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        """Dimension of the raw image embeddings the head accepts."""
        return int(self.module.input_dim)

    @property
    def output_dim(self) -> int:
        """Width of the produced pseudo tokens (must equal the text tower width)."""
        return int(self.module.output_dim)

    @property
    def arch(self) -> dict[str, Any]:
        """The module's constructor arguments."""
        return dict(self.module.get_config_dict())

    @property
    def device(self) -> str:
        return str(next(self.module.parameters()).device)

    @property
    def weights_sha256(self) -> str:
        if self._weights_sha is None:
            self._weights_sha = state_dict_sha256(self.module.state_dict())
        return self._weights_sha

    def to(self, device: str) -> Head:
        """Move the module (in place) and return ``self``."""
        self.module.to(device)
        return self

    def __repr__(self) -> str:
        return f"Head(kind={self.kind!r}, {self.input_dim}->{self.output_dim}, source={self.source!r})"

    # -- inference ------------------------------------------------------------------------------------------------
    def __call__(self, image_embeddings: Any) -> Any:
        """Map raw image embeddings ``[N, input_dim]`` (or ``[input_dim]``) to pseudo tokens ``[N, output_dim]``.

        A torch tensor in gives a float32 tensor on the head's device; anything else gives float32 numpy.

        Raises:
            ConfigError: the embedding dimension does not match the head.
        """
        torch = require("torch", purpose=_PURPOSE)
        is_tensor = isinstance(image_embeddings, torch.Tensor)
        x = image_embeddings if is_tensor else torch.as_tensor(np.asarray(image_embeddings, dtype=np.float32))
        if x.ndim == 1:
            x = x[None]  # [D] -> [1, D]
        if x.ndim != 2 or x.shape[-1] != self.input_dim:
            raise ConfigError(
                f"the {self.kind} head takes raw image embeddings of shape [N, {self.input_dim}], got "
                f"{list(x.shape)}; the encoder must be the backbone the head was trained with"
            )
        param = next(self.module.parameters())
        with torch.no_grad():
            out = self.module(x.to(device=param.device, dtype=param.dtype))  # [N, output_dim]
        out = out.float()
        return out if is_tensor else out.cpu().numpy().astype(np.float32)

    # -- recipe and persistence ----------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-able description for the collection recipe."""
        return {
            "kind": self.kind,
            "source": self.source,
            "sha256": self.sha256,
            "weights_sha256": self.weights_sha256,
            "template": self.template,
            "placeholder": self.placeholder,
            "preprocess": self.preprocess,
            "fiq_join": self.fiq_join,
            "arch": self.arch,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into the folder ``path`` (created if needed)."""
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        cfg = {k: v for k, v in self.config().items() if k not in ("source", "sha256")}
        cfg["origin"] = {"source": self.source, "sha256": self.sha256}
        cfg["cir_milvus_version"] = _version()
        sd = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        save_file(sd, str(out / WEIGHTS_NAME), metadata={"format": "pt", "kind": self.kind})
        (out / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu") -> Head:
        """Read a folder written by :meth:`save` (strict: every key and shape must match ``config.json``).

        Raises:
            ModelNotFoundError: the folder or one of its two files is missing.
            CheckpointError: the weights do not fit the configuration.
        """
        from safetensors.torch import load_file

        folder = Path(path)
        cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise ModelNotFoundError(f"{p} does not exist; a saved head folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
        try:
            cfg = json.loads(cfg_path.read_text())
            kind, arch = cfg["kind"], cfg["arch"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{cfg_path} is not a head config (needs 'kind' and 'arch'): {e}") from e
        head_defaults(kind)
        module = _build_module(kind, arch)
        _load_strict(kind, module, load_file(str(w_path)), str(w_path))
        return cls(kind, module.to(device), source=str(folder), sha256=file_sha256(w_path),
                   template=cfg.get("template"), placeholder=cfg.get("placeholder"),
                   preprocess=cfg.get("preprocess"), fiq_join=cfg.get("fiq_join"))


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("cir_milvus")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return None
