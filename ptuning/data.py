"""Reading and validating the user's tables of labelled examples.

    file  -> read_table   -+                 +-> build_dataset -> Dataset -> check_trainable, split_dataset
                           +-> DataFrame ----+
    paste -> parse_pasted -+                 +-> build_texts   -> Dataset without labels (to classify)

Tokenisation and batching live with the model; this module only turns a user's file into clean lists.

Row numbers in messages count data rows from 1, as a user sees them: row 1 is the first row below the
header (line 2 of a CSV file, row 2 of a spreadsheet), the first record of a JSON list, the first line of
a JSONL file.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import json
import math
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from os import PathLike
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from .errors import ConfigError, DataError
from .units import human_size

DEFAULT_MAX_BYTES = 200 * 2**20
TASKS = ("classification", "regression")

# Column names recognised case-insensitively, best first. "premise", "question1" and "text_a" pair up
# with "hypothesis", "question2" and "text_b" (MNLI, QQP and old GLUE layouts).
TEXT_COLUMNS = (
    "text", "sentence", "sentence1", "review", "content", "document", "message", "question", "input",
    "utterance", "premise", "question1", "text_a",
)  # fmt: skip
LABEL_COLUMNS = ("label", "labels", "target", "class", "category", "sentiment", "score", "y", "output")
PAIR_COLUMNS = ("text_pair", "sentence2", "text2", "text_b", "hypothesis", "question2")

_ROW_NOTE = "Row 1 is the first row below the header."
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
# C0/C1 control characters other than tab and line breaks: text never has many, binary data does.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass
class Dataset:
    """Validated examples, ready for training, evaluation or prediction.

    ``labels`` holds class indices into ``label_names`` for classification and floats for regression;
    it is empty for a file without labels (prediction). ``rows`` keeps each example's row number in the
    source file (1 = first row below the header), so messages still point at the right row after a split.

    Example:
        >>> ds = Dataset(texts=["good", "bad"], labels=[1, 0], label_names=["neg", "pos"])
        >>> len(ds), ds.label_names[ds.labels[0]]
        (2, 'pos')
    """

    texts: list[str]
    labels: list
    text_pairs: list[str] | None = None
    label_names: list[str] | None = None
    task: str = "classification"
    text_column: str = "text"
    label_column: str | None = "label"
    pair_column: str | None = None
    warnings: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Mismatched lists are a programming error, not the user's: fail loudly here rather than later.
        if self.labels and len(self.labels) != len(self.texts):
            raise ValueError(f"{len(self.labels)} labels for {len(self.texts)} texts")
        if self.text_pairs is not None and len(self.text_pairs) != len(self.texts):
            raise ValueError(f"{len(self.text_pairs)} text pairs for {len(self.texts)} texts")
        if not self.rows:
            self.rows = list(range(1, len(self.texts) + 1))

    def __len__(self) -> int:
        return len(self.texts)


# --- reading -------------------------------------------------------------------------------------------


def read_table(
    path: str | PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES, max_rows: int | None = None
) -> pd.DataFrame:
    """Read a table of examples from a file, choosing the format by its extension.

    .csv, .tsv/.tab, .json (a list of records or ``{"data": [...]}``), .jsonl/.ndjson, .xlsx/.xls (the
    first sheet), .parquet (needs pyarrow); .txt and anything else: delimited text whose delimiter (tab,
    comma, semicolon or pipe) is read from the header line, or one column when the header has none (a
    .csv from a European Excel, separated by semicolons, is read as such too). Text is UTF-8, with or
    without BOM, or UTF-16 with BOM; other bytes fall back to cp1252/latin-1 with a warning. Cells of text
    files are kept as strings (no "NA" -> NaN guessing); empty cells are NaN. Non-fatal findings are in
    ``df.attrs["warnings"]``.

    ``max_bytes`` bounds the file, and for .xlsx and .parquet (compressed formats) also what it unpacks to, checked
    before anything is unpacked; ``max_rows`` (None: no limit) bounds the rows, read no further than one past it
    where the format allows.

    Raises DataError for a missing, empty, binary, oversized or malformed file.

    Example:
        >>> df = read_table("examples/sms_spam.csv")
        >>> list(df.columns)
        ['text', 'label']
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(f"{path.name} is {human_size(size)}; the limit is {human_size(max_bytes)}. Use a smaller file.")
    if size == 0:
        raise DataError(f"{path.name} is empty")
    suffix = path.suffix.lower()
    warnings: list[str] = []
    if suffix in (".xlsx", ".xlsm", ".xls"):
        _check_unpacked_size(path, max_bytes)
        df = _read_excel(path, warnings, max_rows)
    elif suffix == ".parquet":
        df = _read_parquet(path, max_bytes, max_rows)
    else:
        text = _decode(path.read_bytes(), path.name, warnings)
        if suffix in (".json", ".jsonl", ".ndjson"):
            df = _parse_json(text, path.name) if suffix == ".json" else _parse_jsonl(text, path.name)
        else:
            default = {".csv": ",", ".tsv": "\t", ".tab": "\t"}.get(suffix)
            df = _parse_delimited(text, _sniff_delimiter(text, default), path.name, warnings)
    return _finish(df, path.name, warnings, max_rows)


