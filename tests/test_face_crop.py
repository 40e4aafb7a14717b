"""Crop geometry, output size, the faithful-path rule, face choice and paste-back (no models)."""

import numpy as np
import pytest
import torch

from hallo_core.face.crop import (MIN_MARGIN, CropBox, crop_for_face, even_size, fills_square,
                                  output_size)
from hallo_core.face.errors import FaceIndexError, NoFaceError
from hallo_core.face.find import FaceBox, choose_face, draw_faces, merge_faces, tile_grid
from hallo_core.io.paste_back import FramePaster, PasteBackSink
from hallo_core.media.video import frames_to_uint8
from hallo_core.media.video import MemorySink


def _noise(h, w, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)


# ---- crop geometry -----------------------------------------------------------------------------

def test_crop_is_centred_square_grown_by_margin():
    c = crop_for_face((600, 300, 700, 420), 1280, 720, margin=0.5)
    assert c.side == 240 and c.inside  # long side 120, grown by 60 per side
    assert (c.x0 + c.side / 2, c.y0 + c.side / 2) == (650, 360)
    assert c.box == (530, 240, 770, 480)


def test_crop_shifted_back_inside_at_the_edge():
    c = crop_for_face((10, 600, 110, 700), 1280, 720, margin=0.75)
    assert c.side == 250 and c.inside
    assert c.x0 == 0 and c.y0 + c.side == 720  # pushed in from the left and the bottom
    x0, y0, x1, y1 = c.box
    assert x0 <= 10 and 110 <= x1 and y0 <= 600 and 700 <= y1  # the face stays whole


def test_crop_shrinks_to_the_short_side_before_padding():
    # wanted 2.5 x 300 = 750 > 720: the short side still leaves the face more than MIN_MARGIN
    c = crop_for_face((500, 200, 800, 500), 1280, 720, margin=0.75)
    assert c.side == 720 and c.inside and c.y0 == 0


def test_crop_pads_only_when_the_face_nearly_fills_the_image():
    c = crop_for_face((0, 0, 300, 200), 300, 200, margin=0.75)
    least = round(300 * (1 + 2 * MIN_MARGIN))
    assert c.side == least and not c.inside
    left, top, right, bottom = c.pad
    assert left + right == least - 300 and top + bottom == least - 200
    img = _noise(200, 300)
    sq = c.extract(img)
    assert sq.shape == (least, least, 3)
    # the picture itself is copied unscaled, the border replicates the edge pixels
    assert np.array_equal(sq[top:top + 200, left:left + 300], img)
    assert np.array_equal(sq[0, left:left + 300], img[0]) and np.array_equal(sq[-1, left:left + 300], img[-1])


def test_crop_box_round_trips_through_face_data_fields():
    c = crop_for_face((0, 0, 300, 200), 300, 200)
    assert CropBox.from_box(c.box, (300, 200)) == c
    with pytest.raises(ValueError, match="not square"):
        CropBox.from_box((0, 0, 10, 12), (100, 100))


def test_extract_inside_is_a_plain_slice_and_resizes():
    img = _noise(720, 1280)
    c = CropBox(100, 50, 400, 1280, 720)
    assert np.array_equal(c.extract(img), img[50:450, 100:500])
    assert c.extract(img, 512).shape == (512, 512, 3)
    with pytest.raises(ValueError, match="1280x720"):
        c.extract(img[:100])


def test_output_size_caps_long_side_and_rounds_to_even():
    assert output_size(1280, 720) == (1280, 720)
    assert output_size(6000, 4000) == (1920, 1280)
    assert output_size(4000, 6000, max_side=1080) == (720, 1080)
    w, h = output_size(1999, 1001)
    assert w % 2 == 0 and h % 2 == 0 and max(w, h) <= 1920
    assert output_size(641, 479) == (642, 480)
    assert even_size(1921, cap=1921) == 1920


def test_fills_square_rule():
    assert fills_square(512, 512, (100, 100, 300, 320))  # face 220/512 = 0.43
    assert fills_square(520, 512, (100, 100, 300, 320))  # within 2 % of square
    assert not fills_square(600, 512, (100, 100, 300, 320))  # landscape
    assert not fills_square(2000, 2000, (300, 1300, 400, 1400))  # face at 5 %
    assert fills_square(400, 400, (0, 0, 100, 100)) and not fills_square(400, 400, (0, 0, 99, 99))


# ---- detection helpers -------------------------------------------------------------------------

def test_choose_face_largest_index_and_errors():
    faces = [FaceBox((0, 0, 50, 50), 0.9), FaceBox((100, 0, 200, 100), 0.8), FaceBox((300, 0, 340, 40), 0.99)]
    assert choose_face(faces) == 1
    assert choose_face(faces, 0) == 0 and choose_face(faces, 2) == 2
    with pytest.raises(FaceIndexError, match="3 faces were found, numbered 0 .* to 2"):
        choose_face(faces, 3)
    with pytest.raises(FaceIndexError, match="1 face was found"):
        choose_face(faces[:1], -1)
    with pytest.raises(NoFaceError):
        choose_face([])


def test_merge_faces_keeps_best_of_overlapping_views():
    whole = FaceBox((100, 100, 200, 200), 0.7)
    tile = FaceBox((105, 102, 195, 198), 0.9)  # the same face seen from a tile
    other = FaceBox((400, 100, 500, 200), 0.6)
    kept = merge_faces([whole, tile, other])
    assert kept == [tile, other]


