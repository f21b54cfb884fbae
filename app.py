"""The ptuning web app: load labelled examples, train a soft-prompt adapter, classify, share it on the Hub.

Widgets and wiring only: every computation is a call into the ``ptuning`` library. Per-user things (the table,
the dataset, the trained adapter, the training job that Stop cancels, the files made for the user) live in
``gr.State`` with a time to live, and go when it runs out; nothing here is shared between users except the
library's read-only cache of frozen backbones and the engines that batch their texts together.

What users may do is the operator's choice, ``ptuning.policy.AppSettings`` (``PTUNING_*`` variables; SECURITY.md):
which base models load, whose Hub token a request carries, and how much of everything one request may take.

    python app.py        # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

try:  # ZeroGPU: `spaces` must come before torch touches CUDA; off ZeroGPU its decorator returns the function
    import spaces
except ImportError:
    spaces = None

import dataclasses
import functools
import html
import inspect
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd
import torch

from ptuning import PromptClassifier, PtuningError
from ptuning.backbones import default_device
from ptuning.config import MAX_LORA_RANK, EncoderType, Method, Pooling, PromptConfig, additions
from ptuning.data import (
    build_dataset, build_texts, check_trainable, cut_long_texts, detect_columns, label_distribution, parse_pasted,
    read_table,
)
from ptuning.adapter_files import adapter_base_model, pack_adapter_zip, unpack_adapter_zip
from ptuning.hub import download_adapter
from ptuning.hub_search import search_adapters
from ptuning.jobs import TrainingJob
from ptuning.model import PROMPT_SHAPE
from ptuning.markdown import code_span, md
from ptuning.metrics import METRIC_NAMES, summary_metrics
from ptuning.model_card import public_app_url
from ptuning.options import field_help
from ptuning.policy import AppSettings
from ptuning.serving.engine import ServingConfig
from ptuning.serving.pool import EnginePool
from ptuning.estimate import duration
from ptuning.interpret import markdown_table
from ptuning.report import outcome, plan_line
from ptuning.train import TrainingArguments, plan_training

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
EXAMPLES = {  # examples/README.md tells where each comes from
    "Movie reviews: positive / negative (400)": "movie_sentiment.csv",
    "Questions: 6 answer types (600)": "question_types.csv",
    "SMS: spam / ham (400)": "sms_spam.csv",
}
TABLE_TYPES = [".csv", ".tsv", ".tab", ".txt", ".json", ".jsonl", ".ndjson", ".xlsx", ".xls", ".parquet"]
PLACEMENTS = ["start", "middle", "end", "[P:4] {text} [P:4]"]
# The widgets start at the library's own defaults (read-only: the dataclasses' field defaults)
PROMPT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PromptConfig)}
TRAINING_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
ON_SPACE = bool(os.environ.get("SPACE_ID"))
# ZeroGPU lends the GPU inside a decorated call only: there the engine's worker thread could not use it
ZERO_GPU = spaces is not None and ON_SPACE
NO_DATA = "No data yet: upload a file, pick an example or paste examples."
NO_ADAPTER = "No adapter yet: train one on the **Train** tab, or load one below."
SORT_LABELS = {"Most downloaded": "downloads", "Most liked": "likes", "Recently updated": "updated"}
ADAPTERS_PER_PAGE = 10


def gpu(fn, seconds: int = 60):
    """``spaces.GPU`` on a Space (ZeroGPU lends a GPU for the call); the function itself elsewhere."""
    return spaces.GPU(fn, duration=seconds) if spaces is not None and ON_SPACE else fn


def refuse(message: str) -> gr.Error:
    """The error to raise for something the user can fix: shown as one line, kept out of the server log."""
    return gr.Error(html.escape(message, quote=False), print_exception=False)


@contextmanager
def user_errors():
    """A library error the user can fix becomes one readable line in the UI, never a traceback."""
    try:
        yield
    except PtuningError as error:
        raise refuse(str(error)) from None


def bind(fn, **bound):
    """``fn`` with the arguments ``bound`` filled in, as a plain function whose signature lacks them.

    Unlike ``functools.partial``, Gradio still sees the annotations through which it passes ``gr.Request`` and
    ``gr.OAuthToken`` (it cannot read them through a partial), and a generator stays a generator (it streams)."""
    if inspect.isgeneratorfunction(fn):

        def bound_fn(*args, **kwargs):
            yield from fn(*args, **bound, **kwargs)
    else:

        def bound_fn(*args, **kwargs):
            return fn(*args, **bound, **kwargs)

    functools.update_wrapper(bound_fn, fn)
    signature = inspect.signature(fn)
    kept = [p for p in signature.parameters.values() if p.name not in bound]
    bound_fn.__signature__ = signature.replace(parameters=kept)
    return bound_fn


def session_state(settings: AppSettings, delete_callback=None) -> gr.State:
    """A per-session value, deleted ``settings.session_ttl_s`` after its last change (``delete_callback`` then gets
    the value, to release what it holds); the session then starts again from nothing."""
    return gr.State(None, time_to_live=settings.session_ttl_s, delete_callback=delete_callback)


def launch_options(settings: AppSettings) -> dict:
    """What ``launch()`` must be given to keep ``settings``: Gradio refuses a larger upload before it lands."""
    return {"max_file_size": settings.max_upload_bytes}


class SessionJobs:
    """The training runs of each browser session, so that the session's end (its page closed) cancels them."""

    def __init__(self):
        self._jobs: dict[str, set[TrainingJob]] = {}
        self._lock = threading.Lock()

    def add(self, session: str | None, job: TrainingJob) -> None:
        with self._lock:
            self._jobs.setdefault(session or "", set()).add(job)

    def discard(self, session: str | None, job: TrainingJob) -> None:
        with self._lock:
            self._jobs.get(session or "", set()).discard(job)
            if not self._jobs.get(session or "", True):
                del self._jobs[session or ""]

    def cancel(self, session: str | None) -> None:
        with self._lock:
            jobs = self._jobs.pop(session or "", set())
        for job in jobs:
            job.cancel()


def end_session(request: gr.Request, *, jobs: SessionJobs) -> None:
    """The page was closed: its trainings stop after their current step."""
    jobs.cancel(request.session_hash if request is not None else None)


def cancel_job(job: TrainingJob | None) -> None:
    if job is not None:
        job.cancel()


def remove_folder(folder: str | None) -> None:
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def device_name() -> str:
    device = default_device()
    return f"GPU ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type.upper()


# --------------------------------------------------------------------------------------------- outputs
@dataclass
class Outputs:
    """The components an event updates, by name: the wiring lists them with ``components()`` and the handler
    returns ``update(**values)``, both in field order, so the two cannot disagree."""

    def components(self) -> list:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]

    @classmethod
    def update(cls, **values) -> tuple:
        """The values given, in field order; the components not named keep what they show."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise TypeError(f"{cls.__name__} has no {', '.join(unknown)}")
        return tuple(values.get(name, gr.skip()) for name in names)


@dataclass
class DataView(Outputs):
    """What reading a table changes: the per-user table and dataset, and the Data tab's widgets."""

    table: gr.State
    dataset: gr.State
    preview: gr.Dataframe
    text_column: gr.Dropdown
    label_column: gr.Dropdown
    distribution: gr.BarPlot
    summary: gr.Markdown
    problems: gr.Markdown


@dataclass
class TrainView(Outputs):
    """What a training run changes: its job (for Stop), the trained adapter, and the Train tab's widgets."""

    job: gr.State
    model: gr.State
    train_button: gr.Button
    stop_button: gr.Button
    status: gr.Markdown
    plot: gr.LinePlot
    validation: gr.LinePlot
    metrics: gr.Markdown
    confusion: gr.HTML
    download: gr.DownloadButton
    trials: gr.Dataframe