def parse_pasted(text: str, *, max_bytes: int = DEFAULT_MAX_BYTES, max_rows: int | None = None) -> pd.DataFrame:
    """Read a table pasted as text: JSON or JSONL when it starts with ``[`` or ``{``, else delimited text
    (a paste from a spreadsheet is tab-separated) with a header line.

    Example:
        >>> parse_pasted("text\\tlabel\\ngreat film\\tpos\\nawful\\tneg").shape
        (2, 2)
    """
    if not text.strip():
        raise DataError("the pasted text is empty")
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise DataError(f"the pasted text is {human_size(size)}; the limit is {human_size(max_bytes)}")
    name, warnings = "the pasted text", []
    stripped = text.strip()
    if stripped.startswith("["):
        df = _parse_json(stripped, name)
    elif stripped.startswith("{"):
        try:  # one object ({"data": [...]}) or one record per line
            data = json.loads(stripped)
        except json.JSONDecodeError:
            data = None
        is_wrapped = isinstance(data, dict) and "data" in data
        df = _records_frame(data, name) if is_wrapped else _parse_jsonl(stripped, name)
    else:
        df = _parse_delimited(text, _sniff_delimiter(text), name, warnings)
    return _finish(df, name, warnings, max_rows)


def _decode(data: bytes, name: str, warnings: list[str]) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode text" export
        return data.decode("utf-16")
    if data.startswith(b"PK\x03\x04"):
        raise DataError(f"{name} is a zip archive (an Excel workbook?), not text: save it as .xlsx or as CSV")
    if b"\x00" in data:
        raise DataError(f"{name} is a binary file (it contains NUL bytes), not a text table: export it as CSV")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        utf8_error = error
    # cp1252 first: it is what Windows tools write, and it decodes the curly quotes latin-1 turns into
    # control characters; latin-1 decodes any byte, so the result must still look like text.
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if len(_CONTROL.findall(text)) <= 0.01 * len(text):
            warnings.append(
                f"{name} is not UTF-8 (byte {utf8_error.start} is invalid); it was read as {encoding}. "
                "Check that accented characters look right, or save the file as UTF-8."
            )
            return text
    raise DataError(f"{name} is neither UTF-8 nor readable text in another encoding: save it as UTF-8 CSV")


def _sniff_delimiter(text: str, preferred: str | None = None) -> str | None:
    """The delimiter of delimited text, read from its header line; ``preferred`` (the extension's) when
    the header has it or has none; None (one column, one example per line) when neither.

    The header is the only line free of prose, so a delimiter found there is trusted; csv.Sniffer decides
    only between several candidates present in the header.
    """
    sample = text[:65536]
    header = sample.lstrip("\ufeff\r\n").split("\n", 1)[0]
    candidates = [d for d in _DELIMITER_NAMES if d in header]
    if preferred in candidates or not candidates:
        return preferred
    if len(candidates) == 1:
        return candidates[0]
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(candidates)).delimiter
    except csv.Error:
        return candidates[0]  # the order of _DELIMITER_NAMES: comma before tab before ; before |


