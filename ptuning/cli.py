"""The command line, a thin face over the library: ``python -m ptuning train|evaluate|predict|push|inspect|hub``.

    python -m ptuning train reviews.csv --out runs/reviews --method p-tuning
    python -m ptuning evaluate runs/reviews test.csv          # last stdout line: the metrics as JSON
    python -m ptuning predict runs/reviews "a gripping film" --json
    python -m ptuning push runs/reviews user/reviews-prompt
    python -m ptuning inspect runs/reviews --top 5          # the words nearest each prompt vector
    python -m ptuning hub search sentiment --sort likes     # published adapters, one row each

Every error a user can cause (a bad file, option or adapter, a Hub refusal) ends as one line on stderr,
``error: ...``, with exit status 2; progress and warnings go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .config import PromptConfig, additions, peft_compatible_options
from .errors import ConfigError, DataError, PtuningError
from .options import add_options, given_options, option_flag
from .training_args import TrainingArguments

CHECKPOINT_SUBDIR = "checkpoint"
_OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line like every other error (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="ptuning" if Path(sys.argv[0]).name == "ptuning" else "python -m ptuning",  # the installed command
        description="Train, evaluate, use and share soft-prompt adapters for frozen Hugging Face text classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"ptuning {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add_command in (_add_train, _add_evaluate, _add_predict, _add_inspect, _add_push, _add_hub, _add_serve):
        add_command(sub)
    return parser


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an adapter on a labelled file",
        description="Train soft prompts and a head on a frozen classifier. Progress goes to stderr; the last line "
        "of stdout is the best validation metrics as one JSON object. A checkpoint is kept in OUT/checkpoint: "
        "after an interruption (Ctrl-C) run the same command with --resume.",
    )
    p.add_argument("data", metavar="DATA", help="Training data: .csv, .tsv, .json, .jsonl, .xlsx, .parquet or .txt.")
    p.add_argument("--out", required=True, metavar="DIR", help="Directory for the adapter (created if needed).")
    g = p.add_argument_group("adapter")
    add_options(g, PromptConfig, exclude=("labels", "task"))  # both come from the data
    g.add_argument(
        "--peft-compatible",
        action="store_true",
        help="An adapter PEFT can load too: placement start, pooling model, method prompt (or --method p-tuning).",
    )
    g.add_argument(
        "--init-adapter", metavar="ADAPTER", help="Continue training a saved adapter (directory or Hub repo id)."
    )
    g.add_argument(
        "--init-from", metavar="ADAPTER",
        help="Start a new adapter's prompt from a published one's (directory or Hub repo id; same base model and "
        "prompt settings, taken from it unless given); its head too when the labels are the same.",
    )  # fmt: skip
    g = p.add_argument_group("data")
    _add_data_columns(g, labels=True)
    g.add_argument(
        "--task", choices=["classification", "regression"],
        help="Default: regression when the labels are many distinct numbers, else classification.",
    )
    held_out = g.add_mutually_exclusive_group()
    held_out.add_argument("--eval", metavar="FILE", help="Validation file (instead of holding out --val-split).")
    add_options(held_out, TrainingArguments, only=("val_split",))
    g.add_argument("--description", metavar="TEXT", help="A description of the data, for the model card.")
    g = p.add_argument_group("training")
    add_options(g, TrainingArguments, exclude=("val_split", "checkpoint_dir"))  # the checkpoint goes into --out
    g.add_argument("--quiet", action="store_true", help="No progress bar.")
    g.add_argument(
        "--search", type=int, metavar="N",
        help="Train N trials with settings Optuna proposes (method, prompt length, learning rates, epochs: those "
        "not given as options), scored on the validation data; weak trials stop early. Prints every trial in a "
        "table and saves the best adapter to --out. The seed (--seed) fixes the trials.",
    )  # fmt: skip
    p.set_defaults(func=cmd_train)


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure an adapter on a labelled file",
        description="Score an adapter on labelled data; the last line of stdout is the metrics as one JSON object "
        "(classification: accuracy, macro_f1, per_class, confusion_matrix; regression: pearson, spearman, mse, "
        "mae; both: n_examples).",
    )
    p.add_argument("adapter", metavar="ADAPTER", help="Adapter directory or Hub repo id.")
    p.add_argument("data", metavar="DATA", help="Labelled data, labels named as in the adapter.")
    _add_data_columns(p, labels=True)
    _add_loading(p)
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="Examples per forward pass. Default: 64.")
    p.set_defaults(func=cmd_evaluate)


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="classify texts with an adapter",
        description="Classify the texts given as arguments or read from --input; print a table, or JSON lines "
        "with --json; --output writes a .csv (text, label, score, one score column per label) or .jsonl file.",
    )
    p.add_argument("adapter", metavar="ADAPTER", help="Adapter directory or Hub repo id.")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="Texts to classify.")
    p.add_argument("--input", metavar="FILE", help="Read the texts from a file (any format train reads).")
    p.add_argument("--output", metavar="FILE", help="Write the predictions to a .csv or .jsonl file.")
    p.add_argument("--json", action="store_true", help='One JSON object a line: {"text", "label", "score", "scores"}.')
    _add_data_columns(p, labels=False)
    _add_loading(p)
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="Examples per forward pass. Default: 32.")
    p.set_defaults(func=cmd_predict)


def _add_inspect(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="read an adapter's prompt: the words nearest each vector",
        description="For each input prompt vector (after any encoder), the vocabulary tokens nearest it by cosine "
        "similarity, and whether it is far from every word. A deep adapter's per-layer tables are not in word "
        "space and are not read.",
    )
    p.add_argument("adapter", metavar="ADAPTER", help="Adapter directory or Hub repo id.")
    p.add_argument("--top", type=int, default=5, metavar="K", help="Nearest tokens per vector. Default: 5.")
    p.add_argument("--json", action="store_true", help='One JSON object: {"far_cosine", "vectors", "note"}.')
    _add_loading(p)
    p.set_defaults(func=cmd_inspect)


def _add_push(sub) -> None:
    p = sub.add_parser(
        "push",
        help="upload an adapter to the Hugging Face Hub",
        description="Upload an adapter with a generated model card to a Hub model repo (created if missing).",
    )
    p.add_argument("adapter", metavar="ADAPTER", help="Adapter directory.")
    p.add_argument("repo_id", metavar="REPO_ID", help="Target repo, e.g. user/sentiment-prompt.")
    p.add_argument("--token", metavar="T", help="Hub token with write access (default: HF_TOKEN or `hf auth login`).")
    p.add_argument("--private", action="store_true", help="Create the repo as private (when it does not exist).")
    p.add_argument("--endpoint", metavar="URL", help="Hub endpoint (default: https://huggingface.co).")
    p.set_defaults(func=cmd_push)


def _add_hub(sub) -> None:
    from .hub_search import MAX_PER_PAGE, SORTS

    hub = sub.add_parser("hub", help="find adapters others published on the Hub", description="The Hugging Face Hub.")
    commands = hub.add_subparsers(dest="hub_command", required=True, metavar="COMMAND", parser_class=_Parser)
    p = commands.add_parser(
        "search",
        help="list published ptuning adapters",
        description="List the ptuning adapters on the Hub whose repo id holds WORDS (none: all), with what their "
        "cards say: task, labels, base model, method, the metric measured in training; read from the cards' "
        "metadata, nothing is downloaded. Private adapters are listed only to their owner's token.",
    )
    p.add_argument(
        "words", nargs="*", metavar="WORDS", help="What the repo id holds, e.g. sentiment (the Hub's search looks for "
        "the words as written in the repo ids)."
    )  # fmt: skip
    p.add_argument(
        "--sort", choices=list(SORTS), default="downloads", help="Largest or latest first. Default: downloads."
    )
    p.add_argument(
        "--limit", type=int, default=20, metavar="N", help=f"Adapters a page, 1 to {MAX_PER_PAGE}. Default: 20."
    )
    p.add_argument("--page", type=int, default=1, metavar="P", help="Which page of N adapters, from 1. Default: 1.")
    p.add_argument("--json", action="store_true", help="One JSON object a line, every field of the row.")
    p.add_argument("--token", metavar="T", help="Hub token, to list your private adapters too (default: HF_TOKEN or "
                   "`hf auth login`).")  # fmt: skip
    p.add_argument("--endpoint", metavar="URL", help="Hub endpoint (default: https://huggingface.co).")
    p.set_defaults(func=cmd_hub_search)


def _add_serve(sub) -> None:
    from .serving.options import add_serve_options

    p = sub.add_parser(
        "serve",
        help="serve adapters over HTTP, batching requests across adapters",
        description="Serve prompt adapters over one frozen backbone: POST /classify (vLLM's shape), GET /v1/models, "
        "/health, /metrics, /docs. Requests for different adapters share backbone passes.",
    )
    add_serve_options(p)
    p.add_argument("--access-log", action="store_true", help="Log a line per request (off: it costs under load).")
    p.set_defaults(func=cmd_serve)


def _add_data_columns(p: argparse.ArgumentParser, labels: bool) -> None:
    p.add_argument("--text-column", metavar="C", help="Column of the texts (default: detected: text, sentence, ...).")
    if labels:
        p.add_argument(
            "--label-column", metavar="C", help="Column of the labels (default: detected: label, target, ...)."
        )
    p.add_argument("--pair-column", metavar="C", help="Column of second texts, for pair tasks (default: detected).")


def _add_loading(p: argparse.ArgumentParser) -> None:
    p.add_argument("--revision", metavar="REV", help="Hub branch, tag or commit of the adapter.")
    p.add_argument("--token", metavar="T", help="Hub token, for private adapters.")
    p.add_argument("--endpoint", metavar="URL", help="Hub endpoint (default: https://huggingface.co).")
    p.add_argument("--device", metavar="D", help="cuda, mps or cpu (default: the best available).")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, already printed)
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    except PtuningError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def _warn(messages: Sequence[str]) -> None:
    for m in messages:
        print(f"warning: {_one_line(m)}", file=sys.stderr)


def _is_main_process() -> bool:
    # Under `accelerate launch` (torchrun) every process runs this command; only rank 0 reports.
    return int(os.environ.get("RANK", "0")) == 0


# -------------------------------------------------------------------------------------------------- train
def cmd_train(a: argparse.Namespace) -> int:
    from .data import load_dataset
    from .train import Callback, TqdmCallback, train  # at call time: tests replace TqdmCallback

    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory for the adapter")
    config = _adapter_options(a)
    data = load_dataset(
        a.data, text_column=a.text_column, label_column=a.label_column, pair_column=a.pair_column, task=a.task
    )
    eval_data = None
    if a.eval:
        eval_data = load_dataset(
            a.eval, text_column=a.text_column, label_column=a.label_column, pair_column=a.pair_column,
            task=data.task, label_names=data.label_names if data.task == "classification" else None,
        )  # fmt: skip
    args = TrainingArguments(**given_options(a, TrainingArguments), checkpoint_dir=str(out / CHECKPOINT_SUBDIR))
    main_process = _is_main_process()

    class Announce(Callback):
        """First the estimate (a budget's plan has it before the first step; otherwise the run's first steps and
        evaluation make it), then what the data and the run found (duplicates, truncation)."""

        said = False

        def on_train_begin(self, state):
            self.estimate(state)
            _warn(state.warnings)

        def on_evaluate(self, state, metrics):
            self.estimate(state)

        def estimate(self, state):
            if state.estimated_s is not None and not self.said:
                print(f"estimate: {_estimate_line(state, args)}", file=sys.stderr, flush=True)
                self.said = True

    cancel = threading.Event()
    if a.search is not None:
        return _search(a, data, eval_data, config, args, cancel, main_process)
    callbacks = [Announce()] + ([] if a.quiet else [TqdmCallback()])
    with _interrupt_sets(cancel):
        result = train(
            data, eval_data=eval_data, config=config or None, args=args, callbacks=callbacks, cancel=cancel,
            out_dir=out, init_adapter=a.init_adapter, description=a.description, init_from=a.init_from,
        )  # fmt: skip
    if main_process:
        _report(result, out)
    return 130 if result.state.cancelled else 0


def _search(a: argparse.Namespace, data, eval_data, config: dict, args, cancel, main_process: bool) -> int:
    """``train --search N``: the trials one line each on stderr as they end, then their table, then as train."""
    import optuna

    from .search import search

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial is reported here, in a line of ours
    if a.init_adapter or a.init_from or args.resume:
        raise ConfigError("--search trains new adapters from the defaults: drop --init-adapter, --init-from and "
                          "--resume")  # fmt: skip

    def progress(trial) -> None:
        if main_process:
            print(f"trial {trial.number}: {trial.state}, {trial.settings_line()}: {_score(trial.value)}", file=sys.stderr,
                  flush=True)  # fmt: skip

    with _interrupt_sets(cancel):
        result = search(
            data, a.search, eval_data=eval_data, config=config, args=args, cancel=cancel, on_trial=progress,
            out_dir=Path(a.out), description=a.description,
        )  # fmt: skip
    if main_process:
        _warn(result.warnings)
        _print_rows(result.rows())
        if result.budget_reached:
            print(f"the time budget ended the search after {len(result.trials)} of {a.search} trials")
        print(f"best: trial {result.best.number} ({result.metric_name} {result.best.value:.4f})")
        print(f"adapter saved to {a.out} (the best trial's)")
        print(json.dumps(result.metrics, ensure_ascii=False))
    return 130 if result.cancelled else 0


def _score(value: float | None) -> str:
    return str(value if value is None else round(value, 4))


def _print_rows(rows: list[dict]) -> None:
    """Dicts with the same keys as a plain table: a header, then one line each."""
    def cell(v) -> str:
        return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [[cell(v) for v in r.values()] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(rows[0])]
    print("  ".join(k.ljust(w) for k, w in zip(rows[0], widths)).rstrip())
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())


def _adapter_options(a: argparse.Namespace) -> dict:
    """The PromptConfig fields given on the command line (the rest keep their defaults), made PEFT's layout by
    --peft-compatible; none may be given with --init-adapter, which keeps the saved adapter's own."""
    given = given_options(a, PromptConfig)
    if a.init_adapter and (given or a.peft_compatible):
        flags = [option_flag(PromptConfig, name) for name in given] + ["--peft-compatible"] * a.peft_compatible
        raise ConfigError(f"--init-adapter keeps the adapter's own settings: drop {', '.join(flags)}")
    return peft_compatible_options(given) if a.peft_compatible else given


