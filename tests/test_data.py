"""Reading, validating and splitting user tables (ptuning.data). Row numbers count data rows from 1."""

import json

import pandas as pd
import pytest

import ptuning.data as data
from ptuning.data import (
    Dataset,
    build_dataset,
    check_trainable,
    detect_columns,
    infer_task,
    label_distribution,
    load_dataset,
    parse_pasted,
    read_table,
    split_dataset,
)
from ptuning.errors import ConfigError, DataError


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def table(**columns):
    return pd.DataFrame(columns)


# --- read_table: formats --------------------------------------------------------------------------------


def test_csv_is_read_with_cells_as_strings(tmp_path):
    df = read_table(write(tmp_path, "a.csv", "text,label\ngood film,1\nbad film,0\n"))
    assert df.to_dict("list") == {"text": ["good film", "bad film"], "label": ["1", "0"]}


def test_csv_keeps_na_like_words_as_text(tmp_path):
    df = read_table(write(tmp_path, "a.csv", "text,label\nNA,x\nnull,y\nNone,z\n"))
    assert df["text"].tolist() == ["NA", "null", "None"]


def test_csv_empty_cell_is_missing(tmp_path):
    df = read_table(write(tmp_path, "a.csv", "text,label\nhi,\n"))
    assert pd.isna(df["label"][0])


def test_csv_quoted_field_may_hold_commas_and_line_breaks(tmp_path):
    df = read_table(write(tmp_path, "a.csv", 'text,label\n"one, two\nthree",x\n'))
    assert df["text"].tolist() == ["one, two\nthree"]


def test_csv_separated_by_semicolons_is_split_on_them(tmp_path):
    df = read_table(write(tmp_path, "a.csv", "text;label\nhello, world;pos\n"))
    assert df.to_dict("list") == {"text": ["hello, world"], "label": ["pos"]}


def test_tsv_is_read_on_tabs(tmp_path):
    df = read_table(write(tmp_path, "a.tsv", "text\tlabel\nhello, world\tpos\n"))
    assert df.to_dict("list") == {"text": ["hello, world"], "label": ["pos"]}


@pytest.mark.parametrize("delimiter", ["\t", ",", ";", "|"])
def test_txt_delimiter_is_sniffed_from_the_header(tmp_path, delimiter):
    content = f"text{delimiter}label\nfirst{delimiter}a\nsecond{delimiter}b\n"
    df = read_table(write(tmp_path, "a.txt", content))
    assert df.to_dict("list") == {"text": ["first", "second"], "label": ["a", "b"]}


def test_txt_delimiter_is_not_fooled_by_commas_in_tab_separated_text(tmp_path):
    content = "text\tlabel\nwell, well, well\tpos\nno\tneg\n"
    df = read_table(write(tmp_path, "a.txt", content))
    assert df["text"].tolist() == ["well, well, well", "no"]


def test_unknown_extension_is_sniffed_like_txt(tmp_path):
    df = read_table(write(tmp_path, "a.data", "text|label\nhi|x\n"))
    assert list(df.columns) == ["text", "label"]


def test_txt_without_delimiter_is_one_column_one_example_per_line(tmp_path):
    df = read_table(write(tmp_path, "a.txt", 'text\nhow are you, friend\n"quoted" words\n'))
    assert df.to_dict("list") == {"text": ["how are you, friend", '"quoted" words']}


def test_txt_without_header_warns_that_the_first_line_became_the_column_name(tmp_path):
    df = read_table(write(tmp_path, "a.txt", "hello there\nhow are you\n"))
    assert "'hello there'" in df.attrs["warnings"][0]


def test_column_names_are_stripped(tmp_path):
    df = read_table(write(tmp_path, "a.csv", "text, label\nhi,x\n"))
    assert list(df.columns) == ["text", "label"]


def test_json_list_of_records_is_read(tmp_path):
    records = [{"text": "a", "label": 1}, {"text": "b", "label": 0}]
    df = read_table(write(tmp_path, "a.json", json.dumps(records)))
    assert df.to_dict("list") == {"text": ["a", "b"], "label": [1, 0]}