def _parse_delimited(text: str, delimiter: str | None, name: str, warnings: list[str]) -> pd.DataFrame:
    if delimiter is None:
        # One column, one example per line: quotes are part of the text, not CSV quoting.
        lines = [line for line in text.lstrip("\ufeff").splitlines() if line.strip()]
        if not lines:
            raise DataError(f"{name} is empty")
        header = lines[0].strip()
        if header.casefold() not in TEXT_COLUMNS + LABEL_COLUMNS + PAIR_COLUMNS:
            warnings.append(f"the first line, {header[:60]!r}, was read as the column name, not as an example")
        return pd.DataFrame({header: lines[1:]}, dtype=object)
    try:
        # dtype=str and no default NA strings: a review that says "NA" or "null" stays text.
        return pd.read_csv(
            io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, na_values=[""], index_col=False
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty") from None
    except pd.errors.ParserError as error:
        kind = _DELIMITER_NAMES[delimiter]
        detail = str(error).strip().removeprefix("Error tokenizing data. C error: ")
        raise DataError(
            f"{name} is not valid {kind}-separated text: {detail}. "
            f"A field that contains a {kind} or a line break must be in double quotes."
        ) from error


def _parse_json(text: str, name: str) -> pd.DataFrame:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise DataError(f"{name} is not valid JSON: {error.msg} at {where}") from error
    return _records_frame(data, name)


def _parse_jsonl(text: str, name: str) -> pd.DataFrame:
    # Line by line rather than pd.read_json(lines=True): its errors do not say which line is broken.
    records = []
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            message = f"{name}: line {number} is not valid JSON: {error.msg} (column {error.colno})"
            raise DataError(message) from error
        if not isinstance(record, dict):
            raise DataError(f'{name}: line {number} is not a JSON object like {{"text": ..., "label": ...}}')
        records.append(record)
    return pd.DataFrame.from_records(records)


def _records_frame(data: object, name: str) -> pd.DataFrame:
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(
            f'{name}: expected a list of records, [{{"text": ..., "label": ...}}, ...], or {{"data": [...]}}; '
            f"found a JSON {_json_type(data)}"
        )
    bad = [i for i, record in enumerate(data) if not isinstance(record, dict)]
    if bad:
        example = '{"text": ..., "label": ...}'
        raise DataError(f"{name}: each record must be an object like {example}; {_rows(bad)}: not an object")
    return pd.DataFrame.from_records(data)


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _check_unpacked_size(path: Path, max_bytes: int) -> None:
    """Refuse a workbook whose parts unpack to more than ``max_bytes`` (a zip bomb), before any is unpacked."""
    try:
        with zipfile.ZipFile(path) as archive:
            size = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip (an old .xls, or damage): the reader says what is wrong
    if size > max_bytes:
        raise DataError(
            f"{path.name} unpacks to {human_size(size)}; the limit is {human_size(max_bytes)}. Use fewer rows, or CSV"
        )


def _read_excel(path: Path, warnings: list[str], max_rows: int | None = None) -> pd.DataFrame:
    nrows = None if max_rows is None else max_rows + 1  # one past the limit tells that it is over
    try:
        with pd.ExcelFile(path) as book:  # one open for the sheet names and the first sheet
            sheets = book.sheet_names
            df = pd.read_excel(book, sheet_name=0, dtype=object, keep_default_na=False, na_values=[""], nrows=nrows)
    except ImportError as error:  # .xls needs python-calamine (pandas 3) or xlrd, which are optional
        raise DataError(
            f"reading {path.suffix} files needs an extra package: {error} Or save the file as .xlsx or CSV."
        ) from error
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path.name} could not be read as an Excel workbook; it may be damaged or not really Excel. "
            f"Save it again from Excel as .xlsx, or export it as CSV ({type(error).__name__}: {error})"
        ) from error
    if len(sheets) > 1:
        warnings.append(f"{path.name} has {len(sheets)} sheets; only the first, {sheets[0]!r}, was read")
    return df