def _estimate_line(state, args: TrainingArguments) -> str:
    from .estimate import duration
    from .report import plan_line

    line = plan_line(state)
    if args.time_budget:
        line += f", planned to fit the time budget of {duration(args.time_budget)}"
    return line


def _report(result, out: Path) -> None:
    """What a finished (or stopped) run prints: where the adapter is, how the run ended (``report.outcome``), the
    metrics as JSON."""
    from .report import outcome

    o, clf = outcome(result), result.model
    c = clf.config
    how = f"{c.method.value}, {c.num_virtual_tokens} virtual tokens, placement {c.placement}"
    how += f", from layer {c.start_layer}" if c.start_layer else ""
    how += "".join(f", {a}" for a in additions(c.bias_offsets, c.lora_rank))
    print(f"adapter saved to {out} ({how})")
    if o.ended == "cancelled":
        print(
            f"training stopped at step {o.step} of {o.total_steps}; the {o.kept_words} weights so far are saved. "
            f"Run the same command with --resume to continue.",
            file=sys.stderr,
        )
    elif o.ended == "time budget":
        print(f"stopped at the time budget at step {o.step} of {o.total_steps}; the {o.kept_words} adapter so far is "
              "saved")  # fmt: skip
    elif o.ended == "stopped early":
        print(f"stopped early at step {o.step} of {o.total_steps}: no improvement in {o.patience} evaluations")
    if result.metrics and o.kept == "last":
        print(
            f"last evaluation's adapter kept (step {o.kept_step}; {o.validation_texts} validation examples are too few "
            f"to choose the best by, --patience N chooses anyway): {_summary(result.metrics)}"
        )
    elif result.metrics:
        n_val = result.metrics.get("n_examples", o.validation_texts)
        print(f"best at step {o.kept_step}: {_summary(result.metrics)} on {n_val} validation examples")
    else:
        print("no validation data (--val-split 0): no metrics")
    print(json.dumps(result.metrics, ensure_ascii=False))