def test_json_data_wrapper_is_read(tmp_path):
    df = read_table(write(tmp_path, "a.json", json.dumps({"data": [{"text": "a", "label": "x"}]})))
    assert df.to_dict("list") == {"text": ["a"], "label": ["x"]}


def test_jsonl_is_read_skipping_blank_lines(tmp_path):
    content = '{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n'
    df = read_table(write(tmp_path, "a.jsonl", content))
    assert df.to_dict("list") == {"text": ["a", "b"], "label": ["x", "y"]}


def test_ndjson_is_read_as_jsonl(tmp_path):
    df = read_table(write(tmp_path, "a.ndjson", '{"text": "a"}\n{"text": "b"}\n'))
    assert df["text"].tolist() == ["a", "b"]


def test_xlsx_first_sheet_is_read_and_other_sheets_are_warned_about(tmp_path):
    path = tmp_path / "a.xlsx"
    with pd.ExcelWriter(path) as writer:
        table(text=["hi", "yo"], label=[1, 2]).to_excel(writer, sheet_name="train", index=False)
        table(notes=["ignore me"]).to_excel(writer, sheet_name="notes", index=False)
    df = read_table(path)
    assert df.to_dict("list") == {"text": ["hi", "yo"], "label": [1, 2]}
    assert "2 sheets" in df.attrs["warnings"][0] and "'train'" in df.attrs["warnings"][0]


def test_xlsx_trailing_empty_rows_are_dropped(tmp_path):
    path = tmp_path / "a.xlsx"
    table(text=["hi", "yo", None, None], label=["x", "y", None, None]).to_excel(path, index=False)
    assert len(read_table(path)) == 2


def test_parquet_without_pyarrow_says_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install pyarrow"):
        read_table(write(tmp_path, "a.parquet", b"PAR1"))


# --- read_table: encodings and bad files ------------------------------------------------------------------


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    df = read_table(write(tmp_path, "a.csv", "\ufefftext,label\nhi,x\n".encode("utf-8")))
    assert list(df.columns) == ["text", "label"]


def test_utf16_with_bom_is_read(tmp_path):
    df = read_table(write(tmp_path, "a.tsv", "text\tlabel\ncafé\tx\n".encode("utf-16")))
    assert df["text"].tolist() == ["café"]


def test_cp1252_file_is_read_with_a_warning(tmp_path):
    df = read_table(write(tmp_path, "a.csv", "text,label\ncafé “crème”,x\n".encode("cp1252")))
    assert df["text"].tolist() == ["café “crème”"]
    assert "not UTF-8" in df.attrs["warnings"][0] and "cp1252" in df.attrs["warnings"][0]


def test_binary_file_with_nul_bytes_is_refused(tmp_path):
    with pytest.raises(DataError, match="binary"):
        read_table(write(tmp_path, "a.csv", b"text,label\n\x00\x01\x02,1\n"))


def test_bytes_that_do_not_look_like_text_in_any_encoding_are_refused(tmp_path):
    with pytest.raises(DataError, match="UTF-8"):
        read_table(write(tmp_path, "a.csv", bytes(range(128, 256)) * 20))


def test_workbook_renamed_to_csv_is_refused(tmp_path):
    with pytest.raises(DataError, match="zip archive"):
        read_table(write(tmp_path, "a.csv", b"PK\x03\x04rest of a workbook"))


def test_file_over_the_size_limit_is_refused_with_size_and_limit(tmp_path):
    path = write(tmp_path, "big.csv", "text,label\n" + "some text,x\n" * 200)
    with pytest.raises(DataError, match=r"big\.csv is 2\.4 KiB; the limit is 1\.0 KiB"):
        read_table(path, max_bytes=1024)