def _read_parquet(path: Path, max_bytes: int = DEFAULT_MAX_BYTES, max_rows: int | None = None) -> pd.DataFrame:
    if find_spec("pyarrow") is None:
        raise DataError("reading .parquet files needs pyarrow: pip install pyarrow, or export the table as CSV")
    import pyarrow.parquet as pq

    try:  # the footer tells the rows before any column is read
        file = pq.ParquetFile(path)
        meta = file.metadata
        if max_rows is not None and meta.num_rows > max_rows:
            raise DataError(_too_many_rows(path.name, max_rows, meta.num_rows))
        # The footer's sizes are of encoded pages: a dictionary-encoded column of one long text repeated takes a
        # few KB there and megabytes unpacked. So read a batch at a time and count what the table takes in memory.
        parts, unpacked = [], 0
        for batch in file.iter_batches(batch_size=1024):
            part = batch.to_pandas()
            unpacked += int(part.memory_usage(deep=True).sum())
            if unpacked > max_bytes:
                raise DataError(
                    f"{path.name} unpacks to more than {human_size(max_bytes)}; the limit is {human_size(max_bytes)}"
                )
            parts.append(part)
        return pd.concat(parts, ignore_index=True) if parts else file.read().to_pandas()
    except (ValueError, OSError) as error:
        raise DataError(f"{path.name} could not be read as Parquet: {error}") from error


def _too_many_rows(name: str, max_rows: int, rows: int | None = None) -> str:
    how_many = f"{rows:,}" if rows is not None else f"more than {max_rows:,}"
    return f"{name} has {how_many} rows; the limit here is {max_rows:,}. Use fewer rows"


def _finish(df: pd.DataFrame, name: str, warnings: list[str], max_rows: int | None = None) -> pd.DataFrame:
    """Clean column names, drop trailing empty rows (spreadsheets keep formatted blanks), refuse no rows (or more
    than ``max_rows``)."""
    if df.shape[1] == 0:
        raise DataError(f"{name} has no data rows")
    df.columns = [str(column).strip() for column in df.columns]
    filled = (~df.isna().all(axis=1)).to_numpy().nonzero()[0]
    df = df.iloc[: filled[-1] + 1 if len(filled) else 0].reset_index(drop=True)
    if len(df) == 0:
        raise DataError(f"{name} has a header ({', '.join(df.columns)}) but no data rows")
    if max_rows is not None and len(df) > max_rows:
        raise DataError(_too_many_rows(name, max_rows))
    df.attrs["warnings"] = warnings
    return df


# --- columns and task ----------------------------------------------------------------------------------


def detect_columns(
    df: pd.DataFrame,
    text_column: str | None = None,
    label_column: str | None = None,
    pair_column: str | None = None,
    *,
    guess_label: bool = True,
) -> tuple[str, str | None, str | None]:
    """Choose the (text, label, pair) columns of a table.

    Explicit names win (matched exactly, then case-insensitively). Otherwise the common names in
    TEXT_COLUMNS / LABEL_COLUMNS / PAIR_COLUMNS are recognised case-insensitively; failing that, the text
    is the non-numeric column with the longest mean length and, when ``guess_label``, the label is the one
    column left over, if exactly one is. The label and pair may be None; a pair is only found by name.

    Example:
        >>> detect_columns(pd.DataFrame({"Review": ["fine"], "stars": ["5"]}))
        ('Review', 'stars', None)
    """
    columns = [str(column) for column in df.columns]
    text = _resolve(columns, text_column, "text")
    label = _resolve(columns, label_column, "label")
    pair = _resolve(columns, pair_column, "text pair")
    chosen = [c for c in (text, label, pair) if c is not None]
    if len(set(chosen)) < len(chosen):
        raise DataError(f"the text, label and pair columns must differ; got {text!r}, {label!r}, {pair!r}")

    def free() -> list[str]:
        return [c for c in columns if c not in (text, label, pair)]

    pair = pair or _by_name(free(), PAIR_COLUMNS)
    label = label or _by_name(free(), LABEL_COLUMNS)
    text = text or _by_name(free(), TEXT_COLUMNS)
    if text is None:
        candidates = [c for c in free() if not _is_numeric(df[c])]
        if not candidates:
            raise DataError(
                f"no column holds text; the columns are: {', '.join(columns)}. "
                "Name the text column 'text' or choose it explicitly (text_column)."
            )
        text = max(candidates, key=lambda c: df[c].dropna().astype(str).str.len().mean())
    if label is None and guess_label and len(free()) == 1:
        label = free()[0]
    return text, label, pair


