"""The model card of an adapter (its ``README.md`` on the Hub), SetFit-style: Hub metadata in YAML, then a
description in Markdown (what was trained on what, the labels, the training settings, the results, how to load it).

    make_model_card(card_info(clf, folder, "user/sentiment-prompt")).save(folder / CARD_FILE)

The metadata says what a visitor needs to choose an adapter (labels, base model, and in a ``ptuning`` section the
task and method), so that ``read_card_data`` reads it back from a Hub listing without downloading the adapter. When
the pushing app knows its public address (``PTUNING_PUBLIC_URL``; on a Space ``https://$SPACE_HOST``), the card
links back to it: ``APP/?adapter=OWNER/NAME`` opens the app with the adapter loaded.

User text (labels, descriptions, names) reaches the Markdown only escaped and the YAML only through the YAML dumper.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from huggingface_hub import CardData, EvalResult, ModelCard, ModelCardData

from .adapter_files import ADAPTER_WEIGHTS
from .errors import ConfigError
from .hub import is_valid_repo_id
from .interpret import read_prompt, reading_markdown
from .markdown import code_block, md, md_block, table
from .metrics import METRIC_NAMES, metric_title
from .units import human_size

TAGS = ("ptuning", "p-tuning", "prompt-tuning", "text-classification")
METHOD_NAMES = {
    "prompt": "prompt tuning (the virtual token embeddings are trained directly)",
    "p-tuning": "P-tuning (the virtual tokens come out of a small trained prompt encoder)",
    "deep": "deep prompt tuning (trained prompts at every layer of the backbone)",
}
SECTION = "ptuning"  # the card metadata's own section: what the Hub has no key for
SECTION_KEYS = ("method", "placement", "num_virtual_tokens")  # and the task, always
PUBLIC_URL_VARIABLE = "PTUNING_PUBLIC_URL"
# An address to put in a Markdown link as it is: a scheme, a host, an optional port and path, nothing to escape
_APP_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?")
_TASK_NAMES = {"Text Classification": "classification", "Text Regression": "regression"}


def card_info(clf, directory: Path, repo_id: str | None = None) -> dict:
    """What the card says about the PromptClassifier ``clf``, whose adapter files are in ``directory``."""
    cfg = clf.config
    info = dict(clf.info)
    return {
        "base_model": cfg.base_model,
        "labels": cfg.labels,
        "task": cfg.task,
        "method": cfg.method.value,
        "placement": cfg.placement,
        "pooling": cfg.pooling.value,
        "num_virtual_tokens": cfg.num_virtual_tokens,
        "start_layer": cfg.start_layer,
        "bias_offsets": cfg.bias_offsets,
        "lora_rank": cfg.lora_rank,
        "peft_compatible": clf.peft_incompatible_reason is None,
        "peft_incompatible_reason": clf.peft_incompatible_reason,
        "metrics": info.get("metrics"),
        "dataset_description": info.get("dataset_description"),
        "training": info.get("training"),
        "adapter_bytes": (Path(directory) / ADAPTER_WEIGHTS).stat().st_size,
        "trainable_params": clf.num_trainable_parameters(),
        "prompt_reading": read_prompt(clf),
        "repo_id": repo_id,
        "app_url": public_app_url(),
    }


def public_app_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The public address of the app this process serves, for the card's "Try it" link: ``PTUNING_PUBLIC_URL``, else
    ``https://$SPACE_HOST`` on a Hugging Face Space, else None (a laptop, the command line: no link).

    >>> public_app_url({"SPACE_HOST": "alice-ptuning.hf.space"})
    'https://alice-ptuning.hf.space'
    """
    environ = os.environ if environ is None else environ
    given = environ.get(PUBLIC_URL_VARIABLE, "").strip()
    if given:
        url = given.rstrip("/")
        if not _APP_URL.fullmatch(url):
            raise ConfigError(
                f"{PUBLIC_URL_VARIABLE}={given!r} is not an app address: give http(s)://host[:port][/path], "
                "e.g. https://ptuning.example.org"
            )
        return url
    host = environ.get("SPACE_HOST", "").strip()
    return f"https://{host}" if host and _APP_URL.fullmatch(f"https://{host}") else None