@pytest.mark.parametrize("name", ["a.csv", "a.xlsx", "a.parquet"])
def test_rows_over_the_limit_are_refused_in_every_format(tmp_path, name):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(30)], "label": ["a", "b"] * 15})
    write_as = {"csv": frame.to_csv, "xlsx": frame.to_excel, "parquet": frame.to_parquet}[name.split(".")[1]]
    write_as(tmp_path / name, index=False)
    assert len(read_table(tmp_path / name, max_rows=30)) == 30
    with pytest.raises(DataError, match=r"rows; the limit here is 29"):
        read_table(tmp_path / name, max_rows=29)


def test_pasted_rows_over_the_limit_are_refused():
    pasted = "text,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(30))
    with pytest.raises(DataError, match=r"more than 10 rows; the limit here is 10"):
        parse_pasted(pasted, max_rows=10)


def test_a_workbook_that_unpacks_past_the_limit_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    pd.DataFrame({"text": ["x" * 5000] * 50, "label": ["a", "b"] * 25}).to_excel(tmp_path / "bomb.xlsx", index=False)
    assert (tmp_path / "bomb.xlsx").stat().st_size < 20_000  # it compresses well
    monkeypatch.setattr(data, "_read_excel", lambda *a, **k: pytest.fail("the workbook was unpacked"))
    with pytest.raises(DataError, match=r"bomb\.xlsx unpacks to .* the limit is 100\.0 KiB"):
        read_table(tmp_path / "bomb.xlsx", max_bytes=100 * 1024)


def test_a_parquet_file_that_unpacks_past_the_limit_is_refused(tmp_path):
    pytest.importorskip("pyarrow")
    pd.DataFrame({"text": ["x" * 5000] * 50, "label": ["a", "b"] * 25}).to_parquet(tmp_path / "big.parquet")
    with pytest.raises(DataError, match=r"big\.parquet unpacks to .* the limit is 100\.0 KiB"):
        read_table(tmp_path / "big.parquet", max_bytes=100 * 1024)


def test_long_texts_are_cut_with_a_warning_naming_their_rows():
    ds = Dataset(texts=["short", "x" * 50, "y" * 10], labels=[0, 1, 0], text_pairs=["p", "q", "z" * 20])
    cut = data.cut_long_texts(ds, 12)
    assert cut.texts == ["short", "x" * 12, "y" * 10] and cut.text_pairs == ["p", "q", "z" * 12]
    assert cut.warnings == ["2 texts longer than 12 characters were cut there: rows 2, 3"]
    assert data.cut_long_texts(ds, 100) is ds


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_table(tmp_path / "nope.csv")


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(DataError, match="a.csv is empty"):
        read_table(write(tmp_path, "a.csv", ""))


def test_blank_file_is_refused(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_table(write(tmp_path, "a.csv", "\n  \n"))


def test_header_only_file_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"header \(text, label\) but no data rows"):
        read_table(write(tmp_path, "a.csv", "text,label\n"))


def test_empty_json_list_is_refused(tmp_path):
    with pytest.raises(DataError, match="no data rows"):
        read_table(write(tmp_path, "a.json", "[]"))


def test_malformed_csv_names_the_line(tmp_path):
    with pytest.raises(DataError, match=r"Expected 2 fields in line 3, saw 3.*double quotes"):
        read_table(write(tmp_path, "a.csv", "text,label\nfine,x\none, two,y\n"))


def test_malformed_json_names_line_and_column(tmp_path):
    content = '[{"text": "a", "label": 1},\n {"text": "b" "label": 2}]'
    with pytest.raises(DataError, match="not valid JSON.*line 2, column 15"):
        read_table(write(tmp_path, "a.json", content))


def test_json_of_the_wrong_shape_is_refused(tmp_path):
    with pytest.raises(DataError, match="expected a list of records.*found a JSON object"):
        read_table(write(tmp_path, "a.json", '{"rows": []}'))


def test_json_record_that_is_not_an_object_names_the_row(tmp_path):
    with pytest.raises(DataError, match="row 2: not an object"):
        read_table(write(tmp_path, "a.json", '[{"text": "a"}, "b"]'))


def test_malformed_jsonl_names_the_line(tmp_path):
    content = '{"text": "a"}\n\n{"text": "b", label: 2}\n'
    with pytest.raises(DataError, match="line 3 is not valid JSON"):
        read_table(write(tmp_path, "a.jsonl", content))


