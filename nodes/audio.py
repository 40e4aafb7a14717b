"""Audio embedding node: AUDIO -> Hallo audio embeds (+ frame count, AUDIO fitted to the video)."""

from __future__ import annotations

import torch

from comfy_api.latest import io

from . import common as C
from . import convert
from .progress import ClipProgress

FPS = 25  # Hallo's audio features are computed at 25 video frames per second (640 samples at 16 kHz)


class HalloAudioEmbeds(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_AudioEmbeds",
            display_name="Hallo Audio Embeds",
            category=f"{C.CATEGORY}/audio",
            description="Turns any AUDIO (any rate, mono or stereo, any length) into Hallo's wav2vec2 features "
                        "at the video frame rate. Long audio is processed in 60 s segments.",
            inputs=[
                C.HalloAudioModelsType.Input("audio_models", tooltip="From 'Hallo Audio Models Loader'."),
                io.Audio.Input("audio", tooltip="The speech that drives the lips. Only the first item of a "
                                                "batch is used; stereo is downmixed."),
                io.Boolean.Input("segment_60s", default=True,
                                 tooltip="Process the audio in 60 s segments (Hallo2; memory stays bounded for "
                                         "hour-long audio). Off: one pass over the whole audio (Hallo v1)."),
            ],
            outputs=[
                C.HalloAudioEmbedsType.Output(display_name="audio_embeds",
                                              tooltip="wav2vec2 layers 1-12 per video frame, padded to whole "
                                                      "16-frame clips."),
                io.Int.Output(display_name="frame_count", tooltip="Video frames that cover the audio "
                                                                  "(the output video's length)."),
                io.Audio.Output(display_name="audio", tooltip="The original audio trimmed/padded to exactly "
                                                               "frame_count / fps seconds, for Create Video."),
                io.Float.Output(display_name="fps", tooltip="The frame rate (25, as Hallo was trained), for "
                                                            "Create Video."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, audio_models, audio, segment_60s) -> io.NodeOutput:
        fps = FPS
        wav, sr = convert.audio_first_item(audio)
        lo, hi = torch.aminmax(wav)  # no full-size temporary (|wav| of an hour at 44.1 kHz is 1.3 GB)
        if float(lo) == 0.0 and float(hi) == 0.0:
            raise ValueError("audio: the audio is pure silence; Hallo needs speech to drive the lips")
        if wav.shape[-1] < sr / float(fps):
            raise ValueError(f"audio: {wav.shape[-1]} samples at {sr} Hz is shorter than one video frame")
        C.load_gpu([audio_models.patcher], full=True)  # transformers modules: no partial loading
        node = cls.hidden.unique_id if cls.hidden is not None else None
        prog = ClipProgress(node, clips=1, steps=100)

        def progress(done, total):
            prog.step(0, int(100 * done / max(1, total)))

        from hallo_core.audio import embed_audio, load_separator

        # the onnxruntime separator session lives only for this call
        separator = load_separator(audio_models.separator_path) if audio_models.separator_path else None
        try:
            feats = embed_audio({"waveform": wav.unsqueeze(0), "sample_rate": sr}, audio_models.wav2vec,
                                separator=separator, segment_seconds=60.0 if segment_60s else None,
                                progress=progress, interrupt=C.interrupted)
        finally:
            del separator
        feats.features = feats.features.to(C.out_device())
        fitted = convert.fit_audio_to_frames(audio, feats.num_frames, fps)
        return io.NodeOutput(feats, int(feats.num_frames), fitted, float(fps))


NODES = [HalloAudioEmbeds]
