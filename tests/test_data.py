"""Data sources: local files in every format, column/label mapping, cleanup, errors, synthetic
generators, deterministic subsampling and the tokenised-data cache. No model is loaded."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lorabench.data.sources import DataError, DataSource, holdout, load_columns, load_rows, subsample
from lorabench.errors import SuiteError
from lorabench.plan import expand
from lorabench.validate import parse_suite


def task_options(task_yaml: str) -> Any:
    """The task options exactly as a run receives them (through the suite schema and plan)."""
    suite = parse_suite(
        "matrix: {model: [builtin:tiny-bert], method: [full], task: [t]}\ntrain: {steps: 3}\ntasks:\n  t: " + task_yaml,
        "t.yaml",
    )
    return expand(suite)[0].task_options


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from lorabench.models.builtin import build_tokenizer

    return build_tokenizer()


def test_subsample_is_seeded_keeps_file_order_and_takes_all_when_n_is_none() -> None:
    rows = [{"i": i} for i in range(50)]
    a, b, c = subsample(rows, 10, 3), subsample(rows, 10, 3), subsample(rows, 10, 4)
    assert a == b and a != c
    assert [r["i"] for r in a] == sorted(r["i"] for r in a)
    assert subsample(rows, None, 3) == rows and subsample(rows, 500, 3) == rows


def test_holdout_is_a_seeded_disjoint_partition() -> None:
    rows = [{"i": i} for i in range(100)]
    train, ev = holdout(rows, 0.2, 7, "train"), holdout(rows, 0.2, 7, "eval")
    assert len(ev) == 20 and len(train) == 80
    assert {r["i"] for r in train} | {r["i"] for r in ev} == set(range(100))
    assert not {r["i"] for r in train} & {r["i"] for r in ev}
    assert holdout(rows, 0.2, 8, "eval") != ev


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("d.csv", 'review,sentiment\n"great, <br />film",positive\nbad film,negative\n', "auto"),
        ("d.tsv", "review\tsentiment\ngreat, <br />film\tpositive\n", "auto"),
        (
            "d.jsonl",
            '{"review": "great, <br />film", "sentiment": "positive"}\n\n{"review": "bad", "sentiment": "negative"}\n',
            "auto",
        ),
        ("d.json", '[{"review": "great, <br />film", "sentiment": "positive"}]', "auto"),
        ("d.data", '{"review": "great, <br />film", "sentiment": "positive"}\n', "jsonl"),
    ],
)
def test_every_file_format_maps_columns_and_cleans_text(tmp_path: Path, name: str, text: str, fmt: str) -> None:
    path = write(tmp_path / name, text)
    source = DataSource(train_file=path, eval_file=path, format=fmt, clean=("html", "whitespace"))
    rows = load_columns(source, "train", None, 0, "t", {"input": "review", "label": "sentiment"}, ("input",))
    assert rows[0] == {"input": "great, film", "label": "positive"}


def test_text_files_split_by_paragraph_or_line_and_normalise_crlf(tmp_path: Path) -> None:
    path = write(tmp_path / "w.raw", " = Title = \r\n First line .\r\n \r\n Second para .\r\n")
    paragraphs = load_rows(DataSource(train_file=path, format="auto"), "train", None, 0, "t")
    lines = load_rows(DataSource(train_file=path, format="text", text_rows="lines"), "train", None, 0, "t")
    assert [r["text"] for r in paragraphs] == ["= Title = \n First line .", "Second para ."]
    assert [r["text"] for r in lines] == ["= Title =", "First line .", "Second para ."]


def test_errors_name_the_task_and_the_file(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "d.csv", "review,sentiment\ngood,positive\n")
    empty = write(tmp_path / "empty.csv", "review,sentiment\n")
    src = DataSource(train_file=csv_path, eval_file=csv_path)
    with pytest.raises(
        DataError, match=rf"task 'imdb': column 'text' not found in file {re.escape(csv_path)}.*review, sentiment"
    ):
        load_columns(src, "train", None, 0, "imdb", {"text": "text"}, ("text",))
    with pytest.raises(DataError, match=rf"task 'imdb': the eval split is empty \(file {re.escape(empty)}\)"):
        load_rows(DataSource(train_file=csv_path, eval_file=empty), "eval", None, 0, "imdb")
    with pytest.raises(DataError, match=r"task 'imdb': data file not found: .*nope.csv"):
        load_rows(DataSource(train_file=str(tmp_path / "nope.csv")), "train", None, 0, "imdb")
    with pytest.raises(DataError, match=r"task 'imdb': path .*LB_TEST_UNSET.* not set"):
        load_rows(DataSource(train_file="${LB_TEST_UNSET}/x.csv"), "train", None, 0, "imdb")
    jsonl = write(tmp_path / "n.jsonl", '{"review": null, "sentiment": "positive"}\n')
    with pytest.raises(DataError, match=rf"column 'review' of file {re.escape(jsonl)} holds None, not text"):
        load_columns(DataSource(train_file=jsonl), "train", None, 0, "imdb", {"text": "review"}, ("text",))


def _classification(tmp_path: Path, csv_text: str, extra: str = "") -> Any:
    from lorabench.tasks.classification import Classification

    path = write(tmp_path / "c.csv", csv_text)
    opts = task_options(
        "{type: classification, data: {train_file: " + path + ", eval_file: " + path + "}, "
        "text_column: review, label_column: sentiment" + extra + "}"
    )
    return Classification("imdb", opts), path


def test_label_mapping_and_label_set_errors(tmp_path: Path, tokenizer: Any) -> None:
    text = "review,sentiment\ngood,positive\nbad,negative\nfine,positive\n"
    task, _ = _classification(tmp_path, text, ", labels: {negative: 0, positive: 1}")
    data = task.prepare(tokenizer, 16)
    assert [r["labels"] for r in data.train] == [1, 0, 1]
    assert data.train[0]["input_ids"] == tokenizer("good")["input_ids"]

    task, path = _classification(tmp_path, text)  # text labels without a mapping
    with pytest.raises(
        DataError, match=rf"task 'imdb': label 'positive' in file {re.escape(path)} is not a class id.*labels:"
    ):
        task.prepare(tokenizer, 16)
    task, path = _classification(tmp_path, text + "meh,neutral\n", ", labels: {negative: 0, positive: 1}")
    with pytest.raises(
        DataError, match=rf"label 'neutral' in file {re.escape(path)} is not in `labels` \(negative, positive\)"
    ):
        task.prepare(tokenizer, 16)
    task, path = _classification(tmp_path, "review,sentiment\ngood,1\nbad,2\n")
    with pytest.raises(DataError, match=rf"label 2 in file {re.escape(path)} does not fit a head of num_labels=2"):
        task.prepare(tokenizer, 16)
    task, path = _classification(tmp_path, "review,sentiment\ngood,1\nbad,1\n")
    with pytest.raises(DataError, match=rf"train data \(file {re.escape(path)}\) has only class \[1\]"):
        task.prepare(tokenizer, 16)


def test_head_size_must_match_the_label_set(tmp_path: Path) -> None:
    task, _ = _classification(tmp_path, "review,sentiment\ngood,1\n", ", num_labels: 3")

    class Model:
        config = type("Config", (), {"num_labels": 2})()

    assert task.model_kwargs() == {"num_labels": 3}
    with pytest.raises(DataError, match="head has 2 outputs but the task has num_labels=3"):
        task.check_model(Model())


@pytest.mark.parametrize(
    ("task_yaml", "message"),
    [
        ("{type: classification, data: {synthetic: sentiment}, labels: {a: 0, b: 2}}", "`labels` maps to ids outside"),
        ("{type: classification, data: {synthetic: sentiment, clean: [htm]}}", "unknown step 'htm'"),
        ("{type: summarization, data: {synthetic: dialogues}, prompt: 'summarize:'}", "must contain `{input}`"),
        ("{type: causal-lm, data: {file: a.txt, train_file: b.txt}}", "exactly one of"),
        ("{type: causal-lm, data: {file: a.txt, eval_fraction: 1.5}}", "`eval_fraction` should be in (0, 1)"),
        ("{type: causal-lm, data: {synthetic: facts}, n_eval: 0}", "`n_eval` should be >= 1"),
        ("{type: summarization, data: {synthetic: dialogues}, architecture: rnn}", "expected one of 'auto'"),
    ],
)
def test_task_options_are_validated_with_a_line(task_yaml: str, message: str) -> None:
    with pytest.raises(SuiteError) as info:
        task_options(task_yaml)
    assert any(message in str(i) and i.line == 4 for i in info.value.issues), info.value


def test_synthetic_sentiment_is_seeded_balanced_and_uses_negation() -> None:
    from lorabench.data.sentiment import reviews

    a, b = reviews(400, 1), reviews(400, 1)
    assert a == b and a != reviews(400, 2)
    positives = sum(r["label"] for r in a)
    assert 150 < positives < 250
    negated = [r for r in a if any(f" {n} " in str(r["text"]) for n in ("not", "never", "hardly"))]
    assert len(negated) > 60
    # A negated positive word is a negative review, and the reverse.
    assert any(r["label"] == 0 and " not good" in str(r["text"]) for r in reviews(2000, 0))


def test_synthetic_dialogue_summaries_follow_the_dialogue() -> None:
    from lorabench.data.dialogues import dialogues

    rows = dialogues(200, 5)
    assert rows == dialogues(200, 5)
    for r in rows:
        lines = r["dialogue"].split("\n")
        a, b = lines[0].split(" : ")[0], lines[0].split(" ")[3]
        assert r["summary"].startswith(f"{a} and {b} will meet at the ")
        agreed = lines[0].split("meet at the ")[1].split(" ")[0]
        for line in lines:
            if "what about the" in line:
                agreed = line.split("what about the ")[1].split(" ")[0]
        assert f"meet at the {agreed} " in r["summary"]
        bringer = next(line.split(" : ")[0] for line in lines if "i will bring" in line)
        assert f". {bringer} will bring " in r["summary"]


def test_tokenised_data_is_cached_on_disk(tmp_path: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lorabench.tasks.cache import prepare_cached
    from lorabench.tasks.classification import Classification

    monkeypatch.setenv("LORABENCH_CACHE", str(tmp_path / "cache"))
    path = write(tmp_path / "c.csv", "review,sentiment\ngood film,1\nbad film,0\n")
    opts = task_options(
        "{type: classification, data: {train_file: " + path + ", eval_file: " + path + "}, "
        "text_column: review, label_column: sentiment}"
    )
    calls = []

    class Counting(Classification):
        def prepare(self, tok: Any, max_seq_len: int) -> Any:
            calls.append(1)
            return super().prepare(tok, max_seq_len)

    first = prepare_cached(Counting("c", opts), tokenizer, 16)
    again = prepare_cached(Counting("c", opts), tokenizer, 16)
    assert (first.info["cache"], again.info["cache"], len(calls)) == ("miss", "hit", 1)
    assert again.train == first.train and again.eval == first.eval
    assert prepare_cached(Counting("c", opts), tokenizer, 8).info["cache"] == "miss"
    write(tmp_path / "c.csv", "review,sentiment\ngood film,1\nawful film,0\n")  # an edited file: a new key
    changed = prepare_cached(Counting("c", opts), tokenizer, 16)
    assert changed.info["cache"] == "miss" and changed.train != first.train
    assert len(list((tmp_path / "cache" / "data").glob("*.json"))) == 3
    assert json.loads(json.dumps(changed.info))  # the info goes into record.json