def _resolve(columns: list[str], wanted: str | None, role: str) -> str | None:
    if wanted is None:
        return None
    if wanted in columns:
        return wanted
    matches = [c for c in columns if c.casefold() == wanted.strip().casefold()]
    if len(matches) == 1:
        return matches[0]
    raise DataError(f"there is no {role} column {wanted!r}; the columns are: {', '.join(columns)}")


def _by_name(columns: list[str], names: Sequence[str]) -> str | None:
    folded = {c.casefold(): c for c in reversed(columns)}  # reversed: the first of equal names wins
    return next((folded[n] for n in names if n in folded), None)


def _is_numeric(column: pd.Series) -> bool:
    values = column.dropna().head(1000)  # enough to tell ids and scores from prose
    return len(values) > 0 and all(_as_float(v) is not None for v in values)


def infer_task(values: Iterable) -> str:
    """"regression" for numbers with many distinct values, else "classification".

    Many means more than 20 distinct values, or more than 10 when some are not whole numbers: star ratings
    1-5 or class ids 0-9 stay classes, similarity scores in [0, 5] become regression. Pass ``task`` to
    build_dataset to override the guess.

    Example:
        >>> infer_task(["1", "2", "2"]), infer_task([i / 7 for i in range(30)])
        ('classification', 'regression')
    """
    numbers = set()
    for value in values:
        if _is_missing(value) or (isinstance(value, str) and not value.strip()):
            continue
        number = _as_float(value)  # None for text and for booleans
        if number is None:
            return "classification"
        numbers.add(number)
    distinct = len(numbers)
    whole = all(n.is_integer() for n in numbers)
    return "regression" if distinct > 20 or (distinct > 10 and not whole) else "classification"


# --- building the dataset ------------------------------------------------------------------------------


def build_dataset(
    df: pd.DataFrame,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    pair_column: str | None = None,
    task: str | None = None,
    label_names: list[str] | None = None,
    require_labels: bool = True,
) -> Dataset:
    """Validate a table and turn it into a Dataset.

    Columns are chosen by detect_columns; the task is ``task`` or infer_task's guess (classification when
    ``label_names`` is given). Classification labels become indices into ``label_names`` when it is given
    (the classes of a trained adapter: an unknown label is an error), else into the labels found, sorted
    naturally (numbers numerically, then strings alphabetically) and kept as strings ("1.0" and 1 are
    both "1"). With ``require_labels=False`` a table without a label column, or with an empty one, loads
    with ``labels == []`` (prediction); the label column is then never guessed from a leftover column, and
    one that has values is still validated.

    Every problem found is reported in one DataError with its rows (row 1 = first row below the header):
    empty text or pair, missing label, non-numeric regression target, unknown label, a single class.
    Duplicate rows and texts with conflicting labels are only warnings (``Dataset.warnings``). A class
    with a single example is allowed here (an evaluation file may have one); check_trainable refuses it.

    Example:
        >>> ds = build_dataset(pd.DataFrame({"text": ["a", "b", "c"], "label": ["pos", "neg", "pos"]}))
        >>> ds.labels, ds.label_names
        ([1, 0, 1], ['neg', 'pos'])
    """
    if task is not None and task not in TASKS:
        raise ConfigError(f"task must be 'classification' or 'regression', not {task!r}")
    if task == "regression" and label_names is not None:
        raise ValueError("label_names is for classification; a regression dataset has none")
    if len(df) == 0:
        raise DataError("the table has no rows")
    text_col, label_col, pair_col = detect_columns(
        df, text_column, label_column, pair_column, guess_label=require_labels
    )
    if not require_labels and label_col is not None and df[label_col].isna().all():
        label_col = None  # a prediction file with an empty label column to fill in
    if label_col is None and require_labels:
        raise DataError(
            f"no label column found; the columns are: {', '.join(map(str, df.columns))}. "
            "Name it 'label' or choose it explicitly (label_column)."
        )
    warnings = list(df.attrs.get("warnings", []))
    problems: list[str] = []
    texts = _texts(df[text_col], text_col, problems)
    pairs = _texts(df[pair_col], pair_col, problems) if pair_col is not None else None  # '' names a column too

    column = df[label_col] if label_col is not None else None
    task, labels, label_names = _labels(column, task, label_names, problems)
    if problems:
        raise DataError("; ".join(problems) + ". " + _ROW_NOTE)
    if task == "classification" and label_col is not None and len(label_names) < 2:
        raise DataError(
            f"column {label_col!r} has only one class ({label_names[0]!r}); classification needs at least two"
        )
    warnings += _duplicate_warnings(texts, pairs, labels if task == "classification" else None)
    return Dataset(
        texts=texts,
        labels=labels,
        text_pairs=pairs,
        label_names=label_names if task == "classification" else None,
        task=task,
        text_column=text_col,
        label_column=label_col,
        pair_column=pair_col,
        warnings=warnings,
    )


