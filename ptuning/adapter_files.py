"""The on-disk adapter: a public contract, readable by PEFT where the layout allows.

A directory holds:
- ``adapter_config.json``: PEFT's config (``peft_type`` PROMPT_TUNING or P_TUNING, ``task_type`` SEQ_CLS, ...);
  an adapter PEFT cannot express carries ``"ptuning": {"peft_compatible": false, "reason": ...}`` in it too;
- ``adapter_model.safetensors``: ``prompt_embeddings [n, hidden]`` and the head under PEFT's names
  (``base_model.classifier.*`` / ``base_model.score.*``) or ours (``ptuning.head.*``), plus ``ptuning.deep_prompts``
  for deep prompts. PEFT ignores tensors it does not know;
- ``ptuning_config.json``: what PEFT has no field for (labels, placement, method, pooling, training info), and the
  sha256 of the weights files saved with it (``weights_sha256``), checked on load;
- ``ptuning_resume.safetensors`` (p-tuning only): the encoder's weights, needed to resume training, not to predict;
- ``README.md`` (on the Hub): the model card (``model_card.py``).

The same files travel in a zip (``pack_adapter_zip`` / ``unpack_adapter_zip``: the app's download and upload).

Loading trusts nothing: safetensors only (no pickle), JSON checked against the backbone, every mismatch named, and
the weights must be those the config was saved with. Saving writes each file beside its final name and renames it
into place, so a crash leaves whole files, and a mix of two saves is refused, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from .backbones import EMBEDDED_ID, HEAD_SUFFIXES, load_backbone
from .config import Method, Pooling, PromptConfig
from .encoders import PromptTable
from .errors import AdapterError, PtuningError
from .units import human_size

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PTUNING_CONFIG = "ptuning_config.json"
RESUME_WEIGHTS = "ptuning_resume.safetensors"
CARD_FILE = "README.md"  # the model card, written by model_card.py when an adapter goes to the Hub
# The only names that travel (to and from the Hub, in and out of a zip). Weights are safetensors only: never pickles.
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, PTUNING_CONFIG, RESUME_WEIGHTS, CARD_FILE)
FORMAT_VERSION = 1
MAX_ADAPTER_BYTES = 256 * 2**20  # an uploaded adapter zip, uncompressed
WEIGHTS_SHA256 = "weights_sha256"  # in ptuning_config.json: the digest of each weights file saved with it
_HEAD_PREFIX, _OWN_HEAD_PREFIX, _DEEP = "base_model.", "ptuning.head.", "ptuning.deep_prompts"
_OFFSETS = "ptuning.bias_offsets."  # + the target module's name (offsets.offset_targets)
_LOW_RANK = "ptuning.low_rank."  # + the target linear layer's name + ".lora_A" ([in, r]) or ".lora_B" ([r, out])


def save_adapter(clf, directory: str | Path) -> Path:
    """Write the adapter files of ``clf`` into ``directory`` (created if needed); returns the directory.

    Each file is written beside its final name and renamed into place, so a crash never leaves half a file; and
    ``ptuning_config.json`` records the sha256 of the weights, so a set of files from two saves (a crash between two
    renames) is refused when loaded, never new weights read with old labels.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cfg = clf.config
    with torch.no_grad():
        tensors = {"prompt_embeddings": clf.prompt_vectors().detach().float().cpu().contiguous()}
        prefix = _HEAD_PREFIX if cfg.pooling == Pooling.MODEL else _OWN_HEAD_PREFIX
        for name, t in clf.head.state_dict().items():
            tensors[prefix + name] = t.detach().float().cpu().contiguous()
        if clf.deep is not None:
            tensors[_DEEP] = clf.deep().detach().float().cpu().contiguous()
        if clf.offsets is not None:
            for name, value in clf.offsets().items():
                tensors[_OFFSETS + name] = value.detach().float().cpu().contiguous()
        if clf.low_rank is not None:
            for name, pair in clf.low_rank().items():
                for part, value in zip(("lora_A", "lora_B"), pair):
                    tensors[f"{_LOW_RANK}{name}.{part}"] = value.detach().float().cpu().contiguous()
    weights = {ADAPTER_WEIGHTS: safetensors_bytes(tensors, metadata={"format": "pt"})}
    if cfg.method == Method.P_TUNING and not isinstance(clf.prompt, PromptTable):
        encoder = {k: v.detach().float().cpu().contiguous() for k, v in clf.prompt.state_dict().items()}
        weights[RESUME_WEIGHTS] = safetensors_bytes(encoder)
    ours = {
        "format_version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "peft_compatible": clf.peft_incompatible_reason is None,
        "peft_incompatible_reason": clf.peft_incompatible_reason,
        "info": clf.info,
        WEIGHTS_SHA256: {name: hashlib.sha256(data).hexdigest() for name, data in weights.items()},
    }
    # The config that names the weights goes first and the weights last: whichever rename a crash stops before,
    # the files on disk disagree with the recorded digests, unless they are all of one save.
    if RESUME_WEIGHTS in weights:
        write_atomic(out / RESUME_WEIGHTS, weights[RESUME_WEIGHTS])
    else:
        (out / RESUME_WEIGHTS).unlink(missing_ok=True)  # a stale encoder from an earlier save would not match
    write_json(out / PTUNING_CONFIG, ours)
    write_json(out / ADAPTER_CONFIG, peft_config(clf))
    write_atomic(out / ADAPTER_WEIGHTS, weights[ADAPTER_WEIGHTS])
    return out


