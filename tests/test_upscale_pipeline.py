"""The streamed window pipeline with tiny random networks (real code paths, no mocks).

The tiny networks, like upstream's, see BGR: the frames below are built in BGR and handed to
:func:`upscale_frames` as the RGB it takes (``rgb``), its RGB output read back as BGR (``bgr_out``).
"""

import logging

import numpy as np
import pytest
import torch

from hallo_core.upscale.background import rrdb_upscaler, upscale_background
from hallo_core.upscale.video_upscale import UpscaleReport, upscale_frames
from tests.support.tiny_upscaler import (flat_frame, textured_frame, tiny_codeformer, tiny_detector,
                                         tiny_parser, tiny_rrdb)


@pytest.fixture(scope="module")
def nets():
    face, empty = textured_frame(seed=0), flat_frame()
    return dict(codeformer=tiny_codeformer(), detector=tiny_detector(face, empty), parser=tiny_parser(),
                bg_upscaler=rrdb_upscaler(tiny_rrdb(), tile=48, tile_pad=8))


def rgb(frames):
    return (np.ascontiguousarray(f[:, :, ::-1]) for f in frames)


def bgr_out(frames, *args, **kw):
    """upscale_frames on BGR test frames, read back as BGR (every output is RGB uint8)."""
    for out in upscale_frames(rgb(frames), *args, **kw):
        assert out.dtype == np.uint8 and out.flags.c_contiguous
        yield out[:, :, ::-1]


def bg_only(frame, bg, scale):
    """What a face-less frame must come out as: background upscaled to the prepared size x scale."""
    import cv2
    up = upscale_background(frame, bg, scale)
    return cv2.resize(up, (512 * scale, 512 * scale), interpolation=cv2.INTER_LANCZOS4)


def test_faceless_frame_passes_through_and_last_frame_kept(nets, caplog):
    frames = [textured_frame(seed=0), textured_frame(seed=0), flat_frame(), textured_frame(seed=0)]
    report = UpscaleReport()
    with caplog.at_level(logging.WARNING, logger="hallo_core.upscale"):
        outs = list(bgr_out(frames, scale=2, report=report, **nets))
    assert len(outs) == len(frames)  # upstream would have dropped the last one
    assert report.faceless == 1 and report.faceless_indices == [2] and report.windows == 1
    assert (outs[2] == bg_only(frames[2], nets["bg_upscaler"], 2)).all()
    for k in (0, 1, 3):  # a face was restored and pasted
        assert outs[k].shape == (1024, 1024, 3)
        assert not (outs[k] == bg_only(frames[k], nets["bg_upscaler"], 2)).all()
    # identical input frames in one window give identical restored frames (per-frame ops are
    # deterministic and the temporal attention has no positional encoding)
    assert (outs[0] == outs[1]).all() and (outs[0] == outs[3]).all()
    warnings = [r for r in caplog.records if "no usable face" in r.getMessage()]
    assert len(warnings) == 1 and "1 of 4" in warnings[0].getMessage()


def test_hold_mode_reuses_landmarks(nets):
    frames = [textured_frame(seed=0), flat_frame()]
    report = UpscaleReport()
    outs = list(bgr_out(frames, scale=1, report=report, missing_face="hold", **nets))
    assert report.faceless == 0
    assert not (outs[1] == bg_only(frames[1], nets["bg_upscaler"], 1)).all()


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_scale_factors(nets, scale):
    frame = flat_frame()  # no face: the background path alone decides the size
    out = list(bgr_out([frame], scale=scale, **nets))
    assert len(out) == 1 and out[0].shape == (512 * scale, 512 * scale, 3) and out[0].dtype == np.uint8
    assert (out[0] == bg_only(frame, nets["bg_upscaler"], scale)).all()


def test_scale_4_with_face_and_lanczos_background(nets):
    args = dict(nets, bg_upscaler=None)
    out = list(bgr_out([textured_frame(seed=0)], scale=4, **args))
    assert out[0].shape == (2048, 2048, 3)


def test_streaming_yields_before_input_is_consumed(nets):
    consumed = []

    def source(n):
        for i in range(n):
            consumed.append(i)
            yield flat_frame()

    gen = upscale_frames(source(9), scale=1, chunk=4, overlap=1, **dict(nets, bg_upscaler=None))
    next(gen)
    assert len(consumed) == 4  # one window read, not the whole clip
    rest = list(gen)
    assert len(rest) == 8 and len(consumed) == 9


def test_tensor_and_iterable_inputs_agree_and_hooks(nets):
    frames = list(rgb([textured_frame(seed=0), flat_frame()]))
    image = torch.stack([torch.from_numpy(f).float() / 255 for f in frames])  # ComfyUI IMAGE [N, H, W, 3]
    calls = []
    report = UpscaleReport()
    outs = list(upscale_frames(image, scale=1, progress=lambda d, t: calls.append((d, t)), report=report, **nets))
    assert calls == [(1, 2), (2, 2)]
    assert outs[0].dtype == np.uint8 and outs[0].shape == (512, 512, 3)
    assert report.last is outs[-1]
    for same in (iter(frames), np.stack(frames), iter([image[0], image[1]]), torch.from_numpy(np.stack(frames))):
        assert all(np.array_equal(a, b) for a, b in zip(outs, upscale_frames(same, scale=1, **nets)))

    class Stop(Exception):
        pass

    def interrupt():
        raise Stop

    with pytest.raises(Stop):
        next(upscale_frames(image, scale=1, interrupt=interrupt, **nets))


def test_bad_arguments(nets):
    with pytest.raises(ValueError):
        next(upscale_frames(iter([flat_frame()]), scale=3.5, **nets))
    with pytest.raises(ValueError):
        next(upscale_frames(iter([flat_frame()]), scale=2, missing_face="crash", **nets))