def cut_long_texts(ds: Dataset, max_chars: int) -> Dataset:
    """``ds`` with every text (and second text) past ``max_chars`` characters cut there, and a warning that says how
    many were; ``ds`` itself when none is that long.

    Example:
        >>> cut_long_texts(Dataset(texts=["abcdef", "ab"], labels=[]), 3).texts
        ['abc', 'ab']
    """
    pairs = ds.text_pairs or [""] * len(ds.texts)
    long = [i for i, (a, b) in enumerate(zip(ds.texts, pairs)) if len(a) > max_chars or len(b) > max_chars]
    if not long:
        return ds
    cut = [t[:max_chars] for t in ds.texts]
    pairs = None if ds.text_pairs is None else [t[:max_chars] for t in ds.text_pairs]
    note = f"{len(long)} texts longer than {max_chars:,} characters were cut there: {_rows(long)}"
    return dataclasses.replace(ds, texts=cut, text_pairs=pairs, warnings=[*ds.warnings, note])


def load_dataset(path: str | PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES, **kwargs) -> Dataset:
    """read_table then build_dataset; ``kwargs`` go to build_dataset.

    Example:
        >>> load_dataset("examples/sms_spam.csv").label_names
        ['ham', 'spam']
    """
    return build_dataset(read_table(path, max_bytes=max_bytes), **kwargs)


def build_texts(df: pd.DataFrame, text_column: str | None = None, pair_column: str | None = None) -> Dataset:
    """The texts (and second texts) of a table to classify, as a Dataset without labels.

    Columns are chosen as by detect_columns, but no label is looked for: a label column, or any other, is left
    alone. Repeated texts are fine to classify, so they are not warned about.

    Example:
        >>> build_texts(pd.DataFrame({"message": ["hi", "hi"], "label": ["a", None]})).texts
        ['hi', 'hi']
    """
    text, _, pair = detect_columns(df, text_column, None, pair_column, guess_label=False)
    columns = [c for c in (text, pair) if c is not None]
    data = build_dataset(df[columns], text_column=text, pair_column=pair, require_labels=False)
    repeated = set(_duplicate_warnings(data.texts, data.text_pairs, None))
    data.warnings = [w for w in data.warnings if w not in repeated]
    return data


