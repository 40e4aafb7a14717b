"""Streaming video file I/O for the upscaler (PyAV): frames in, H.264 out, audio copied.

Upstream pipes frames through the ffmpeg binary, writes every frame as PNG and re-reads
them; here frames go straight from the decoder to the encoder, one window at a time, and
the original audio packets are re-muxed unchanged (as upstream's ``acodec copy``), or
re-encoded to AAC when MP4 cannot carry the source codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import av
import numpy as np

# Audio codecs an .mp4 can hold as they are; anything else is transcoded to AAC.
MP4_AUDIO_COPY = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: Optional[int]  # container's frame count (may be None / approximate)
    has_audio: bool


def probe(path: Union[str, Path]) -> VideoInfo:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        fps = v.average_rate or v.guessed_rate or Fraction(25)
        return VideoInfo(v.codec_context.width, v.codec_context.height, Fraction(fps),
                         int(v.frames) or None, bool(c.streams.audio))


def read_frames_bgr(path: Union[str, Path]) -> Iterator[np.ndarray]:
    """Decode the first video stream lazily as BGR uint8 ``[H, W, 3]`` frames."""
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            yield frame.to_ndarray(format="bgr24")


class _AudioCopier:
    """Feeds the source's audio into the output up to a given time (keeps the mux interleaved)."""

    def __init__(self, src_path: str, out: av.container.OutputContainer):
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

    def _time(self, item) -> float:
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
        self.feed_until(None)
        if not self.copy:
            for pkt in self.ost.encode(None):
                self.out.mux(pkt)
        self.src.close()


def write_video(
    path: Union[str, Path],
    frames: Iterable[np.ndarray],
    fps: Fraction,
    audio_from: Optional[Union[str, Path]] = None,
    crf: int = 18,
    preset: str = "medium",
) -> int:
    """Encode BGR uint8 frames to H.264 yuv420p ``path`` (even size enforced by the codec),
    copying the audio of ``audio_from`` if it has any. Returns the number of frames written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fps = Fraction(fps).limit_denominator(100000)
    n = 0
    with av.open(str(path), "w") as out:
        vs = None
        audio = None
        has_audio = False
        if audio_from is not None:
            with av.open(str(audio_from)) as probe_c:
                has_audio = bool(probe_c.streams.audio)
        try:
            for img in frames:
                if vs is None:
                    vs = out.add_stream("libx264", rate=fps)
                    vs.height, vs.width = img.shape[0] & ~1, img.shape[1] & ~1
                    vs.pix_fmt = "yuv420p"
                    vs.options = {"crf": str(crf), "preset": preset}
                    if has_audio:  # added after the video stream, before anything is muxed
                        audio = _AudioCopier(str(audio_from), out)
                img = img[: vs.height, : vs.width]
                # handed over as rgb24: swscale's bgr24 -> yuv420p path darkens every colour by about
                # 2 levels, the rgb24 one by about 1 (what the pack's own mp4 writer gets)
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:, :, ::-1]), format="rgb24")
                vf.pts = n
                vf.time_base = 1 / fps
                for pkt in vs.encode(vf):
                    out.mux(pkt)
                n += 1
                if audio is not None:
                    audio.feed_until(float(n / fps))
            if vs is not None:
                for pkt in vs.encode(None):
                    out.mux(pkt)
        finally:
            if audio is not None:
                audio.close()
    return n