def peft_config(clf) -> dict[str, Any]:
    """``adapter_config.json`` as PEFT writes it for this adapter (PROMPT_TUNING, or P_TUNING with its encoder)."""
    bb, cfg = clf.backbone, clf.config
    mcfg = bb.model.config
    d: dict[str, Any] = {
        "auto_mapping": None,
        "base_model_name_or_path": cfg.base_model,
        "inference_mode": True,
        "modules_to_save": list(HEAD_SUFFIXES),
        "num_attention_heads": getattr(mcfg, "num_attention_heads", None),
        "num_layers": bb.num_layers,
        "num_transformer_submodules": 1,
        "num_virtual_tokens": cfg.num_virtual_tokens,
        "peft_type": "P_TUNING" if cfg.method == Method.P_TUNING else "PROMPT_TUNING",
        "revision": None,
        "task_type": "SEQ_CLS",
        "token_dim": bb.hidden_size,
    }
    if cfg.method == Method.P_TUNING:
        d.update(
            encoder_dropout=0.0,
            encoder_hidden_size=cfg.encoder_hidden_size,
            encoder_num_layers=2,
            encoder_reparameterization_type=cfg.encoder_type.value,
        )
    else:
        d.update(prompt_tuning_init="RANDOM", prompt_tuning_init_text=None, tokenizer_kwargs=None)
        d["tokenizer_name_or_path"] = None
    reason = clf.peft_incompatible_reason
    if reason:
        d["ptuning"] = {"peft_compatible": False, "reason": reason}
    return d