def try_it_url(app_url: str, repo_id: str) -> str:
    """The address that opens the app at ``app_url`` with the Hub adapter ``repo_id`` loaded on its Classify tab.

    >>> try_it_url("https://alice-ptuning.hf.space", "alice/movie-prompt")
    'https://alice-ptuning.hf.space/?adapter=alice/movie-prompt'
    """
    if not _APP_URL.fullmatch(app_url.rstrip("/")):
        raise ConfigError(f"{app_url!r} is not an app address: give http(s)://host[:port][/path]")
    return f"{app_url.rstrip('/')}/?adapter={quote(repo_id, safe='/')}"


def make_model_card(info: dict[str, Any]) -> ModelCard:
    """The model card (``README.md``) of an adapter: Hub metadata in YAML, then a description in markdown.

    ``info`` needs ``base_model``; the other keys are optional: ``labels``, ``task`` ("classification" or
    "regression"), ``method`` ("prompt", "p-tuning", "deep"), ``placement``, ``num_virtual_tokens``,
    ``peft_compatible``, ``peft_incompatible_reason``, ``metrics`` ({"accuracy": 0.83, ...}),
    ``dataset_description`` (free text), ``dataset_name``, ``eval_split``, ``adapter_bytes``,
    ``trainable_params``, ``training`` (hyperparameters), ``prompt_reading`` (``interpret.read_prompt``), ``license``,
    ``repo_id``, ``app_url`` (the pushing app's public address: with ``repo_id``, a "Try it" link to it). User text
    only ever reaches the markdown body escaped, or the YAML through the YAML dumper.

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
            metric_name=metric_title(name),
            metric_value=value,
        )
        for name, value in metrics.items()
    ]
    section = {"task": task, **{key: info[key] for key in SECTION_KEYS if info.get(key) is not None}}
    data = ModelCardData(
        # The Hub takes a repo id here; a local backbone directory is named in the text only.
        base_model=base if is_valid_repo_id(base) else None,
        library_name="ptuning",
        license=info.get("license"),
        pipeline_tag="text-classification",
        tags=[*TAGS, *(["peft"] if peft else [])],
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
        labels=labels or None,
        **{SECTION: section},
    )
    body = _card_body(info, base=base, task=task, labels=labels, metrics=metrics, name=model_name, peft=peft)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


@dataclass(frozen=True)
class CardFacts:
    """What an adapter's card metadata says about it: what ``make_model_card`` wrote, read back from a Hub listing
    (``cardData``) without downloading the adapter. A card of an older ptuning, or of another library, may not say
    everything: what it does not say is None (or no labels)."""

    labels: tuple[str, ...] = ()
    task: str | None = None
    base_model: str | None = None
    method: str | None = None
    metric: str | None = None  # the headline metric's key ("accuracy"), its value in metric_value
    metric_value: float | None = None


def read_card_data(data: CardData | Mapping | None) -> CardFacts:
    """The facts in a card's metadata (``ModelCard.data``, ``ModelInfo.card_data`` or the YAML as a dict); values
    of the wrong type are left out, never an error, since anyone can write a card.

    >>> read_card_data(make_model_card({"base_model": "bert-base-uncased", "labels": ["neg", "pos"]}).data).labels
    ('neg', 'pos')
    """
    if data is None:
        return CardFacts()
    if not isinstance(data, CardData):
        data = ModelCardData(**dict(data), ignore_metadata_errors=True)
    section = data.get(SECTION)
    section = section if isinstance(section, Mapping) else {}
    labels = data.get("labels")
    results = [r for r in data.get("eval_results") or [] if _is_number(r.metric_value)]
    ranked = sorted(results, key=lambda r: list(METRIC_NAMES).index(r.metric_type) if r.metric_type in METRIC_NAMES
                    else len(METRIC_NAMES))  # fmt: skip
    headline = ranked[0] if ranked else None
    task = _text(section.get("task")) or (_TASK_NAMES.get(results[0].task_name) if results else None)
    base = data.get("base_model")
    return CardFacts(
        labels=tuple(str(label) for label in labels) if isinstance(labels, list) else (),
        task=task,
        base_model=_text(base[0] if isinstance(base, list) and len(base) == 1 else base),
        method=_text(section.get("method")),
        metric=_text(headline.metric_type) if headline else None,
        metric_value=float(headline.metric_value) if headline else None,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _card_body(
    info: dict[str, Any], *, base: str, task: str, labels: list[str], metrics: dict[str, float], name: str, peft: bool
) -> str:
    out = [f"# {md(name)}", ""] + _what_it_is(info, base, task)
    if labels:
        out += ["## Labels", ""] + table(("id", "label"), [(str(i), md(label)) for i, label in enumerate(labels)])
    if info.get("dataset_description"):
        out += ["## Training data", "", md_block(str(info["dataset_description"])), ""]
    if info.get("training"):
        rows = [(md(key), md(_format_value(value))) for key, value in info["training"].items()]
        out += ["## Training", ""] + table(("hyperparameter", "value"), rows)
    if metrics:
        split = f" on the {md(info['eval_split'])} split" if info.get("eval_split") else ""
        out += ["## Results", "", f"Measured{split} after training.", ""]
        out += table(("metric", "value"), [(md(metric_title(k)), f"{v:.4f}") for k, v in metrics.items()])
    if info.get("prompt_reading"):
        out += ["## Reading the prompt", "", reading_markdown(info["prompt_reading"])]
    out += _how_to_use(info, base, task, labels, peft)
    return "\n".join(out)


def _what_it_is(info: dict[str, Any], base: str, task: str) -> list[str]:
    """A sentence on what was trained on what, then a table of the facts."""
    method, tokens, placement = info.get("method"), info.get("num_virtual_tokens"), info.get("placement")
    what = f"A soft-prompt adapter for the frozen text classifier {md(base)}"
    if tokens:
        what += f": {int(tokens)} virtual tokens"
    if method:
        what += f" trained with {md(METHOD_NAMES.get(method, method))}"
    if placement:
        what += f", placed as {md(placement)}"
    out = [
        what + ". The backbone's weights are unchanged: only the prompts and the classification head were trained,"
        " with the ptuning library.",
        "",
    ]
    facts = [("Base model", md(base)), ("Task", md(task))]
    if method:
        facts.append(("Method", md(method)))
    if tokens:
        facts.append(("Virtual tokens", str(int(tokens))))
    if placement:
        facts.append(("Placement", md(placement)))
    if info.get("start_layer"):
        facts.append(("Trained from layer", f"{int(info['start_layer'])} (the prompts below it stay at their start)"))
    if info.get("bias_offsets"):
        facts.append(("Bias offsets", "trained (BitFit-style, per adapter, from the start layer up)"))
    if isinstance(info.get("lora_rank"), int) and not isinstance(info["lora_rank"], bool) and info["lora_rank"] > 0:
        facts.append(("Low-rank updates", f"rank {info['lora_rank']} (LoRA-style, per adapter, every linear layer from "
                                          "the start layer up)"))  # fmt: skip
    if info.get("trainable_params") is not None:
        facts.append(("Trainable parameters", f"{int(info['trainable_params']):,}"))
    if info.get("adapter_bytes") is not None:
        facts.append(("Adapter size", human_size(int(info["adapter_bytes"]))))
    return out + table(("", ""), facts)


def _how_to_use(info: dict[str, Any], base: str, task: str, labels: list[str], peft: bool) -> list[str]:
    """Trying it in the app that pushed it; loading it with ptuning, from the command line, and with PEFT if it can."""
    target = info.get("repo_id") or "path/to/adapter"
    out = ["## How to use", ""]
    if info.get("app_url") and info.get("repo_id"):
        link = try_it_url(str(info["app_url"]), str(info["repo_id"]))
        out += [f"**Try it** in your browser: [{md(info['repo_id'])} in the ptuning app]({link}).", ""]
    out += [
        "With ptuning:",
        "",
        code_block(
            "python",
            "from ptuning import PromptClassifier\n\n"
            f"clf = PromptClassifier.from_pretrained({json.dumps(target)})\n"
            'print(clf.predict(["an example text"]))',
        ),
        "",
        "or from the command line:",
        "",
        code_block("bash", f"python -m ptuning predict {shlex.quote(target)} {shlex.quote('an example text')}"),
        "",
    ]
    if not peft:
        reason = info.get("peft_incompatible_reason") or "it uses a prompt layout that PEFT does not implement"
        return out + [f"PEFT cannot load this adapter: {md(str(reason))}. Use ptuning as above.", ""]
    num_labels = 1 if task == "regression" else len(labels)
    labels_arg = f", num_labels={num_labels}" if num_labels else ""
    return out + [
        "With PEFT, which can load this adapter as it is:",
        "",
        code_block(
            "python",
            "from peft import PeftModel\n"
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            f"base = AutoModelForSequenceClassification.from_pretrained({json.dumps(base)}{labels_arg})\n"
            f"model = PeftModel.from_pretrained(base, {json.dumps(target)})\n"
            f"tokenizer = AutoTokenizer.from_pretrained({json.dumps(base)})",
        ),
        "",
    ]


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
