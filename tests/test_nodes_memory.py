"""Memory the ComfyUI way, read from ComfyUI's own bookkeeping on the CPU.

Two devices are not available here, so placement is asserted through the patchers' state
(ComfyUI's list of loaded models, ``loaded_size``, ``model_lowvram``, each layer's
``comfy_patched_weights`` / ``comfy_cast_weights``, where weights and buffers are) at every
reference-UNet and denoiser call, along these sequences:

- Reference encode -> sampler with ``low_vram`` -> normal run (long-video node) -> re-encode;
- partial load (ComfyUI's real partial loader, told a small free-memory figure) -> full load.

Also: no module is moved with ``.to()`` from hallo_core during these runs; every load carries a
``memory_required`` equal to hallo_core.pipeline.memory (and to ComfyUI's own formula); under
manual casting (fp16 weights on a CPU) the layers compute in ComfyUI's compute dtype; the long-video
node gives memory back after every clip; the node VAE in fp16 decodes a VAE that overflows fp16.
Tiny random models, 64 px, 2 clips, 2 steps. Runs in COMFYUI_PYTHON; skipped without COMFYUI_PATH.
"""

import pytest

from tests.comfy_server import run_in_comfy_python

SCRIPT = r"""
    torch.set_num_threads(1)
    import comfy.model_management as mm
    import comfy.model_base
    ext = importlib.import_module(name + ".nodes.extension")
    ext.setup()
    N = {m: importlib.import_module(f"{name}.nodes.{m}")
         for m in ("common", "loaders", "reference", "sampler", "long_video", "comfy_vae")}
    C, L = N["common"], N["loaders"]
    tiny, te, ov = load_support("models_folder"), load_support("tiny_engine"), load_support("overflow_vae")
    from hallo_core.pipeline import memory as HM
    root = tempfile.mkdtemp()
    tiny.write_tiny_hallo(root, versions=("hallo2",)); tiny.write_tiny_vae(root)
    ov.write_overflow_vae(os.path.join(root, "vae-overflow"))
    folder_paths.folder_names_and_paths["hallo"] = ([root], set())
    res = {}

    model = L.HalloModelLoader.execute(model="hallo2/net.pth", precision="fp32").result[0]
    vae = L.HalloVAELoader.execute(vae_folder="sd-vae-ft-mse", precision="fp32").result[0]
    face = te.random_face_data(64, seed=2)
    audio = te.random_audio(20, 16, seed=3)  # 2 clips: clip 2 runs the motion items' reference pass
    main, refp, net = model.patcher, model.ref_patcher, model.net
    NAMES = {id(main): "main", id(refp): "ref", id(vae.patcher): "vae"}
    W = dict(seed=42, steps=2, cfg=3.5, pose_weight=1.0, face_weight=1.0, lip_weight=1.0, scheduler="ddim",
             fast=True, cfg_steps=0)

    # --- ComfyUI's bookkeeping of one patcher
    def state(p):
        m = p.model
        weighted = [(n, mod) for n, mod in m.named_modules() if list(mod.parameters(recurse=False))]
        patched = [n for n, mod in weighted if getattr(mod, "comfy_patched_weights", False)]
        cast = [n for n, mod in weighted if getattr(mod, "comfy_cast_weights", False)]
        misplaced = [n for n, mod in weighted
                     if (n in patched and any(t.device != p.load_device for t in mod.parameters(recurse=False)))
                     or (n in cast and n not in patched
                         and any(t.device != p.offload_device for t in mod.parameters(recurse=False)))]
        return {"registered": any(x.model is p for x in mm.current_loaded_models),
                "loaded": int(p.loaded_size()), "size": int(p.model_size()), "lowvram": bool(m.model_lowvram),
                "modules": len(weighted), "patched": len(patched), "cast": len(cast),
                "ready": bool(any(x.model is p for x in mm.current_loaded_models)
                              and len(set(patched) | set(cast)) == len(weighted)),
                "misplaced": misplaced, "lowvram_patches": int(p.lowvram_patch_counter()),
                "weights": sorted({str(t.device) for t in m.parameters()}),
                "buffers": sorted({str(b.device) for b in m.buffers()}),
                "device": str(m.device)}

    # --- every call of the two UNets sees the state of both patchers
    calls = []
    def hook(kind):
        def pre(mod, args):
            calls.append({"kind": kind, "main": state(main), "ref": state(refp),
                          "in_dtype": str(args[0].dtype) if args and torch.is_tensor(args[0]) else None})
        return pre
    net.reference_unet.register_forward_pre_hook(hook("ref"))
    net.denoising_unet.register_forward_pre_hook(hook("denoise"))

    # --- every load_models_gpu call: which patchers, memory_required, full
    loads = []
    real_load = mm.load_models_gpu
    def rec_load(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                 force_full_load=False):
        loads.append([[NAMES.get(id(x), type(x.model).__name__) for x in models], int(memory_required),
                      bool(force_full_load)])
        return real_load(models, memory_required=memory_required, force_patch_weights=force_patch_weights,
                         minimum_memory_required=minimum_memory_required, force_full_load=force_full_load)
    mm.load_models_gpu = rec_load

    # --- no nn.Module move called from hallo_core's own code
    HC = os.path.realpath(os.path.join(repo, "hallo_core")) + os.sep
    moved, guard = [], {"on": False}
    def guarded(meth):
        real = getattr(torch.nn.Module, meth)
        def w(self, *a, **k):
            if guard["on"]:
                f = sys._getframe(1)
                if os.path.realpath(f.f_code.co_filename).startswith(HC):
                    moved.append(f"{type(self).__name__}.{meth} from {os.path.relpath(f.f_code.co_filename, repo)}:{f.f_lineno}")
            return real(self, *a, **k)
        return w
    for meth in ("to", "cuda", "cpu", "half", "float", "double", "bfloat16", "type", "to_empty"):
        setattr(torch.nn.Module, meth, guarded(meth))

    # --- memory given back between clips
    boundaries = []
    real_boundary = C.clip_boundary
    def rec_boundary():
        boundaries.append(len(calls))
        real_boundary()
    C.clip_boundary = rec_boundary

    def summary(step):
        return {"calls": [{"kind": c["kind"], "main_ready": c["main"]["ready"], "ref_ready": c["ref"]["ready"],
                           "ref_registered": c["ref"]["registered"],
                           "misplaced": c["main"]["misplaced"] + c["ref"]["misplaced"]} for c in calls],
                "main": state(main), "ref": state(refp), "loads": list(loads)}

    def encode():
        return N["reference"].HalloReference.execute(hallo_model=model, vae=vae, face_data=face).result[0]

    def hallo(low_vram, reference):
        return N["sampler"].HalloSampler.execute(hallo_model=model, vae=vae, reference=reference, audio_embeds=audio,
                                                 low_vram=low_vram, **W).result[0]

    def hallo2(reference, **kw):
        return N["long_video"].HalloLongVideo.execute(hallo_model=model, vae=vae, reference=reference,
                                                      audio_embeds=audio, output_mode="image", filename_prefix="x",
                                                      resume=True, mask_rate=0.0, low_vram=False, **W, **kw).result[0]

    # ---- sequence A: encode -> low_vram run -> normal run -> re-encode
    seq = {}
    guard["on"] = True
    calls.clear(); loads.clear()
    r1 = encode(); seq["encode"] = summary("encode")
    calls.clear(); loads.clear()
    low = hallo(True, r1); seq["low_vram"] = summary("low_vram")
    calls.clear(); loads.clear(); boundaries.clear()
    normal = hallo2(r1); seq["normal"] = summary("normal"); seq["normal"]["boundaries"] = list(boundaries)
    calls.clear(); loads.clear()
    r2 = encode(); seq["reencode"] = summary("reencode")
    guard["on"] = False
    res["seq"] = seq
    res["moved"] = moved[:20]
    res["equal_low_normal"] = bool(torch.equal(low, normal))
    res["equal_reencode"] = all(bool(torch.equal(r1.context.ref_banks[k], r2.context.ref_banks[k]))
                                for k in r1.context.ref_banks)

    # the guard itself: hallo_core's own placement (what ran inside ComfyUI before) is caught
    net.placement, saved = None, net.placement
    guard["on"] = True
    hallo(True, r1)
    guard["on"] = False
    net.placement = saved
    res["guard_catches_own_moves"] = sorted(set(moved))

    # ---- expected memory figures (CPU: no memory-efficient kernel in ComfyUI's eyes)
    eff = C.efficient_attention()
    f32 = torch.float32
    res["expected"] = {"denoise": HM.denoise_memory(64, 16, True, f32, eff),
                       "ref_portrait": HM.unet_memory([2, 4, 8, 8], f32, eff),
                       "ref_motion": HM.unet_memory([4, 4, 8, 8], f32, eff),
                       "vae_encode": HM.vae_encode_memory(64, 1, f32), "vae_decode": HM.vae_decode_memory(64, 1, f32)}
    class SD15:  # ComfyUI's BaseModel.memory_required on an SD1.5-factor model
        memory_usage_factor, memory_usage_factor_conds, memory_usage_shape_process = 1.0, (), {}
        manual_cast_dtype = None
        def get_dtype(self): return torch.float16
        def get_dtype_inference(self): return torch.float16
    core = {}
    for flag in (False, True):
        real_x = mm.xformers_enabled
        mm.xformers_enabled = lambda: flag
        core[str(flag)] = [int(comfy.model_base.BaseModel.memory_required(SD15(), [32, 4, 64, 64])),
                           HM.unet_memory([32, 4, 64, 64], torch.float16, flag or mm.pytorch_attention_flash_attention())]
        mm.xformers_enabled = real_x
    res["core_formula"] = core

    # ---- sequence B: partial load (a small GPU as ComfyUI sees it) -> full load
    mm.unload_all_models()
    real_free, real_is_cpu, real_state = mm.get_free_memory, mm.is_device_cpu, mm.vram_state
    budget = int(main.model_size() * 0.95)
    def small_gpu(dev=None, torch_free_too=False):  # room for ComfyUI's reserve + 95% of the main patcher
        # what is on this "GPU": loaded weights, whether or not ComfyUI lists the model at that moment
        # (load_models_gpu takes a model off its list while it reloads it)
        used = sum(p.loaded_size() for p in (main, refp, vae.patcher))
        f = max(0, int(mm.minimum_inference_memory() + budget - used))
        return (f, f) if torch_free_too else f
    mm.get_free_memory, mm.is_device_cpu, mm.vram_state = small_gpu, (lambda d: False), mm.VRAMState.NORMAL_VRAM
    calls.clear(); loads.clear()
    try:
        part = hallo2(r1)
    finally:
        mm.get_free_memory, mm.is_device_cpu, mm.vram_state = real_free, real_is_cpu, real_state
    res["partial"] = summary("partial")
    res["partial_pe_copies"] = sum(1 for m in net.modules() if getattr(m, "_copy", None) is not None)
    calls.clear(); loads.clear()
    full = hallo2(r1)
    res["full"] = summary("full")
    res["equal_partial_full"] = [bool(torch.equal(part, normal)), bool(torch.equal(full, normal))]

    # ---- manual cast: fp16 weights on a CPU compute in fp32 (ComfyUI's choice)
    m16 = L.HalloModelLoader.execute(model="hallo2/net.pth", precision="fp16").result[0]
    seen = []
    m16.net.denoising_unet.conv_in.register_forward_pre_hook(lambda mod, a: seen.append([str(a[0].dtype), str(mod.weight.dtype)]))
    m16.net.reference_unet.conv_in.register_forward_pre_hook(lambda mod, a: seen.append([str(a[0].dtype), str(mod.weight.dtype)]))
    ref16 = N["reference"].HalloReference.execute(hallo_model=m16, vae=vae, face_data=face).result[0]
    f16 = N["sampler"].HalloSampler.execute(hallo_model=m16, vae=vae, reference=ref16, audio_embeds=audio,
                                            low_vram=False, **W).result[0]
    res["manual_cast"] = {"storage": str(m16.dtype), "compute": str(m16.compute),
                          "container_cast": str(m16.patcher.model.manual_cast_dtype),
                          "calls": sorted({tuple(s) for s in seen}), "finite": bool(torch.isfinite(f16).all()),
                          "diff_fp32": float((f16 - normal).abs().mean())}

    # ---- the node VAE in fp16 with a VAE that overflows fp16
    codec = lambda v: N["comfy_vae"].vae_codec(v)[0]
    v16 = L.HalloVAELoader.execute(vae_folder="vae-overflow", precision="fp16").result[0]
    v32 = L.HalloVAELoader.execute(vae_folder="vae-overflow", precision="fp32").result[0]
    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(6)) * 2 - 1
    with torch.no_grad():
        raw = v16.patcher.model.vae.decode(z.half()).sample
    d16, d32 = codec(v16).decode(z, 1), codec(v32).decode(z, 1)
    e16, e32 = codec(v16).encode(x), codec(v32).encode(x)
    res["vae"] = {"raw_finite": bool(torch.isfinite(raw).all()), "dtype": str(next(v16.patcher.model.parameters()).dtype),
                  "decode_finite": bool(torch.isfinite(d16).all()), "decode_diff": float((d16.float() - d32).abs().max()),
                  "encode_finite": bool(torch.isfinite(e16).all()),
                  "encode_rel": float((e16.float() - e32).abs().max() / e32.abs().max()), "std": float(d32.std())}
    fr16 = N["sampler"].HalloSampler.execute(hallo_model=model, vae=v16, reference=N["reference"].HalloReference.execute(
        hallo_model=model, vae=v16, face_data=face).result[0], audio_embeds=audio, low_vram=False, **W).result[0]
    fr32 = N["sampler"].HalloSampler.execute(hallo_model=model, vae=v32, reference=N["reference"].HalloReference.execute(
        hallo_model=model, vae=v32, face_data=face).result[0], audio_embeds=audio, low_vram=False, **W).result[0]
    res["vae"]["sampler_finite"] = bool(torch.isfinite(fr16).all())
    res["vae"]["sampler_diff"] = float((fr16 - fr32).abs().mean())
    print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def result():
    return run_in_comfy_python(SCRIPT, timeout=3000)


def _consistent(st):
    """ComfyUI's own invariants for one patcher snapshot."""
    assert st["misplaced"] == [], st
    assert st["weights"] == [st["device"]] or st["lowvram"] or not st["registered"], st
    if st["registered"] and not st["lowvram"]:
        assert st["loaded"] == st["size"] and st["patched"] == st["modules"] and st["cast"] == 0, st
    if st["lowvram"]:
        assert 0 < st["loaded"] < st["size"] and st["cast"] > 0, st
    if not st["registered"]:
        assert st["loaded"] == 0 and st["patched"] == 0 and st["cast"] == 0, st
    assert st["lowvram_patches"] == 0  # no weight patches (LoRA) here, so none to apply per layer