class _interrupt_sets:
    """Ctrl-C sets ``event`` (the run stops after the current step and saves); a second Ctrl-C aborts."""

    def __init__(self, event: threading.Event):
        self.event = event
        self.previous = None

    def _handler(self, signum, frame):
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _summary(metrics: dict) -> str:
    from .metrics import summary_metrics

    return ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} n/a" for k, v in summary_metrics(metrics))


# -------------------------------------------------------------------------------------------------- evaluate
def cmd_evaluate(a: argparse.Namespace) -> int:
    from .data import load_dataset
    from .train import evaluate

    clf = _load_adapter(a)
    cfg = clf.config
    data = load_dataset(
        a.data, text_column=a.text_column, label_column=a.label_column, pair_column=a.pair_column, task=cfg.task,
        label_names=cfg.labels if cfg.task == "classification" else None,
    )  # fmt: skip
    _warn(data.warnings)
    metrics = evaluate(clf, data, batch_size=a.batch_size)
    print(f"{_summary(metrics)} on {metrics['n_examples']} examples")
    print(json.dumps(metrics, ensure_ascii=False))
    return 0


def _load_adapter(a: argparse.Namespace):
    from .model import PromptClassifier

    return PromptClassifier.from_pretrained(
        a.adapter, revision=a.revision, token=a.token, endpoint=a.endpoint, device=a.device
    )


