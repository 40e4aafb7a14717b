"""The pack's video files: frame sinks, the one mp4 writer and the one reader.

Pixels cross this boundary as RGB uint8 ``[H, W, 3]`` (the sinks also take the sampler's float
``[n, 3, H, W]`` in [0, 1] and round it half up once).

``MemorySink`` keeps an IMAGE batch for short videos (uint8 by default: 4x less RAM than
float32; ``images()`` returns ComfyUI's float [N, H, W, 3] in [0, 1]). ``ImageSink`` keeps the
unquantized float frames, preallocated, for outputs that may be continued exactly.

``Mp4Sink`` is the only H.264 (yuv420p) + AAC encoder. Streamed (the generate loop), it writes
a fragmented MP4 (``frag_keyframe+empty_moov``): every clip starts a new GOP, the encoder runs
without lookahead and the muxer flushes every packet, so after a kill the file on disk is
playable up to the clip before the one in flight: a clip's fragment is cut when the next
clip's keyframe arrives (``committed_frames`` tells how far that is). Resuming re-muxes the
committed packets of the partial file unchanged and continues encoding. :func:`write_video`
uses it for whole files (upscaled, pasted back), which appear under their name only once
complete; their audio is the waveform given or the source file's track copied unchanged.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import av
import numpy as np
import torch

# One quality for every mp4 the pack writes. A constant quantiser rather than CRF: CRF's rate
# control carries the complexity of earlier frames into each frame's quantiser, so a run resumed
# with a fresh encoder would encode the rest of the video differently from an uninterrupted one;
# with a fixed QP each frame's bits depend only on its own clip. 20 keeps skin and teeth free of
# visible blocking at the working size and above.
DEFAULT_QP = 20
AAC_FRAME = 1024  # samples per AAC packet
# Audio codecs an .mp4 can hold as they are; anything else is transcoded to AAC.
MP4_AUDIO_COPY = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}
MUX_MAX_CHANNELS = 6
# every channel the user gave is muxed (before, only the first two were: 5.1 lost its dialogue)
_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1"}


def to_uint8_hwc(frames: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] float in [0, 1] -> [N, H, W, 3] uint8 (round half up, like upstream's x255 + clip)."""
    x = frames.detach().float().clamp(0, 1).mul(255).add(0.5).floor().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu()


