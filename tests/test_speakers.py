"""Several speakers in one photo, engine level: speaker specs, tracks, the paste plan, and the lockstep
loop whose clips are each speaker's single-face run exactly, with one checkpoint that resumes them all.

Tiny random-weight models (tests/support); no face detector: the CLI tests (test_cli_speakers.py) run
the real framing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hallo_core.errors import UserError
from hallo_core.face.crop import CropBox
from hallo_core.io.composite import FacesOverlapError, plan_pastes
from hallo_core.io.paste_back import FramePaster
from hallo_core.speakers import check_speaker_list, parse_speaker

CLIP = 4


# -- speaker specs --------------------------------------------------------------------------------

def test_a_speaker_is_face_audio_and_an_optional_channel(tmp_path):
    s = parse_speaker("0=alice.wav")
    assert (s.face, str(s.audio), s.channel, s.where) == (0, "alice.wav", None, "--speaker 0=alice.wav")
    s = parse_speaker("1=talk.wav#1")
    assert (s.face, str(s.audio), s.channel, s.label) == (1, "talk.wav", 1, "face 1 (talk.wav#1)")
    assert parse_speaker("2=take#2.wav").channel is None  # '#' in a file name is not a channel
    odd = tmp_path / "x.wav#1"
    odd.write_bytes(b"")
    assert (str(parse_speaker(f"0={odd}").audio), parse_speaker(f"0={odd}").channel) == (str(odd), None)


@pytest.mark.parametrize("text, words", [
    ("alice.wav", "FACE=AUDIO"), ("=alice.wav", "FACE=AUDIO"), ("0=", "FACE=AUDIO"),
    ("left=alice.wav", "is a number"), ("-1=alice.wav", "negative")])
def test_a_malformed_speaker_is_one_line_naming_it(text, words):
    with pytest.raises(UserError) as e:
        parse_speaker(text)
    assert words in str(e.value) and f"(--speaker {text})" in str(e.value) and "\n" not in str(e.value)


def test_two_speakers_at_least_and_a_face_each():
    with pytest.raises(UserError, match="1 speaker given; a conversation needs at least 2"):
        check_speaker_list([parse_speaker("0=a.wav")])
    with pytest.raises(UserError) as e:
        check_speaker_list([parse_speaker("0=a.wav"), parse_speaker("0=b.wav")])
    assert "face 0 is given to two speakers (--speaker 0=a.wav, --speaker 0=b.wav)" in str(e.value)
    check_speaker_list([parse_speaker("0=a.wav"), parse_speaker("2=b.wav")])


# -- tracks ---------------------------------------------------------------------------------------

def test_tracks_are_padded_with_silence_to_the_longest_and_mixed_without_clipping():
    from hallo_core.audio.tracks import mix_tracks, pad_tracks

    rng = np.random.default_rng(0)
    a = (rng.uniform(-0.8, 0.8, (1, 1600))).astype(np.float32)
    b = (rng.uniform(-0.8, 0.8, (2, 1000))).astype(np.float32)
    pa, pb = pad_tracks([(a, 16000), (b, 16000)])
    assert pa[0].shape == (1, 1600) and pb[0].shape == (2, 1600)
    assert np.array_equal(pa[0], a) and np.array_equal(pb[0][:, :1000], b) and not pb[0][:, 1000:].any()
    mix, sr = mix_tracks([pa, pb])
    assert sr == 16000 and mix.shape == (1, 1600)
    summed = a[0].astype(np.float64) + np.concatenate([b.mean(0, dtype=np.float32), np.zeros(600, np.float32)])
    peak = np.abs(summed).max()
    assert peak > 1.0  # the overlap would clip: the whole mix is scaled, its shape kept
    assert np.abs(mix).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(mix[0], summed / peak, atol=1e-6)
    quiet, _ = mix_tracks(pad_tracks([(a * 0.5, 16000), (np.zeros((1, 100), np.float32), 16000)]))
    np.testing.assert_allclose(quiet[0], a[0] * 0.5, atol=1e-7)  # no clipping: the levels stay


def test_tracks_of_different_rates_meet_at_the_highest():
    from hallo_core.audio.tracks import pad_tracks

    a = np.zeros((1, 16000), np.float32)  # 1 s at 16 kHz
    b = np.zeros((1, 24000), np.float32)  # 0.5 s at 48 kHz
    (wa, ra), (wb, rb) = pad_tracks([(a, 16000), (b, 48000)])
    assert ra == rb == 48000 and wa.shape == wb.shape == (1, 48000)


def test_a_channel_is_taken_from_a_multichannel_file(tmp_path):
    import soundfile as sf

    from hallo_core.audio.tracks import ChannelError, load_track

    st = np.stack([np.linspace(-0.5, 0.5, 800), np.linspace(0.3, -0.3, 800)], 1).astype(np.float32)
    sf.write(str(tmp_path / "st.wav"), st, 16000, subtype="FLOAT")
    right, sr = load_track(tmp_path / "st.wav", 1)
    assert sr == 16000 and right.shape == (1, 800) and np.array_equal(right[0], st[:, 1])
    with pytest.raises(ChannelError, match=r"has 2 channels \(#0 to #1\); there is no channel #2"):
        load_track(tmp_path / "st.wav", 2)


def test_prepare_tracks_warns_of_a_silent_speaker_and_refuses_a_missing_channel(tmp_path):
    import soundfile as sf

    from hallo_core.speakers import prepare_tracks

    t = np.arange(16000) / 16000.0
    sf.write(str(tmp_path / "talk.wav"), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    sf.write(str(tmp_path / "quiet.wav"), np.zeros(8000, np.float32), 16000)
    tr = prepare_tracks([parse_speaker(f"0={tmp_path / 'talk.wav'}"), parse_speaker(f"1={tmp_path / 'quiet.wav'}")])
    assert [w.shape[1] for w, _ in tr.tracks] == [16000, 16000] and tr.seconds == [1.0, 0.5]
    assert len(tr.warnings) == 1
    assert "speaker face 1 (quiet.wav) is silent from start to end" in tr.warnings[0]
    assert "as a listener" in tr.warnings[0] and tr.duration == 1.0
    with pytest.raises(UserError) as e:
        prepare_tracks([parse_speaker(f"0={tmp_path / 'talk.wav'}#1"), parse_speaker(f"1={tmp_path / 'quiet.wav'}")])
    assert "has 1 channel (#0); there is no channel #1" in str(e.value)
    assert f"(--speaker 0={tmp_path / 'talk.wav'}#1)" in str(e.value)


# -- the paste plan -------------------------------------------------------------------------------

SIZE = 64


def _photo(w=400, h=200, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _face_box(crop: CropBox, box):
    """A face region given in photo pixels, as FaceData.face_box (working pixels of the crop)."""
    k = SIZE / crop.side
    return tuple(int(round((v - o) * k)) for v, o in zip(box, (crop.x0, crop.y0, crop.x0, crop.y0)))


def _clips(n, seed, frames=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(frames, 3, SIZE, SIZE, generator=g) for _ in range(n)]


def test_far_apart_crops_are_pasted_whole_and_the_photo_stays_outside():
    photo = _photo()
    crops = [CropBox(10, 20, 160, 400, 200), CropBox(230, 20, 160, 400, 200)]
    faces = [_face_box(crops[0], (50, 60, 130, 140)), _face_box(crops[1], (270, 60, 350, 140))]
    plan = plan_pastes(photo, crops, faces, SIZE)
    assert plan.order == [0, 1] and plan.cut == [False, False] and plan.size == (400, 200)
    clips = _clips(2, 1)
    full = plan.composite(clips)
    for crop, clip in zip(crops, clips):  # each crop exactly as a one-face paste
        alone = FramePaster(photo, crop).paste(clip)
        x0, y0, x1, y1 = crop.box
        assert np.array_equal(full[:, y0:y1, x0:x1], alone[:, y0:y1, x0:x1])
    outside = np.ones((200, 400), bool)
    for c in crops:
        outside[c.y0:c.y0 + c.side, c.x0:c.x0 + c.side] = False
    assert np.array_equal(full[:, outside], np.broadcast_to(photo[outside], full[:, outside].shape))


def _own_face_is_own(plan, photo, crops, clips):
    full = plan.composite(clips)
    for i, (crop, clip) in enumerate(zip(crops, clips)):
        alone = FramePaster(photo, crop).paste(clip)
        x0, y0, x1, y1 = plan.faces[i]
        assert np.array_equal(full[:, y0:y1, x0:x1], alone[:, y0:y1, x0:x1]), f"face {i} shows another crop"
    return full


def test_crops_that_reach_each_others_face_are_cut_and_every_face_is_its_own():
    photo = _photo()
    # two big crops, each covering the other's face region: no order works with whole crops
    crops = [CropBox(30, 0, 200, 400, 200), CropBox(120, 0, 200, 400, 200)]
    faces_px = [(60, 60, 150, 150), (200, 60, 290, 150)]
    plan = plan_pastes(photo, crops, [_face_box(c, f) for c, f in zip(crops, faces_px)], SIZE)
    assert sum(plan.cut) == 1  # one cut breaks the circle; the other crop stays whole
    i = plan.cut.index(True)
    j = 1 - i
    assert plan.order.index(j) < plan.order.index(i)  # the whole crop goes first, under the cut one
    m, f = plan.masks[i], plan.faces[j]
    assert not (m[0] < f[2] and f[0] < m[2] and m[1] < f[3] and f[1] < m[3])  # the cut mask stops short
    _own_face_is_own(plan, photo, crops, _clips(2, 2))


def test_a_crop_reaching_another_face_goes_under_it():
    photo = _photo()
    crops = [CropBox(0, 0, 200, 400, 200), CropBox(230, 40, 120, 400, 200)]
    faces_px = [(40, 60, 120, 140), (260, 70, 320, 130)]
    plan = plan_pastes(photo, crops, [_face_box(c, f) for c, f in zip(crops, faces_px)], SIZE)
    assert plan.order == [0, 1] and plan.cut == [False, False]  # neither reaches the other's face: as given
    # a small crop beside a big one that covers its face: the big one first, whatever the order given
    crops = [CropBox(20, 40, 60, 400, 200), CropBox(0, 0, 300, 400, 200)]
    faces_px = [(30, 50, 70, 90), (160, 60, 240, 140)]
    plan = plan_pastes(photo, crops, [_face_box(c, f) for c, f in zip(crops, faces_px)], SIZE)
    assert plan.order == [1, 0] and plan.cut == [False, False]
    _own_face_is_own(plan, photo, crops, _clips(2, 3))


def test_three_speakers_in_a_row_keep_their_faces():
    photo = _photo(600, 200)
    crops = [CropBox(0, 0, 200, 600, 200), CropBox(130, 0, 200, 600, 200), CropBox(260, 0, 200, 600, 200)]
    faces_px = [(60, 60, 140, 140), (190, 60, 270, 140), (320, 60, 400, 140)]
    plan = plan_pastes(photo, crops, [_face_box(c, f) for c, f in zip(crops, faces_px)], SIZE)
    assert sorted(plan.order) == [0, 1, 2]
    _own_face_is_own(plan, photo, crops, _clips(3, 4))


def test_overlapping_face_regions_are_refused():
    photo = _photo()
    crops = [CropBox(0, 0, 200, 400, 200), CropBox(60, 0, 200, 400, 200)]
    faces_px = [(60, 60, 150, 150), (140, 60, 230, 150)]
    with pytest.raises(FacesOverlapError) as e:
        plan_pastes(photo, crops, [_face_box(c, f) for c, f in zip(crops, faces_px)], SIZE)
    assert e.value.pair == (0, 1) and "overlap" in str(e.value)


# -- the lockstep loop ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    from hallo_core.io.vae import VaeCodec
    from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data

    net, vae = build_tiny_net(seed=0), VaeCodec(build_tiny_vae(seed=1))
    faces = [random_face_data(SIZE, seed=2), random_face_data(SIZE, seed=5)]
    audios = [random_audio(11, CLIP, seed=3), random_audio(11, CLIP, seed=4)]  # 3 clips, the last of 3 frames
    photo = _photo(320, 160, seed=7)
    crops = [CropBox(10, 10, 140, 320, 160), CropBox(170, 10, 140, 320, 160)]
    plan = plan_pastes(photo, crops, [f.face_box for f in faces], SIZE, max_side=320)
    return net, vae, faces, audios, plan


def _settings(**kw):
    from hallo_core.pipeline.generate import GenerationSettings

    return GenerationSettings(**{"steps": 2, "clip_frames": CLIP, "seed": 42, "mask_rate": 0.25, **kw})


def _runs(engine, start=None, should_stop=None, **kw):
    from hallo_core.pipeline.generate import ClipRun

    net, vae, faces, audios, _ = engine
    return [ClipRun(net, vae, f, a, _settings(**kw), start=start.states[i] if start else None,
                    should_stop=should_stop, model_id="tiny") for i, (f, a) in enumerate(zip(faces, audios))]


@pytest.fixture(scope="module")
def whole(engine):
    """An uninterrupted two-speaker run: per-speaker clip outputs (from the callback) and the full frames."""
    from hallo_core.media.video import MemorySink
    from hallo_core.pipeline.speakers import stream_speakers

    seen = {0: [], 1: []}

    def cb(speaker, clip, n, step, n_steps, frames):
        if frames is not None:
            seen[speaker].append(frames.clone())

    sink = MemorySink()
    timings = [0.0, 0.0]
    result = stream_speakers(_runs(engine), engine[4], sink, callback=cb, timings=timings)
    assert (result.frames_written, result.clips_done, result.n_clips, result.interrupted) == (11, 3, 3, False)
    assert all(t > 0 for t in timings)
    return seen, sink.frames()


def test_each_speakers_clips_are_its_single_face_run(engine, whole):
    from hallo_core.pipeline.generate import ClipRun

    net, vae, faces, audios, plan = engine
    seen, full = whole
    for i in (0, 1):
        alone = [c.output for c in ClipRun(net, vae, faces[i], audios[i], _settings(), model_id="tiny")]
        assert len(alone) == len(seen[i]) == 3
        for a, b in zip(alone, seen[i]):
            assert torch.equal(a, b)
    expected = np.concatenate([plan.composite([seen[0][k], seen[1][k]]) for k in range(3)])
    assert full.shape == (11, 160, 320, 3) and np.array_equal(full.numpy(), expected)


def test_a_stopped_run_resumes_into_the_frames_of_an_uninterrupted_one(engine, whole, tmp_path):
    from hallo_core.media.video import MemorySink
    from hallo_core.pipeline.resume import ResumeMismatchError, load_state
    from hallo_core.pipeline.speakers import (SpeakersCheckpoint, check_start, job_hash, load_speakers_state,
                                              stream_speakers)

    plan = engine[4]
    polls = []

    def stop_in_speaker_1s_second_clip():
        polls.append(1)
        return len(polls) > 2 * 2 + 2 + 1  # clip 0 of both speakers, clip 1 of speaker 0, a step of speaker 1

    ckpt = SpeakersCheckpoint(tmp_path / "out.mp4.resume.pt")
    sink = MemorySink()
    first = stream_speakers(_runs(engine, should_stop=stop_in_speaker_1s_second_clip), plan, sink, ckpt)
    assert first.interrupted and (first.clips_done, first.frames_written) == (1, 4)
    state = load_speakers_state(ckpt.path)
    assert (state.next_clip, state.frames_done, len(state.states)) == (1, 4, 2)
    # speaker 0 finished its clip 1 before the stop, yet both restart at clip 1: one state for the job
    assert [s.next_clip for s in state.states] == [1, 1]
    rest_sink = MemorySink()
    runs = _runs(engine, start=state)
    check_start(state, runs, plan.describe())
    rest = stream_speakers(runs, plan, rest_sink, ckpt)
    assert not rest.interrupted and rest.frames_written == 11 and rest_sink.start_frame == 4
    joined = torch.cat([sink.frames(), rest_sink.frames()])
    assert torch.equal(joined, whole[1])
    # the job's checkpoint fits this job only
    with pytest.raises(ResumeMismatchError):
        check_start(state, _runs(engine), "another layout")
    with pytest.raises(ResumeMismatchError):
        _runs(engine, start=state, seed=7)
    # read as a one-speaker checkpoint it carries the job's hash, which no single run has
    single = load_state(ckpt.path)
    assert single.input_hash == job_hash(_runs(engine), plan.describe())
    from hallo_core.pipeline.generate import ClipRun

    net, vae, faces, audios, _ = engine
    with pytest.raises(ResumeMismatchError):
        ClipRun(net, vae, faces[0], audios[0], _settings(), start=single, model_id="tiny")


def test_a_one_speaker_checkpoint_is_refused_by_a_speakers_run(engine, tmp_path):
    from hallo_core.pipeline.generate import ClipRun
    from hallo_core.pipeline.resume import ResumeMismatchError, save_state
    from hallo_core.pipeline.speakers import load_speakers_state

    net, vae, faces, audios, _ = engine
    clip = next(iter(ClipRun(net, vae, faces[0], audios[0], _settings(steps=1))))
    save_state(tmp_path / "one.pt", clip.state)
    with pytest.raises(ResumeMismatchError, match="one-speaker run"):
        load_speakers_state(tmp_path / "one.pt")


def test_a_speakers_crop_record_is_not_taken_for_one_face_paste_back(tmp_path):
    import json

    from hallo_core.pipeline.full_frame import paster_from_sidecar

    record = tmp_path / "talk.mp4.framing.json"
    record.write_text(json.dumps({"mode": "speakers", "crop_box": None, "speakers": [{"face": 0}, {"face": 1}]}))
    with pytest.raises(ValueError, match="holds 2 speakers' crops, already pasted into the photo"):
        paster_from_sidecar(record)