def test_jsonl_line_that_is_not_an_object_is_refused(tmp_path):
    with pytest.raises(DataError, match="line 2 is not a JSON object"):
        read_table(write(tmp_path, "a.jsonl", '{"text": "a"}\n[1, 2]\n'))


def test_corrupt_xlsx_is_refused(tmp_path):
    with pytest.raises(DataError, match="could not be read as an Excel workbook"):
        read_table(write(tmp_path, "a.xlsx", b"not a workbook at all"))


# --- parse_pasted --------------------------------------------------------------------------------------


def test_pasted_spreadsheet_cells_are_read_as_tab_separated():
    df = parse_pasted("text\tlabel\nwell, yes\tpos\nno\tneg\n")
    assert df.to_dict("list") == {"text": ["well, yes", "no"], "label": ["pos", "neg"]}


def test_pasted_json_list_is_read():
    assert parse_pasted('[{"text": "a", "label": "x"}]').to_dict("list") == {"text": ["a"], "label": ["x"]}


def test_pasted_jsonl_is_read_even_with_one_record():
    assert parse_pasted('{"text": "a", "label": "x"}').to_dict("list") == {"text": ["a"], "label": ["x"]}
    assert len(parse_pasted('{"text": "a"}\n{"text": "b"}')) == 2


def test_empty_paste_is_refused():
    with pytest.raises(DataError, match="pasted text is empty"):
        parse_pasted(" \n ")


def test_oversized_paste_is_refused():
    with pytest.raises(DataError, match="limit is 10 bytes"):
        parse_pasted("text\nsomething long\n", max_bytes=10)


# --- detect_columns ------------------------------------------------------------------------------------


def test_common_column_names_are_recognised_whatever_their_case():
    assert detect_columns(table(Label=["x"], Sentence=["hi"])) == ("Sentence", "Label", None)


def test_sentence_pair_columns_are_recognised():
    assert detect_columns(table(sentence1=["a"], sentence2=["b"], label=["x"])) == ("sentence1", "label", "sentence2")
    assert detect_columns(table(premise=["a"], hypothesis=["b"], label=["x"])) == ("premise", "label", "hypothesis")


def test_explicit_columns_win_over_common_names():
    df = table(text=["a"], body=["long body"], label=["x"], stars=["5"])
    assert detect_columns(df, text_column="body", label_column="stars") == ("body", "stars", None)


def test_explicit_column_is_matched_case_insensitively():
    assert detect_columns(table(TEXT=["a"], label=["x"]), text_column="text")[0] == "TEXT"


def test_explicit_column_that_does_not_exist_lists_the_columns():
    with pytest.raises(DataError, match="no label column 'stars'; the columns are: text, label"):
        detect_columns(table(text=["a"], label=["x"]), label_column="stars")


def test_same_column_for_two_roles_is_refused():
    with pytest.raises(DataError, match="must differ"):
        detect_columns(table(text=["a"], label=["x"]), text_column="text", label_column="text")


def test_unnamed_columns_fall_back_to_longest_text_and_the_one_left_over():
    df = table(code=["x", "y"], body=["a long piece of text", "another long one"])
    assert detect_columns(df) == ("body", "code", None)


def test_numeric_column_is_never_guessed_as_text():
    df = table(a=["12345678901234", "98765432109876"], b=["hi", "yo"])
    assert detect_columns(df) == ("b", "a", None)


def test_label_is_not_guessed_when_several_columns_are_left():
    df = table(id=["1", "2"], sentence=["a", "b"], polarity=["p", "n"])
    assert detect_columns(df) == ("sentence", None, None)


def test_label_is_not_guessed_when_guess_label_is_off():
    assert detect_columns(table(id=["1", "2"], text=["a", "b"]), guess_label=False) == ("text", None, None)


def test_table_without_a_text_column_is_refused_naming_its_columns():
    with pytest.raises(DataError, match="no column holds text; the columns are: a, b"):
        detect_columns(table(a=[1, 2], b=[3, 4]))