# --------------------------------------------------------------------------------------------- Data tab
def load_file(file: str | None, *, settings: AppSettings):
    """Read an uploaded table and show it (columns detected, problems listed)."""
    if not file:
        return show_table(None)
    try:
        table = read_table(file, max_bytes=settings.max_upload_bytes, max_rows=settings.max_rows)
    except PtuningError as error:
        return show_table(None, problem=str(error))
    return show_table(table, max_chars=settings.max_text_chars)


def load_example(name: str, *, settings: AppSettings):
    if name not in EXAMPLES:
        return show_table(None)
    return show_table(read_table(EXAMPLES_DIR / EXAMPLES[name]), max_chars=settings.max_text_chars)


def load_text(text: str, *, settings: AppSettings):
    """Read examples pasted as CSV/TSV (or JSON) text."""
    try:
        table = parse_pasted(text or "", max_bytes=settings.max_upload_bytes, max_rows=settings.max_rows)
    except PtuningError as error:
        return show_table(None, problem=str(error))
    return show_table(table, max_chars=settings.max_text_chars)


def choose_columns(table: pd.DataFrame | None, text_column: str | None, label_column: str | None, *,
                   settings: AppSettings):  # fmt: skip
    return show_table(table, text_column, label_column, max_chars=settings.max_text_chars)


def show_table(table: pd.DataFrame | None, text_column=None, label_column=None, problem: str | None = None,
               max_chars: int | None = None):  # fmt: skip
    """The Data tab (a DataView) for ``table``: the dataset (texts cut at ``max_chars``) when it can be trained on,
    else the problems."""
    if table is None:
        nothing = gr.Dropdown(choices=[], value=None)
        return DataView.update(
            table=None, dataset=None, preview=gr.Dataframe(visible=False), text_column=nothing, label_column=nothing,
            distribution=gr.BarPlot(visible=False), summary=NO_DATA,
            problems=problems_markdown([problem], []) if problem else "",
        )  # fmt: skip
    dataset, problems = None, []
    try:
        text_column, label_column, _ = detect_columns(table, text_column or None, label_column or None)
        dataset = build_dataset(table, text_column=text_column, label_column=label_column)
        if max_chars:
            dataset = cut_long_texts(dataset, max_chars)
        check_trainable(dataset)
    except PtuningError as error:
        problems.append(str(error))
    columns = list(table.columns)
    counts = label_distribution(dataset) if dataset is not None else {}  # shown even when a check failed
    return DataView.update(
        table=table,
        dataset=None if problems else dataset,
        preview=gr.Dataframe(table.head(50), visible=True, column_widths=preview_widths(columns, text_column)),
        text_column=gr.Dropdown(choices=columns, value=text_column),
        label_column=gr.Dropdown(choices=columns, value=label_column),
        distribution=gr.BarPlot(pd.DataFrame({"label": list(counts), "examples": list(counts.values())}),
                                sort=list(counts), visible=bool(counts)),
        summary=data_summary(dataset, table),
        problems=problems_markdown(
            problems, dataset.warnings if dataset is not None else table.attrs.get("warnings", [])
        ),
    )


def preview_widths(columns: list[str], text_column: str | None) -> list[str] | None:
    # Without widths the text column takes the whole width and pushes the label out of sight
    if len(columns) < 2 or text_column not in columns:
        return None
    return ["70%" if c == text_column else f"{30 / (len(columns) - 1):.1f}%" for c in columns]


def data_summary(dataset, table: pd.DataFrame) -> str:
    if dataset is None:
        return f"Read **{len(table)} rows** with the columns {', '.join(f'`{c}`' for c in table.columns)}."
    text = f"**{len(dataset)} examples** · text column `{dataset.text_column}`"
    text += f" · label column `{dataset.label_column}`"
    if dataset.pair_column:
        text += f" · second text `{dataset.pair_column}`"
    if dataset.task == "regression":
        return text + f" · regression, targets from {min(dataset.labels):g} to {max(dataset.labels):g}"
    return text + f" · {len(dataset.label_names)} classes"


def problems_markdown(problems: list[str], warnings: list[str]) -> str:
    lines = [f"**Cannot train on this data:** {md(p)}" for p in problems]
    lines += [f"**Note:** {md(w)}" for w in warnings]
    if not problems:
        lines.append("**Ready to train:** go to the **Train** tab.")
    return "\n\n".join(lines)


# --------------------------------------------------------------------------------------------- Train tab
@dataclass
class TrainForm:
    """The Train tab's settings by name, each at the widget's default: what training, the estimate and their named
    endpoints (``/train``, ``/estimate``) read, so a script passes only what it changes. The widgets are made in this
    order (``train_settings``); an empty base model is the first the app allows."""

    base_model: str = ""
    method: str = PROMPT_DEFAULTS["method"].value
    prompt_length: int = PROMPT_DEFAULTS["num_virtual_tokens"]
    placement: str = PROMPT_DEFAULTS["placement"]
    epochs: int | None = 0  # 0 or empty: automatic
    learning_rate: str = ""  # empty: automatic
    batch_size: int = TRAINING_DEFAULTS["batch_size"]
    seed: int = TRAINING_DEFAULTS["seed"]
    validation_split: float = TRAINING_DEFAULTS["val_split"]
    pooling: str = PROMPT_DEFAULTS["pooling"].value
    encoder_type: str = PROMPT_DEFAULTS["encoder_type"].value
    init_text: str = ""
    patience: int | None = TRAINING_DEFAULTS["patience"]  # empty: automatic
    time_budget_minutes: float | None = 0  # 0: none of the user's own
    search_settings: bool = False
    search_trials: int | None = 10
    start_layer: int | None = PROMPT_DEFAULTS["start_layer"]
    bias_offsets: bool = PROMPT_DEFAULTS["bias_offsets"]
    lora_rank: int | None = PROMPT_DEFAULTS["lora_rank"]
    start_from_loaded: bool = False  # start the prompt from the adapter loaded on Classify (``train(init_from=...)``)

    def config(self, base_model: str) -> dict:
        """The PromptConfig options (labels and task come from the data); ``base_model`` is one the operator allows
        (``AppSettings.check_base_model``)."""
        init_text = (self.init_text or "").strip()
        return {
            "base_model": base_model,
            "method": self.method,
            "num_virtual_tokens": int(self.prompt_length or 0),
            "placement": (self.placement or "start").strip(),
            "pooling": self.pooling,
            "encoder_type": self.encoder_type,
            "init": "text" if init_text else "vocab",
            "init_text": init_text,
            "start_layer": None if self.start_layer in (None, "") else int(self.start_layer),  # empty: automatic
            "bias_offsets": bool(self.bias_offsets),
            "lora_rank": None if self.lora_rank in (None, "") else int(self.lora_rank),  # empty: automatic
        }

    def args(self) -> TrainingArguments:
        """The TrainingArguments (empty or 0 epochs: automatic; 0 minutes: no budget of the user's own, only the
        operator's limit)."""
        with user_errors():
            return TrainingArguments(
                epochs=int(self.epochs) if self.epochs else None,
                lr=as_number(self.learning_rate, "learning rate"),
                batch_size=int(self.batch_size or 32),
                seed=int(self.seed or 0),
                val_split=float(self.validation_split or 0),
                patience=int(self.patience) if self.patience is not None else None,
                time_budget=60 * float(self.time_budget_minutes) if self.time_budget_minutes else None,
            )


