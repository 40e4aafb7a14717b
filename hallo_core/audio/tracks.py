"""Several voices for one video: one channel of a file, every track the same length, one mix.

A multi-speaker video is as long as its longest track; each shorter track is padded with
silence (zeros appended at its own rate), so every face has audio for every frame and a
speaker who has finished is animated on silence, as a listener. The soundtrack is the sum
of the tracks, scaled down as a whole only when the sum would clip.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .loading import load_audio_file, resample, to_mono

Track = Tuple[np.ndarray, int]  # (float32 [C, N], sample rate)


class ChannelError(ValueError):
    """A ``#CHANNEL`` that the file does not have."""

    def __init__(self, path, channel: int, channels: int):
        self.path, self.channel, self.channels = path, channel, channels
        have = "1 channel (#0)" if channels == 1 else f"{channels} channels (#0 to #{channels - 1})"
        super().__init__(f"{os.fspath(path)} has {have}; there is no channel #{channel}")


def load_track(path: Union[str, os.PathLike], channel: Optional[int] = None) -> Track:
    """The file decoded at its own rate, all channels or only ``channel`` (as [1, N])."""
    wave, sr = load_audio_file(path)
    if channel is not None:
        if not 0 <= channel < wave.shape[0]:
            raise ChannelError(path, channel, wave.shape[0])
        wave = np.ascontiguousarray(wave[channel : channel + 1])
    return wave, int(sr)


def common_rate(tracks: Sequence[Track]) -> int:
    return max(int(sr) for _, sr in tracks)


def pad_tracks(tracks: Sequence[Track]) -> List[Track]:
    """Every track as long as the longest, padded at its end with zeros.

    Tracks of one sample rate (the usual case, and always for the channels of one file) are
    padded as they are, so each equals its file with silence appended. Tracks of different
    rates are first brought to the highest one, so that equal lengths mean equal durations.
    """
    if not tracks:
        return []
    rate = common_rate(tracks)
    if any(int(sr) != rate for _, sr in tracks):
        tracks = [(resample(w, sr, rate), rate) for w, sr in tracks]
    n = max(w.shape[1] for w, _ in tracks)
    out = []
    for w, sr in tracks:
        w = np.asarray(w, dtype=np.float32)
        if w.shape[1] < n:
            w = np.concatenate([w, np.zeros((w.shape[0], n - w.shape[1]), np.float32)], axis=1)
        out.append((np.ascontiguousarray(w), int(sr)))
    return out


def mix_tracks(tracks: Sequence[Track]) -> Track:
    """The mono sum of padded tracks of one rate, scaled down as a whole when it would clip.

    Each track goes to mono as the audio front end takes it (:func:`to_mono`). The sum is kept
    as it is while its peak stays within [-1, 1]: two people who take turns are mixed at their
    own levels; only where voices overlap loudly enough to clip is the whole mix made quieter.
    """
    if not tracks:
        raise ValueError("no track to mix")
    rates = {int(sr) for _, sr in tracks}
    lengths = {w.shape[1] for w, _ in tracks}
    if len(rates) != 1 or len(lengths) != 1:
        raise ValueError("mix_tracks takes tracks of one rate and length (pad_tracks gives them)")
    mix = np.zeros(lengths.pop(), np.float64)
    for w, _ in tracks:
        mix += to_mono(w).astype(np.float64)
    peak = float(np.abs(mix).max()) if mix.size else 0.0
    if peak > 1.0:
        mix /= peak
    return np.ascontiguousarray(mix.astype(np.float32)[None]), rates.pop()
