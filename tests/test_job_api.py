"""The engine job API: ClipRun hands back each clip with its resume state, one resume policy,
and a Session that reads its weights once for any number of jobs."""

import os
from pathlib import Path

import pytest
import torch

from hallo_core.io.vae import VaeCodec
from hallo_core.media.video import MemorySink
from hallo_core.pipeline.generate import ClipRun, GenerationSettings, generate, stream
from hallo_core.errors import ResumeMismatchError
from hallo_core.pipeline.resume import (Checkpoint, checkpoint_path_for, resume_point,
                                        save_state)
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data

CLIP = 4


@pytest.fixture(scope="module")
def parts():
    return build_tiny_net(seed=0), VaeCodec(build_tiny_vae(seed=1)), random_face_data(64, seed=2)


def _settings(**kw):
    return GenerationSettings(**{"steps": 2, "clip_frames": CLIP, "seed": 42, "mask_rate": 0.25, **kw})


def test_clips_are_the_frames_generate_writes(parts):
    net, vae, face = parts
    audio = random_audio(11, CLIP, seed=3)  # 3 clips, the last cut to 3 frames
    sink = MemorySink(torch.float32)
    generate(net, vae, face, audio, _settings(), sink=sink)
    clips = list(ClipRun(net, vae, face, audio, _settings()))
    assert [(c.index, c.first_frame, c.keep) for c in clips] == [(0, 0, 4), (1, 4, 4), (2, 8, 3)]
    assert all(c.frames.shape == (CLIP, 3, 64, 64) for c in clips)
    joined = torch.cat([c.output for c in clips]).permute(0, 2, 3, 1)
    assert torch.equal(joined, sink.frames())
    assert [c.state.next_clip for c in clips] == [1, 2, 3]
    assert [c.state.frames_done for c in clips] == [4, 8, 11]


def test_a_clip_state_continues_the_run_exactly(parts):
    net, vae, face = parts
    audio = random_audio(11, CLIP, seed=3)
    whole = list(ClipRun(net, vae, face, audio, _settings()))
    rest = list(ClipRun(net, vae, face, audio, _settings(), start=whole[0].state))
    assert [c.index for c in rest] == [1, 2]
    for a, b in zip(whole[1:], rest):
        assert torch.equal(a.frames, b.frames)


def test_a_state_of_other_settings_is_refused_before_anything_runs(parts):
    net, vae, face = parts
    audio = random_audio(8, CLIP, seed=3)
    first = next(iter(ClipRun(net, vae, face, audio, _settings())))
    with pytest.raises(ResumeMismatchError):
        ClipRun(net, vae, face, audio, _settings(seed=1), start=first.state)


def test_stopping_ends_the_iteration_and_stream_reports_the_last_frame(parts):
    net, vae, face = parts
    audio = random_audio(11, CLIP, seed=3)
    polls = []

    def stop_in_clip_1():
        polls.append(1)
        return len(polls) > 2  # 2 steps of clip 0, then stop before clip 1's first step

    loop = ClipRun(net, vae, face, audio, _settings(), should_stop=stop_in_clip_1)
    sink = MemorySink(torch.float32)
    result = stream(loop, sink)
    assert result.interrupted and loop.interrupted
    assert (result.clips_done, result.frames_written) == (1, 4)
    assert torch.equal(result.last_frame.permute(0, 2, 3, 1), sink.frames()[-1:])


def test_resume_point_is_one_policy(parts, tmp_path):
    net, vae, face = parts
    out = tmp_path / "out.mp4"
    ckpt = checkpoint_path_for(out)
    state = next(iter(ClipRun(net, vae, face, random_audio(8, CLIP, seed=3), _settings()))).state
    save_state(ckpt, state)
    # no video beside the checkpoint: it cannot be continued, and it goes
    assert resume_point(out, resume=True) is None and not ckpt.exists()
    save_state(ckpt, state)
    out.write_bytes(b"partial")
    assert resume_point(out, resume=True).next_clip == 1 and ckpt.exists()
    # not resuming: the stale checkpoint goes, the file is left to the writer
    assert resume_point(out, resume=False) is None and not ckpt.exists() and out.exists()


def test_checkpoint_waits_for_committed_frames(parts, tmp_path):
    net, vae, face = parts
    clips = list(ClipRun(net, vae, face, random_audio(11, CLIP, seed=3), _settings()))
    ck = Checkpoint(tmp_path / "x.resume.pt")
    ck.clip_done(clips[0].state, committed_frames=0)  # the sink holds nothing on disk yet
    assert not ck.exists()
    ck.clip_done(clips[1].state, committed_frames=4)  # clip 0 is on disk, clip 1 is not
    assert ck.load().next_clip == 1
    ck.flush(committed_frames=8)
    assert ck.load().next_clip == 2
    assert ck.discard() and not ck.exists()


def test_a_session_reads_each_weight_file_once_for_many_jobs(tmp_path, fixtures_dir, monkeypatch):
    """Two jobs, hallo then hallo2 then hallo again: the net of each variant, the VAE and wav2vec2
    are read once, and each video equals a standalone run of the same job."""
    import hallo_core.pipeline.full_frame as ff
    from hallo_core.job import GenerateJob, Session
    from hallo_core.media.video import read_video
    from tests.support.models_mirror import tiny_models

    models = tiny_models(tmp_path / "models")
    trace = tmp_path / "trace.log"
    monkeypatch.setenv("HALLO_TRACE_LOADS", str(trace))
    # the framing is not what this test is about (the CLI tests run the real one): a prepared
    # face animated whole, and no crop record to write
    framed = ff.FramedInput(framing=None, face=random_face_data(64, seed=5), mode="whole", paster=None)
    monkeypatch.setattr(Session, "frame", lambda self, job: framed)
    monkeypatch.setattr(ff, "write_sidecar", lambda *a, **k: None)
    import soundfile as sf

    wave, sr = sf.read(str(fixtures_dir / "speech_1.wav"))
    audio = tmp_path / "short.wav"
    sf.write(str(audio), wave[: int(0.9 * sr)], sr)  # 23 frames: two clips of 16
    jobs = [GenerateJob(fixtures_dir / "portrait_2.jpg", audio, tmp_path / f"v{i}.mp4",
                        _settings(steps=1, clip_frames=16), hallo2=h2, size=64, separator=False)
            for i, h2 in enumerate((False, True, False))]
    with Session(models) as s:
        results = [s.run(j) for j in jobs]
    assert all(r.complete for r in results)
    reads = [line for line in trace.read_text().splitlines() if "reading" in line]
    assert len(reads) == len(set(reads)), reads
    assert sum("net.pth" in r for r in reads) == 2  # hallo and hallo2, once each
    # a fresh session per job gives the same videos
    with Session(models) as s:
        alone = s.run(GenerateJob(jobs[2].image, audio, tmp_path / "alone.mp4", jobs[2].settings, size=64,
                                  separator=False))
    assert alone.frames_written == results[2].frames_written
    assert (read_video(tmp_path / "alone.mp4")[0] == read_video(tmp_path / "v2.mp4")[0]).all()
    assert not any(Path(str(j.out) + ".resume.pt").exists() for j in jobs)
    assert os.path.getsize(tmp_path / "v1.mp4") > 0
