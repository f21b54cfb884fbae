"""Property-based attacks on everything a stranger can hand us: adapter files, adapter configs, data files.

Each property: whatever the input, it loads, or it is refused with one of our errors (a ``PtuningError``, which the
CLI and the app show as one line), never another exception. No network: a base model named by a fuzzed config is
looked for on disk only.
"""

import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as safetensors_save

from ptuning import PromptClassifier, PromptConfig, PtuningError, backbones
from ptuning.adapter_files import (
    ADAPTER_CONFIG,
    ADAPTER_FILES,
    ADAPTER_WEIGHTS,
    PTUNING_CONFIG,
    RESUME_WEIGHTS,
    unpack_adapter_zip,
)
from ptuning.data import load_dataset, read_table

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=15,
)
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int8, torch.uint8, torch.bool]


def refused_or_loaded(load) -> None:
    try:
        load()
    except PtuningError:
        pass


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """A fuzzed base model name is looked for on disk only: never a download."""

    def local_only(recorded, source):
        if not Path(source).is_dir():
            raise OSError(f"{source!r} is not a local directory (no network in these tests)")
        return source

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backbones, "_fetch", local_only)
        yield


@pytest.fixture(scope="module")
def adapters(tiny, tmp_path_factory, make):
    """Saved adapters of each layout: their folders, by name."""
    folders = {}
    for name, options in {
        "deep": dict(method="deep"),
        "peft": dict(method="prompt", pooling="model"),
        "p-tuning": dict(method="p-tuning", placement="[P:2] {text} [P:1]"),
        "roberta": dict(method="prompt", pooling="model", family="roberta"),
    }.items():
        family = options.pop("family", "bert")
        folders[name] = make(tiny(family), **options).save_pretrained(tmp_path_factory.mktemp(name))
    return folders