def test_low_vram_run_then_normal_run_then_reencode(result):
    seq = result["seq"]
    for step in ("encode", "low_vram", "normal", "reencode"):
        s = seq[step]
        _consistent(s["main"]), _consistent(s["ref"])
        kinds = [c["kind"] for c in s["calls"]]
        assert "ref" in kinds, (step, kinds)
        for c in s["calls"]:
            assert c["misplaced"] == [], (step, c)
            # a UNet only ever runs on weights ComfyUI has loaded (fully, or partially with casting)
            assert c["ref_ready"] if c["kind"] == "ref" else c["main_ready"], (step, c)
    # low_vram: the reference UNet is loaded for its passes and given back through ComfyUI before
    # the denoiser runs; afterwards ComfyUI does not count it as loaded
    low = seq["low_vram"]
    assert [c["kind"] for c in low["calls"]].count("denoise") == 2 * 2 * 1  # 2 clips x 2 steps, CFG batched
    assert not any(c["ref_registered"] for c in low["calls"] if c["kind"] == "denoise"), low["calls"]
    assert not low["ref"]["registered"] and low["ref"]["loaded"] == 0 and low["main"]["registered"]
    # the next run without low_vram and the re-encode find it registered again and loaded
    assert seq["normal"]["ref"]["registered"] and seq["reencode"]["ref"]["registered"]
    assert result["equal_low_normal"] and result["equal_reencode"]


