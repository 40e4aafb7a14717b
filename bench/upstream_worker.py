"""Runs upstream Hallo's own pipeline on a case written by bench_vs_upstream.py (upstream venv only).

Nothing of upstream is copied here: this script imports upstream's package from
``--upstream-src`` and drives it the way its ``scripts/inference.py`` does (models built with
``from_config``, the denoiser left in training mode with gradient checkpointing as the
official run leaves it, ``net.pth`` loaded strictly, ``FaceAnimatePipeline`` called clip by
clip with the global generator seeded once, the last two decoded frames as the next clip's
motion frames). Upstream imports ``xformers`` at module level and never calls it on this
path, so an empty stand-in module is registered (after diffusers is imported).

    python bench/upstream_worker.py --case CASE.pt --upstream-src SRC --out OUT.pt [--dtype float64]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types


def _stub_xformers() -> None:
    for name in ("xformers", "xformers.ops"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["xformers"].ops = sys.modules["xformers.ops"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True)
    ap.add_argument("--upstream-src", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile-step", default=None, help="profile one UNet call into this file and exit")
    args = ap.parse_args()
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler
    from torch import nn

    # after diffusers: its import-time probe of xformers must not see the stand-in
    _stub_xformers()
    sys.path.insert(0, args.upstream_src)

    from hallo.animate.face_animate import FaceAnimatePipeline
    from hallo.models.audio_proj import AudioProjModel
    from hallo.models.face_locator import FaceLocator
    from hallo.models.image_proj import ImageProjModel
    from hallo.models.unet_2d_condition import UNet2DConditionModel
    from hallo.models.unet_3d import UNet3DConditionModel

    torch.set_num_threads(args.threads)
    dt = getattr(torch, args.dtype)
    case = torch.load(args.case, weights_only=True)
    cfg = dict(case["unet_config"])
    ref_unet = UNet2DConditionModel.from_config(cfg).eval()  # from_pretrained returns eval mode
    cfg3 = dict(cfg, down_block_types=["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
                up_block_types=["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3,
                mid_block_type="UNetMidBlock3DCrossAttn")
    den_unet = UNet3DConditionModel.from_config(cfg3, **case["unet_additional_kwargs"])  # training mode
    c0 = cfg["block_out_channels"][0]
    face_locator = FaceLocator(conditioning_embedding_channels=c0)
    image_proj = ImageProjModel(cross_attention_dim=cfg["cross_attention_dim"], clip_embeddings_dim=512,
                                clip_extra_context_tokens=4)
    audio_proj = AudioProjModel(seq_len=5, blocks=12, channels=768, intermediate_dim=512, output_dim=768,
                                context_tokens=32).to(dtype=dt)
    for m in (ref_unet, den_unet, face_locator, image_proj, audio_proj):
        m.requires_grad_(False)
    ref_unet.enable_gradient_checkpointing()
    den_unet.enable_gradient_checkpointing()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.reference_unet, self.denoising_unet = ref_unet, den_unet
            self.face_locator, self.imageproj, self.audioproj = face_locator, image_proj, audio_proj

    net = Net()
    missing, unexpected = net.load_state_dict(torch.load(case["net_path"], map_location="cpu",
                                                         weights_only=True))
    assert not missing and not unexpected, (missing[:5], unexpected[:5])
    vae = AutoencoderKL(**case["vae_config"])
    vae.load_state_dict(case["vae_state"])
    vae.requires_grad_(False).eval()

    sched = dict(case["scheduler_kwargs"])
    pipe = FaceAnimatePipeline(vae=vae, reference_unet=net.reference_unet, denoising_unet=net.denoising_unet,
                               face_locator=net.face_locator, scheduler=DDIMScheduler(**sched),
                               image_proj=net.imageproj)
    pipe.to(device="cpu", dtype=dt)
    pipe.set_progress_bar_config(disable=True)
    net.audioproj.to(dtype=dt)

    s = case["settings"]
    fclip, nm, size = s["clip_frames"], s["motion_frames"], case["size"]
    feats = case["audio_features"]
    t_len = feats.shape[0]
    # the +-2 audio window of every frame, clamped to the padded length (process_audio_emb)
    idx = (torch.arange(t_len)[:, None] + torch.arange(-2, 3)[None]).clamp(0, t_len - 1)
    audio_emb = feats[idx]
    pixels = case["pixels"].unsqueeze(0)
    region = case["face_region"].unsqueeze(0)
    emb = case["face_emb"].reshape(1, -1)
    masks = [[m.reshape(1, -1).repeat(fclip, 1) for m in case[k]] for k in ("full_masks", "face_masks", "lip_masks")]
    times = audio_emb.shape[0] // fclip

    if args.profile_step:
        _profile_one_call(args.profile_step, torch, pipe, net, case, pixels, region, emb, masks, audio_emb, dt)
        return

    from cpu_timing import time_calls  # beside this script: CPU seconds inside the denoiser calls

    den_cpu = time_calls(den_unet)
    result = []
    generator = torch.manual_seed(s["seed"])
    c0_, w0 = time.process_time(), time.perf_counter()
    for t in range(times):
        if not result:
            motion = pixels.repeat(nm, 1, 1, 1)
        else:
            motion = result[-1][0].permute(1, 0, 2, 3)[-nm:] * 2.0 - 1.0
        ref = torch.cat([pixels, motion.to(pixels.dtype)], dim=0).unsqueeze(0)
        audio = net.audioproj(audio_emb[t * fclip:(t + 1) * fclip].unsqueeze(0).to(dtype=dt))
        out = pipe(ref_image=ref, audio_tensor=audio, face_emb=emb, face_mask=region,
                   pixel_values_full_mask=masks[0], pixel_values_face_mask=masks[1],
                   pixel_values_lip_mask=masks[2], width=size, height=size, video_length=fclip,
                   num_inference_steps=s["steps"], guidance_scale=s["cfg"], generator=generator,
                   motion_scale=list(s["motion_scale"]))
        v = out.videos
        result.append(v if torch.is_tensor(v) else torch.from_numpy(v))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0_
    video = torch.cat(result, dim=2)[0][:, :case["num_frames"]]  # [3, N, H, W]
    torch.save({"frames": video.permute(1, 2, 3, 0).contiguous().double()}, args.out)
    print(json.dumps({"side": "upstream", "wall": wall, "cpu": cpu, "denoise_cpu": den_cpu[0], "dtype": args.dtype,
                      "threads": args.threads}))


def _profile_one_call(path, torch, pipe, net, case, pixels, region, emb, masks, audio_emb, dt):
    """Profile the second denoiser call of a 2-step clip (the first includes the reference pass)."""
    from torch.profiler import ProfilerActivity, profile

    den = net.denoising_unet
    calls = {"n": 0}
    orig = den.forward

    def wrapped(*a, **k):
        calls["n"] += 1
        if calls["n"] != 2:
            return orig(*a, **k)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            res = orig(*a, **k)
        with open(path, "w") as f:
            f.write(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))
        torch.save({k2: (v.self_cpu_time_total / 1e6, v.count) for k2, v in
                    ((e.key, e) for e in prof.key_averages())}, path + ".pt")
        # attention calls by q/k shape, so the profile script can account for them kind by kind
        torch.save([(str(e.input_shapes[:2]), e.self_cpu_time_total / 1e6, e.count)
                    for e in prof.key_averages(group_by_input_shape=True) if "flash_attention" in e.key],
                   path + ".attn.pt")
        return res

    den.forward = wrapped
    s = case["settings"]
    fclip, nm, size = s["clip_frames"], s["motion_frames"], case["size"]
    ref = torch.cat([pixels, pixels.repeat(nm, 1, 1, 1)], dim=0).unsqueeze(0)
    audio = net.audioproj(audio_emb[:fclip].unsqueeze(0).to(dtype=dt))
    pipe(ref_image=ref, audio_tensor=audio, face_emb=emb, face_mask=region, pixel_values_full_mask=masks[0],
         pixel_values_face_mask=masks[1], pixel_values_lip_mask=masks[2], width=size, height=size,
         video_length=fclip, num_inference_steps=2, guidance_scale=s["cfg"],
         generator=torch.Generator().manual_seed(0), motion_scale=list(s["motion_scale"]))
    den.forward = orig


if __name__ == "__main__":
    main()