def tampered(folder: Path, change) -> None:
    """Load a copy of the adapter in ``folder`` after ``change(copy)``: it loads or is refused, nothing else."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(shutil.copytree(folder, Path(scratch) / "adapter"))
        change(copy)
        refused_or_loaded(lambda: PromptClassifier.from_pretrained(copy, include_resume=True))


# -- adapter files ---------------------------------------------------------------------------------------------
@FUZZ
@given(name=st.sampled_from(["deep", "peft", "p-tuning", "roberta"]),
       file=st.sampled_from([ADAPTER_WEIGHTS, RESUME_WEIGHTS, ADAPTER_CONFIG, PTUNING_CONFIG]),
       cut=st.floats(0, 1))  # fmt: skip
def test_truncated_adapter_files(adapters, name, file, cut):
    def truncate(copy):
        path = copy / file
        if path.exists():
            path.write_bytes(path.read_bytes()[: int(cut * path.stat().st_size)])

    tampered(adapters[name], truncate)


@FUZZ
@given(name=st.sampled_from(["deep", "peft", "p-tuning"]), file=st.sampled_from([ADAPTER_WEIGHTS, RESUME_WEIGHTS]),
       edits=st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8)), min_size=1,
                      max_size=6))  # fmt: skip
def test_garbled_weights(adapters, name, file, edits):
    def garble(copy):
        path = copy / file
        if path.exists():
            data = bytearray(path.read_bytes())
            for where, junk in edits:
                at = int(where * (len(data) - 1))
                data[at : at + len(junk)] = junk
            path.write_bytes(bytes(data))

    tampered(adapters[name], garble)


@FUZZ
@given(name=st.sampled_from(["deep", "peft", "p-tuning"]), file=st.sampled_from([ADAPTER_CONFIG, PTUNING_CONFIG]),
       value=JSON)  # fmt: skip
def test_json_of_any_shape_in_place_of_a_config(adapters, name, file, value):
    tampered(adapters[name], lambda copy: (copy / file).write_text(json.dumps(value)))


@FUZZ
@given(name=st.sampled_from(["deep", "peft", "p-tuning"]), file=st.sampled_from([ADAPTER_CONFIG, PTUNING_CONFIG]),
       path=st.lists(st.sampled_from(["config", "info", "labels", "weights_sha256", "num_virtual_tokens",
                                      "placement", "method", "pooling", "base_model", "format_version", "token_dim",
                                      "peft_type", "encoder_hidden_size", "head_dropout", "task", "init", "0"]),
                     min_size=1, max_size=2),
       value=JSON)  # fmt: skip
def test_a_config_with_one_value_changed_to_anything(adapters, name, file, path, value):
    def change(copy):
        obj = json.loads((copy / file).read_text())
        target = obj
        for key in path[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[path[-1]] = value
        (copy / file).write_text(json.dumps(obj))

    tampered(adapters[name], change)


@FUZZ
@given(name=st.sampled_from(["deep", "peft", "p-tuning"]), data=st.data())
def test_tensors_of_wrong_shapes_and_dtypes(adapters, name, data):
    from safetensors.torch import load_file

    original = load_file(adapters[name] / ADAPTER_WEIGHTS)
    names = data.draw(st.lists(st.sampled_from(sorted(original)), min_size=1, max_size=3, unique=True))
    tensors = dict(original)
    for key in names:
        shape = data.draw(st.lists(st.integers(0, 6), max_size=4), label=f"shape of {key}")
        tensors[key] = torch.zeros(shape, dtype=data.draw(st.sampled_from(DTYPES), label=f"dtype of {key}"))
    if data.draw(st.booleans(), label="drop one"):
        tensors.pop(names[0])
    blob = safetensors_save(tensors)

    def replace(copy):
        (copy / ADAPTER_WEIGHTS).write_bytes(blob)
        if data.draw(st.booleans(), label="record the new digest"):
            import hashlib

            config = json.loads((copy / PTUNING_CONFIG).read_text())
            config["weights_sha256"][ADAPTER_WEIGHTS] = hashlib.sha256(blob).hexdigest()
            (copy / PTUNING_CONFIG).write_text(json.dumps(config))

    tampered(adapters[name], replace)


MEMBER_NAMES = [ADAPTER_CONFIG, ADAPTER_WEIGHTS, PTUNING_CONFIG, "a/" + ADAPTER_CONFIG, "../x", "README.md",
                "pytorch_model.bin", "b/c/" + ADAPTER_WEIGHTS, "/abs", "C:x"]  # fmt: skip


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # a hostile zip may hold a name twice
@FUZZ
@given(members=st.lists(st.tuples(st.sampled_from(MEMBER_NAMES), st.binary(max_size=64)), max_size=5),
       raw=st.none() | st.binary(max_size=200))  # fmt: skip
@example(members=[(ADAPTER_CONFIG, b""), (ADAPTER_WEIGHTS, b""), ("README.md", b"")], raw=None)
def test_any_upload_as_an_adapter_zip(members, raw):
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "upload.zip"
        if raw is not None:
            archive.write_bytes(raw)
        else:
            with zipfile.ZipFile(archive, "w") as z:
                for name, content in members:
                    z.writestr(name, content)
        folder = Path(scratch) / "out"
        folder.mkdir()
        refused_or_loaded(lambda: (unpack_adapter_zip(str(archive), folder), PromptClassifier.from_pretrained(folder)))
        assert {p.name for p in folder.iterdir()} <= set(ADAPTER_FILES)  # the model card travels too; nothing else


# -- configs ---------------------------------------------------------------------------------------------------
FIELDS = ["base_model", "labels", "task", "method", "num_virtual_tokens", "placement", "pooling", "init", "init_text",
          "encoder_type", "encoder_hidden_size", "train_head", "head_dropout"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(d=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON, max_size=8) | JSON)
def test_prompt_config_from_any_dict(d):
    try:
        config = PromptConfig.from_dict(d)
    except PtuningError:
        return
    assert PromptConfig.from_dict(config.to_dict()) == config  # what loads, saves and loads back the same


# -- data files ------------------------------------------------------------------------------------------------
EXTENSIONS = [".csv", ".tsv", ".tab", ".txt", ".json", ".jsonl", ".ndjson", ".xlsx", ".xls", ".parquet", ""]
TEXTISH = st.text(alphabet=st.sampled_from(list(",;\t|\n\r\"' {}[]:abcAB01.-é\x00\ufeff")), max_size=300)


def read_back(data: bytes, extension: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"data{extension}"
        path.write_bytes(data)
        refused_or_loaded(lambda: read_table(path))
        refused_or_loaded(lambda: load_dataset(path))


@FUZZ
@given(data=st.binary(max_size=400) | TEXTISH.map(lambda t: t.encode("utf-8")), extension=st.sampled_from(EXTENSIONS))
def test_any_bytes_as_a_data_file(data, extension):
    read_back(data, extension)


@FUZZ
@given(rows=st.lists(st.dictionaries(st.sampled_from(["text", "label", "x", ""]), JSON, max_size=3), max_size=6),
       extension=st.sampled_from([".json", ".jsonl"]))  # fmt: skip
def test_json_records_of_any_shape(rows, extension):
    text = json.dumps(rows) if extension == ".json" else "\n".join(json.dumps(r) for r in rows)
    read_back(text.encode(), extension)


@FUZZ
@given(cells=st.lists(st.tuples(st.text(max_size=20) | st.none(), st.text(max_size=5) | st.integers() | st.none()),
                      min_size=1, max_size=8),
       extension=st.sampled_from([".xlsx", ".parquet"]), cut=st.none() | st.floats(0, 1))  # fmt: skip
def test_spreadsheets_and_parquet_whole_or_cut(cells, extension, cut):
    frame = pd.DataFrame(cells, columns=["text", "label"]).astype(object)
    buffer = io.BytesIO()
    try:
        frame.to_excel(buffer, index=False) if extension == ".xlsx" else frame.to_parquet(buffer)
    except Exception:  # a frame these writers cannot write (mixed types in a parquet column) says nothing of reading
        assume(False)
    data = buffer.getvalue()
    read_back(data if cut is None else data[: int(cut * len(data))], extension)
