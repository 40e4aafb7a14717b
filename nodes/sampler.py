"""Hierarchical-audio-attention sampler node (Hallo): clips of 16 frames chained by 2 motion frames."""

from __future__ import annotations

from comfy_api.latest import io

from . import common as C
from . import options as O
from .comfy_vae import vae_codec
from .progress import ClipProgress
from .reference import VAE_TOOLTIP, vae_input


def sampling_inputs() -> list:
    """Widgets shared by the Hallo and Hallo2 samplers (hallo_core.options)."""
    return O.inputs("seed", "steps", "cfg", "pose_weight", "face_weight", "lip_weight", "scheduler",
                    seed={"control_after_generate": True})


def speed_inputs() -> list:
    """Optional speed / memory widgets (defaults keep upstream's frames, so older workflows still run)."""
    optional = {"optional": True}
    return O.inputs("fast", "cfg_steps", "low_vram", fast=optional, cfg_steps=optional, low_vram=optional)


def model_inputs() -> list:
    return [
        C.HalloModelType.Input("hallo_model", tooltip="From 'Hallo Model Loader'."),
        vae_input(VAE_TOOLTIP),
        C.HalloReferenceType.Input("reference", tooltip="From 'Hallo Reference Encode'."),
        C.HalloAudioEmbedsType.Input("audio_embeds", tooltip="From 'Hallo Audio Embeds'."),
    ]


def motion_input():
    return C.HalloMotionType.Input(
        "motion", optional=True,
        tooltip="From 'Hallo Motion Frames': continue an earlier video (e.g. this node's output with the previous "
                "audio section) instead of starting from the portrait. With the same seed, model and reference "
                "the continuation of whole clips equals one run over the joined audio.")


def motion_frames(motion, reference, settings):
    """hallo_core's MotionFrames for a HALLO_MOTION input, fitted to the reference's working size."""
    if motion is None:
        return None
    from hallo_core.pipeline.motion import motion_frames_from_images

    return motion_frames_from_images(motion.frames, int(reference.size), n=settings.motion_frames,
                                     clip_index=int(motion.clip_index), mask_rate=motion.mask_rate)


def on_device(hallo_model, settings):
    """``settings`` with the compute device and dtype of the model as ComfyUI manages it.

    Given explicitly because a partially loaded patcher leaves some weights on the offload device
    (the first weight's device is then not where the network computes), and because under manual
    casting the weights' dtype is not the one ComfyUI computes in.
    """
    from dataclasses import replace

    return replace(settings, device=hallo_model.patcher.load_device, dtype=hallo_model.compute)


def settings(seed, steps, cfg, pose_weight, face_weight, lip_weight, scheduler, mask_rate=0.0, fast=True,
             cfg_steps=0, low_vram=False, **_):
    """The sampler widgets as hallo_core's GenerationSettings, built once per node run; the values are
    checked against the schema first (a linked value is not seen by validate_inputs).

    ``mask_rate`` 0 is plain Hallo chaining. ``cfg_steps`` 0 is CFG on every step. Other keyword arguments (the node's non-sampling
    widgets) are ignored, so a node can pass all of its widgets.
    """
    from hallo_core.options import unset_to_none
    from hallo_core.pipeline.generate import GenerationSettings

    v = O.checked(seed=seed, steps=steps, cfg=cfg, pose_weight=pose_weight, face_weight=face_weight,
                  lip_weight=lip_weight, scheduler=scheduler, mask_rate=mask_rate, cfg_steps=cfg_steps)
    return GenerationSettings(
        steps=v["steps"], cfg=v["cfg"], pose_weight=v["pose_weight"], face_weight=v["face_weight"],
        lip_weight=v["lip_weight"], scheduler=v["scheduler"], seed=v["seed"], mask_rate=v["mask_rate"],
        fast=bool(fast), cfg_steps=unset_to_none("cfg_steps", v["cfg_steps"]), low_vram=bool(low_vram))


