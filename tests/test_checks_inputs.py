"""Up-front checks of options, device, image and audio (hallo_core.checks), and the speech mix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from hallo_core import checks
from hallo_core.audio.loading import FileWaveform, load_audio_16k, mix_for_speech, to_mono
from hallo_core.errors import UserError
from hallo_core.options import OPTIONS, check_option, check_options
from tests._audio_util import tone


def test_user_error_is_one_line_what_key_fix_in_each_hosts_words():
    from hallo_core.cli.common import words

    e = UserError("{=steps} is -1,\n outside", "steps", "give 1..1000, at most {=cfg_steps}")
    assert (e.what, e.key, e.fix) == ("{=steps} is -1, outside", "steps", "give 1..1000, at most {=cfg_steps}")
    assert str(e) == "steps is -1, outside (steps): give 1..1000, at most cfg_steps"  # the key as is
    cli = e.placed(words)
    assert cli.cli_line == "error: --steps is -1, outside (--steps): give 1..1000, at most --cfg-steps"
    assert str(e).startswith("steps is")  # placing makes a copy
    assert isinstance(e, ValueError) and isinstance(cli, UserError)


# -- options -------------------------------------------------------------------------------------

def _cli_line(key, value):
    from hallo_core.cli.common import words

    with pytest.raises(UserError) as e:
        check_option(key, value)
    return str(e.value.placed(words))


@pytest.mark.parametrize("name,value,needle", [
    ("steps", -1, "--steps is -1, outside"),
    ("steps", 0, "--steps is 0, outside"),
    ("steps", 2.5, "not a whole number"),
    ("steps", True, "not a number"),
    ("cfg", float("nan"), "not a finite number"),
    ("cfg", float("inf"), "not a finite number"),
    ("cfg", -1.0, "outside"),
    ("size", 500, "outside"),
    ("size", 0, "outside"),
    ("mask_rate", 1.5, "outside"),
    ("pose_weight", -0.1, "outside"),
    ("seed", -3, "outside"),
    ("lip_weight", "loud", "not a number"),
])
def test_bad_option_values_are_refused_with_the_range(name, value, needle):
    msg = _cli_line(name, value)
    assert needle in msg and "\n" not in msg
    assert f"({OPTIONS[name].cli_name})" in msg
    assert "from" in msg and "to" in msg  # the fix states the range


def test_good_values_pass_and_the_node_names_the_widget():
    from nodes.options import checked

    assert check_options({"steps": 40, "cfg": 3.5, "size": 512, "seed": 2**63, "cfg_steps": 0,
                          "mask_rate": 1.0, "unknown": "kept"}) == \
        {"steps": 40, "cfg": 3.5, "size": 512, "seed": 2**63, "cfg_steps": 0, "mask_rate": 1.0, "unknown": "kept"}
    with pytest.raises(UserError, match=r"^pose_weight is nan, not a finite number \(pose_weight\)"):
        checked(pose_weight=math.nan)
    with pytest.raises(UserError, match=r"^face_index is -2, outside the range it accepts \(face_index\)"):
        checked(face_index=-2)
    assert checked(scale="4", fidelity=0.5) == {"upscale": 4, "fidelity_weight": 0.5}


def test_cfg_steps_may_not_exceed_steps():
    from hallo_core.cli.common import words

    with pytest.raises(UserError) as e:
        check_options({"steps": 4, "cfg_steps": 9})
    assert str(e.value.placed(words)).startswith("--cfg-steps is 9, more than the 4 steps (--cfg-steps): give at "
                                                 "most --steps, or 0")


# -- device --------------------------------------------------------------------------------------

def test_device_names():
    import torch

    assert checks.check_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="not a device name"):
        checks.check_device("banana")
    with pytest.raises(UserError, match="not a device Hallo runs on"):
        checks.check_device("meta")
    if torch.cuda.is_available():
        with pytest.raises(UserError, match="does not exist"):
            checks.check_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(UserError, match=r"no usable CUDA GPU \(device\): use cpu"):
            checks.check_device("cuda")


# -- image ---------------------------------------------------------------------------------------

def test_image_checks(tmp_path, fixtures_dir):
    img = checks.check_image_file(fixtures_dir / "portrait_5.jpg")
    assert img.mode == "RGB" and min(img.size) >= 256
    with pytest.raises(UserError, match="does not exist"):
        checks.check_image_file(tmp_path / "nope.png")
    with pytest.raises(UserError, match="is a folder"):
        checks.check_image_file(tmp_path)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(UserError, match=r"cannot be decoded .*\(image\): give a PNG"):
        checks.check_image_file(junk)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes((fixtures_dir / "portrait_5.jpg").read_bytes()[:3000])  # truncated mid-scan
    with pytest.raises(UserError, match="cannot be decoded"):
        checks.check_image_file(cut)
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(UserError, match="4x4 pixels, too small"):
        checks.check_image_file(tmp_path / "tiny.png")


def test_a_16_bit_photo_is_scaled_not_clipped_and_nan_pixels_are_refused(tmp_path, fixtures_dir):
    from PIL import Image

    grey = np.asarray(Image.open(fixtures_dir / "portrait_5.jpg").convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    img = checks.check_image_file(tmp_path / "grey16.png")
    assert np.array_equal(np.asarray(img)[..., 0], grey)  # 65535 -> 255, not clipped at 255
    f = grey.astype(np.float32) / 255
    f[10, 10] = np.nan
    Image.fromarray(f, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(UserError, match=r"NaN or infinite pixel values \(image\)"):
        checks.check_image_file(tmp_path / "nan.tif")


# -- audio ---------------------------------------------------------------------------------------

def _wav(path, wave, sr=16000, subtype=None):
    sf.write(str(path), np.asarray(wave, np.float32).T, sr, subtype=subtype)
    return path


def test_speech_fixture_passes(fixtures_dir):
    r = checks.check_audio_file(fixtures_dir / "speech_1.wav")
    assert r.channels == 2 and r.sample_rate == 44100 and 7.0 < r.seconds < 8.0
    assert r.frames == math.ceil(r.seconds * 25) and not r.silent and not r.cancelling and r.warnings == []


def test_nan_and_inf_samples_are_refused_with_the_time(tmp_path):
    w = tone(2.0, 16000, channels=1)
    w[0, 16000 + 5] = np.nan
    with pytest.raises(UserError, match=r"NaN or infinite samples \(first at 1.00 s\) \(audio\)"):
        checks.check_audio_file(_wav(tmp_path / "nan.wav", w, subtype="FLOAT"))
    w = tone(1.0, 16000, channels=2)
    w[1, 100] = np.inf
    with pytest.raises(UserError, match="NaN or infinite"):
        checks.check_audio_array(w, 16000)


def test_too_short_empty_and_undecodable_audio(tmp_path):
    with pytest.raises(UserError, match="shorter than one video frame"):
        checks.check_audio_file(_wav(tmp_path / "short.wav", tone(0.01, 16000)))
    with pytest.raises(UserError, match="no samples|cannot be decoded"):
        checks.check_audio_file(_wav(tmp_path / "empty.wav", np.zeros((1, 0))))
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00" * 500)
    with pytest.raises(UserError, match=r"cannot be decoded .*\(audio\)"):
        checks.check_audio_file(bad)
    r = checks.check_audio_file(_wav(tmp_path / "frame.wav", tone(0.05, 16000)))
    assert r.frames == 2


def test_silence_is_a_warning_saying_the_face_will_not_move(tmp_path):
    r = checks.check_audio_file(_wav(tmp_path / "zero.wav", np.zeros((2, 32000)), subtype="PCM_16"))
    assert r.silent and len(r.warnings) == 1
    assert "digital silence" in r.warnings[0] and "the face will not move" in r.warnings[0]
    hiss = (np.random.default_rng(0).integers(-3, 4, (1, 32000)) / 32768.0)  # 3 LSB of 16-bit: -80 dBFS
    r = checks.check_audio_array(hiss, 16000)
    assert r.silent and "nearly silent" in r.warnings[0]
    quiet = tone(1.0, 16000, amp=0.001)  # -60 dBFS speech level: quiet, not silence
    assert not checks.check_audio_array(quiet, 16000).silent


def test_opposite_phase_stereo_is_found_and_still_drives_the_face(tmp_path):
    voice = tone(1.0, 16000, freqs=(220.0, 660.0), channels=1)[0]
    stereo = np.stack([voice, -voice])
    r = checks.check_audio_array(stereo, 16000)
    assert r.cancelling and any("loudest channel" in w for w in r.warnings)
    mono = to_mono(stereo)
    assert np.array_equal(mono, stereo[0])  # not the (silent) mean
    assert mix_for_speech(stereo).shape == (1, 16000)
    # a 16 kHz file: the 16 kHz mono is the voice itself
    path = _wav(tmp_path / "phase.wav", stereo, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio_16k(str(path)), voice)
    assert float(np.abs(stereo.mean(axis=0)).max()) == 0.0  # what averaging gave before


def test_ordinary_stereo_and_multichannel_keep_the_plain_mean():
    w = tone(1.0, 44100, channels=2)  # correlated, unequal levels
    assert np.array_equal(to_mono(w), w.mean(axis=0, dtype=np.float32))
    assert mix_for_speech(w) is not None and mix_for_speech(w).shape == w.shape
    rng = np.random.default_rng(1)
    unrelated = rng.standard_normal((2, 8000)).astype(np.float32)
    assert np.array_equal(to_mono(unrelated), unrelated.mean(axis=0, dtype=np.float32))
    six = np.zeros((6, 8000), np.float32)
    six[2] = tone(0.5, 16000)[0]  # dialogue in the centre channel only
    assert np.array_equal(to_mono(six), six.mean(axis=0, dtype=np.float32))
    assert not checks.check_audio_array(six, 16000).cancelling


def test_file_waveform_keeps_every_channel_for_the_mux(tmp_path):
    six = np.stack([tone(0.5, 16000, freqs=(200.0 * (c + 1),))[0] for c in range(6)])
    w = FileWaveform(_wav(tmp_path / "six.wav", six, subtype="FLOAT"))
    try:
        assert w.shape == (6, 8000)
        np.testing.assert_array_equal(w[:, 100:200], six[:, 100:200])
    finally:
        w.close()
    eight = np.concatenate([six, six[:2]])
    w = FileWaveform(_wav(tmp_path / "eight.wav", eight, subtype="FLOAT"))
    try:
        assert w.shape == (1, 8000)
        np.testing.assert_allclose(w[:, :50][0], eight[:, :50].mean(axis=0), atol=1e-7)
    finally:
        w.close()


def test_mp4_carries_six_channels(tmp_path):
    import av
    import torch

    from hallo_core.media.video import Mp4Sink

    six = np.stack([tone(0.64, 16000, freqs=(200.0 * (c + 1),))[0] for c in range(6)])
    sink = Mp4Sink(tmp_path / "six.mp4", six, 16000)
    sink.open(64, 64, 25)
    sink.write(torch.rand(16, 3, 64, 64))
    sink.close()
    with av.open(str(tmp_path / "six.mp4")) as c:
        assert c.streams.audio[0].channels == 6 and c.streams.video[0].frames in (0, 16)