# --- infer_task ----------------------------------------------------------------------------------------


def test_strings_are_classes():
    assert infer_task(["pos", "neg", "pos"]) == "classification"


def test_few_whole_numbers_are_classes():
    assert infer_task(["1", "2", "3", "4", "5"] * 3) == "classification"


def test_more_than_twenty_distinct_whole_numbers_are_regression():
    assert infer_task(range(21)) == "regression"


def test_more_than_ten_distinct_fractions_are_regression():
    assert infer_task([i / 2 for i in range(11)]) == "regression"


def test_ten_distinct_fractions_are_still_classes():
    assert infer_task([i / 2 for i in range(10)]) == "classification"


def test_missing_values_do_not_decide_the_task():
    assert infer_task([str(i / 3) for i in range(30)] + [None, float("nan"), ""]) == "regression"


# --- build_dataset -------------------------------------------------------------------------------------


def test_class_names_sort_numbers_numerically_then_strings_alphabetically():
    ds = build_dataset(table(text=list("abcdef"), label=["10", "2", "b", "A", "2", "1"]))
    assert ds.label_names == ["1", "2", "10", "A", "b"]
    assert ds.labels == [2, 1, 4, 3, 1, 0]


def test_whole_numbers_written_differently_are_one_class():
    ds = build_dataset(table(text=list("abc"), label=[1, 1.0, "1"]), task="classification", label_names=["0", "1"])
    assert ds.labels == [1, 1, 1]


def test_given_label_names_set_the_indices():
    ds = build_dataset(table(text=["a", "b"], label=["pos", "neg"]), label_names=["pos", "neg"])
    assert (ds.labels, ds.label_names) == ([0, 1], ["pos", "neg"])


def test_label_not_in_given_label_names_is_named_with_its_rows_and_the_known_labels():
    df = table(text=list("abc"), label=["pos", "meh", "meh"])
    with pytest.raises(DataError, match=r"'meh' \(rows 2, 3\); the known labels are: 'neg', 'pos'"):
        build_dataset(df, label_names=["neg", "pos"])


def test_evaluation_file_with_a_single_class_loads_with_given_label_names():
    ds = build_dataset(table(text=["a", "b"], label=["pos", "pos"]), label_names=["neg", "pos"])
    assert ds.labels == [1, 1]


def test_empty_and_blank_texts_are_refused_with_their_rows():
    with pytest.raises(DataError, match=r"empty text in column 'text' at rows 2, 4\..*first row below the header"):
        build_dataset(table(text=["a", "  ", "c", None], label=list("xyxy")))


def test_empty_pair_text_is_refused_with_its_row():
    with pytest.raises(DataError, match="empty text in column 'sentence2' at row 2"):
        build_dataset(table(sentence1=["a", "b"], sentence2=["c", ""], label=["x", "y"]))


def test_missing_labels_are_refused_with_their_rows():
    with pytest.raises(DataError, match="missing label in column 'label' at rows 1, 3"):
        build_dataset(table(text=list("abcd"), label=[None, "x", " ", "y"]))


def test_every_problem_is_reported_at_once():
    with pytest.raises(DataError, match="empty text .* at row 1; missing label .* at row 2"):
        build_dataset(table(text=["", "b", "c"], label=["x", None, "y"]))


def test_long_row_lists_are_cut_after_five():
    with pytest.raises(DataError, match=r"rows 1, 2, 3, 4, 5 and 3 more"):
        build_dataset(table(text=[""] * 8 + ["a", "b"], label=["x", "y"] * 5))


def test_a_single_class_is_refused():
    with pytest.raises(DataError, match="column 'label' has only one class \\('pos'\\)"):
        build_dataset(table(text=["a", "b"], label=["pos", "pos"]))


def test_a_class_with_one_example_still_loads():
    ds = build_dataset(table(text=list("abc"), label=["x", "x", "y"]))
    assert label_distribution(ds) == {"x": 2, "y": 1}


