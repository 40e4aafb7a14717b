"""Frame sinks: where each finished clip goes, so host RAM stays flat for any video length.

``MemorySink`` keeps an IMAGE batch for short videos (uint8 by default: 4x less RAM than
float32; ``images()`` returns ComfyUI's float [N, H, W, 3] in [0, 1]). ``ImageSink`` keeps the
unquantized float frames, preallocated, for outputs that may be continued exactly.

``Mp4Sink`` writes H.264 (yuv420p) + AAC of the *original* audio with PyAV into a
fragmented MP4 (``frag_keyframe+empty_moov``). Every clip starts a new GOP, the encoder
runs without lookahead and the muxer flushes every packet, so after a kill the file on
disk is playable up to the clip before the one in flight: a clip's fragment is cut when
the next clip's keyframe arrives (``committed_frames`` tells how far that is). Resuming
re-muxes the committed packets of the partial file unchanged and continues encoding.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Union

import av
import numpy as np
import torch

AAC_FRAME = 1024  # samples per AAC packet
MUX_MAX_CHANNELS = 6
# every channel the user gave is muxed (before, only the first two were: 5.1 lost its dialogue)
_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1"}


def to_uint8_hwc(frames: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] float in [0, 1] -> [N, H, W, 3] uint8 (round half up, like upstream's x255 + clip)."""
    x = frames.detach().float().clamp(0, 1).mul(255).add(0.5).floor().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu()


class FrameSink:
    """Receives finished frames in order. ``open`` is told how many frames already exist."""

    def open(self, width: int, height: int, fps: int, start_frame: int = 0) -> None:
        pass

    def write(self, frames: torch.Tensor) -> None:
        """frames: [n, 3, H, W] float in [0, 1] (any device)."""
        raise NotImplementedError

    @property
    def committed_frames(self) -> int:
        """Frames that survive a kill right now (what a resume checkpoint may claim)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class MemorySink(FrameSink):
    """Collects frames on the CPU as uint8 [N, H, W, 3] (or float32 with ``dtype``)."""

    def __init__(self, dtype: torch.dtype = torch.uint8):
        self.dtype = dtype
        self.chunks: list = []
        self.start_frame = 0

    def open(self, width, height, fps, start_frame=0):
        self.chunks, self.start_frame = [], start_frame

    def write(self, frames):
        if self.dtype == torch.uint8:
            self.chunks.append(to_uint8_hwc(frames))
        else:
            self.chunks.append(frames.detach().to("cpu", self.dtype).permute(0, 2, 3, 1).contiguous())

    @property
    def committed_frames(self):
        return self.start_frame + sum(int(c.shape[0]) for c in self.chunks)

    def frames(self) -> torch.Tensor:
        """Everything written in this run, [N, H, W, 3] in the sink's dtype."""
        if not self.chunks:
            return torch.zeros(0, 0, 0, 3, dtype=self.dtype)
        return torch.cat(self.chunks)

    def images(self) -> torch.Tensor:
        """ComfyUI IMAGE: float32 [N, H, W, 3] in [0, 1]."""
        x = self.frames()
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


class ImageSink(FrameSink):
    """The decoded frames as ComfyUI's float IMAGE [N, H, W, 3], filled in place.

    Float, not uint8: the loop's motion frames are the decoded floats, so only an unquantized
    output can be continued exactly (``motion.motion_frames_from_images``). Allocated once for the
    known frame count, so the peak is the IMAGE itself (a float ``MemorySink`` would hold its
    chunks and their concatenation at once).
    """

    def __init__(self, num_frames: int):
        self.num_frames = int(num_frames)
        self.buffer = None
        self.filled = 0
        self.start_frame = 0

    def open(self, width, height, fps, start_frame=0):
        self.buffer = torch.zeros(self.num_frames, height, width, 3, dtype=torch.float32)
        self.filled, self.start_frame = 0, start_frame

    def write(self, frames):
        n = min(int(frames.shape[0]), self.num_frames - self.filled)
        self.buffer[self.filled:self.filled + n] = frames[:n].detach().to("cpu", torch.float32).permute(0, 2, 3, 1)
        self.filled += n

    @property
    def committed_frames(self):
        return self.start_frame + self.filled

    def images(self) -> torch.Tensor:
        if self.buffer is None:
            return torch.zeros(0, 0, 0, 3)
        return self.buffer[: self.filled]


def _as_channels_first(waveform) -> np.ndarray:
    from ..audio.loading import FileWaveform

    if isinstance(waveform, FileWaveform):
        return waveform  # [C <= 2, N], read on demand
    a = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    a = a.astype(np.float32, copy=False)
    if a.ndim == 1:
        a = a[None]
    if a.shape[0] > a.shape[1]:  # [N, C] -> [C, N]
        a = a.T
    if a.shape[0] > MUX_MAX_CHANNELS:  # beyond 5.1: one mono track, so no channel is dropped
        from ..audio.loading import to_mono

        a = to_mono(a)[None]
    return np.ascontiguousarray(a)


