"""The Hub side of ptuning: push an adapter directory, download one, and write its model card.

Everything goes through huggingface_hub (``HfApi``, ``snapshot_download``, ``ModelCard``); this module only
chooses which files travel and turns the client's exceptions into :class:`HubError` / :class:`AdapterError`
with messages that say what to do. A token is never put in a message: it is scrubbed even from text the
server sends back.

The card is the caller's to write, before pushing::

    make_model_card(info).save(folder / "README.md")
    url = push_adapter(folder, "user/sentiment-prompt")
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, constants, get_token, snapshot_download
from huggingface_hub.errors import (
    BadRequestError,
    GatedRepoError,
    HFValidationError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from .adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PTUNING_CONFIG, RESUME_WEIGHTS
from .errors import AdapterError, HubError

try:  # the HTTP library under huggingface_hub: httpx2 since huggingface_hub 2, httpx before
    from httpx2 import TransportError as _TransportError
except ImportError:  # pragma: no cover
    from httpx import TransportError as _TransportError

CONFIG_FILE, WEIGHTS_FILE, PTUNING_CONFIG_FILE, RESUME_FILE = ADAPTER_CONFIG, ADAPTER_WEIGHTS, PTUNING_CONFIG, RESUME_WEIGHTS
CARD_FILE = "README.md"
# The only names that travel, both ways. Weights are safetensors only: never *.bin / *.pt / pickles.
ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE, PTUNING_CONFIG_FILE, RESUME_FILE, CARD_FILE)

TAGS = ("ptuning", "p-tuning", "prompt-tuning", "text-classification")
METHOD_NAMES = {
    "prompt": "prompt tuning (the virtual token embeddings are trained directly)",
    "p-tuning": "P-tuning (the virtual tokens come out of a small trained prompt encoder)",
    "deep": "deep prompt tuning (trained prompts at every layer of the backbone)",
}
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "macro_f1": "Macro F1",
    "f1": "F1",
    "precision": "Precision",
    "recall": "Recall",
    "mse": "MSE",
    "rmse": "RMSE",
    "mae": "MAE",
    "r2": "R²",
    "pearson": "Pearson r",
    "spearman": "Spearman ρ",
}


def is_repo_id(s: str) -> bool:
    """Whether ``s`` names a Hub repo (``"user/name"`` or ``"name"``) rather than an existing local path.

    An existing path always wins, so ``"runs/adapter"`` is a directory when it exists and a repo id when not.

    >>> is_repo_id("user/sentiment-prompt"), is_repo_id("./runs/adapter"), is_repo_id("a b")
    (True, False, False)
    """
    if not s or Path(s).expanduser().exists():
        return False
    try:
        validate_repo_id(s)
    except HFValidationError:
        return False
    return True


def push_adapter(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload the adapter files in ``folder`` to the model repo ``repo_id`` in one commit; return the repo URL.

    The repo is created when missing (``private`` applies only then). The commit holds the files named in
    :data:`ADAPTER_FILES` that the folder has (the card ``README.md`` included, which the caller writes
    first with :func:`make_model_card`); the same names are deleted from the repo when the folder lacks
    them, so the repo never mixes files of two adapters. Other files in the folder stay local.

    ``token`` defaults to the one huggingface_hub finds (``HF_TOKEN``, then ``hf auth login``).

    >>> push_adapter("runs/sentiment", "user/sentiment-prompt")  # doctest: +SKIP
    'https://huggingface.co/user/sentiment-prompt'
    """
    folder = Path(folder)
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / required).is_file():
            raise AdapterError(f"{folder} has no {required}: save the trained adapter there before pushing it")
    _check_repo_id(repo_id)
    secret = token or get_token()
    if secret is None:
        raise HubError(
            "no Hugging Face token to push with: log in with `hf auth login` or pass --token / set HF_TOKEN "
            "(the token needs write access)"
        )

    api = HfApi(endpoint=endpoint, token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            allow_patterns=[name for name in ADAPTER_FILES if (folder / name).is_file()],
            delete_patterns=list(ADAPTER_FILES),
            commit_message=commit_message or "Upload ptuning adapter",
        )
    except (HfHubHTTPError, _TransportError, ConnectionError) as err:
        raise _hub_error(err, repo_id=repo_id, endpoint=api.endpoint, action="push to", secret=secret) from err
    except ValueError as err:
        if not isinstance(err.__cause__, BadRequestError):  # only the Hub's verdict on README.md's metadata
            raise
        problem = _scrub(" ".join(str(err).split()), secret)
        raise AdapterError(f"{problem} ({folder / CARD_FILE}): write the card with make_model_card") from err
    return str(url)