def test_regression_labels_are_floats():
    ds = build_dataset(table(text=list("abc"), score=["0.5", " 2 ", 3]), task="regression")
    assert (ds.task, ds.labels, ds.label_names) == ("regression", [0.5, 2.0, 3.0], None)


def test_regression_is_inferred_from_many_distinct_numbers():
    ds = build_dataset(table(text=[f"t{i}" for i in range(30)], score=[i / 7 for i in range(30)]))
    assert ds.task == "regression"


def test_non_numeric_regression_label_is_refused_with_value_and_row():
    with pytest.raises(DataError, match="regression needs numbers, but column 'label' has 'high' at row 2"):
        build_dataset(table(text=list("abc"), label=["1.5", "high", "2"]), task="regression")


def test_unknown_task_is_refused():
    with pytest.raises(ConfigError, match="'ranking'"):
        build_dataset(table(text=["a"], label=["x"]), task="ranking")


def test_missing_label_column_is_refused_naming_the_columns():
    with pytest.raises(DataError, match="no label column found; the columns are: id, text, source"):
        build_dataset(table(id=["1"], text=["a"], source=["web"]))


def test_table_without_labels_loads_when_labels_are_not_required():
    ds = build_dataset(table(text=["a", "b"]), require_labels=False)
    assert (ds.texts, ds.labels, ds.label_column) == (["a", "b"], [], None)


def test_leftover_column_is_not_taken_for_labels_when_they_are_not_required():
    ds = build_dataset(table(id=["1", "2"], text=["a", "b"]), require_labels=False)
    assert ds.label_column is None


def test_empty_label_column_is_ignored_when_labels_are_not_required():
    ds = build_dataset(table(text=["a", "b"], label=[None, None]), require_labels=False)
    assert (ds.labels, ds.label_column) == ([], None)


def test_texts_are_kept_verbatim():
    ds = build_dataset(table(text=["  padded  ", "b"], label=["x", "y"]))
    assert ds.texts[0] == "  padded  "


def test_duplicate_rows_are_a_warning_with_their_rows():
    ds = build_dataset(table(text=["a", "b", "a", "b", "c"], label=["x", "y", "x", "y", "x"]))
    assert "2 duplicate rows (rows 3, 4)" in ds.warnings[0]


def test_same_text_with_different_labels_is_a_warning_with_their_rows():
    ds = build_dataset(table(text=["a", "b", "a"], label=["x", "y", "y"]))
    assert any("different labels in rows 1, 3" in w for w in ds.warnings)


def test_reading_warnings_are_carried_into_the_dataset(tmp_path):
    path = write(tmp_path, "a.csv", "text,label\ncafé,x\nthé,y\n".encode("cp1252"))
    assert "cp1252" in load_dataset(path).warnings[0]


def test_load_dataset_reads_and_builds(tmp_path):
    ds = load_dataset(write(tmp_path, "a.tsv", "sentence\tsentiment\ngood\tpos\nbad\tneg\n"))
    assert (ds.texts, ds.labels, ds.label_names) == (["good", "bad"], [1, 0], ["neg", "pos"])
    assert (ds.text_column, ds.label_column, len(ds)) == ("sentence", "sentiment", 2)


# --- check_trainable -----------------------------------------------------------------------------------


def test_trainable_dataset_passes():
    check_trainable(build_dataset(table(text=list("abcd"), label=list("xxyy"))))


def test_class_with_one_example_cannot_be_trained_on_and_is_named_with_its_row():
    ds = build_dataset(table(text=list("abcde"), label=["x", "y", "x", "z", "y"]))
    with pytest.raises(DataError, match=r"class 'z' has a single example \(row 4\)"):
        check_trainable(ds)


def test_single_example_row_is_the_source_row_after_a_split():
    ds = Dataset(texts=list("abc"), labels=[0, 1, 0], label_names=["x", "y"], rows=[7, 9, 12])
    with pytest.raises(DataError, match=r"class 'y' has a single example \(row 9\)"):
        check_trainable(ds)