def write_json(path: Path, obj: dict) -> None:
    """JSON as the adapter and checkpoint files hold it: sorted, indented, UTF-8, one final newline; written
    atomically (:func:`write_atomic`)."""
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary sibling of ``path``, flush it to disk, then rename it into place: a reader (or
    a process killed mid-write) sees the old file or the new one, never a part of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file's bytes (to hash, then :func:`write_atomic`)."""
    return safetensors.torch.save(tensors, metadata=metadata)


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise AdapterError(f"{path.name} is not valid JSON ({e}); the adapter is corrupt") from None
    if not isinstance(obj, dict):
        raise AdapterError(f"{path.name} must hold a JSON object, not {type(obj).__name__}")
    return obj


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a safetensors file and the sha256 of the very bytes they were read from."""
    try:
        data = path.read_bytes()
        return safetensors.torch.load(data), hashlib.sha256(data).hexdigest()
    except (SafetensorError, OSError, ValueError) as e:
        raise AdapterError(f"{path.name} is not a readable safetensors file ({e}); the adapter is corrupt") from None


def pack_adapter_zip(adapter, path: str | Path) -> Path:
    """Zip an adapter's files at the root of the archive ``path``, as ``unpack_adapter_zip`` reads them back.

    ``adapter`` is a PromptClassifier (saved first into a temporary folder) or a directory of adapter files.
    """
    path = Path(path)
    if isinstance(adapter, (str, Path)):
        return _zip_adapter_files(Path(adapter), path)
    with tempfile.TemporaryDirectory(prefix="ptuning-zip-") as folder:
        return _zip_adapter_files(save_adapter(adapter, folder), path)


def _zip_adapter_files(folder: Path, path: Path) -> Path:
    names = [name for name in ADAPTER_FILES if (folder / name).is_file()]
    missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if name not in names]
    if missing:
        raise AdapterError(f"{folder} has no {' or '.join(missing)}: save the adapter there before zipping it")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.write(folder / name, name)
    return path


def adapter_base_model(directory: str | Path) -> str:
    """The base model an adapter directory names (``ptuning_config.json``, else PEFT's config), without loading it.

    Empty names mean the embedded default. Lets a caller refuse an adapter for another base before any backbone loads.
    """
    directory = Path(directory)
    if not (directory / ADAPTER_CONFIG).is_file():
        raise AdapterError(f"{directory} has no {ADAPTER_CONFIG}: it is not a ptuning or PEFT adapter")
    name = _read_json(directory / ADAPTER_CONFIG).get("base_model_name_or_path")
    if (directory / PTUNING_CONFIG).is_file():
        config = _read_json(directory / PTUNING_CONFIG).get("config")
        if isinstance(config, dict) and "base_model" in config:
            name = config["base_model"]
    return str(name or EMBEDDED_ID)


def unpack_adapter_zip(file: str, folder: Path, max_bytes: int = MAX_ADAPTER_BYTES) -> None:
    """Extract only the adapter files of a zip (at its root or in one folder); refuse unsafe ones, and those that
    would unpack to more than ``max_bytes`` (checked before anything is unpacked)."""
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError):
        raise AdapterError("the upload is not a zip archive: upload the .zip the Train tab downloads") from None
    with archive:
        members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            path = PurePosixPath(info.filename.replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts or ":" in info.filename:
                raise AdapterError(f"the zip holds an unsafe path ({info.filename!r}); it was not opened")
            if info.is_dir() or path.name not in ADAPTER_FILES:
                continue  # other files (.DS_Store, __MACOSX/...) are ignored, never extracted
            if path.name in members:
                raise AdapterError(f"the zip holds two copies of {path.name}: zip one adapter folder only")
            members[path.name] = info
        missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if name not in members]
        if missing:
            raise AdapterError(f"the zip has no {' or '.join(missing)}: it is not a ptuning or PEFT adapter")
        size = sum(info.file_size for info in members.values())  # zipfile never reads past these sizes
        if size > max_bytes:
            limit = human_size(max_bytes)
            raise AdapterError(f"the adapter files take {human_size(size)} unzipped; the limit is {limit}")
        for name, info in members.items():
            with archive.open(info) as source, open(folder / name, "wb") as target:
                shutil.copyfileobj(source, target)


def load_adapter(cls, directory: str | Path, *, device=None, base_model: str | None = None):
    """Build a ``cls`` (PromptClassifier) from the adapter files in ``directory``; see the module docstring for what
    is checked. ``base_model`` replaces the base the files name."""
    directory = Path(directory)
    peft, tensors, digests = _read_peft_files(directory)
    config, info, recorded = _read_config(directory, peft, tensors)
    if base_model:
        config.base_model = base_model
    elif not config.base_model:
        config.base_model = EMBEDDED_ID
    _check_prompt_shape(config, tensors["prompt_embeddings"], peft)

    backbone = load_backbone(config.base_model, device)
    if tensors["prompt_embeddings"].shape[1] != backbone.hidden_size:
        raise AdapterError(
            f"prompt_embeddings have width {tensors['prompt_embeddings'].shape[1]} but the base model "
            f"{backbone.name!r} has hidden size {backbone.hidden_size}: the adapter was made for another base"
        )
    clf = cls(config=config, device=device)
    clf.info = info
    resume = directory / RESUME_WEIGHTS
    # An encoder the config does not list is a leftover of another save: the prompt table is the adapter's own
    listed = recorded is None or RESUME_WEIGHTS in recorded
    use_resume = config.method == Method.P_TUNING and resume.is_file() and listed
    with torch.no_grad():
        if use_resume:
            encoder, digests[RESUME_WEIGHTS] = _read_tensors(resume)
            _load_module(clf.prompt, encoder, "", RESUME_WEIGHTS)
        else:
            clf.prompt = PromptTable(tensors["prompt_embeddings"]).to(clf.device)
        prefix = _HEAD_PREFIX if config.pooling == Pooling.MODEL else _OWN_HEAD_PREFIX
        _load_module(clf.head, tensors, prefix, ADAPTER_WEIGHTS)
        if clf.deep is not None:
            if _DEEP not in tensors or tensors[_DEEP].shape != clf.deep.tables.shape:
                raise AdapterError(
                    f"{ADAPTER_WEIGHTS}: '{_DEEP}' is missing or not of shape {tuple(clf.deep.tables.shape)}"
                )
            clf.deep.tables.copy_(tensors[_DEEP])
        if clf.offsets is not None:
            for name, value in clf.offsets().items():
                saved = tensors.get(_OFFSETS + name)
                if saved is None or saved.shape != value.shape:
                    raise AdapterError(f"{ADAPTER_WEIGHTS}: '{_OFFSETS + name}' is missing or not of shape "
                                       f"{tuple(value.shape)}: the adapter was made for another base model")  # fmt: skip
                value.copy_(saved)
        if clf.low_rank is not None:
            for name, pair in clf.low_rank().items():
                for part, value in zip(("lora_A", "lora_B"), pair):
                    key = f"{_LOW_RANK}{name}.{part}"
                    saved = tensors.get(key)
                    if saved is None or saved.shape != value.shape:
                        raise AdapterError(f"{ADAPTER_WEIGHTS}: '{key}' is missing or not of shape {tuple(value.shape)}: "
                                           "the adapter was made for another base model or rank")  # fmt: skip
                    value.copy_(saved)
    _check_digests(recorded, digests)
    clf.head.requires_grad_(config.train_head)
    clf.prompt.requires_grad_(config.start_layer == 0)  # the loaded table trains only from layer 0
    clf.eval()
    return clf


def _check_digests(recorded: dict | None, digests: dict[str, str]) -> None:
    """Refuse weights other than those ``ptuning_config.json`` was saved with (None: an adapter without digests)."""
    if recorded is None:
        return
    for name, digest in digests.items():
        if recorded.get(name) != digest:
            raise AdapterError(
                f"{name} is not the file {PTUNING_CONFIG} was saved with (its sha256 differs): the adapter's files "
                "come from two different saves, e.g. one that was interrupted; save or download the adapter again"
            )


def _read_peft_files(directory: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, str]]:
    """``adapter_config.json`` and ``adapter_model.safetensors`` (with its sha256), refused unless a PROMPT_TUNING /
    P_TUNING SEQ_CLS adapter with its prompt."""
    if not (directory / ADAPTER_CONFIG).is_file():
        raise AdapterError(f"{directory} has no {ADAPTER_CONFIG}: it is not a ptuning or PEFT adapter")
    if not (directory / ADAPTER_WEIGHTS).is_file():
        raise AdapterError(
            f"{directory} has no {ADAPTER_WEIGHTS} (only safetensors weights are loaded, never pickles)"
        )
    peft = _read_json(directory / ADAPTER_CONFIG)
    tensors, digest = _read_tensors(directory / ADAPTER_WEIGHTS)
    if peft.get("peft_type") not in ("PROMPT_TUNING", "P_TUNING"):
        raise AdapterError(
            f"peft_type {peft.get('peft_type')!r} is not supported: ptuning loads PROMPT_TUNING and P_TUNING adapters"
        )
    if peft.get("task_type") not in ("SEQ_CLS", None):
        raise AdapterError(f"task_type {peft.get('task_type')!r} is not supported: ptuning loads SEQ_CLS adapters")
    if "prompt_embeddings" not in tensors:
        raise AdapterError(f"{ADAPTER_WEIGHTS} has no 'prompt_embeddings' tensor")
    return peft, tensors, {ADAPTER_WEIGHTS: digest}


def _read_config(directory: Path, peft: dict, tensors: dict) -> tuple[PromptConfig, dict, dict | None]:
    """The adapter's config, info and recorded weight digests (None when it has none): from ``ptuning_config.json``,
    or made up for an adapter PEFT saved."""
    if not (directory / PTUNING_CONFIG).is_file():
        return _config_from_peft(peft, tensors), {"source": "peft"}, None
    ours = _read_json(directory / PTUNING_CONFIG)
    if not isinstance(ours.get("config"), dict):
        raise AdapterError(f"{PTUNING_CONFIG} has no 'config' object")
    version = ours.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise AdapterError(f"{PTUNING_CONFIG}: format_version must be a whole number, not {version!r}")
    if version > FORMAT_VERSION:
        raise AdapterError(f"{PTUNING_CONFIG} was written by a newer ptuning (format {version})")
    recorded = ours.get(WEIGHTS_SHA256)
    if recorded is not None and not (isinstance(recorded, dict) and all(isinstance(v, str) for v in recorded.values())):
        raise AdapterError(f"{PTUNING_CONFIG}: {WEIGHTS_SHA256} must map file names to sha256 digests")
    try:
        config = PromptConfig.from_dict(ours["config"])
    except PtuningError as e:
        raise AdapterError(f"{PTUNING_CONFIG}: {e}") from None
    return config, ours.get("info") if isinstance(ours.get("info"), dict) else {}, recorded


def _load_module(module: torch.nn.Module, tensors: dict, prefix: str, filename: str) -> None:
    expected = module.state_dict()
    for name, target in expected.items():
        key = prefix + name
        if key not in tensors:
            raise AdapterError(f"{filename} has no tensor '{key}' (the adapter is incomplete or for another model)")
        if tensors[key].shape != target.shape:
            raise AdapterError(
                f"{filename}: '{key}' has shape {tuple(tensors[key].shape)}, expected {tuple(target.shape)}"
            )
    module.load_state_dict({name: tensors[prefix + name] for name in expected})


def _check_prompt_shape(config: PromptConfig, prompt: torch.Tensor, peft: dict) -> None:
    if prompt.ndim != 2:
        raise AdapterError(f"prompt_embeddings must be 2-D [num_virtual_tokens, hidden], not {tuple(prompt.shape)}")
    if prompt.shape[0] != config.num_virtual_tokens:
        raise AdapterError(
            f"prompt_embeddings holds {prompt.shape[0]} vectors but the config says {config.num_virtual_tokens}"
        )
    if peft.get("token_dim") not in (None, prompt.shape[1]):
        raise AdapterError(f"token_dim {peft.get('token_dim')} does not match prompt_embeddings {tuple(prompt.shape)}")


def _config_from_peft(peft: dict, tensors: dict) -> PromptConfig:
    """The config of an adapter PEFT saved: prompts prepended, the backbone's own head, labels from its size."""
    # the head's last linear layer gives the label count
    outputs = ("classifier.out_proj.weight", "classifier.weight", "score.weight")
    last = next((_HEAD_PREFIX + k for k in outputs if _HEAD_PREFIX + k in tensors), None)
    if last is None:
        raise AdapterError(
            f"{ADAPTER_WEIGHTS} has no head tensor (base_model.classifier.* or base_model.score.*): "
            "save the PEFT model with modules_to_save for its classification head"
        )
    n = int(tensors[last].shape[0])
    try:
        n_virtual = int(peft.get("num_virtual_tokens"))
    except (TypeError, ValueError):
        raise AdapterError("adapter_config.json has no valid num_virtual_tokens") from None
    return PromptConfig(
        base_model=str(peft.get("base_model_name_or_path") or ""),
        labels=[f"LABEL_{i}" for i in range(n)] if n > 1 else [],
        task="classification" if n > 1 else "regression",
        # P_TUNING's encoder is not saved by PEFT: its output is loaded as a plain prompt table
        method=Method.PROMPT,
        num_virtual_tokens=n_virtual,
        placement="start",
        pooling=Pooling.MODEL,
    )
