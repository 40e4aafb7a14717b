"""Every file the engine writes whole goes through one atomic writer (hallo_core.media.atomic): the resume
checkpoint, the audio feature cache and the finished videos appear complete or not at all."""

from __future__ import annotations

import errno

import pytest
import torch

from hallo_core.media.atomic import atomic_output


def test_named_temp_is_renamed_or_removed(tmp_path):
    final, temp = tmp_path / "x.bin", tmp_path / "x.bin.tmp"
    with atomic_output(final, temp=temp) as t:
        assert t == temp
        t.write_bytes(b"one")
    assert final.read_bytes() == b"one" and not temp.exists()
    with pytest.raises(OSError):
        with atomic_output(final, temp=temp) as t:
            t.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert final.read_bytes() == b"one" and sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_a_failed_checkpoint_write_keeps_the_last_one_and_leaves_no_temp(tmp_path, monkeypatch):
    from hallo_core.pipeline import resume
    from hallo_core.errors import OutputError
    from hallo_core.pipeline.resume import ResumeState, load_state, save_state

    ck = tmp_path / "o.mp4.resume.pt"
    save_state(ck, ResumeState("h", 1, 16, torch.zeros(2, 3, 4, 4), torch.zeros(5, dtype=torch.uint8)))
    real_open = open

    class FullDisk:  # the temp file gets 100 bytes, then the disk is full
        def __init__(self, f, mode="r", *a, **k):
            self.fh = real_open(f, mode, *a, **k)

        def write(self, data):
            self.fh.write(bytes(data)[:100])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(resume, "open", FullDisk, raising=False)
    with pytest.raises(OutputError) as e:  # the user's one line, naming the cause
        save_state(ck, ResumeState("h", 2, 32, torch.ones(2, 3, 4, 4), torch.zeros(5, dtype=torch.uint8)))
    assert "No space left on device" in str(e.value)
    monkeypatch.undo()
    assert load_state(ck).frames_done == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4.resume.pt"]


def test_audio_feature_cache_entries_are_written_whole(tmp_path):
    from hallo_core.audio.embed import EmbeddingCache
    from hallo_core.types import AudioFeatures

    cache = EmbeddingCache(cache_dir=tmp_path)
    feats = AudioFeatures(features=torch.arange(24.0).reshape(2, 3, 4), num_frames=2)
    cache.put("k", feats)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and not files[0].name.startswith(".")
    fresh = EmbeddingCache(cache_dir=tmp_path)
    got = fresh.get("k")
    assert got is not None and torch.equal(got.features, feats.features) and got.num_frames == 2