def download_adapter(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    include_resume: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """Download the adapter files of ``repo_id`` into the Hugging Face cache; return their local directory.

    Only the names in :data:`ADAPTER_FILES` are fetched (``ptuning_resume.safetensors`` only with
    ``include_resume``), so a repo's pickled ``*.bin`` / ``*.pt`` weights are never downloaded. With no
    network, or ``HF_HUB_OFFLINE=1``, a copy already in the cache is returned.

    >>> download_adapter("user/sentiment-prompt")  # doctest: +SKIP
    PosixPath('~/.cache/huggingface/hub/models--user--sentiment-prompt/snapshots/3f2a...')
    """
    _check_repo_id(repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    wanted = [name for name in ADAPTER_FILES if include_resume or name != RESUME_FILE]
    try:
        local = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                token=token,
                endpoint=api.endpoint,
                cache_dir=cache_dir,
                allow_patterns=wanted,
            )
        )
    except LocalEntryNotFoundError as err:
        offline = " or offline mode is on (unset HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE else ""
        raise HubError(
            f"cannot download '{repo_id}': {api.endpoint} could not be reached{offline}, and no copy is in the "
            "cache; check the network connection and retry"
        ) from err
    except RevisionNotFoundError as err:
        raise HubError(
            f"revision '{revision}' not found in '{repo_id}' on {api.endpoint} (check the branch, tag or commit id)"
        ) from err
    except (HfHubHTTPError, _TransportError, ConnectionError) as err:
        secret = token or get_token()
        raise _hub_error(err, repo_id=repo_id, endpoint=api.endpoint, action="download", secret=secret) from err

    if not (local / CONFIG_FILE).is_file():
        raise AdapterError(
            f"'{repo_id}' has no {CONFIG_FILE}: it is not a ptuning/PEFT adapter (for a whole model, use it as "
            "the base model instead)"
        )
    if not (local / WEIGHTS_FILE).is_file():
        raise AdapterError(
            f"'{repo_id}' has {CONFIG_FILE} but no {WEIGHTS_FILE}: ptuning loads safetensors weights only, not "
            "pickled .bin/.pt files; re-save the adapter with safetensors"
        )
    return local


def _check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubError(f"'{repo_id}' is not a valid repo id: use 'user/name' (letters, digits, '-', '_', '.')") from err


def _hub_error(err: Exception, *, repo_id: str, endpoint: str, action: str, secret: str | None) -> HubError:
    """One line for what the Hub (or the network) refused, never holding the token."""
    if isinstance(err, GatedRepoError):
        message = f"'{repo_id}' on {endpoint} is gated: ask for access on its page, then pass a token"
    elif isinstance(err, RepositoryNotFoundError):
        message = f"repository '{repo_id}' not found on {endpoint} (check the id, or pass a token for a private repo)"
    elif isinstance(err, RevisionNotFoundError):
        message = f"'{repo_id}' on {endpoint} has no such revision (check the branch, tag or commit id)"
    elif isinstance(err, HfHubHTTPError):
        status = err.response.status_code
        if status == 401:
            message = (
                f"{endpoint} rejected the token (401 Unauthorized): check that it is valid and not revoked, "
                "or log in again with `hf auth login` / set HF_TOKEN"
            )
        elif status == 403:
            message = (
                f"the token may not {action} '{repo_id}' on {endpoint} (403 Forbidden): use a token with "
                "write access to that namespace"
            )
        else:
            detail = err.server_message or str(err).strip().splitlines()[0]
            message = f"{endpoint} refused to {action} '{repo_id}' (HTTP {status}): {detail}"
    else:
        message = f"cannot reach {endpoint} ({type(err).__name__}): check the network connection, proxy or HF_ENDPOINT"
    return HubError(_scrub(message, secret))


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


