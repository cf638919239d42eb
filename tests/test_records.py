"""The typed record (lorabench.record_data): today's JSON out, every older record in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lorabench.errors import UsageError
from lorabench.record import make_record, read_record, write_record
from lorabench.record_data import PhaseMemory, Profile, Record, RecordError
from lorabench.spec import RunSpec

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted((REPO / "results").glob("**/record.json"))

#: The top-level keys make_record has always written, in order (traceback/log_tail only when set).
RECORD_KEYS = [
    "schema_version",
    "run_id",
    "label",
    "suite",
    "status",
    "error",
    "spec",
    "recipe",
    "metrics",
    "profile",
    "resolved",
    "curves",
    "flags",
    "env",
    "wall_s",
    "isolation_s",
    "import_s",
    "cuda_init_s",
    "executor",
    "created_at",
]


def test_every_committed_record_reads_and_writes_back_unchanged() -> None:
    """Old records (no curves, recipe, step_s, FLOPs block) parse, and serialise to the same JSON."""
    assert len(COMMITTED) >= 40
    for path in COMMITTED:
        raw = json.loads(path.read_text())
        rec = read_record(path)
        assert isinstance(rec, Record) and isinstance(rec.profile, Profile)
        assert rec.to_dict() == raw, path
        if "baselines" not in path.parts:  # baselines are written with sorted keys
            assert list(rec.to_dict()) == list(raw), path
            assert list(rec.profile.to_dict()) == list(raw["profile"]), path


def _spec() -> RunSpec:
    raw = json.loads(COMMITTED[0].read_text())
    return RunSpec.from_dict(raw["spec"])


def test_a_new_record_has_todays_keys_in_todays_order(tmp_path: Path) -> None:
    spec = _spec()
    failed = make_record(spec, {"status": "oom", "error": "CUDA out of memory"}, {"python": "3"})
    assert list(failed.to_dict()) == RECORD_KEYS
    assert failed.to_dict()["profile"] == {} and failed.profile.trainable_params is None
    crashed = make_record(spec, {"status": "failed", "error": "x", "traceback": "tb", "log_tail": "log"}, {})
    assert list(crashed.to_dict()) == [*RECORD_KEYS, "traceback", "log_tail"]
    write_record(tmp_path / "runs" / spec.run_id, crashed)
    back = read_record(tmp_path / "runs" / spec.run_id / "record.json")
    assert back.to_dict() == json.loads(json.dumps(crashed.to_dict()))


def test_absent_fields_are_left_out_and_explicit_nulls_are_written() -> None:
    """A run whose FLOPs model failed writes model_flops_per_token and mfu only, both null."""
    prof = Profile(model_flops_per_token=None, mfu=None, memory_mb={"train": PhaseMemory(rss=1.0)})
    assert prof.to_dict() == {"memory_mb": {"train": {"rss": 1.0}}, "model_flops_per_token": None, "mfu": None}
    assert prof.hfu is None and not prof.has("hfu") and prof.has("mfu")
    assert prof.step_s == [] and prof.notes == []


def test_unknown_keys_are_kept_and_written_back_after_the_known_ones() -> None:
    raw = {"tokens_per_s": 3.0, "from_a_newer_version": {"x": 1}}
    prof = Profile.from_dict(raw)
    assert prof.extra == {"from_a_newer_version": {"x": 1}} and prof.figure("from_a_newer_version") == {"x": 1}
    assert prof.to_dict() == raw


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["profile"].update(memory_mb={"train": {"rss": "lots"}}), "profile.memory_mb.<phase>.rss"),
        (lambda r: r["profile"].update(memory_mb=[1]), "profile.memory_mb must be an object"),
        (lambda r: r.update(profile=[]), "profile must be an object"),
        (lambda r: r.update(status="great"), "status must be one of"),
        (lambda r: r.pop("label"), "label must be a string"),
    ],
)
def test_a_malformed_record_is_one_line_naming_its_file(tmp_path: Path, mutate, message: str) -> None:
    raw = json.loads(COMMITTED[0].read_text())
    mutate(raw)
    path = tmp_path / "record.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(UsageError) as err:
        read_record(path)
    text = str(err.value)
    assert text.startswith(f"{path} is not a valid lorabench record: ") and message in text and "\n" not in text


def test_record_parts_say_where_they_are_wrong() -> None:
    with pytest.raises(RecordError, match=r"record has no 'spec'"):
        Record.from_dict({"run_id": "a", "label": "b", "suite": "c", "status": "success"})
    with pytest.raises(RecordError, match="nvml is not a number"):
        PhaseMemory(rss=1.0, nvml="x")  # type: ignore[arg-type]


def test_a_spec_crosses_into_the_run_process_as_sent_and_as_json() -> None:
    """The executor hands the run ``to_dict()`` as is (tuples) or through JSON (lists): both rebuild."""
    spec = _spec()
    for wire in (spec.to_dict(), json.loads(json.dumps(spec.to_dict()))):
        again = RunSpec.from_dict(wire)
        assert again.run_id == spec.run_id and again.task_options == spec.task_options


def test_non_finite_numbers_are_written_as_null_and_named_in_the_record(tmp_path: Path) -> None:
    """Python's json would write NaN/Infinity, which browsers and jq refuse: the file stays JSON."""
    spec = _spec()
    result = {
        "status": "success",
        "metrics": {"perplexity": 3.0},
        "profile": {"mfu": float("nan")},
        "curves": {"eval": [{"step": 0, "perplexity": float("inf")}, {"step": 1, "perplexity": 4.0}]},
    }
    rec = make_record(spec, result, {})
    run_dir = tmp_path / "runs" / spec.run_id
    write_record(run_dir, rec, predictions=[{"loss": float("-inf")}])

    def strict(text: str) -> Any:
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the file"))

    data = strict((run_dir / "record.json").read_text())
    assert data["curves"]["eval"] == [{"step": 0, "perplexity": None}, {"step": 1, "perplexity": 4.0}]
    assert data["profile"]["mfu"] is None
    (note,) = data["profile"]["notes"]
    assert "curves.eval[0].perplexity (inf)" in note and "profile.mfu (nan)" in note
    assert strict((run_dir / "predictions.jsonl").read_text()) == {"loss": None}
    assert read_record(run_dir / "record.json").profile.notes == [note]  # and it reads back as a record
