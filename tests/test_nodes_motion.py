"""The samplers as ComfyUI runs them (node classes, patchers, ComfyUI's attention), on CPU.

- Hallo Motion Frames: continuing from the last 2 frames of run 1 gives exactly the frames of one run
  over the joined audio, for whole clips, with both samplers (Hallo2 with its patch drop).
- The pack installs ComfyUI's attention when it loads; the frames stay within float32 rounding of SDPA.
- The samplers hand hallo_core the patcher's load device and the model dtype, and a patcher loaded
  partially (low VRAM: comfy.ops layers cast offloaded weights per forward) gives the same frames.

Tiny random models in the official layout (loaded by the loader nodes), 64 px, 16-frame clips, 2 steps.
Runs in COMFYUI_PYTHON; skipped without COMFYUI_PATH.
"""

import pytest

from tests.comfy_server import run_in_comfy_python

SCRIPT = r"""
    torch.set_num_threads(1)
    from fractions import Fraction
    import comfy.model_management as mm
    from comfy_api.latest import InputImpl, Types
    from hallo_core.models.attention import installed_attention, set_attention
    from hallo_core.types import AudioFeatures
    ext = importlib.import_module(name + ".nodes.extension")
    ext.setup()  # what ComfyUI's comfy_entrypoint does
    N = {m: importlib.import_module(f"{name}.nodes.{m}")
         for m in ("common", "comfy_attention", "loaders", "reference", "sampler", "long_video", "motion")}
    C, L = N["common"], N["loaders"]
    tiny, te = load_support("models_folder"), load_support("tiny_engine")
    root = tempfile.mkdtemp()
    tiny.write_tiny_hallo(root, versions=("hallo2",)); tiny.write_tiny_vae(root)
    folder_paths.folder_names_and_paths["hallo"] = ([root], set())
    res = {"installed": N["comfy_attention"].installed(), "selected": N["comfy_attention"].selected()}

    model = L.HalloModelLoader.execute(model="hallo2/net.pth", precision="fp32").result[0]
    vae = L.HalloVAELoader.execute(vae_folder="sd-vae-ft-mse", precision="fp32").result[0]
    ref = N["reference"].HalloReference.execute(hallo_model=model, vae=vae, face_data=te.random_face_data(64, seed=2)).result[0]
    CLIP = 16
    a = te.random_audio(2 * CLIP, CLIP, seed=3)
    f = a.features.clone()
    f[CLIP - 2:CLIP + 2] = f[CLIP - 2]  # a pause at the cut: each frame's audio window spans +-2 frames
    joined, first, second = (AudioFeatures(f, 2 * CLIP), AudioFeatures(f[:CLIP].clone(), CLIP),
                             AudioFeatures(f[CLIP:].clone(), CLIP))
    W = dict(seed=42, steps=2, cfg=3.5, pose_weight=1.0, face_weight=1.0, lip_weight=1.0, scheduler="ddim",
             fast=True, cfg_steps=0, low_vram=False)
    S, LV, M = N["sampler"].HalloSampler, N["long_video"].HalloLongVideo, N["motion"].HalloMotionFrames

    # what the clip loop (ClipRun) receives from a sampler node
    seen = {}
    gen = importlib.import_module("hallo_core.pipeline.generate")
    class Spy(gen.ClipRun):
        def __init__(self, net, vae_, face, audio, settings, *args, **kw):
            seen.update(device=str(settings.device), dtype=str(settings.dtype))
            super().__init__(net, vae_, face, audio, settings, *args, **kw)
    gen.ClipRun = Spy

    def hallo(audio, motion=None):
        return S.execute(hallo_model=model, vae=vae, reference=ref, audio_embeds=audio, motion=motion, **W).result[0]

    def hallo2(audio, motion=None):
        return LV.execute(hallo_model=model, vae=vae, reference=ref, audio_embeds=audio, output_mode="image",
                          filename_prefix="x", resume=True, mask_rate=0.25, motion=motion, **W).result[0]

    def equal_clips(a, b):
        return [bool(torch.equal(a[k * CLIP:(k + 1) * CLIP], b[k * CLIP:(k + 1) * CLIP])) for k in range(a.shape[0] // CLIP)]

    full = hallo(joined)
    one = hallo(first)
    res["settings"] = dict(seen)
    mo = M.execute(frames=one, clip_index=-1, patch_drop="as sampler", mask_rate=0.25).result[0]
    res["motion"] = [list(mo.frames.shape), mo.clip_index, mo.mask_rate, mo.source_frames]
    two = hallo(second, mo)
    res["hallo_first"] = equal_clips(one, full[:CLIP])
    res["hallo_continued"] = equal_clips(two, full[CLIP:])
    res["float_frames"] = bool((one * 255 - (one * 255).round()).abs().max() > 1e-3)  # not 8-bit steps
    res["wrong_index"] = bool(torch.equal(hallo(second, M.execute(frames=one, clip_index=0).result[0]), full[CLIP:]))

    full2 = hallo2(joined)
    one2 = hallo2(first)
    two2 = hallo2(second, M.execute(frames=one2, clip_index=-1, patch_drop="as sampler").result[0])
    res["hallo2_continued"] = equal_clips(two2, full2[CLIP:])
    res["hallo2_differs_from_hallo"] = not bool(torch.equal(full2, full))
    # the drop chosen on the Motion Frames node replaces the sampler's: off = Hallo's plain chaining
    res["drop_off"] = equal_clips(hallo2(second, M.execute(frames=one, patch_drop="off").result[0]), full[CLIP:])
    vid = InputImpl.VideoFromComponents(Types.VideoComponents(images=one, audio=None, frame_rate=Fraction(25)))
    mv = M.execute(frames=vid).result[0]
    res["video_input"] = [bool(torch.equal(mv.frames, mo.frames)), mv.clip_index]

    # ComfyUI's attention (installed at load) against PyTorch SDPA: every call of a node run, then frames
    import comfy.ldm.modules.attention as cattn
    ours, sdpa_fn = N["comfy_attention"].comfy_attention, torch.nn.functional.scaled_dot_product_attention
    rel = []
    def recording(q, k, v):
        o = ours(q, k, v)
        r = sdpa_fn(q, k, v)
        rel.append(float((o - r).abs().max() / r.abs().max().clamp_min(1e-12)))
        return o
    prev = set_attention(recording)
    res["recorded_same_frames"] = bool(torch.equal(hallo(first), one))
    set_attention(None)
    sdpa = hallo(first)
    # the yardstick: attention computed in float64 (then rounded once to float32); how far SDPA's own
    # float32 rounding moves the frames from it is the scale ComfyUI's attention is held to
    set_attention(lambda q, k, v: sdpa_fn(q.double(), k.double(), v.double()).to(q.dtype))
    exact = hallo(first)
    set_attention(prev)
    res["attention_calls"], res["attention_call_rel"] = len(rel), max(rel)
    res["attention_diff"] = float((sdpa - one).abs().max())
    res["sdpa_from_exact"] = float((exact - sdpa).abs().max())
    res["comfy_from_exact"] = float((exact - one).abs().max())
    res["attention_back"] = installed_attention() is prev
    selected = cattn.optimized_attention
    cattn.optimized_attention = cattn.attention_pytorch  # what ComfyUI selects on CUDA by default
    res["pytorch_backend_equal"] = bool(torch.equal(hallo(first), sdpa))
    cattn.optimized_attention = selected

    # partial (low-VRAM) loading: the first load of the Hallo patcher gets 95% of its size. ComfyUI keeps
    # room to cast the largest offloaded layer (here the audio projection, ~3/4 of the tiny network), so
    # a smaller budget loads nothing and casts every layer; this one loads some layers and casts the rest
    mm.unload_all_models()
    budget = int(model.patcher.model_size() * 0.95)
    real_load, state = C.load_gpu, {}
    def load_gpu(patchers, memory_required=0, full=False):
        if model.patcher in patchers and not state:
            state["gained"] = model.patcher.partially_load(model.patcher.load_device, extra_memory=budget)
        real_load([p for p in patchers if p is not model.patcher], memory_required, full)
    C.load_gpu = load_gpu
    part = hallo(joined)
    C.load_gpu = real_load
    net = model.patcher.model
    res["partial"] = {"lowvram": bool(net.model_lowvram), "loaded": int(net.model_loaded_weight_memory),
                      "size": int(model.patcher.model_size()),
                      "cast_layers": sum(1 for m in net.modules() if getattr(m, "comfy_cast_weights", False)),
                      "equal": bool(torch.equal(part, full))}
    # every module holding weights is a comfy.ops layer: nothing a partial load could leave behind
    res["plain_weight_modules"] = sorted({type(m).__name__ for m in net.modules()
                                          if list(m.parameters(recurse=False)) and not hasattr(m, "comfy_cast_weights")})
    print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def result():
    return run_in_comfy_python(SCRIPT, timeout=3000)


def test_motion_frames_continue_exactly(result):
    assert result["motion"] == [[2, 64, 64, 3], 1, None, 16]
    assert result["float_frames"]  # the sampler's IMAGE is the decoded floats, which continue exactly
    assert result["hallo_first"] == [True]
    assert result["hallo_continued"] == [True]
    assert result["hallo2_continued"] == [True] and result["hallo2_differs_from_hallo"]
    assert result["drop_off"] == [True]
    assert result["wrong_index"] is False  # the clip index carries the seed schedule
    assert result["video_input"] == [True, 1]


def test_comfy_attention_installed_and_close_to_sdpa(result):
    assert result["installed"] and result["attention_back"] and result["recorded_same_frames"], result
    # on CPU ComfyUI selects its sub-quadratic attention (chunked softmax): each call is within
    # float32 rounding of SDPA (measured 7e-7 relative)...
    assert result["selected"] == "attention_sub_quad" and result["attention_calls"] > 100, result
    assert result["attention_call_rel"] < 1e-5, result
    # ...which the random tiny network (CFG 3.5, 2 steps, no training to damp it) amplifies by about
    # five orders of magnitude: SDPA's own float32 rounding moves the frames (in [0, 1]) 0.046 away from
    # attention computed in float64, ComfyUI's chunked softmax 0.32 (measured on 0.8.0; 0.17.2 is in bound too).
    # So the frames are held to that scale, not to a fixed number; the pytorch backend is SDPA itself:
    d = {k: result[k] for k in ("attention_diff", "sdpa_from_exact", "comfy_from_exact")}
    assert 0 < result["sdpa_from_exact"] and 0 < result["attention_diff"], d
    assert result["comfy_from_exact"] < 10 * result["sdpa_from_exact"], d
    assert result["pytorch_backend_equal"], result


def test_device_dtype_passed_and_partial_load_gives_the_same_frames(result):
    assert result["settings"] == {"device": "cpu", "dtype": "torch.float32"}
    p = result["partial"]
    assert p["lowvram"] and p["cast_layers"] > 0 and 0 < p["loaded"] < p["size"], p
    assert p["equal"], p
    assert result["plain_weight_modules"] == []