# -- the model card ------------------------------------------------------------------------------------


def make_model_card(info: dict[str, Any]) -> ModelCard:
    """The model card (``README.md``) of an adapter: Hub metadata in YAML, then a description in markdown.

    ``info`` needs ``base_model``; the other keys are optional: ``labels``, ``task`` ("classification" or
    "regression"), ``method`` ("prompt", "p-tuning", "deep"), ``placement``, ``num_virtual_tokens``,
    ``peft_compatible``, ``peft_incompatible_reason``, ``metrics`` ({"accuracy": 0.83, ...}),
    ``dataset_description`` (free text), ``dataset_name``, ``eval_split``, ``adapter_bytes``,
    ``trainable_params``, ``training`` (hyperparameters), ``license``, ``repo_id``. User text only ever
    reaches the markdown body escaped, or the YAML through the YAML dumper.

    >>> card = make_model_card({"base_model": "bert-base-uncased", "labels": ["neg", "pos"]})
    >>> card.data.library_name, card.data.labels
    ('ptuning', ['neg', 'pos'])
    """
    base = str(info["base_model"])
    task = info.get("task") or "classification"
    labels = [str(label) for label in info.get("labels") or []]
    metrics = {str(k): float(v) for k, v in (info.get("metrics") or {}).items() if _is_number(v)}
    repo_id = info.get("repo_id")
    peft = bool(info.get("peft_compatible"))
    model_name = repo_id.split("/")[-1] if repo_id else f"{base.rstrip('/').split('/')[-1]}-ptuning"

    eval_results = [
        EvalResult(
            task_type="text-classification",
            task_name="Text Regression" if task == "regression" else "Text Classification",
            dataset_type="custom",
            dataset_name=str(info.get("dataset_name") or "user-provided data"),
            dataset_split=info.get("eval_split"),
            metric_type=name,
            metric_name=METRIC_NAMES.get(name, name),
            metric_value=value,
        )
        for name, value in metrics.items()
    ]
    data = ModelCardData(
        # The Hub takes a repo id here; a local backbone directory is named in the text only.
        base_model=base if _is_hub_id(base) else None,
        library_name="ptuning",
        license=info.get("license"),
        pipeline_tag="text-classification",
        tags=[*TAGS, *(["peft"] if peft else [])],
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
        labels=labels or None,
    )
    body = _card_body(info, base=base, task=task, labels=labels, metrics=metrics, name=model_name, peft=peft)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _card_body(
    info: dict[str, Any], *, base: str, task: str, labels: list[str], metrics: dict[str, float], name: str, peft: bool
) -> str:
    repo_id = info.get("repo_id")
    method = info.get("method")
    tokens = info.get("num_virtual_tokens")
    placement = info.get("placement")
    out = [f"# {_md(name)}", ""]

    what = f"A soft-prompt adapter for the frozen text classifier {_md(base)}"
    if tokens:
        what += f": {int(tokens)} virtual tokens"
    if method:
        what += f" trained with {_md(METHOD_NAMES.get(method, method))}"
    if placement:
        what += f", placed as {_md(placement)}"
    out += [
        what + ". The backbone's weights are unchanged: only the prompts and the classification head were trained,"
        " with the ptuning library.",
        "",
    ]

    facts = [("Base model", _md(base)), ("Task", _md(task))]
    if method:
        facts.append(("Method", _md(method)))
    if tokens:
        facts.append(("Virtual tokens", str(int(tokens))))
    if placement:
        facts.append(("Placement", _md(placement)))
    if info.get("trainable_params") is not None:
        facts.append(("Trainable parameters", f"{int(info['trainable_params']):,}"))
    if info.get("adapter_bytes") is not None:
        facts.append(("Adapter size", _human_bytes(int(info["adapter_bytes"]))))
    out += _table(("", ""), facts)

    if labels:
        out += ["## Labels", ""] + _table(("id", "label"), [(str(i), _md(label)) for i, label in enumerate(labels)])
    if info.get("dataset_description"):
        out += ["## Training data", "", _md_block(str(info["dataset_description"])), ""]
    if info.get("training"):
        rows = [(_md(key), _md(_format_value(value))) for key, value in info["training"].items()]
        out += ["## Training", ""] + _table(("hyperparameter", "value"), rows)
    if metrics:
        split = f" on the {_md(info['eval_split'])} split" if info.get("eval_split") else ""
        out += ["## Results", "", f"Measured{split} after training.", ""]
        out += _table(("metric", "value"), [(_md(METRIC_NAMES.get(k, k)), f"{v:.4f}") for k, v in metrics.items()])

    target = repo_id or "path/to/adapter"
    out += [
        "## How to use",
        "",
        "With ptuning:",
        "",
        _code(
            "python",
            "from ptuning import PromptClassifier\n\n"
            f"clf = PromptClassifier.from_pretrained({json.dumps(target)})\n"
            'print(clf.predict(["an example text"]))',
        ),
        "",
        "or from the command line:",
        "",
        _code("bash", f"python -m ptuning predict {shlex.quote(target)} {shlex.quote('an example text')}"),
        "",
    ]
    if peft:
        num_labels = 1 if task == "regression" else len(labels)
        labels_arg = f", num_labels={num_labels}" if num_labels else ""
        out += [
            "With PEFT, which can load this adapter as it is:",
            "",
            _code(
                "python",
                "from peft import PeftModel\n"
                "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
                f"base = AutoModelForSequenceClassification.from_pretrained({json.dumps(base)}{labels_arg})\n"
                f"model = PeftModel.from_pretrained(base, {json.dumps(target)})\n"
                f"tokenizer = AutoTokenizer.from_pretrained({json.dumps(base)})",
            ),
            "",
        ]
    else:
        reason = info.get("peft_incompatible_reason") or "it uses a prompt layout that PEFT does not implement"
        out += [f"PEFT cannot load this adapter: {_md(str(reason))}. Use ptuning as above.", ""]
    return "\n".join(out)