def run(node_id, hallo_model, vae, reference, audio_embeds, settings, sink, checkpoint=None, start=None,
        motion=None):
    """Drive hallo_core's clip loop with ComfyUI model management, progress and Cancel.

    The network is (re)loaded before every denoising step (hallo_core polls ``should_stop`` there): a
    no-op while it stays on the device, and it brings it back if another model (the VAE at a clip's end,
    or another node) evicted it. The VAE is loaded before each encode/decode. Cancel is polled there too;
    hallo_core then stops cleanly (finished clips stay in the sink) and the interrupt is re-raised
    here so ComfyUI reports the run as interrupted. On the fast path the Reference node's prepared
    context (portrait features) is reused; hallo_core rejects one made with another model, VAE or face.
    ``checkpoint``: a hallo_core Checkpoint kept in step with the sink. ``start``: the ResumeState a
    resumed run continues from (progress and time left count from there). ``motion``: hallo_core
    MotionFrames to continue from. Returns hallo_core's GenerationResult.
    """
    import comfy.model_management as mm

    from hallo_core.pipeline.generate import ClipRun, stream

    codec, _ = vae_codec(vae)
    settings = on_device(hallo_model, settings)
    memory = C.denoise_memory(hallo_model, reference.size, settings.clip_frames, settings.cfg)
    clips = max(1, -(-int(audio_embeds.num_frames) // settings.clip_frames))
    prog = ClipProgress(node_id, clips=clips, steps=settings.steps,
                        first_clip=start.next_clip if start is not None else 0)
    fps = float(getattr(audio_embeds, "fps", 25))

    # ComfyUI may load the network partially (low VRAM): its comfy.ops layers cast the offloaded
    # weights per forward, and the compute device comes from the settings, not from a weight
    def load() -> None:
        C.load_hallo(hallo_model, memory, settings.low_vram)

    def should_stop() -> bool:
        """Polled by hallo_core before every denoising step: (re)load the network, then check Cancel."""
        if mm.processing_interrupted():
            return True
        load()
        return False

    def callback(clip: int, n_clips: int, step: int, n_steps: int, frames) -> None:
        if frames is not None:
            prog.clip_done(clip, frames, fps)
            C.clip_boundary()  # give back what the clip used before the next one starts
        else:
            prog.step(clip, step)

    load()
    # The Reference node's context holds fast-path features; the plain path (fast=False) builds its own.
    context = reference.context if settings.fast else None
    loop = ClipRun(hallo_model.net, codec, reference.face, audio_embeds, settings, start=start, motion=motion,
                   context=context, model_id=hallo_model.path, should_stop=should_stop, callback=callback)
    result = stream(loop, sink, checkpoint)
    if result.interrupted:
        C.interrupted()  # raises InterruptProcessingException (the flag is still set)
        raise mm.InterruptProcessingException()
    return result


class HalloSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_Sampler",
            display_name="Hallo Sampler",
            category=f"{C.CATEGORY}/sampling",
            description="Generates the talking-head video, 16-frame clips chained by 2 motion frames "
                        "(Hallo). Returns IMAGE frames; connect them with the audio and fps to core "
                        "Create Video -> Save Video.",
            inputs=model_inputs() + sampling_inputs() + speed_inputs() + [motion_input()],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="The video frames [N,H,W,3], exactly as many as "
                                                               "the audio covers."),
                io.Float.Output(display_name="fps", tooltip="Frame rate of the frames."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, steps, cfg, cfg_steps=0, seed=None, pose_weight=None, face_weight=None,
                        lip_weight=None) -> bool | str:
        return O.validate(seed=seed, steps=steps, cfg=cfg, pose_weight=pose_weight, face_weight=face_weight,
                          lip_weight=lip_weight, cfg_steps=cfg_steps)

    @classmethod
    def execute(cls, hallo_model, vae, reference, audio_embeds, motion=None, **widgets) -> io.NodeOutput:
        from hallo_core.media.video import ImageSink

        st = settings(**widgets)
        sink = ImageSink(int(audio_embeds.num_frames))
        run(cls.hidden.unique_id if cls.hidden is not None else None, hallo_model, vae, reference, audio_embeds,
            st, sink, motion=motion_frames(motion, reference, st))
        return io.NodeOutput(sink.images().to(C.out_device()), float(getattr(audio_embeds, "fps", 25)))


NODES = [HalloSampler]

__all__ = ["HalloSampler", "run", "settings", "sampling_inputs", "speed_inputs", "model_inputs",
           "motion_input", "motion_frames", "on_device"]