FORM_FIELDS = [f.name for f in dataclasses.fields(TrainForm)]


def with_form(fn, leading: tuple[str, ...] = ("data",)):
    """``fn(*leading, form, **rest)`` as a Gradio handler of ``(*leading states, *the form's widgets)``: its
    parameters are the leading states, then the form's fields by name, each with the widget's default (what
    ``gradio_client`` and the API page show), then ``fn``'s own keyword parameters (``request``, and those ``bind``
    fills in)."""
    n, m = len(leading), len(FORM_FIELDS)

    def read(args, kwargs):
        # Gradio passes what it injects (a gr.Request) by position after the inputs: it goes on to ``fn``
        named = dict(zip(FORM_FIELDS, args[n : n + m]))
        named.update({k: kwargs.pop(k) for k in FORM_FIELDS if k in kwargs})
        first = [args[i] if i < len(args) else kwargs.pop(name) for i, name in enumerate(leading)]
        return first, TrainForm(**named), args[n + m :], kwargs

    if inspect.isgeneratorfunction(fn):

        def handler(*args, **kwargs):
            first, form, more, rest = read(args, kwargs)
            yield from fn(*first, form, *more, **rest)
    else:

        def handler(*args, **kwargs):
            first, form, more, rest = read(args, kwargs)
            return fn(*first, form, *more, **rest)

    functools.update_wrapper(handler, fn)
    own = [p for name, p in inspect.signature(fn).parameters.items() if name not in (*leading, "form")]
    fields = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default,
                                annotation=f.type) for f in dataclasses.fields(TrainForm)]  # fmt: skip
    states = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in leading]
    handler.__signature__ = inspect.Signature([*states, *fields, *own])
    return handler


def run_training(data, loaded, form: TrainForm, request: gr.Request = None, *, settings: AppSettings,
                 jobs: SessionJobs):  # fmt: skip
    """Train an adapter on the loaded data; yields TrainView updates: progress, then the metrics and the adapter zip.

    Only a base model the operator allows, within the operator's limits; the run is this session's, so closing the
    page cancels it. With ``form.start_from_loaded`` the prompt starts at the session's adapter (``loaded``: one it
    trained, or loaded from the Hub or a zip through their checks)."""
    if data is None:
        raise refuse("No usable data: load a table on the Data tab first (and fix the problems it lists).")
    if form.start_from_loaded and loaded is None:
        raise refuse("No adapter to start from: load one on the Browse or Classify tab, or uncheck “Start from the "
                     "loaded adapter”.")  # fmt: skip
    with user_errors():
        base_model = settings.check_base_model(form.base_model or settings.allowed_base_models[0])
        config = form.config(base_model)
    args = form.args()
    users_budget = args.time_budget is not None and args.time_budget <= settings.max_train_seconds
    with user_errors():
        args = settings.limit_training(args, len(data))
    if ZERO_GPU:  # the GPU goes back at the end of the decorated call: the run must end first
        args = dataclasses.replace(args, time_budget=min(args.time_budget, 0.9 * settings.train_gpu_seconds))
    trials = search_size(form.search_settings, form.search_trials, settings)
    if form.start_from_loaded and trials:
        raise refuse("A search trains new adapters from the defaults: uncheck “Start from the loaded adapter” or the "
                     "search.")  # fmt: skip
    start = {"init_from": loaded} if form.start_from_loaded else {}
    if start:  # what shapes the prompt is the loaded adapter's (the base model is checked above)
        config = {k: v for k, v in config.items() if k not in PROMPT_SHAPE}
    job = TrainingJob(data, config=config, args=args, trials=trials, **start)
    session = request.session_hash if request is not None else None
    jobs.add(session, job)
    curves = Curves(job)
    try:
        yield TrainView.update(
            job=job, train_button=gr.Button(interactive=False), stop_button=gr.Button(interactive=True),
            status=f"Loading the base model and reading the data… (device: {device_name()})", plot=None,
            validation=None, metrics="", confusion="", download=gr.DownloadButton(visible=False),
            trials=gr.Dataframe(None, visible=bool(trials)),
        )  # fmt: skip
        done: list = []
        for event in job:
            if event.kind == "trial":  # a search: the table grows, the curves start again for the next trial
                done.append(event.trial)
                curves = Curves(job)
                metric = "accuracy" if data.task == "classification" else "mse"
                yield TrainView.update(trials=trials_table([t.row(metric) for t in done]))
            elif curves.add(event):
                where = f"**Trial {len(done) + 1} of {trials}** · " if trials else ""
                yield TrainView.update(status=where + progress_text(event.state), **curves.shown())
        with user_errors():
            result = job.result()
        status = search_text(result) if trials else final_text(result, users_budget)
        with tempfile.TemporaryDirectory(prefix="ptuning-run-") as folder:  # Gradio copies the zip before resuming
            archive = pack_adapter_zip(result.model, Path(folder) / "ptuning-adapter.zip")
            yield TrainView.update(
                model=result.model, status=status, **({} if trials else curves.shown()),
                metrics=metrics_markdown(result.metrics),
                confusion=confusion_html(result.metrics, result.model.config.labels),
                download=gr.DownloadButton(value=str(archive), visible=True),
                trials=gr.Dataframe(trials_table(result.rows()), visible=True) if trials else gr.skip(),
            )  # fmt: skip
    finally:
        job.cancel()  # the page was closed or training failed: let the run end too
        jobs.discard(session, job)


def search_size(search_settings: bool, search_trials: float | None, settings: AppSettings) -> int:
    """How many trials the Train tab asks for (0: train once), within the operator's limit."""
    if not search_settings:
        return 0
    trials = int(search_trials or 0)
    if settings.max_search_trials < 1:
        raise refuse("This app does not run settings searches: uncheck “Search the settings”.")
    if not 1 <= trials <= settings.max_search_trials:
        raise refuse(f"A search may run 1 to {settings.max_search_trials} trials here, not {trials}.")
    return trials


def trials_table(rows: list[dict]) -> pd.DataFrame:
    """A search's trials for the eye: learning rates and scores to 3 significant digits."""
    def short(value):
        return float(f"{value:.3g}") if isinstance(value, float) else value

    return pd.DataFrame([{k: short(v) for k, v in row.items()} for row in rows])


def search_text(result) -> str:
    """What an ended search says: how it ended, the best trial and its settings."""
    best, n = result.best, len(result.trials)
    if result.cancelled:
        how = f"**Search stopped** by you after {n} trials"
    elif result.budget_reached:
        how = f"**Search stopped at the time limit** after {n} trials"
    else:
        how = f"**Search done:** {n} trials"
    value = "–" if best.value is None else f"{best.value:.4f}"
    text = (f"{how}. Best: trial {best.number}, validation {result.metric_name} **{value}** with "
            f"{best.settings_line()}; its adapter is kept. Try it on the **Classify** tab.")  # fmt: skip
    return "\n\n".join([text, *(f"**Note:** {md(w)}" for w in result.warnings)])


class Curves:
    """The loss and validation curves of a running job, redrawn at every evaluation, otherwise at most every
    0.3 s and only once the job's pending events are all read (a redraw costs more than a step of a tiny model)."""

    def __init__(self, job: TrainingJob):
        self.job, self.losses, self.validation, self.drawn = job, [], [], 0.0

    def add(self, event) -> bool:
        """Take in one event; True when the curves should be redrawn now."""
        if event.kind == "step" and event.state.loss is not None:
            self.losses.append({"step": event.state.step, "loss": event.state.loss})
        if event.kind == "eval":
            self.validation += validation_points(event.state.history[-1])
        if event.kind == "eval" or (self.job.caught_up() and time.monotonic() - self.drawn > 0.3):
            self.drawn = time.monotonic()
            return True
        return False

    def shown(self) -> dict:
        return {"plot": pd.DataFrame(self.losses), "validation": validation_chart(self.validation)}