def test_tile_grid_covers_the_image_with_half_overlap():
    tiles = tile_grid(2000, 2000)
    sides = sorted({s for _, _, s in tiles}, reverse=True)
    assert sides == [1000, 500]
    for side in sides:
        grid = [(x, y) for x, y, s in tiles if s == side]
        assert max(x for x, _ in grid) + side == 2000 and min(x for x, _ in grid) == 0
        xs = sorted({x for x, _ in grid})
        assert all(b - a <= side // 2 for a, b in zip(xs, xs[1:]))
    assert tile_grid(500, 400) == []  # small pictures: the whole-image pass is enough


def test_draw_faces_numbers_boxes_and_marks_the_chosen_one():
    img = np.full((300, 400, 3), 128, np.uint8)
    faces = [FaceBox((20, 80, 120, 180), 0.9), FaceBox((250, 60, 370, 180), 0.9)]
    out = draw_faces(img, faces, chosen=1)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, np.full_like(img, 128))  # the input is untouched
    assert tuple(out[120, 250]) == (0, 220, 0)  # chosen box edge in green
    assert tuple(out[130, 20]) == (255, 200, 0)  # the other in amber
    assert np.array_equal(out[250:, :], img[250:, :])  # nothing drawn far from the boxes


# ---- paste-back --------------------------------------------------------------------------------

def _band_checks(out, src, rect, gen_color, band):
    x0, y0, x1, y1 = rect
    outside = np.ones(src.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], src[outside])
    core = out[y0 + band:y1 - band, x0 + band:x1 - band]
    assert (core == gen_color).all()
    # across the band the output moves from the source towards the generated colour
    row = out[(y0 + y1) // 2, x0:x0 + band, 0].astype(int)
    src_row = src[(y0 + y1) // 2, x0:x0 + band, 0].astype(int)
    mixed = (row != src_row) & (row != gen_color[0])
    assert mixed.sum() >= band // 2


def test_paster_outside_exact_inside_generated_band_blends():
    src = _noise(720, 1280)
    crop = CropBox(700, 150, 400, 1280, 720)
    paster = FramePaster(src, crop, feather=0.1)
    assert paster.size == (1280, 720) and paster.rect == (700, 150, 1100, 550)
    gen = np.zeros((3, 512, 512, 3), np.uint8)
    gen[..., 0] = 10
    gen[..., 1] = 200
    out = paster.paste(gen)
    assert out.shape == (3, 720, 1280, 3) and out.dtype == np.uint8
    for f in out:
        _band_checks(f, src, paster.rect, np.array([10, 200, 0]), band=40)


def test_paster_layouts_agree_and_round_like_the_sinks():
    src = _noise(300, 500, seed=1)
    paster = FramePaster(src, CropBox(100, 20, 256, 500, 300))
    g = torch.rand(2, 3, 64, 64)
    a = paster.paste(g)  # sink layout [n, 3, S, S]
    b = paster.paste(g.permute(0, 2, 3, 1).numpy())  # IMAGE layout
    c = paster.paste(frames_to_uint8(g))  # uint8
    assert np.array_equal(a, b) and np.array_equal(a, c)
    expect = torch.floor(g.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(frames_to_uint8(g), expect)
    each = list(paster.paste_each(g.permute(0, 2, 3, 1)))  # one IMAGE frame [S, S, 3] at a time
    assert len(each) == 2 and all(np.array_equal(e, x) for e, x in zip(each, a))


def test_paster_no_seam_fade_on_the_image_border_and_padded_crops():
    src = _noise(200, 300, seed=2)
    crop = crop_for_face((0, 0, 300, 200), 300, 200)  # runs off every side: padded
    paster = FramePaster(src, crop)
    gen = np.full((1, 128, 128, 3), 77, np.uint8)
    out = paster.paste(gen)[0]
    # every crop edge is on or past the image border: nothing is faded, all is generated
    assert (out == 77).all()
    edge = FramePaster(src, CropBox(0, 0, 150, 300, 200), feather=0.1)
    out = edge.paste(gen)[0]
    assert (out[0, :100] == 77).all() and (out[:100, 0] == 77).all()  # left/top edges are image borders
    assert not (out[75, 140] == 77).all()  # the right edge is inside the image: faded
    assert np.array_equal(out[:, 150:], src[:, 150:])


def test_paster_scales_into_a_downscaled_source():
    import cv2

    src = _noise(3000, 4000, seed=3)
    crop = CropBox(2000, 1000, 1000, 4000, 3000)
    paster = FramePaster(src, crop)  # default max side 1920
    assert paster.size == (1920, 1440)
    assert paster.rect == (960, 480, 1440, 960)
    out = paster.paste(np.full((1, 512, 512, 3), 5, np.uint8))[0]
    bg = cv2.resize(src, (1920, 1440), interpolation=cv2.INTER_AREA)
    outside = np.ones((1440, 1920), bool)
    outside[480:960, 960:1440] = False
    assert np.array_equal(out[outside], bg[outside])
    assert (out[600:840, 1080:1320] == 5).all()


def test_paste_back_sink_streams_full_frames_to_the_inner_sink():
    src = _noise(360, 640, seed=4)
    paster = FramePaster(src, CropBox(300, 40, 256, 640, 360))
    inner = MemorySink()
    sink = PasteBackSink(inner, paster)
    sink.open(512, 512, 25)
    clips = [torch.rand(4, 3, 64, 64), torch.rand(3, 3, 64, 64)]
    for clip in clips:
        sink.write(clip)
    sink.close()
    got = inner.frames()
    assert got.shape == (7, 360, 640, 3) and sink.committed_frames == 7
    want = np.concatenate([paster.paste(c) for c in clips])
    assert np.array_equal(got.numpy(), want)  # float hand-over to the sink loses nothing
    assert len(inner.chunks) == 2  # one write per clip
