"""The temporal-upscale node adapter inside ComfyUI's Python: IMAGE in -> IMAGE out, and a VIDEO file in ->
an mp4 with the source's audio out, with tiny random networks (tests/support/tiny_upscaler.py). Skipped without
COMFYUI_PATH (the node imports comfy_api); runs in COMFYUI_PYTHON."""

from tests.comfy_server import REPO, run_in_comfy_python

SCRIPT = """
    import numpy as np
    torch.set_num_threads(2)
    from comfy_api.latest import InputImpl
    up = importlib.import_module(name + ".nodes.upscale")
    C = importlib.import_module(name + ".nodes.common")
    tiny = load_support("tiny_upscaler")
    flat_frame, textured_frame = tiny.flat_frame, tiny.textured_frame
    tiny_codeformer, tiny_detector, tiny_parser = tiny.tiny_codeformer, tiny.tiny_detector, tiny.tiny_parser
    from hallo_core.media.video import Mp4Sink

    out_dir = tempfile.mkdtemp()
    folder_paths.set_output_directory(out_dir)
    face, empty = textured_frame(seed=0), flat_frame()
    nets = dict(codeformer=tiny_codeformer(), detector=tiny_detector(face, empty), parser=tiny_parser())
    patcher = C.make_patcher(C.Container(torch.device("cpu"), torch.float32, **nets))
    models = C.UpscalerPatcher(patcher=patcher, dtype=torch.float32, paths={}, fp16=False)
    bgr = [face, face, empty, face]
    image = torch.stack([torch.from_numpy(f[:, :, ::-1].copy()).float() / 255 for f in bgr])
    node = up.HalloTemporalUpscale
    res = node.execute(upscaler=models, frames=image, scale="2", fidelity=0.5, face_upsample=False,
                       landmark_smoothing=0.0, output_mode="image", filename_prefix="t")
    img = res.result[0]
    result = {"image_shape": list(img.shape), "image_range": [float(img.min()), float(img.max())],
              "faceless_equal_bg": None}
    # a VIDEO file (with audio) in, file mode out
    src = os.path.join(out_dir, "src.mp4")
    sr = 16000
    wave = (np.sin(np.arange(int(sr * 4 / 25)) / 20.0) * 0.3).astype(np.float32)[None]
    sink = Mp4Sink(src, waveform=wave, sample_rate=sr)
    sink.open(64, 64, 25)
    sink.write(image.permute(0, 3, 1, 2))
    sink.close()
    res2 = node.execute(upscaler=models, frames=InputImpl.VideoFromFile(src), scale="2", fidelity=0.5,
                        face_upsample=False, landmark_smoothing=0.0, output_mode="file", filename_prefix="hallo2/up")
    video = res2.result[1]
    path = video.get_stream_source()
    import av
    with av.open(path) as c:
        frames = [f for f in c.decode(video=0)]
    with av.open(path) as c:
        has_audio = any(s.type == "audio" for s in c.streams)
    result.update({"file": os.path.relpath(path, out_dir), "frames": len(frames),
                   "size": [frames[0].width, frames[0].height], "audio": has_audio,
                   "ui": res2.ui.as_dict() if hasattr(res2.ui, "as_dict") else res2.ui,
                   "last_shape": list(res2.result[0].shape)})
    # the node is the engine's calls: frames in -> upscale_frames, a VIDEO file -> upscale_video (file to file)
    from hallo_core.media.video import read_video
    from hallo_core.upscale import UpscalerModels, upscale_frames, upscale_video
    engine = np.stack(list(upscale_frames(image, nets["codeformer"], nets["detector"], nets["parser"], None, 2, 0.5)))
    result["image_is_engine"] = bool(torch.equal(img, torch.from_numpy(engine).float() / 255))
    ref = os.path.join(out_dir, "ref.mp4")
    upscale_video(src, ref, UpscalerModels(nets["codeformer"], nets["detector"], nets["parser"], None), 2, 0.5)
    result["file_is_engine"] = bool(torch.equal(read_video(path)[0], read_video(ref)[0]))
    from hallo_core.media.video import read_frames
    file_frames = list(upscale_frames(read_frames(src), nets["codeformer"], nets["detector"], nets["parser"], None, 2,
                                      0.5))
    result["last_is_engine"] = bool(torch.equal(res2.result[0][0], torch.from_numpy(file_frames[-1]).float() / 255))
    print(json.dumps(result))
"""


def test_temporal_upscale_node_image_and_video_file():
    r = run_in_comfy_python(SCRIPT, PYTHONPATH=str(REPO))
    # prepare_frame enlarges small frames to 512 px before detection (as upstream), then x2
    assert r["image_shape"] == [4, 1024, 1024, 3]
    assert 0.0 <= r["image_range"][0] and r["image_range"][1] <= 1.0
    assert r["file"].startswith("hallo2/up_") and r["file"].endswith(".mp4")
    assert r["frames"] == 4 and r["size"] == [1024, 1024] and r["audio"] is True
    assert r["last_shape"] == [1, 1024, 1024, 3]
    assert r["ui"]["images"][0]["type"] == "output" and r["ui"]["animated"] == [True]
    assert r["image_is_engine"] and r["file_is_engine"] and r["last_is_engine"]