def _layout(channels: int) -> str:
    return _LAYOUTS[channels]


class Mp4Sink(FrameSink):
    """Streaming H.264 + AAC writer (fragmented MP4), resumable at a clip boundary."""

    def __init__(self, path: Union[str, Path], waveform=None, sample_rate: int = 16000,
                 qp: int = 20, preset: str = "medium", audio_bitrate: int = 128000):
        self.path = Path(path)
        self.audio = None if waveform is None else _as_channels_first(waveform)
        self.sample_rate = int(sample_rate)
        self.qp, self.preset, self.audio_bitrate = qp, preset, audio_bitrate
        self.container = None
        self._frames = 0
        self._committed = 0
        self._audio_pos = 0  # next sample to encode

    # -- opening ---------------------------------------------------------------------
    def _video_options(self) -> dict:
        # No lookahead/B-frames: a frame's packet leaves the encoder at once, so a clip is on
        # disk as soon as the next one starts. Keyframes only where a clip starts.
        return {"qp": str(self.qp), "preset": self.preset, "tune": "zerolatency", "forced-idr": "1",
                "x264-params": "scenecut=0:keyint=100000:min-keyint=1"}

    def _new_container(self):
        # make_non_negative: with the default, the shift for the AAC priming is decided only when
        # the first audio packet arrives, after video frame 0 is on disk, so frames 1.. came out
        # 23 ms late (frame 0 lasted 63 ms and the average rate read 24.5 fps).
        return av.open(str(self.path), "w", format="mp4", options={
            "movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1",
            "avoid_negative_ts": "make_non_negative"})

    def open(self, width, height, fps, start_frame=0):
        self.fps = int(fps)
        self.width, self.height = width, height
        self._frames = self._committed = self._audio_pos = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if start_frame > 0:
            self._open_resume(start_frame)
            return
        self.container = self._new_container()
        self.vstream = self.container.add_stream("libx264", rate=self.fps)
        self.vstream.width, self.vstream.height = width, height
        self.vstream.pix_fmt = "yuv420p"
        self.vstream.time_base = Fraction(1, self.fps)
        self.vstream.options = self._video_options()
        self._venc = self.vstream.codec_context
        self.astream = self._aenc = None
        if self.audio is not None:
            self.astream = self.container.add_stream("aac", rate=self.sample_rate)
            self.astream.layout = _layout(self.audio.shape[0])
            self.astream.bit_rate = self.audio_bitrate
            self.astream.time_base = Fraction(1, self.sample_rate)
            self._aenc = self.astream.codec_context

    def _open_resume(self, start_frame: int) -> None:
        """Continue a partial file: its committed packets are re-muxed unchanged into streams
        copied from it (PyAV drops foreign packets muxed into encoder-owned streams), and
        fresh standalone encoders with the same settings produce the rest."""
        if not self.path.is_file():
            raise FileNotFoundError(f"cannot resume: {self.path} is missing")
        partial = self.path.with_name(self.path.name + ".partial")
        os.replace(self.path, partial)
        try:
            with av.open(str(partial)) as src:
                self.container = self._new_container()
                vin = src.streams.video[0]
                ain = src.streams.audio[0] if (src.streams.audio and self.audio is not None) else None
                self.vstream = self.container.add_stream_from_template(vin)
                self.astream = self.container.add_stream_from_template(ain) if ain is not None else None
                self._copy_partial(src, vin, ain, start_frame)
        except Exception:
            if self.container is not None:
                self.container.close()
                self.container = None
            os.replace(partial, self.path)  # leave the partial video as it was
            raise
        partial.unlink()
        venc = av.CodecContext.create("libx264", "w")
        venc.width, venc.height, venc.pix_fmt = self.width, self.height, "yuv420p"
        venc.time_base, venc.framerate = Fraction(1, self.fps), self.fps
        venc.options = self._video_options()
        self._venc = venc
        self._aenc = None
        if self.astream is not None:
            aenc = av.CodecContext.create("aac", "w")
            aenc.sample_rate, aenc.bit_rate = self.sample_rate, self.audio_bitrate
            aenc.layout = _layout(self.audio.shape[0])
            aenc.format = "fltp"
            aenc.time_base = Fraction(1, self.sample_rate)
            self._aenc = aenc

    def _copy_partial(self, src, vin, ain, start_frame: int) -> None:
        """Re-mux the first ``start_frame`` video frames (and their audio) unchanged.

        Packets are counted, not timed (fragmented MP4 shifts timestamps by the AAC priming),
        and re-stamped: video i -> pts i; audio packet j -> pts (j - 1) * 1024 (AAC priming).
        The fresh AAC encoder restarts right after the copied audio, so a resume point may
        carry an audio seam of at most one AAC frame (64 ms at 16 kHz).
        """
        cut_samples = start_frame * self.sample_rate // self.fps
        n_video = n_audio = 0
        for pkt in src.demux([vin] + ([ain] if ain is not None else [])):
            if pkt.dts is None or pkt.size == 0:
                continue
            if pkt.stream is vin:
                if n_video >= start_frame:
                    continue
                pkt.stream = self.vstream
                pkt.time_base = Fraction(1, self.fps)
                pkt.pts = pkt.dts = n_video
                pkt.duration = 1
                n_video += 1
            else:
                if n_audio * AAC_FRAME > cut_samples:
                    continue
                pkt.stream = self.astream
                pkt.time_base = Fraction(1, self.sample_rate)
                pkt.pts = pkt.dts = (n_audio - 1) * AAC_FRAME
                pkt.duration = AAC_FRAME
                n_audio += 1
            self.container.mux(pkt)
        if n_video != start_frame:
            raise RuntimeError(f"cannot resume: the partial video holds {n_video} of the "
                               f"{start_frame} frames the checkpoint claims")
        self._frames = self._committed = start_frame
        self._audio_pos = n_audio * AAC_FRAME if ain is not None else 0

    # -- writing ---------------------------------------------------------------------
    def write(self, frames):
        rgb = to_uint8_hwc(frames).numpy()
        # the previous clip's fragment is cut when this clip's first (key)frame is muxed
        self._committed = self._frames
        for i, img in enumerate(rgb):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = self._frames
            vf.time_base = Fraction(1, self.fps)
            if i == 0:
                vf.pict_type = av.video.frame.PictureType.I
            self._mux(self._venc.encode(vf), self.vstream)
            self._frames += 1
        self._write_audio_until(Fraction(self._frames, self.fps))

    def _write_audio_until(self, t: Fraction) -> None:
        if self.astream is None:
            return
        end = min(int(t * self.sample_rate), self.audio.shape[1])
        block = AAC_FRAME
        while self._audio_pos + block <= end:
            self._encode_audio(self._audio_pos, self._audio_pos + block)

    def _encode_audio(self, a: int, b: int) -> None:
        chunk = self.audio[:, a:b]
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                        layout=self.astream.layout.name)
        af.sample_rate = self.sample_rate
        af.pts = a
        af.time_base = Fraction(1, self.sample_rate)
        self._mux(self._aenc.encode(af), self.astream)
        self._audio_pos = b

    def _mux(self, packets, stream) -> None:
        for pkt in packets:
            pkt.stream = stream
            self.container.mux(pkt)

    @property
    def committed_frames(self):
        return self._committed

    def close(self):
        if self.container is None:
            return
        self._mux(self._venc.encode(None), self.vstream)
        if self.astream is not None:
            # the audio may be a little longer than the frames; stop at the last frame
            end = min(int(Fraction(self._frames, self.fps) * self.sample_rate), self.audio.shape[1])
            while self._audio_pos < end:
                self._encode_audio(self._audio_pos, min(self._audio_pos + AAC_FRAME, end))
            self._mux(self._aenc.encode(None), self.astream)
        self.container.close()
        self.container = None
        self._committed = self._frames


def read_video(path: Union[str, Path]):
    """Decode an mp4: returns (frames uint8 [N, H, W, 3], fps, audio duration in s or None)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        fps = float(v.average_rate) if v.average_rate else None
    audio_dur = None
    with av.open(str(path)) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            n = sum(f.samples for f in c.decode(a))
            audio_dur = n / a.rate
    arr = np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)
    return torch.from_numpy(arr), fps, audio_dur



def read_tail(source, n: int):
    """The last ``n`` frames of a video and its frame count, decoding with only ``n`` kept.

    ``source``: a path or a file-like object PyAV opens. Returns (uint8 [k, H, W, 3], count) with
    k = min(n, count). Every frame is decoded (a fragmented mp4 carries no reliable count), but
    memory stays at ``n`` frames for any length.
    """
    from collections import deque

    tail, count = deque(maxlen=max(1, int(n))), 0
    src = str(source) if isinstance(source, Path) else source
    with av.open(src) as c:
        for frame in c.decode(c.streams.video[0]):
            tail.append(frame.to_ndarray(format="rgb24"))
            count += 1
    arr = np.stack(list(tail)) if tail else np.zeros((0, 0, 0, 3), np.uint8)
    return torch.from_numpy(arr), count