def as_number(value: str | float | None, name: str) -> float | None:
    """A number typed in a text box; empty means automatic (None)."""
    if value is None or not str(value).strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise refuse(f"the {name} must be a number such as 0.01, or empty for automatic; not {value!r}") from None


def stop_training(job: TrainingJob | None):
    if job is not None:
        job.cancel()
    return "Stopping after this step; the adapter so far is kept (the best evaluation's, or the latest when there are too few validation texts to choose by)…", gr.Button(interactive=False)


def validation_points(entry: dict) -> list[dict]:
    named = {"loss": entry.get("val_loss"), "accuracy": entry.get("accuracy")}  # MSE is the loss for regression
    return [{"step": entry["step"], "value": v, "series": k} for k, v in named.items() if v is not None]


def validation_chart(points: list[dict]):
    # Naming the series rebuilds the chart: Gradio's plot keeps its first colour domain on a mere data update
    series = list(dict.fromkeys(p["series"] for p in points))
    return gr.LinePlot(pd.DataFrame(points), colors_in_legend=series) if points else None


def progress_text(state) -> str:
    text = f"**Training** · step {state.step} of {state.total_steps} · epoch {state.epoch:.1f} of {state.epochs}"
    if state.loss is not None:
        text += f" · loss {state.loss:.4f}"
    text += f" · {duration(state.elapsed_s)} so far"
    if state.eta_s is not None:
        text += f", about {duration(state.eta_s)} left"
    if state.best_metric is not None and state.kept == "last":
        text += f"\n\nValidation {state.metric_name}: **{state.best_metric:.4f}** (step {state.best_step})"
    elif state.best_metric is not None:
        text += f"\n\nBest validation {state.metric_name} so far: **{state.best_metric:.4f}** (step {state.best_step})"
    return text


def final_text(result, users_budget: bool = False) -> str:
    """How the run ended and what it kept (``report.outcome``), for the Train tab."""
    o = outcome(result)
    how = {
        "cancelled": f"**Stopped** by you; the {o.kept_words} adapter so far is kept",
        "time budget": (f"**Stopped at your time budget**; the {o.kept_words} adapter so far is kept" if users_budget
                        else f"**Stopped at this app's time limit** for one run; the {o.kept_words} adapter so far "
                        "is kept"),
        "stopped early": "**Done** (stopped early: validation stopped improving)",
        "done": "**Done**",
    }[o.ended]  # fmt: skip
    text = f"{how} after {o.step} of {o.total_steps} steps in {duration(o.seconds)}"
    if o.metric is not None and o.kept == "last":
        text += (f". The last adapter is kept (too few validation texts to pick the best by): validation "
                 f"{o.metric_name} **{o.metric:.4f}**")  # fmt: skip
    elif o.metric is not None:
        text += f". Best validation {o.metric_name}: **{o.metric:.4f}** at step {o.kept_step}"
    text += f". {o.trainable:,} trainable parameters; try it on the **Classify** tab."
    return "\n\n".join([text, *(f"**Note:** {md(w)}" for w in result.warnings)])


def metrics_markdown(metrics: dict) -> str:
    if not metrics:
        return "No validation set, so no metrics: set a validation split above 0 to measure the adapter."
    values = [f"{METRIC_NAMES[key].phrase} **{v:.4f}**" for key, v in summary_metrics(metrics) if v is not None]
    text = f"**Validation on {metrics.get('n_examples', '?')} examples:** {', '.join(values)}"
    per_class = metrics.get("per_class") or {}
    if per_class:
        text += "\n\n| class | precision | recall | F1 | examples |\n|---|---|---|---|---|\n"
        text += "\n".join(
            f"| {md(name)} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
            for name, m in per_class.items()
        )
    return text


def confusion_html(metrics: dict, labels: list[str]) -> str:
    """The confusion matrix as a shaded table: rows are true classes, columns predicted ones."""
    matrix = metrics.get("confusion_matrix")
    if not matrix:
        return ""
    top = max(max(row) for row in matrix) or 1
    cell = "padding:4px 10px;text-align:right;border:1px solid #ddd"
    head = "".join(f'<th style="{cell}">{html.escape(name)}</th>' for name in labels)
    rows = ""
    for name, row in zip(labels, matrix):
        cells = "".join(
            f'<td style="{cell};background:rgba(37,99,235,{0.1 + 0.8 * n / top:.2f});'
            f'color:{"#fff" if n / top > 0.55 else "inherit"}">{n}</td>'
            for n in row
        )
        rows += f'<tr><th style="{cell}">{html.escape(name)}</th>{cells}</tr>'
    return (
        '<div style="overflow-x:auto"><p><b>Confusion matrix</b> (rows: true class, columns: predicted)</p>'
        f'<table style="border-collapse:collapse"><tr><th style="{cell}">true ↓ / predicted →</th>{head}</tr>'
        f"{rows}</table></div>"
    )


# --------------------------------------------------------------------------------------------- Classify tab
def require_model(model: PromptClassifier | None) -> PromptClassifier:
    if model is None:
        raise refuse("No adapter yet: train one on the Train tab, or load one from the Hub or a zip.")
    return model


def predict(model: PromptClassifier, texts: list[str], pairs: list[str] | None, engines: EnginePool | None):
    """Through the shared engine, batched with the other users' requests; directly where there is none (ZeroGPU)."""
    return model.predict(texts, pairs) if engines is None else engines.classify(model, texts, pairs)


def classify(text: str, model: PromptClassifier | None, engines: EnginePool | None = None, *,
             settings: AppSettings | None = None):  # fmt: skip
    """Label confidences of one text (cut at ``settings.max_text_chars``; for regression: the predicted value)."""
    settings = settings or AppSettings()
    model = require_model(model)
    if not (text or "").strip():
        raise refuse("Type a text to classify.")
    with user_errors():
        prediction = predict(model, [text[: settings.max_text_chars]], None, engines)[0]
    return prediction["scores"] if prediction["label"] is not None else round(prediction["score"], 4)


def classify_file(
    file: str | None,
    model: PromptClassifier | None,
    folder: str | None = None,
    *,
    engines: EnginePool | None = None,
    settings: AppSettings | None = None,
) -> tuple[str, str]:
    """Predict every row of an uploaded table; returns a CSV (the table plus prediction columns) in this session's
    ``folder`` (made when None; its earlier files are removed), and the folder, deleted when the session ends."""
    settings = settings or AppSettings()
    model = require_model(model)
    if not file:
        raise refuse("Upload a file of texts first.")
    with user_errors():
        table = read_table(file, max_bytes=settings.max_upload_bytes, max_rows=settings.max_rows)
        texts = cut_long_texts(build_texts(table), settings.max_text_chars)
        predictions = predict(model, texts.texts, texts.text_pairs, engines)
    if model.config.task == "regression":
        table["predicted_value"] = [p["score"] for p in predictions]
    else:
        table["predicted_label"] = [p["label"] for p in predictions]
        table["confidence"] = [round(p["score"], 4) for p in predictions]
    if not folder or not Path(folder).is_dir():
        folder = tempfile.mkdtemp(prefix="ptuning-predictions-")
    for old in Path(folder).iterdir():  # one file per session at a time: Gradio keeps its own copy to serve
        old.unlink()
    out = Path(folder) / f"{Path(file).stem}-predictions.csv"
    table.to_csv(out, index=False)
    return str(out), folder


