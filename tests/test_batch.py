"""The batch library without models: reading jobs files, what counts as finished, the summary."""

from __future__ import annotations

import json

import pytest

from hallo_core.batch import (BAD, DONE, FAILED, FINISHED, NOT_RUN, BatchState, Outcome, exit_code, job_key,
                              read_jobs, summary_table)
from hallo_core.errors import UserError
from hallo_core.job import GenerateJob


def test_jsonl_and_csv_rows_keep_their_line_and_a_bad_line_costs_only_its_row(tmp_path):
    jl = tmp_path / "jobs.jsonl"
    jl.write_text('# a comment\n{"image": "a.jpg", "steps": 2, "hallo2": true}\n\n[1, 2]\n{broken\n'
                  '{"image": "b.jpg"}\n')
    rows = read_jobs(jl)
    assert [(r.index, r.where) for r in rows] == [(1, "jobs.jsonl line 2"), (2, "jobs.jsonl line 4"),
                                                  (3, "jobs.jsonl line 5"), (4, "jobs.jsonl line 6")]
    assert rows[0].fields == {"image": "a.jpg", "steps": 2, "hallo2": True} and not rows[0].error
    assert "not an object" in rows[1].error and "not a JSON object" in rows[2].error
    assert rows[3].fields == {"image": "b.jpg"}
    cs = tmp_path / "jobs.csv"
    cs.write_text('image,audio,out,steps\n"x, y.jpg",a.wav,o.mp4,\nb.jpg,b.wav,p.mp4,3,extra\n')
    rows = read_jobs(cs)
    assert rows[0].fields == {"image": "x, y.jpg", "audio": "a.wav", "out": "o.mp4"}  # an empty cell: not given
    assert "4 fields" in rows[1].error and rows[1].where == "jobs.csv line 3"


def test_a_missing_or_empty_jobs_file_is_one_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_jobs(tmp_path / "none.jsonl")
    (tmp_path / "empty.csv").write_text("image,audio,out\n")
    with pytest.raises(UserError, match="holds no job"):
        read_jobs(tmp_path / "empty.csv")


def test_finished_needs_the_record_the_same_file_and_no_checkpoint(tmp_path):
    img, wav = tmp_path / "a.jpg", tmp_path / "a.wav"
    img.write_bytes(b"jpg")
    wav.write_bytes(b"wav")
    out = tmp_path / "out.mp4"
    job = GenerateJob(img, wav, out)
    key = job_key(job, "models")
    state = BatchState(tmp_path / "jobs.state.json")
    out.write_bytes(b"a file a killed run left: no record, not finished")
    assert not state.finished(key, out)
    state.record(key, out, 1.0)
    assert state.finished(key, out)
    again = BatchState(tmp_path / "jobs.state.json")  # read back from the file
    assert again.finished(key, out)
    ckpt = tmp_path / "out.mp4.resume.pt"
    ckpt.write_bytes(b"x")
    assert not again.finished(key, out)  # a checkpoint beside it: a run stopped there later
    ckpt.unlink()
    out.write_bytes(b"another video written since")
    assert not again.finished(key, out)
    # a changed setting or a replaced input is another job
    assert job_key(GenerateJob(img, wav, out, size=256), "models") != key
    wav.write_bytes(b"other audio")
    assert job_key(job, "models") != key
    assert not list(tmp_path.glob(".jobs.state.json.*"))  # the temp file of the atomic write is gone
    assert json.loads((tmp_path / "jobs.state.json").read_text())["version"] == 1


def test_an_unreadable_state_file_finishes_nothing(tmp_path):
    (tmp_path / "s.json").write_text("{half")
    assert BatchState(tmp_path / "s.json").jobs == {}


def test_summary_and_exit_code():
    outs = [Outcome(1, "a.mp4", DONE, 12.34, "/o/a.mp4"), Outcome(2, "b.mp4", FINISHED, 0, "/o/b.mp4"),
            Outcome(3, "c.mp4", BAD, 0, "/o/c.mp4", "error: x"), Outcome(4, "d.mp4", DONE, 3, "/o/d.mp4", attempts=2)]
    table = summary_table(outs).splitlines()
    assert table[0].split() == ["job", "status", "seconds", "output"]
    assert table[1].split() == ["1", "a.mp4", "done", "12.3", "/o/a.mp4"]
    assert "finished earlier" in table[2] and "-" in table[2].split()
    assert "done (2 runs)" in table[4]
    assert table[-1] == "2 done, 1 finished earlier, 1 bad"
    assert exit_code(outs) == 2
    assert exit_code([o for o in outs if o.status != BAD]) == 0
    assert exit_code(outs + [Outcome(5, "e.mp4", FAILED)]) == 1
    assert exit_code([Outcome(1, "a", NOT_RUN)]) == 2