def test_no_hallo_core_moves_during_comfyui_runs(result):
    assert result["moved"] == [], result["moved"]
    # the guard is live: the engine's own placement (a low_vram run with no host placement) is caught
    assert any(m.startswith("ReferenceUNet.to from hallo_core/pipeline/reference_cache.py")
               for m in result["guard_catches_own_moves"]), result["guard_catches_own_moves"]


def test_memory_required_positive_and_equal_to_the_formula(result):
    e, seq = result["expected"], result["seq"]
    for step in ("low_vram", "normal"):
        main_loads = [m for names, m, _ in seq[step]["loads"] if names == ["main"]]
        ref_loads = [m for names, m, _ in seq[step]["loads"] if "ref" in names]
        vae_loads = [m for names, m, _ in seq[step]["loads"] if names == ["vae"]]
        assert main_loads and set(main_loads) == {e["denoise"]}, (step, seq[step]["loads"])
        assert ref_loads and set(ref_loads) == {e["ref_motion"]}, (step, seq[step]["loads"])  # clip 2's pass
        assert vae_loads and set(vae_loads) <= {e["vae_encode"], e["vae_decode"]}, (step, vae_loads)
        assert all(m > 0 for _, m, _ in seq[step]["loads"]), seq[step]["loads"]
    enc = seq["encode"]["loads"]
    assert [m for names, m, _ in enc if "ref" in names] == [e["ref_portrait"]], enc
    assert all(m > 0 for _, m, _ in enc), enc
    # hallo_core's formula is ComfyUI's (BaseModel.memory_required), with and without an efficient kernel
    for flag, (core, ours) in result["core_formula"].items():
        assert core == ours, (flag, core, ours)