def test_one_class_present_cannot_be_trained_on():
    ds = build_dataset(table(text=["a", "b"], label=["pos", "pos"]), label_names=["neg", "pos"])
    with pytest.raises(DataError, match="all examples have the label 'pos'"):
        check_trainable(ds)


def test_constant_regression_target_cannot_be_trained_on():
    ds = build_dataset(table(text=["a", "b"], score=["3", "3.0"]), task="regression")
    with pytest.raises(DataError, match="every label in column 'score' is 3.0"):
        check_trainable(ds)


def test_unlabelled_data_cannot_be_trained_on():
    with pytest.raises(DataError, match="no labels"):
        check_trainable(build_dataset(table(text=["a"]), require_labels=False))


# --- split_dataset -------------------------------------------------------------------------------------


def balanced(n_per_class=10, classes="xyz"):
    labels = [c for c in classes for _ in range(n_per_class)]
    return build_dataset(table(text=[f"text {i}" for i in range(len(labels))], label=labels))


def test_split_keeps_class_proportions():
    train, val = split_dataset(balanced(), val_fraction=0.2)
    assert label_distribution(val) == {"x": 2, "y": 2, "z": 2}
    assert label_distribution(train) == {"x": 8, "y": 8, "z": 8}


def test_split_is_the_same_for_the_same_seed():
    assert split_dataset(balanced(), seed=1)[1].texts == split_dataset(balanced(), seed=1)[1].texts


def test_split_differs_for_another_seed():
    assert split_dataset(balanced(), seed=1)[1].texts != split_dataset(balanced(), seed=2)[1].texts


def test_split_parts_keep_label_names_columns_and_source_rows():
    ds = balanced()
    train, val = split_dataset(ds)
    assert train.label_names == val.label_names == ds.label_names
    assert train.text_column == val.text_column == "text"
    assert sorted(train.rows + val.rows) == ds.rows
    assert all(ds.texts[row - 1] == text for row, text in zip(val.rows, val.texts))


def test_split_falls_back_to_random_with_a_warning_when_a_class_is_too_small():
    ds = build_dataset(table(text=list("abcdefghij"), label=list("xxxxxxxxxy")))
    train, val = split_dataset(ds, val_fraction=0.2)
    assert (len(train), len(val)) == (8, 2)
    assert "drawn at random" in train.warnings[-1] and "drawn at random" in val.warnings[-1]


def test_split_of_regression_data_is_random():
    ds = build_dataset(table(text=list("abcdefghij"), score=[str(i) for i in range(10)]), task="regression")
    train, val = split_dataset(ds, val_fraction=0.3)
    assert (len(train), len(val), val.task) == (7, 3, "regression")


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_split_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(DataError, match=f"between 0 and 1 .*not {fraction}"):
        split_dataset(balanced(), val_fraction=fraction)


def test_split_that_leaves_no_training_example_is_refused():
    ds = build_dataset(table(text=["a"]), require_labels=False)
    with pytest.raises(DataError, match="of 1 examples"):
        split_dataset(ds, val_fraction=0.5)


# --- label_distribution --------------------------------------------------------------------------------


def test_label_distribution_follows_label_order_and_includes_absent_classes():
    ds = build_dataset(table(text=list("abc"), label=["pos", "pos", "neg"]), label_names=["pos", "neutral", "neg"])
    assert label_distribution(ds) == {"pos": 2, "neutral": 0, "neg": 1}


def test_label_distribution_of_regression_is_empty():
    ds = build_dataset(table(text=list("ab"), score=["0.5", "1.5"]), task="regression")
    assert label_distribution(ds) == {}


def test_a_column_named_by_the_empty_string_is_still_a_column(tmp_path):
    path = write(tmp_path, "a.json", json.dumps([{"text": "good", "": None}, {"text": "bad", "": None}]))
    with pytest.raises(DataError, match="missing label in column ''"):
        load_dataset(path)
    assert load_dataset(write(tmp_path, "b.csv", ",label\nhello,a\nbye,b\n")).texts == ["hello", "bye"]