def read_texts(
    path: str | PathLike, text_column: str | None = None, pair_column: str | None = None, *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Dataset:  # fmt: skip
    """read_table then build_texts: the texts of a file to classify.

    Example:
        >>> len(read_texts("examples/sms_spam.csv"))
        400
    """
    return build_texts(read_table(path, max_bytes=max_bytes), text_column, pair_column)


def _labels(
    column: pd.Series | None, task: str | None, label_names: list[str] | None, problems: list[str]
) -> tuple[str, list, list[str] | None]:
    """``(task, labels, label_names)`` of a label column (None: no labels); the task guessed unless given."""
    if column is None:
        return task or "classification", [], label_names
    guessed = "classification" if label_names is not None else infer_task(column.drop_duplicates().tolist())
    task = task or guessed
    if task == "regression":
        return task, _regression_labels(column, problems), label_names
    return (task, *_class_labels(column, label_names, problems))


def _texts(column: pd.Series, name: str, problems: list[str]) -> list[str]:
    texts = [v if isinstance(v, str) else None if _is_missing(v) else str(v) for v in column.tolist()]
    empty = [i for i, text in enumerate(texts) if text is None or not text.strip()]
    _report(problems, f"empty text in column {name!r}", empty)
    return texts


def _map_distinct(column: pd.Series, convert) -> list:
    """``convert`` of each cell, None for missing cells; computed once per distinct value, as labels repeat."""
    try:
        codes, uniques = pd.factorize(column)
    except TypeError:  # unhashable cells: lists or objects from a JSON file
        bad = [i for i, v in enumerate(column.tolist()) if isinstance(v, (list, dict))]
        where = _rows(bad)
        raise DataError(f"column {column.name!r} holds lists or objects at {where}; a label is one value") from None
    converted = [convert(value) for value in uniques.tolist()]
    return [converted[code] if code >= 0 else None for code in codes]


def _regression_labels(column: pd.Series, problems: list[str]) -> list[float]:
    numbers = _map_distinct(column, _as_float)
    values = column.tolist()
    missing, bad = [], []
    for row, number in enumerate(numbers):
        if number is None:
            (missing if _label_name(values[row]) is None else bad).append(row)
    _report(problems, f"missing label in column {column.name!r}", missing)
    examples = ", ".join(repr(_label_name(values[row])) for row in bad[:3])
    _report(problems, f"regression needs numbers, but column {column.name!r} has {examples}", bad)
    return numbers


def _class_labels(
    column: pd.Series, label_names: list[str] | None, problems: list[str]
) -> tuple[list[int], list[str]]:
    names = _map_distinct(column, _label_name)
    _report(problems, f"missing label in column {column.name!r}", [i for i, n in enumerate(names) if n is None])
    if label_names is None:
        label_names = sorted({n for n in names if n is not None}, key=_natural_key)
    index: dict[str, int] = {}
    for i, name in enumerate(label_names):  # "1.0" in an adapter still matches a 1 in the file
        index.setdefault(name, i)
        index.setdefault(_label_name(name), i)
    unknown: dict[str, list[int]] = {}
    for row, name in enumerate(names):
        if name is not None and name not in index:
            unknown.setdefault(name, []).append(row)
    if unknown:
        listed = ", ".join(f"{name!r} ({_rows(rows)})" for name, rows in list(unknown.items())[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        problems.append(
            f"unknown labels in column {column.name!r}: {listed}{more}; "
            f"the known labels are: {', '.join(map(repr, label_names))}"
        )
    return [index.get(n, -1) for n in names], list(label_names)


def _duplicate_warnings(texts: list[str], pairs: list[str] | None, labels: list | None) -> list[str]:
    frame = pd.DataFrame({"text": texts, "pair": pairs if pairs is not None else "", "label": labels or 0})
    warnings = []
    repeated = frame.index[frame.duplicated()].tolist()
    if repeated:
        many = len(repeated) > 1
        warnings.append(
            f"{len(repeated)} duplicate row{'s' if many else ''} ({_rows(repeated)}) "
            f"repeat{'' if many else 's'} an earlier row exactly"
        )
    if labels is not None:
        conflicted = frame.groupby(["text", "pair"])["label"].transform("nunique") > 1
        rows = frame.index[conflicted].tolist()
        if rows:
            warnings.append(f"the same text has different labels in {_rows(rows)}")
    return warnings


# --- values --------------------------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _as_float(value: object) -> float | None:
    """The finite number a cell holds ("3", " 2.5 ", 4), or None."""
    if isinstance(value, bool) or _is_missing(value):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _label_name(value: object) -> str | None:
    """A label cell as a class name: stripped text, whole numbers without ".0"; None when missing."""
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    name = str(value).strip()
    number = _as_float(name)
    if number is not None and number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return name or None


def _natural_key(name: str) -> tuple:
    number = _as_float(name)
    return (0, number, name) if number is not None else (1, name.casefold(), name)


def _rows(indices: Sequence[int], limit: int = 5) -> str:
    """'row 3' / 'rows 3, 7' / 'rows 1, 2, 3, 4, 5 and 9 more' for 0-based positions."""
    shown = ", ".join(str(i + 1) for i in indices[:limit])
    more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
    return f"row{'s' if len(indices) > 1 else ''} {shown}{more}"


def _report(problems: list[str], what: str, indices: list[int]) -> None:
    if indices:
        problems.append(f"{what} at {_rows(indices)}")


# --- checks, splits and summaries ----------------------------------------------------------------------


def check_trainable(ds: Dataset) -> None:
    """Refuse a dataset that cannot be trained on: no labels, fewer than two classes present, a class with
    a single example (it cannot be both learned and validated), or a regression target that never varies.

    Kept apart from build_dataset so that evaluation files, where such things are fine, still load.

    Example:
        >>> check_trainable(Dataset(texts=["a", "b", "c"], labels=[0, 0, 1], label_names=["x", "y"]))
        Traceback (most recent call last):
        ...
        ptuning.errors.DataError: class 'y' has a single example (row 3); ...
    """
    if not ds.labels:
        raise DataError("the data has no labels; training needs a label column")
    if ds.task == "regression":
        if len(set(ds.labels)) < 2:
            raise DataError(f"every label in column {ds.label_column!r} is {ds.labels[0]}: there is nothing to learn")
        return
    counts = Counter(ds.labels)
    if len(counts) < 2:
        only = ds.label_names[next(iter(counts))]
        raise DataError(f"all examples have the label {only!r}; training needs at least two classes")
    singles = [(ds.label_names[c], ds.rows[ds.labels.index(c)]) for c, n in counts.items() if n == 1]
    if singles:
        listed = "; ".join(f"class {name!r} has a single example (row {row})" for name, row in singles)
        raise DataError(
            f"{listed}; each class needs at least two examples, one to learn from and one to validate on. "
            f"Add examples or remove the class. {_ROW_NOTE}"
        )


def split_dataset(ds: Dataset, val_fraction: float = 0.1, seed: int = 42) -> tuple[Dataset, Dataset]:
    """Split into (train, validation), stratified by class for classification, the same for the same seed.

    When a class is too small to appear on both sides, or the validation set is smaller than the number
    of classes, the split falls back to a plain shuffle and says so in both parts' warnings.

    Example:
        >>> train, val = split_dataset(load_dataset("examples/sms_spam.csv"), val_fraction=0.25)
        >>> len(train), len(val)
        (300, 100)
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"the validation fraction must be between 0 and 1 (exclusive), not {val_fraction}")
    n_val = math.ceil(val_fraction * len(ds))  # sklearn's rounding
    if n_val >= len(ds):
        raise DataError(
            f"cannot hold out {val_fraction:.0%} of {len(ds)} examples for validation and keep any for "
            "training: add examples or lower the validation fraction"
        )
    positions = list(range(len(ds)))
    warnings = list(ds.warnings)
    stratify = ds.labels if ds.task == "classification" and ds.labels else None
    try:
        train, val = train_test_split(positions, test_size=val_fraction, random_state=seed, stratify=stratify)
    except ValueError as error:
        if stratify is None:
            raise
        warnings.append(
            f"the validation set was drawn at random, not class by class ({error}); "
            "class proportions may differ between training and validation"
        )
        train, val = train_test_split(positions, test_size=val_fraction, random_state=seed)
    return _subset(ds, train, warnings), _subset(ds, val, warnings)


def _subset(ds: Dataset, positions: list[int], warnings: list[str]) -> Dataset:
    return dataclasses.replace(
        ds,
        texts=[ds.texts[i] for i in positions],
        labels=[ds.labels[i] for i in positions] if ds.labels else [],
        text_pairs=[ds.text_pairs[i] for i in positions] if ds.text_pairs is not None else None,
        label_names=list(ds.label_names) if ds.label_names is not None else None,
        warnings=list(warnings),
        rows=[ds.rows[i] for i in positions],
    )


def label_distribution(ds: Dataset) -> dict[str, int]:
    """Examples per class, in label order, zeros included; empty for regression or unlabelled data.

    Example:
        >>> label_distribution(load_dataset("examples/sms_spam.csv"))
        {'ham': 280, 'spam': 120}
    """
    if ds.task != "classification" or not ds.labels:
        return {}
    counts = Counter(ds.labels)
    return {name: counts.get(i, 0) for i, name in enumerate(ds.label_names)}