# -------------------------------------------------------------------------------------------------- predict
def cmd_predict(a: argparse.Namespace) -> int:
    from .data import read_texts

    if bool(a.texts) == bool(a.input):
        raise ConfigError("give the texts to classify as arguments or in --input FILE (one of the two)")
    if a.output and Path(a.output).suffix.lower() not in _OUTPUT_FORMATS:
        raise ConfigError(f"--output {a.output}: write a {', '.join(_OUTPUT_FORMATS)} file")
    texts, pairs = list(a.texts), None
    if a.input:
        given = read_texts(a.input, a.text_column, a.pair_column)
        _warn(given.warnings)
        texts, pairs = given.texts, given.text_pairs
    clf = _load_adapter(a)
    rows = []
    for i, r in enumerate(clf.predict(texts, pairs, batch_size=a.batch_size)):
        row = {"text": texts[i]}
        if pairs is not None:
            row["text_pair"] = pairs[i]
        rows.append({**row, "label": r["label"], "score": r["score"], "scores": r["scores"]})
    if a.output:
        _write_predictions(Path(a.output), rows, clf.config.labels)
    if a.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    elif a.output:
        print(f"wrote {len(rows)} predictions to {a.output}")
    else:
        _print_table(rows, clf.config.task)
    return 0


def _write_predictions(path: Path, rows: list[dict], labels: list[str]) -> None:
    import pandas as pd

    try:
        if path.suffix.lower() in (".csv", ".tsv"):
            flat = [
                {**{k: v for k, v in r.items() if k != "scores"}, **{f"score_{n}": r["scores"].get(n) for n in labels}}
                for r in rows
            ]
            pd.DataFrame(flat).to_csv(path, index=False, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        elif path.suffix.lower() == ".json":
            path.write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        else:
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from None


def _print_table(rows: list[dict], task: str) -> None:
    if task == "regression":
        print("value     text")
        for r in rows:
            print(f"{r['score']:<9.4f} {_clip(r['text'])}")
        return
    width = max(5, *(len(str(r["label"])) for r in rows))
    print(f"{'label':<{width}}  score   text")
    for r in rows:
        print(f"{r['label']:<{width}}  {r['score']:.4f}  {_clip(r['text'])}")


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# -------------------------------------------------------------------------------------------------- inspect
def cmd_inspect(a: argparse.Namespace) -> int:
    from .interpret import read_prompt

    reading = read_prompt(_load_adapter(a), a.top)
    if a.json:
        print(json.dumps(reading, ensure_ascii=False))
        return 0
    if not reading["vectors"]:
        print("no prompt vectors: nothing to read")
    else:
        print("vector  nearest tokens (cosine)")
        for v in reading["vectors"]:
            words = "  ".join(f"{n['token']} {n['cosine']:.2f}" for n in v["nearest"])
            flag = f"far from every word (nearest under {reading['far_cosine']:g}): " if v["far"] else ""
            print(f"{v['index']:<6}  {flag}{words}")
    if reading["note"]:
        print(f"note: {reading['note']}")
    return 0


# -------------------------------------------------------------------------------------------------- push
def cmd_push(a: argparse.Namespace) -> int:
    from .model import PromptClassifier

    if not Path(a.adapter).is_dir():
        raise ConfigError(f"no adapter directory at {a.adapter!r}: push a directory that train wrote")
    # include_resume: the p-tuning encoder travels too, so the adapter can be trained further from the Hub
    clf = PromptClassifier.from_pretrained(a.adapter, include_resume=True, device="cpu")
    url = clf.push_to_hub(a.repo_id, token=a.token, private=a.private, endpoint=a.endpoint)
    print(url)
    return 0


# -------------------------------------------------------------------------------------------------- hub search
def cmd_hub_search(a: argparse.Namespace) -> int:
    from .hub_search import search_adapters

    if a.page < 1:
        raise ConfigError(f"--page counts from 1, not {a.page}")
    words = " ".join(a.words)
    page = search_adapters(words, sort=a.sort, page=a.page - 1, per_page=a.limit, token=a.token, endpoint=a.endpoint)
    if not page.rows:
        matching = f" whose repo id holds {words!r}" if words.strip() else ""
        print(f"no published ptuning adapter{matching} on page {a.page}", file=sys.stderr)
    elif a.json:
        for row in page.rows:
            print(json.dumps(row.as_dict(), ensure_ascii=False))
    else:
        _print_rows([_adapter_row(row) for row in page.rows])
    if page.has_next:
        print(f"more on page {a.page + 1}: add --page {a.page + 1}", file=sys.stderr)
    return 0


def _adapter_row(row) -> dict:
    """A published adapter as a line of the table."""
    metric = f"{row.metric} {row.metric_value:.4f}" if row.metric else None
    return {
        "repo": row.repo_id + (" (private)" if row.private else ""), "task": row.task,
        "labels": _clip(", ".join(row.labels), 40) or None, "base model": row.base_model, "method": row.method,
        "metric": metric, "downloads": row.downloads, "likes": row.likes,
        "updated": row.last_modified.date().isoformat() if row.last_modified else None,
    }  # fmt: skip


# -------------------------------------------------------------------------------------------------- serve
def cmd_serve(a: argparse.Namespace) -> int:
    from .serving.engine import ServingConfig, server_precision
    from .serving.server import parse_adapter_specs, serve

    config = ServingConfig(**given_options(a, ServingConfig))
    server_precision(config, os.environ)
    adapters = parse_adapter_specs(a.adapter)
    if not adapters and not config.allow_hub_load:
        raise ConfigError("nothing to serve: name adapters with --adapter NAME=PATH, or pass --allow-hub-load")
    serve(config, adapters, host=a.host, port=a.port, access_log=a.access_log)
    return 0