def user_token(token_text: str | None, oauth_token: gr.OAuthToken | None) -> str | None:
    """The token this user gave: their sign-in's, else the one they pasted; None when they gave none."""
    return (oauth_token.token if oauth_token is not None else None) or (token_text or "").strip() or None


def load_adapter(repo_id: str, token_text: str, endpoint: str | None, oauth_token: gr.OAuthToken | None, *,
                 settings: AppSettings | None = None):  # fmt: skip
    """Load an adapter from a Hub repo id (ours, or PEFT's prompt/p-tuning for sequence classification)."""
    settings = settings or AppSettings()
    repo_id = (repo_id or "").strip()
    if not repo_id:
        raise refuse("Type a Hub repo id such as user/sentiment-prompt.")
    with user_errors():
        model = fetch_hub_adapter(repo_id, user_token(token_text, oauth_token), endpoint, settings)
    return model, f"Loaded {code_span(repo_id)}."


def fetch_hub_adapter(repo_id: str, token: str | None, endpoint: str | None,
                      settings: AppSettings) -> PromptClassifier:  # fmt: skip
    """The adapter of the Hub repo ``repo_id``, or a PtuningError that says why not.

    With the user's own ``token`` only (never the server's, unless the operator opted in), into a cache of this call
    alone (another user's private download is never reused), and only when its base model is allowed here."""
    with tempfile.TemporaryDirectory(prefix="ptuning-hub-") as cache:
        directory = download_adapter(repo_id, token=settings.hub_token(token), endpoint=endpoint, cache_dir=cache,
                                     max_bytes=settings.max_upload_bytes)  # fmt: skip
        return load_allowed_adapter(directory, settings)


def load_adapter_zip(file: str | None, *, settings: AppSettings | None = None):
    """Load an adapter from an uploaded zip (the download of the Train tab), when its base model is allowed here."""
    settings = settings or AppSettings()
    if not file:
        return gr.skip(), ""
    with tempfile.TemporaryDirectory(prefix="ptuning-upload-") as folder:
        with user_errors():
            unpack_adapter_zip(file, Path(folder), max_bytes=settings.max_upload_bytes)
            model = load_allowed_adapter(folder, settings)
    return model, f"Loaded {code_span(Path(file).name)}."


def load_allowed_adapter(directory: str | Path, settings: AppSettings) -> PromptClassifier:
    """The adapter in ``directory``, refused before any base model loads unless the one it names is allowed; loaded
    on exactly that base."""
    base = settings.check_base_model(adapter_base_model(directory), "the adapter's base model")
    return PromptClassifier.from_pretrained(directory, base_model=base)


def describe_adapter(model: PromptClassifier | None) -> str:
    if model is None:
        return NO_ADAPTER
    c = model.config
    what = f"{len(c.labels)} classes ({', '.join(md(x) for x in c.labels[:8])}{'…' if len(c.labels) > 8 else ''})"
    if c.task == "regression":
        what = "regression"
    where = f"{c.method.value}, {c.num_virtual_tokens} prompt vectors at {code_span(c.placement)}"
    where += "".join(f", {a}" for a in additions(c.bias_offsets, c.lora_rank))
    text = f"**Adapter ready:** {what} · {where} · base {code_span(c.base_model)}"
    if c.num_virtual_tokens == 0:
        return text
    return f"{text}\n\n<details><summary>What the prompt reads as</summary>\n\n{markdown_table(model, k=3)}\n\n</details>"


# --------------------------------------------------------------------------------------------- Browse tab
@dataclass
class BrowseView(Outputs):
    """What a listing changes: the page shown (its query and repo ids, which a row's click loads), its widgets."""

    listing: gr.State
    table: gr.Dataframe
    status: gr.Markdown
    previous: gr.Button
    next: gr.Button


def search_published(words: str, sort_label: str, token_text: str, endpoint: str | None,
                     oauth_token: gr.OAuthToken | None = None, *, settings: AppSettings, page: int = 0):  # fmt: skip
    """A page of the ptuning adapters published on the Hub whose repo id holds ``words`` (blank: all), as a
    BrowseView; the user's private ones too when they gave a token. A Hub refusal is said in the status line."""
    sort = SORT_LABELS.get(sort_label, "downloads")
    token = settings.hub_token(user_token(token_text, oauth_token))
    try:
        found = search_adapters(words, sort=sort, page=page, per_page=ADAPTERS_PER_PAGE, token=token,
                                endpoint=endpoint)  # fmt: skip
    except PtuningError as error:
        return BrowseView.update(status=f"**Could not list the adapters:** {md(error)}")
    return BrowseView.update(
        listing={"words": words, "sort": sort_label, "page": page, "repo_ids": [row.repo_id for row in found.rows]},
        table=published_table(found.rows), status=listing_text(words, found),
        previous=gr.Button(interactive=page > 0), next=gr.Button(interactive=found.has_next),
    )  # fmt: skip


def turn_page(listing: dict | None, token_text: str, endpoint: str | None, oauth_token: gr.OAuthToken | None = None,
              *, step: int, settings: AppSettings):  # fmt: skip
    """The page ``step`` pages from the one shown, of the same listing."""
    listing = listing or {"words": "", "sort": next(iter(SORT_LABELS)), "page": 0}
    return search_published(listing["words"], listing["sort"], token_text, endpoint, oauth_token, settings=settings,
                            page=max(0, listing["page"] + step))  # fmt: skip


def first_listing(listing: dict | None, sort_label: str, token_text: str, endpoint: str | None,
                  oauth_token: gr.OAuthToken | None = None, *, settings: AppSettings):  # fmt: skip
    """The most used adapters, the first time the tab opens (then the tab keeps what the user asked for)."""
    if listing is not None:
        return BrowseView.update()
    return search_published("", sort_label, token_text, endpoint, oauth_token, settings=settings)


def published_table(rows) -> pd.DataFrame:
    """The rows of a listing as a visitor chooses among them: what each classifies, on what, how well, how used."""
    return pd.DataFrame(
        [
            {
                "adapter": row.repo_id + (" (private)" if row.private else ""),
                "task": row.task or "–",
                "labels": ", ".join(row.labels) or "–",
                "base model": row.base_model or "–",
                "method": row.method or "–",
                "metric": f"{metric_phrase(row.metric)} {row.metric_value:.3f}" if row.metric else "–",
                "downloads": row.downloads,
                "likes": row.likes,
                "updated": row.last_modified.date().isoformat() if row.last_modified else "–",
            }
            for row in rows
        ],
        columns=["adapter", "task", "labels", "base model", "method", "metric", "downloads", "likes", "updated"],
    )


def metric_phrase(key: str) -> str:
    return METRIC_NAMES[key].phrase if key in METRIC_NAMES else key


def listing_text(words: str, found) -> str:
    words = " ".join((words or "").split())
    if not found.rows and found.page == 0:
        if words:
            return (f"No published ptuning adapter has {code_span(words)} in its repo id: try another word (the Hub "
                    "looks for the words as written), or clear the box to list them all.")  # fmt: skip
        return "No ptuning adapter is published on this Hub yet (or none you may see)."
    if not found.rows:
        return f"Page {found.page + 1} is empty: go back a page."
    which = f" whose repo id holds {code_span(words)}" if words else ""
    return (f"Page {found.page + 1}: adapters{which}. **Click a row** to load its adapter into the **Classify** tab; "
            "the metric is the one its card reports, measured on its own validation data.")  # fmt: skip