def _table(header: tuple[str, str], rows: list[tuple[str, str]]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    return lines + [f"| {a} | {b} |" for a, b in rows] + [""]


_MD_INLINE = re.compile(r"([\\`*_{}\[\]<>|~#!&])")  # CommonMark: a backslash makes any of these literal
_MD_LIST_START = re.compile(r"^([-+=])")


def _md(text: Any) -> str:
    """User text as one line of literal markdown: no markup, no HTML, no table breaks, no list or heading."""
    one_line = _MD_INLINE.sub(r"\\\1", " ".join(str(text).split()))
    # "1. x" would start a list: escape the dot (a digit cannot be escaped)
    one_line = re.sub(r"^(\d{1,9})([.)])(?=\s|$)", r"\1\\\2", one_line)
    return _MD_LIST_START.sub(r"\\\1", one_line)


def _md_block(text: str) -> str:
    """User text as literal markdown paragraphs (blank lines kept, everything else escaped)."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(_md(p) for p in paragraphs if p.strip())


def _code(language: str, code: str) -> str:
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", code)), default=0))
    return f"{fence}{language}\n{code}\n{fence}"


def _is_hub_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _is_number(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(v) for v in value)
    return str(value)


def _human_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    exponent = min(int(math.log(size, 1024)), 3)
    return f"{size / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"