def frames_to_uint8(frames) -> np.ndarray:
    """Frames as the pack meets them -> [n, H, W, 3] uint8 RGB, the one layout at file and host boundaries.

    Takes [n, 3, H, W] (the sampler's layout), [n, H, W, C] or [H, W, C] (IMAGE layout; C = 4 drops
    alpha, C = 1 is grey), torch or numpy, float in [0, 1] or uint8. Floats round half up, as the
    sinks do, so converting then encoding equals encoding the floats.
    """
    if isinstance(frames, torch.Tensor):
        x = frames.detach()
        if x.dtype != torch.uint8:
            x = x.float().clamp(0, 1).mul(255).add(0.5).floor().to(torch.uint8)
        arr = x.cpu().numpy()
    else:
        arr = np.asarray(frames)
        if arr.dtype != np.uint8:
            arr = np.floor(np.clip(arr.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[1] == 3 and arr.shape[-1] not in (1, 3, 4):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    elif arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


class FrameSink:
    """Receives finished frames in order. ``open`` is told how many frames already exist."""

    def open(self, width: int, height: int, fps: int, start_frame: int = 0) -> None:
        pass

    def write(self, frames: torch.Tensor) -> None:
        """frames: [n, 3, H, W] float in [0, 1] (any device)."""
        raise NotImplementedError

    def write_rgb(self, rgb: np.ndarray) -> None:
        """[n, H, W, 3] uint8 RGB frames (a paste-back's); a float sink gets them as x / 255."""
        self.write(torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float().div_(255.0))

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

    def write_rgb(self, rgb):
        if self.dtype != torch.uint8:
            return super().write_rgb(rgb)
        self.chunks.append(torch.from_numpy(np.array(rgb, dtype=np.uint8)))

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



class NoFramesError(ValueError):
    """:func:`write_video` got no frames: there is no video to write."""


class _AudioCopier:
    """Feeds a media file's audio track into the output up to a given time (keeps the mux interleaved).

    Packets are re-muxed unchanged when MP4 can carry the codec, else decoded and encoded to AAC.
    """

    def __init__(self, src_path: str, out) -> None:
        self.src = av.open(src_path)
        ain = self.src.streams.audio[0]
        self.copy = ain.codec_context.name in MP4_AUDIO_COPY
        if self.copy:
            self.ost = out.add_stream_from_template(ain)
            self.packets = self.src.demux(ain)
        else:
            self.ost = out.add_stream("aac", rate=ain.codec_context.sample_rate)
            self.ost.layout = ain.codec_context.layout.name
            self.resampler = av.AudioResampler(format="fltp", layout=self.ost.layout.name,
                                               rate=ain.codec_context.sample_rate)
            self.packets = self.src.decode(ain)
        self.out = out
        self.pending = None
        self.done = False

    @staticmethod
    def _time(item) -> float:
        if item.pts is None or item.time_base is None:
            return 0.0
        return float(item.pts * item.time_base)

    def _emit(self, item) -> None:
        if self.copy:
            if item.dts is None:  # demuxer flush packet
                return
            item.stream = self.ost
            self.out.mux(item)
        else:
            for f in self.resampler.resample(item):
                for pkt in self.ost.encode(f):
                    self.out.mux(pkt)

    def feed_until(self, t: Optional[float]) -> None:
        """Mux source audio with timestamps < ``t`` seconds (None: everything left)."""
        while not self.done:
            if self.pending is None:
                try:
                    self.pending = next(self.packets)
                except StopIteration:
                    self.done = True
                    break
            if t is not None and self._time(self.pending) >= t:
                return
            self._emit(self.pending)
            self.pending = None

    def close(self) -> None:
        try:
            self.feed_until(None)
            if not self.copy:
                for pkt in self.ost.encode(None):
                    self.out.mux(pkt)
        finally:
            self.src.close()


def _has_audio(path) -> bool:
    with av.open(str(path)) as c:
        return bool(c.streams.audio)


class Mp4Sink(FrameSink):
    """The H.264 + AAC writer: streamed (fragmented MP4, resumable at a clip boundary) or whole-file.

    Args:
        path: the mp4 to write.
        waveform, sample_rate: audio to encode to AAC, [C, N] (or a ``FileWaveform``), cut at the
            last frame.
        qp: x264's constant quantiser (:data:`DEFAULT_QP`).
        audio_from: a media file whose audio track is copied instead (all of it), e.g. the video
            being upscaled. Not with ``waveform`` and not resumable.
        streaming: True: each ``write`` is a clip that starts a new GOP, no lookahead, a fragment
            flushed per clip. False: the encoder's own GOPs and B-frames, a plain MP4 (for a file
            that is renamed into place once complete, see :func:`write_video`).
    """

    def __init__(self, path: Union[str, Path], waveform=None, sample_rate: int = 16000,
                 qp: int = DEFAULT_QP, preset: str = "medium", audio_bitrate: int = 128000, *,
                 audio_from: Union[str, Path, None] = None, streaming: bool = True):
        if waveform is not None and audio_from is not None:
            raise ValueError("give the audio as a waveform or as a file to copy it from, not both")
        self.path = Path(path)
        self.audio = None if waveform is None else _as_channels_first(waveform)
        self.audio_from = None if audio_from is None or not _has_audio(audio_from) else str(audio_from)
        self.sample_rate = int(sample_rate)
        self.qp, self.preset, self.audio_bitrate = qp, preset, audio_bitrate
        self.streaming = bool(streaming)
        self.container = None
        self._copier = None
        self._frames = 0
        self._committed = 0
        self._audio_pos = 0  # next sample to encode

    # -- opening ---------------------------------------------------------------------
    def _video_options(self) -> dict:
        if not self.streaming:
            return {"qp": str(self.qp), "preset": self.preset}
        # No lookahead/B-frames: a frame's packet leaves the encoder at once, so a clip is on
        # disk as soon as the next one starts. Keyframes only where a clip starts.
        return {"qp": str(self.qp), "preset": self.preset, "tune": "zerolatency", "forced-idr": "1",
                "x264-params": "scenecut=0:keyint=100000:min-keyint=1"}

    def _new_container(self):
        if not self.streaming:
            return av.open(str(self.path), "w", format="mp4")
        # make_non_negative: with the default, the shift for the AAC priming is decided only when
        # the first audio packet arrives, after video frame 0 is on disk, so frames 1.. came out
        # 23 ms late (frame 0 lasted 63 ms and the average rate read 24.5 fps).
        return av.open(str(self.path), "w", format="mp4", options={
            "movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1",
            "avoid_negative_ts": "make_non_negative"})

    def open(self, width, height, fps, start_frame=0):
        self.fps = Fraction(fps).limit_denominator(100000)
        self.width, self.height = width, height
        self._frames = self._committed = self._audio_pos = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if start_frame > 0:
            if self.audio_from is not None or not self.streaming:
                raise ValueError("only a streamed mp4 with a waveform (or no audio) can be resumed")
            self._open_resume(start_frame)
            return
        self.container = self._new_container()
        self.vstream = self.container.add_stream("libx264", rate=self.fps)
        self.vstream.width, self.vstream.height = width, height
        self.vstream.pix_fmt = "yuv420p"
        self.vstream.time_base = 1 / self.fps
        self.vstream.options = self._video_options()
        self._venc = self.vstream.codec_context
        self.astream = self._aenc = None
        if self.audio is not None:
            self.astream = self.container.add_stream("aac", rate=self.sample_rate)
            self.astream.layout = _layout(self.audio.shape[0])
            self.astream.bit_rate = self.audio_bitrate
            self.astream.time_base = Fraction(1, self.sample_rate)
            self._aenc = self.astream.codec_context
        elif self.audio_from is not None:  # added after the video stream, before anything is muxed
            self._copier = _AudioCopier(self.audio_from, self.container)

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
        venc.time_base, venc.framerate = 1 / self.fps, self.fps
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
        cut_samples = int(start_frame * self.sample_rate / self.fps)
        n_video = n_audio = 0
        for pkt in src.demux([vin] + ([ain] if ain is not None else [])):
            if pkt.dts is None or pkt.size == 0:
                continue
            if pkt.stream is vin:
                if n_video >= start_frame:
                    continue
                pkt.stream = self.vstream
                pkt.time_base = 1 / self.fps
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
        self.write_rgb(to_uint8_hwc(frames).numpy())

    def write_rgb(self, rgb) -> None:
        """[n, H, W, 3] uint8 RGB frames; streamed, they are one clip (the first is a keyframe)."""
        # the previous clip's fragment is cut when this clip's first (key)frame is muxed
        self._committed = self._frames
        for i, img in enumerate(rgb):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts = self._frames
            vf.time_base = 1 / self.fps
            if i == 0 and self.streaming:
                vf.pict_type = av.video.frame.PictureType.I
            self._mux(self._venc.encode(vf), self.vstream)
            self._frames += 1
        if self._copier is not None:
            self._copier.feed_until(float(self._frames / self.fps))
        self._write_audio_until(self._frames / self.fps)

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
        try:
            self._mux(self._venc.encode(None), self.vstream)
            if self.astream is not None:
                # the audio may be a little longer than the frames; stop at the last frame
                end = min(int(self._frames / self.fps * self.sample_rate), self.audio.shape[1])
                while self._audio_pos < end:
                    self._encode_audio(self._audio_pos, min(self._audio_pos + AAC_FRAME, end))
                self._mux(self._aenc.encode(None), self.astream)
            if self._copier is not None:
                self._copier.close()
        finally:
            self._copier = None
            self.container.close()
            self.container = None
        self._committed = self._frames


def write_video(path: Union[str, Path], frames: Iterable, fps, *, audio_from: Union[str, Path, None] = None,
                waveform=None, sample_rate: int = 16000, qp: int = DEFAULT_QP) -> int:
    """Encode RGB uint8 ``[H, W, 3]`` frames (an iterable, consumed lazily) into the mp4 ``path``.

    The file is written under a temporary name and renamed to ``path`` only once complete, so an
    interrupted run leaves any earlier file there as it was. Odd sides are cut by one pixel
    (yuv420p). Audio: ``waveform`` at ``sample_rate``, or the track of ``audio_from`` copied.
    Returns the number of frames; raises :class:`NoFramesError` when there are none.
    """
    from .atomic import atomic_output

    n = 0
    with atomic_output(path) as tmp:
        sink = Mp4Sink(tmp, waveform, sample_rate, qp=qp, audio_from=audio_from, streaming=False)
        try:
            for img in frames:
                img = np.asarray(img)
                if n == 0:
                    h, w = img.shape[0] & ~1, img.shape[1] & ~1
                    sink.open(w, h, fps)
                sink.write_rgb(img[None, :h, :w])
                n += 1
            if n == 0:
                raise NoFramesError(f"no frames to write to {path}")
        finally:
            sink.close()
    return n


# -- reading ---------------------------------------------------------------------------

@dataclass
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: Optional[int]  # the container's frame count (may be None or approximate)
    has_audio: bool


def probe(path: Union[str, Path]) -> VideoInfo:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        fps = v.average_rate or v.guessed_rate or Fraction(25)
        return VideoInfo(v.codec_context.width, v.codec_context.height, Fraction(fps),
                         int(v.frames) or None, bool(c.streams.audio))


def read_frames(source) -> Iterator[np.ndarray]:
    """Decode the first video stream lazily as RGB uint8 ``[H, W, 3]`` frames.

    ``source``: a path or a file-like object PyAV opens.
    """
    src = str(source) if isinstance(source, (str, os.PathLike)) else source
    with av.open(src) as c:
        for frame in c.decode(c.streams.video[0]):
            yield frame.to_ndarray(format="rgb24")


def read_video(path: Union[str, Path]):
    """Decode a whole video: returns (frames uint8 [N, H, W, 3], fps, audio duration in s or None)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        fps = float(v.average_rate) if v.average_rate else None
        audio_dur = None
        if c.streams.audio:
            a = c.streams.audio[0]
            audio_dur = sum(f.samples for f in c.decode(a)) / a.rate
    frames = list(read_frames(path))
    arr = np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)
    return torch.from_numpy(arr), fps, audio_dur


def read_tail(source, n: int):
    """The last ``n`` frames of a video and its frame count, decoding with only ``n`` kept.

    ``source``: a path or a file-like object PyAV opens. Returns (uint8 [k, H, W, 3], count) with
    k = min(n, count). Every frame is decoded (a fragmented mp4 carries no reliable count), but
    memory stays at ``n`` frames for any length.
    """
    tail, count = deque(maxlen=max(1, int(n))), 0
    for frame in read_frames(source):
        tail.append(frame)
        count += 1
    arr = np.stack(list(tail)) if tail else np.zeros((0, 0, 0, 3), np.uint8)
    return torch.from_numpy(arr), count