def load_chosen(listing: dict | None, token_text: str, endpoint: str | None, evt: gr.SelectData,
                oauth_token: gr.OAuthToken | None = None, *, settings: AppSettings):  # fmt: skip
    """Load the adapter of the row clicked (one of the page shown), through the same checks as a typed repo id; then
    open Classify."""
    shown = (listing or {}).get("repo_ids") or []
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    clicked = str((evt.row_value or [""])[0]).removesuffix(" (private)")  # the row's own id, even in a sorted table
    if clicked not in shown:
        clicked = shown[row] if isinstance(row, int) and 0 <= row < len(shown) else None
    if clicked is None:
        raise refuse("Click a row of the list to load its adapter.")
    model, message = load_adapter(clicked, token_text, endpoint, oauth_token, settings=settings)
    return model, message, gr.Tabs(selected="classify")


def open_linked_adapter(token_text: str, endpoint: str | None, request: gr.Request,
                        oauth_token: gr.OAuthToken | None = None, *, settings: AppSettings):  # fmt: skip
    """A page opened at ``?adapter=OWNER/NAME`` (a model card's "Try it" link): that adapter loaded, through the same
    checks as a typed repo id, and the Classify tab open; what went wrong is said there."""
    repo_id = (dict(request.query_params).get("adapter") or "").strip() if request is not None else ""
    if not repo_id:
        return gr.skip(), gr.skip(), gr.skip()
    try:
        model = fetch_hub_adapter(repo_id, user_token(token_text, oauth_token), endpoint, settings)
    except PtuningError as error:
        return gr.skip(), f"**The linked adapter did not load:** {md(error)}", gr.Tabs(selected="classify")
    return model, f"Loaded {code_span(repo_id)} from the link.", gr.Tabs(selected="classify")


# --------------------------------------------------------------------------------------------- Hub tab
def push(
    model: PromptClassifier | None,
    repo_id: str,
    private: bool,
    description: str,
    token_text: str,
    endpoint: str | None,
    oauth_token: gr.OAuthToken | None,
    *,
    settings: AppSettings | None = None,
) -> str:
    """Upload the adapter with a model card (the description goes into it); returns a link to the repo.

    With the user's own token only: never the server's login, unless the operator opted in."""
    settings = settings or AppSettings()
    model = require_model(model)
    repo_id = (repo_id or "").strip()
    if not repo_id:
        raise refuse("Type a repo name such as your-name/sentiment-prompt.")
    token = settings.hub_token(user_token(token_text, oauth_token))
    if token is False:
        how = "sign in with Hugging Face (the button above)" if ON_SPACE else "paste a token with write access"
        raise refuse(f"Pushing needs your own write access: {how}. This app never pushes with its own login.")
    model.info = {**model.info, "dataset_description": (description or "").strip() or None}
    with user_errors():
        url = model.push_to_hub(repo_id, token=token, private=bool(private), endpoint=endpoint)
    return f"Pushed to [{md(repo_id)}]({url})."


# --------------------------------------------------------------------------------------------- layout
def build_app(hub_endpoint: str | None = None, settings: AppSettings | None = None) -> gr.Blocks:
    """The whole app, queued; ``hub_endpoint`` is the Hub server to push to and load from (None: huggingface.co),
    ``settings`` the operator's (None: from the environment). Launch it with ``launch_options(settings)``."""
    settings = settings or AppSettings.from_env()
    jobs = SessionJobs()
    with gr.Blocks(title="P-Tuning: soft prompts for text classifiers", delete_cache=(3600, 3600)) as app:
        model_state, endpoint_state = session_state(settings), gr.State(hub_endpoint)
        # The Hub tab shows the token box; the Classify tab's Hub loader reads it too
        token = gr.Textbox(label="Hugging Face token (write access)", type="password", visible=not ON_SPACE,
                           info="Used for this request only; never stored or shown. Empty: "
                           + ("the server's login." if settings.use_server_token else "no token (public repos only)."),
                           render=False)  # fmt: skip
        gr.Markdown(
            "# P-Tuning\nTrain **soft-prompt vectors** (by default with low-rank updates of its layers, and a small "
            "head) for a frozen text classifier: load labelled examples, train, classify, share the small adapter "
            "on the Hub."
        )
        with gr.Tabs() as tabs:
            with gr.Tab("Data"):
                data_state = data_tab(settings)
            with gr.Tab("Train"):
                train_tab(data_state, model_state, settings, jobs)
            with gr.Tab("Classify", id="classify"):
                engines = None if ZERO_GPU else EnginePool(ServingConfig(max_input_chars=settings.max_text_chars))
                notice = classify_tab(model_state, token, endpoint_state, engines, settings)
            with gr.Tab("Browse", id="browse") as browse:
                browse_tab(browse, tabs, model_state, notice, token, endpoint_state, settings)
            with gr.Tab("Hub"):
                hub_tab(model_state, token, endpoint_state, settings)
        # A model card's "Try it" link: the app opened at ?adapter=OWNER/NAME loads it into Classify
        app.load(bind(open_linked_adapter, settings=settings), [token, endpoint_state], [model_state, notice, tabs],
                 api_visibility="private")  # fmt: skip
        app.unload(bind(end_session, jobs=jobs))
    return app.queue(max_size=settings.max_queue)


def data_tab(settings: AppSettings) -> gr.State:
    """Upload, pick or paste a table; see it, its columns and its problems. Returns the state of its dataset."""
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Upload a table", file_types=TABLE_TYPES, height=140, elem_id="data-upload")
            gr.Markdown("CSV, TSV, JSON, JSONL, Excel or Parquet, with a text column and a label column.")
            example = gr.Dropdown(list(EXAMPLES), value=None, label="…or start from an example")
            with gr.Accordion("…or paste examples", open=False):
                pasted = gr.Textbox(lines=6, show_label=False,
                                    placeholder="text,label\ngreat film,positive\nawful,negative")
                paste_button = gr.Button("Use pasted examples", size="sm")
        with gr.Column(scale=2):
            summary = gr.Markdown(NO_DATA, elem_id="data-summary")
            problems = gr.Markdown(elem_id="data-problems")
            with gr.Row():
                text_column = gr.Dropdown([], label="Text column", interactive=True)
                label_column = gr.Dropdown([], label="Label column", interactive=True)
            distribution = gr.BarPlot(x="label", y="examples", y_lim=[0, None], height=220, visible=False,
                                      label="Examples per class", show_label=True)
    preview = gr.Dataframe(label="First rows (row 1 is the first row below the header)", visible=False,
                           interactive=False, wrap=True, max_chars=160, max_height=420, show_row_numbers=True)
    view = DataView(
        table=session_state(settings), dataset=session_state(settings), preview=preview, text_column=text_column,
        label_column=label_column, distribution=distribution, summary=summary, problems=problems,
    )  # fmt: skip

    shown = view.components()
    upload.upload(bind(load_file, settings=settings), upload, shown, api_name="load_file")
    example.input(bind(load_example, settings=settings), example, shown, api_name="load_example")
    paste_button.click(bind(load_text, settings=settings), pasted, shown, api_name="load_text")
    for dropdown in (text_column, label_column):
        dropdown.input(bind(choose_columns, settings=settings), [view.table, text_column, label_column], shown,
                       api_visibility="private")  # fmt: skip
    return view.dataset