def test_partial_load_then_full_load(result):
    p, f = result["partial"], result["full"]
    for s in (p, f):
        for c in s["calls"]:
            assert c["misplaced"] == [] and (c["ref_ready"] if c["kind"] == "ref" else c["main_ready"]), c
    _consistent(p["main"])
    assert p["main"]["lowvram"] and p["main"]["cast"] > 0 and 0 < p["main"]["loaded"] < p["main"]["size"], p["main"]
    _consistent(f["main"]), _consistent(f["ref"])
    assert not f["main"]["lowvram"] and f["main"]["loaded"] == f["main"]["size"] and f["main"]["cast"] == 0
    # the position tables stay with their (offloaded) modules: on this one-device machine no copy is
    # made; on a GPU one copy per table is (hallo_core.models.transformers.PositionalEncoding.table)
    assert result["partial_pe_copies"] == 0
    assert result["equal_partial_full"] == [True, True]


def test_manual_cast_computes_in_comfyuis_dtype(result):
    m = result["manual_cast"]
    assert m["storage"] == "torch.float16" and m["compute"] == "torch.float32", m
    assert m["container_cast"] == "torch.float32"
    # both UNets get float32 inputs while their weights stay float16 (comfy.ops casts per layer)
    assert m["calls"] == [["torch.float32", "torch.float16"]], m
    assert m["finite"]


def test_long_video_gives_memory_back_after_every_clip(result):
    b = result["seq"]["normal"]["boundaries"]
    assert len(b) == 2, b  # after clip 1 and after clip 2


def test_node_vae_fp16_does_not_overflow(result):
    v = result["vae"]
    assert not v["raw_finite"] and v["dtype"] == "torch.float16"  # the VAE does overflow fp16
    assert v["decode_finite"] and v["encode_finite"] and v["sampler_finite"], v
    assert v["std"] > 0.05
    assert v["decode_diff"] < 5e-3 and v["encode_rel"] < 5e-3, v
    assert v["sampler_diff"] < 0.05, v