def train_tab(data_state: gr.State, model_state: gr.State, settings: AppSettings, jobs: SessionJobs) -> None:
    """The settings (at the library's defaults, with its help texts), Train and Stop, the progress and results."""
    gr.Markdown(f"Training runs on: **{device_name()}**")
    with gr.Row():
        with gr.Column(scale=2):
            widgets = train_settings(settings)
            estimate = gr.Markdown(elem_id="train-estimate")
            with gr.Row():
                train_button = gr.Button("Train", variant="primary")
                stop_button = gr.Button("Stop", variant="stop", interactive=False)
        with gr.Column(scale=3):
            status = gr.Markdown("Load data on the **Data** tab, choose settings, then press **Train**.",
                                 elem_id="train-status")
            with gr.Row():  # no height=: a fixed height clips the legend
                loss_plot = gr.LinePlot(x="step", y="loss", label="Training loss", show_label=True)
                val_plot = gr.LinePlot(x="step", y="value", color="series", color_title="", label="Validation",
                                       show_label=True)
            metrics_box = gr.Markdown(elem_id="train-metrics")
            confusion_box = gr.HTML()
            download = gr.DownloadButton("Download the adapter (.zip)", visible=False)
            trials_table = gr.Dataframe(label="Search trials", visible=False, interactive=False,
                                        elem_id="search-trials")
    view = TrainView(
        job=session_state(settings, delete_callback=cancel_job), model=model_state, train_button=train_button,
        stop_button=stop_button, status=status, plot=loss_plot, validation=val_plot, metrics=metrics_box,
        confusion=confusion_box, download=download, trials=trials_table,
    )  # fmt: skip

    gr.on([data_state.change, *(w.change for w in widgets)], bind(with_form(estimate_text), settings=settings),
          [data_state, *widgets], estimate, api_name="estimate", concurrency_limit=1, concurrency_id="estimate",
          show_progress="hidden", trigger_mode="always_last")  # fmt: skip
    training = train_button.click(
        gpu(bind(with_form(run_training, ("data", "loaded")), settings=settings, jobs=jobs),
            settings.train_gpu_seconds),
        [data_state, model_state, *widgets],
        view.components(), api_name="train", show_progress="minimal", concurrency_limit=settings.train_concurrency,
        concurrency_id="train",
    )  # fmt: skip
    training.then(lambda: (gr.Button(interactive=True), gr.Button(interactive=False)), None,
                  [train_button, stop_button], api_visibility="private")  # also after an error
    stop_button.click(stop_training, view.job, [status, stop_button], api_visibility="private", queue=False)


def estimate_text(data, form: TrainForm, *, settings: AppSettings) -> str:
    """How long Train would take with these settings (the library's estimate), and what the time limit does to it."""
    if data is None or ZERO_GPU:  # on ZeroGPU the GPU exists only inside the training call: nothing to time here
        return ""
    try:
        config = form.config(settings.check_base_model(form.base_model or settings.allowed_base_models[0]))
        args = settings.limit_training(form.args(), len(data))
        state = plan_training(data, config=config, args=args)
    except (PtuningError, gr.Error):
        return ""  # Train says what is wrong, in one line
    text = f"**Estimate:** {plan_line(state)} on {device_name()}"
    if args.time_budget:
        text += f"; it stops at {duration(args.time_budget)} at the latest (your budget or this server's limit)"
    if form.search_settings:
        trials = int(form.search_trials or 0)
        text += f". A search trains up to {trials} such runs (weak ones stopped early) in that time"
    return text + "."


def train_settings(settings: AppSettings) -> list:
    """The setting widgets, in TrainForm's order (``FORM_FIELDS``)."""
    prompt_help, training_help = partial(field_help, PromptConfig), partial(field_help, TrainingArguments)
    allowed = settings.allowed_base_models
    base_model = gr.Textbox(allowed[0], label="Base model",
                            info=f"The base models this app may load: {', '.join(allowed)}.")  # fmt: skip
    method = gr.Radio([m.value for m in Method], value=PROMPT_DEFAULTS["method"].value, label="Method",
                      info=prompt_help("method"))
    with gr.Row():
        prompt_length = gr.Number(PROMPT_DEFAULTS["num_virtual_tokens"], label="Prompt length", precision=0,
                                  minimum=1, info=prompt_help("num_virtual_tokens"))
        placement = gr.Dropdown(PLACEMENTS, value=PROMPT_DEFAULTS["placement"], allow_custom_value=True,
                                label="Placement", info=prompt_help("placement"))
    with gr.Row():
        epochs = gr.Number(0, label="Epochs (0 = automatic)", precision=0, minimum=0,
                           info=f"{training_help('epochs')} At most {settings.max_epochs} here.")  # fmt: skip
        learning_rate = gr.Textbox("", label="Learning rate", placeholder="automatic", info=training_help("lr"))
    with gr.Row():
        batch_size = gr.Number(TRAINING_DEFAULTS["batch_size"], label="Batch size", precision=0, minimum=1,
                               info=f"{training_help('batch_size')} At most {settings.max_batch_size} here.")
        seed = gr.Number(TRAINING_DEFAULTS["seed"], label="Seed", precision=0, info=training_help("seed"))
    with gr.Row():
        validation_split = gr.Slider(0, 0.5, value=TRAINING_DEFAULTS["val_split"], step=0.05,
                                     label="Validation split", info=training_help("val_split"))
        time_budget = gr.Number(0, label="Time budget in minutes (0 = none)", minimum=0, elem_id="time-budget",
                                info="Training stops at this time with the adapter so far (the best evaluation's, or the latest with too few validation texts); automatic epochs are "
                                f"planned to fit it. At most {duration(settings.max_train_seconds)} here.")
    with gr.Row(visible=settings.max_search_trials > 0):
        search = gr.Checkbox(False, label="Search the settings", elem_id="search-settings",
                             info="Train several adapters with the method, prompt length, learning rates and epochs "
                             "Optuna proposes (weak ones stopped early) on the validation split, and keep the best. "
                             "The time budget covers the whole search.")
        trials = gr.Number(min(10, max(1, settings.max_search_trials)), label="Trials", precision=0, minimum=1,
                           maximum=max(1, settings.max_search_trials), info="The first trial is the default run.")
        # fmt: skip
    with gr.Accordion("More settings", open=False):
        pooling = gr.Radio([p.value for p in Pooling], value=PROMPT_DEFAULTS["pooling"].value, label="Pooling",
                           info=prompt_help("pooling"))
        encoder_type = gr.Radio([e.value for e in EncoderType], value=PROMPT_DEFAULTS["encoder_type"].value,
                                label="P-tuning encoder", info=prompt_help("encoder_type"))
        init_text = gr.Textbox("", label="Initialise the prompt from a text (optional)", info=prompt_help("init_text"))
        patience = gr.Number(TRAINING_DEFAULTS["patience"], label="Early-stopping patience (empty: automatic)",
                             precision=0, minimum=0, info=training_help("patience"))
        with gr.Row():
            start_layer = gr.Number(PROMPT_DEFAULTS["start_layer"], label="Start layer (deep; empty: automatic)",
                                    precision=0, minimum=0, info=prompt_help("start_layer"))
            bias_offsets = gr.Checkbox(PROMPT_DEFAULTS["bias_offsets"], label="Bias offsets",
                                       info=prompt_help("bias_offsets"))
            lora_rank = gr.Number(PROMPT_DEFAULTS["lora_rank"], label="Low-rank updates: rank (0 = none; empty: automatic)",
                                  precision=0, minimum=0, maximum=MAX_LORA_RANK, info=prompt_help("lora_rank"))
        start_from = gr.Checkbox(False, label="Start from the loaded adapter", elem_id="start-from-loaded",
                                 info="Start the prompt from the adapter loaded on Classify (one found on Browse, say) "
                                 "instead of from scratch: same base model, its method and prompt settings; its head "
                                 "too when the labels are the same. A prompt trained on a related task is a better "
                                 "start on little data.")
    widgets = dict(base_model=base_model, method=method, prompt_length=prompt_length, placement=placement,
                   epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                   validation_split=validation_split, pooling=pooling, encoder_type=encoder_type, init_text=init_text,
                   patience=patience, time_budget_minutes=time_budget, search_settings=search, search_trials=trials,
                   start_layer=start_layer, bias_offsets=bias_offsets, lora_rank=lora_rank,
                   start_from_loaded=start_from)  # fmt: skip
    return [widgets[name] for name in FORM_FIELDS]  # a field without its widget fails here, at build time


def classify_tab(model_state: gr.State, token: gr.Textbox, endpoint_state: gr.State, engines: EnginePool | None,
                 settings: AppSettings) -> gr.Markdown:  # fmt: skip
    """One text or a whole file, with the adapter of this session, or one loaded from the Hub or a zip. Returns the
    line where an adapter loaded elsewhere (the Browse tab, a link) says how that went.

    ``engines`` is this app's (shared by its users, read-only to them): their requests are batched together.
    """
    notice = gr.Markdown(elem_id="classify-notice")
    adapter_info = gr.Markdown(NO_ADAPTER, elem_id="classify-adapter")
    with gr.Row():
        with gr.Column():
            text = gr.Textbox(label="Text", lines=3, placeholder="Type a sentence to classify")
            classify_button = gr.Button("Classify", variant="primary")
            gr.Examples(
                [["A gripping, beautifully acted film."], ["The plot is a mess and the jokes fall flat."],
                 ["Who was the first woman to win a Nobel prize?"],
                 ["URGENT! You have won a 1 week FREE membership. Call now!"]],
                inputs=[text], api_name="fill_example", api_visibility="private",
            )
        prediction = gr.Label(label="Prediction", num_top_classes=5, elem_id="prediction")
    with gr.Accordion("Classify a whole file", open=False):
        with gr.Row():
            batch_in = gr.File(label="Table of texts", file_types=TABLE_TYPES, height=140)
            batch_out = gr.File(label="Predictions (CSV)", height=140)
        batch_button = gr.Button("Classify file")
    with gr.Accordion("Use another adapter", open=False):
        with gr.Row(equal_height=True):
            repo_in = gr.Textbox(label="Hub repo id", placeholder="user/sentiment-prompt", scale=3)
            repo_button = gr.Button("Load", scale=1)
        zip_in = gr.File(label="…or upload an adapter .zip", file_types=[".zip"], height=140)
        load_status = gr.Markdown()

    predicting = dict(concurrency_limit=settings.predict_concurrency, concurrency_id="predict")
    files = session_state(settings, delete_callback=remove_folder)  # this session's prediction files
    gr.on([classify_button.click, text.submit], gpu(bind(classify, engines=engines, settings=settings)),
          [text, model_state], prediction, api_name="classify", **predicting)  # fmt: skip
    batch_button.click(gpu(bind(classify_file, engines=engines, settings=settings)), [batch_in, model_state, files],
                       [batch_out, files], api_name="classify_file", **predicting)  # fmt: skip
    repo_button.click(bind(load_adapter, settings=settings), [repo_in, token, endpoint_state],
                      [model_state, load_status], api_name="load_adapter")  # fmt: skip
    zip_in.upload(bind(load_adapter_zip, settings=settings), zip_in, [model_state, load_status],
                  api_name="load_adapter_zip")  # fmt: skip
    model_state.change(describe_adapter, model_state, adapter_info, api_visibility="private")
    return notice


def browse_tab(tab: gr.Tab, tabs: gr.Tabs, model_state: gr.State, notice: gr.Markdown, token: gr.Textbox,
               endpoint_state: gr.State, settings: AppSettings) -> None:  # fmt: skip
    """The adapters published with ptuning: search by a word, sort, page through; a click on a row loads it into
    Classify."""
    gr.Markdown("Adapters others published with ptuning on the Hugging Face Hub. Your private ones are listed too "
                "when you sign in or paste a token on the **Hub** tab.")  # fmt: skip
    with gr.Row(equal_height=True):
        words = gr.Textbox(label="Search", placeholder="a word of the repo id, e.g. sentiment", scale=3,
                           elem_id="browse-words")  # fmt: skip
        sort = gr.Dropdown(list(SORT_LABELS), value=next(iter(SORT_LABELS)), label="Sort", scale=1)
        search_button = gr.Button("Search", variant="primary", scale=1)
    status = gr.Markdown(elem_id="browse-status")
    table = gr.Dataframe(published_table([]), interactive=False, wrap=True, elem_id="browse-table",
                         label="Published adapters")  # fmt: skip
    with gr.Row():
        previous = gr.Button("← Previous page", interactive=False, size="sm")
        following = gr.Button("Next page →", interactive=False, size="sm")
    view = BrowseView(listing=session_state(settings), table=table, status=status, previous=previous,
                      next=following)  # fmt: skip

    hub = [token, endpoint_state]
    gr.on([search_button.click, words.submit, sort.input], bind(search_published, settings=settings),
          [words, sort, *hub], view.components(), api_name="search_adapters")  # fmt: skip
    tab.select(bind(first_listing, settings=settings), [view.listing, sort, *hub], view.components(),
               api_visibility="private")  # fmt: skip
    for button, step in ((previous, -1), (following, 1)):
        button.click(bind(turn_page, step=step, settings=settings), [view.listing, *hub], view.components(),
                     api_visibility="private")  # fmt: skip
    table.select(bind(load_chosen, settings=settings), [view.listing, *hub], [model_state, notice, tabs],
                 api_visibility="private")  # fmt: skip


def hub_tab(model_state: gr.State, token: gr.Textbox, endpoint_state: gr.State, settings: AppSettings) -> None:
    """Sign in or paste a token; push the adapter with its card, or load one."""
    adapter_info = gr.Markdown(NO_ADAPTER)
    if ON_SPACE:
        gr.LoginButton()
    token.render()
    with gr.Row(equal_height=True):
        repo_name = gr.Textbox(label="Repo name", placeholder="your-name/sentiment-prompt", scale=3)
        private = gr.Checkbox(label="Private", value=True, scale=1)
    description = gr.Textbox(label="Dataset description (goes into the model card)", lines=3)
    app_url = public_app_url()
    if app_url:
        gr.Markdown(f"The card links back here: {code_span(app_url + '/?adapter=OWNER/NAME')} opens this app with the "
                    "adapter loaded.")  # fmt: skip
    push_button = gr.Button("Push to the Hub", variant="primary")
    push_status = gr.Markdown()
    gr.Markdown("---\n**Load** an adapter from the Hub instead (then use it on the **Classify** tab):")
    with gr.Row(equal_height=True):
        repo_in = gr.Textbox(label="Hub repo id", placeholder="user/sentiment-prompt", scale=3)
        load_button = gr.Button("Load", scale=1)
    load_status = gr.Markdown()

    push_button.click(bind(push, settings=settings), [model_state, repo_name, private, description, token,
                      endpoint_state], push_status, api_name="push")  # fmt: skip
    load_button.click(bind(load_adapter, settings=settings), [repo_in, token, endpoint_state],
                      [model_state, load_status], api_visibility="private")  # fmt: skip
    model_state.change(describe_adapter, model_state, adapter_info, api_visibility="private")


if __name__ == "__main__":
    try:
        operator = AppSettings.from_env()
        public_app_url()  # the address pushed cards link back to: a bad PTUNING_PUBLIC_URL stops the start
    except PtuningError as error:  # a bad PTUNING_* value: one line, no traceback
        sys.exit(f"error: {error}")
    build_app(settings=operator).launch(**launch_options(operator))
