"""The one option schema: every setting a user can give, with its range, default, help and tooltip.

Both hosts are generated from this table: the CLI's argparse options (``hallo_core.cli``), the
nodes' widgets (``nodes/options.py``) and the checks of both (:func:`check_options`). A value is
therefore refused by the CLI exactly when a node refuses it, with the same words; only the
name of the input differs (``--pose-weight`` there, ``pose_weight`` here), and each host turns
the option's key into its own name (:class:`hallo_core.errors.UserError`). docs/errors.md lists
the table.

Ranges refuse what the math cannot mean (no steps, a negative guidance, a drop rate outside
0..1, a size off the UNet's 64-pixel grid) and otherwise leave room: a value a user may want
to try is not refused because it is unusual.

Pure Python: the CLI reads it to print ``--help`` without importing torch.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Mapping, Optional, Sequence, Tuple

from .errors import UserError
from .face.defaults import DEFAULT_FEATHER, DEFAULT_MARGIN, DEFAULT_MAX_SIDE, DETECTORS
from .pipeline.full_frame import FRAME_MODES
from .pipeline.scheduler import SCHEDULER_NAMES
from .upscale.windows import SCALES

CLI, NODE = "cli", "node"
BOTH: FrozenSet[str] = frozenset((CLI, NODE))


@dataclass(frozen=True)
class Spec:
    """One option.

    ``kind``: int, float, bool or str (a choice among ``choices``). ``lo``/``hi`` are inclusive;
    ``multiple`` is enforced (sizes), ``step`` only moves a widget. ``hosts``: where it is shown.
    ``flags``: the CLI spellings (default ``--`` + the key with dashes), ``aliases`` hidden extra
    ones; ``value_aliases``: hidden extra names of choices, (old, choice) pairs the CLI accepts
    and reads as the choice; ``node``: the widget's name (default the key). ``unset``: the value that means "not
    given" (``face`` -1 = the largest face, ``cfg_steps`` 0 = guidance on every step).
    """

    key: str
    kind: type
    default: Any
    help: str
    tooltip: str = ""
    lo: Optional[float] = None
    hi: Optional[float] = None
    multiple: int = 1
    step: Optional[float] = None
    round: Optional[float] = None
    choices: Tuple[Any, ...] = ()
    hosts: FrozenSet[str] = BOTH
    flags: Tuple[str, ...] = ()
    aliases: Tuple[str, ...] = ()
    value_aliases: Tuple[Tuple[str, str], ...] = ()
    node: str = ""
    hint: str = ""
    unset: Any = None

    @property
    def cli_flags(self) -> Tuple[str, ...]:
        return self.flags or ("--" + self.key.replace("_", "-"),)

    @property
    def cli_name(self) -> str:
        """The long spelling (what error lines name)."""
        return next(f for f in reversed(self.cli_flags) if f.startswith("--"))

    @property
    def node_name(self) -> str:
        return self.node or self.key

    @property
    def numeric(self) -> bool:
        return self.kind in (int, float) and not self.choices

    @property
    def accepts(self) -> str:
        """The values it takes, in words (docs/errors.md lists them)."""
        if self.kind is bool:
            return "on / off"
        if self.choices:
            return ", ".join(str(c) for c in self.choices)
        return f"{_fmt(self.lo)} to {_fmt(self.hi)}" + (f", a multiple of {self.multiple}" if self.multiple > 1 else "")

    def describe(self) -> str:
        """What the option accepts, as the fix of an error line."""
        if not self.numeric:
            return "give one of " + ", ".join(str(c) for c in self.choices) if self.choices else ""
        what = "a whole number" if self.kind is int else "a number"
        mult = f", a multiple of {self.multiple}" if self.multiple > 1 else ""
        return (f"give {what} from {_fmt(self.lo)} to {_fmt(self.hi)}{mult} (default {_fmt(self.default)})"
                + (f"; {self.hint}" if self.hint else ""))


def _fmt(v) -> str:
    if isinstance(v, int):
        return str(v)
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _specs(*specs: Spec) -> Dict[str, Spec]:
    return {s.key: s for s in specs}


_WEIGHT = "Strength of the audio-driven {} ({} mask branch); 0 switches the branch off, 1 is upstream's."

SAMPLING = _specs(
    Spec("seed", int, 42, "same seed + inputs + device = same video", lo=0, hi=2**64 - 1,
         tooltip="Noise seed. The same seed, inputs and device give the same video."),
    Spec("steps", int, 40, "denoising steps per clip", lo=1, hi=1000, hint="each clip is denoised this many times",
         tooltip="Denoising steps per clip (upstream 40 with DDIM)."),
    Spec("cfg", float, 3.5, "classifier-free guidance scale", lo=0.0, hi=50.0, step=0.1, round=0.01,
         hint="1 turns guidance off", tooltip="Classifier-free guidance scale (upstream 3.5); 1 turns guidance off."),
    Spec("pose_weight", float, 1.0, "audio-driven head motion", lo=0.0, hi=10.0, step=0.05,
         tooltip=_WEIGHT.format("head pose", "background / pose")),
    Spec("face_weight", float, 1.0, "audio-driven expression", lo=0.0, hi=10.0, step=0.05,
         tooltip=_WEIGHT.format("facial expression", "face")),
    Spec("lip_weight", float, 1.0, "audio-driven lip motion", lo=0.0, hi=10.0, step=0.05,
         tooltip=_WEIGHT.format("lip motion", "lip")),
    Spec("scheduler", str, "ddim", "ddim is faithful; the others are a fast mode (not bit-faithful)",
         choices=SCHEDULER_NAMES,
         tooltip="ddim reproduces upstream (faithful). dpmpp / unipc / euler are a fast mode for 10-25 steps: "
                 "quicker previews, not identical to upstream."),
    Spec("cfg_steps", int, 0, "fast mode: CFG only on the first N steps (0 = on every step, as upstream)",
         lo=0, hi=1000, unset=0, hint="at most {=steps}; 0 = guidance on every step",
         tooltip="Fast mode: classifier-free guidance on the first N steps only, later steps run the conditional "
                 "branch alone (about half the work per step). 0 = CFG on every step, as upstream (faithful)."),
    Spec("mask_rate", float, 0.25, "Hallo2 drop rate of the motion frames (0 = plain Hallo chaining)",
         lo=0.0, hi=1.0, step=0.05,
         tooltip="Share of motion-frame pixels dropped outside the face box (Hallo2 0.25). 0 = plain Hallo "
                 "chaining; 1 keeps only the face box."),
    Spec("fast", bool, True, "", hosts=frozenset((NODE,)),
         tooltip="Faithful-fast path: work upstream repeats every clip (portrait's ReferenceNet pass, face "
                 "locator) is done once, and the Reference node's features are reused. Same frames up to float "
                 "rounding. Off = upstream's plain per-clip structure (slower; for checking)."),
    Spec("low_vram", bool, False, "", hosts=frozenset((NODE,)),
         tooltip="Lower peak memory: ReferenceNet kept off the GPU between its passes and the VAE decodes one "
                 "frame at a time with sliced attention. Same frames, slower."),
)

FACE = _specs(
    Spec("size", int, 512, "square working size (multiple of 64)", lo=64, hi=2048, multiple=64, step=64,
         tooltip="Working resolution (square, multiple of 64). Hallo is trained at 512."),
    Spec("face", int, -1, "which face to animate, counted left to right from 0; -1 = the largest", lo=-1, hi=999,
         node="face_index", unset=-1, hint="-1 takes the largest face, 0 the leftmost",
         tooltip="Which face to animate: -1 the largest; 0 the leftmost, 1 the next to its right, and so on. The "
                 "faces_preview output shows the numbers."),
    Spec("frame", str, "auto",
         "auto: a square photo the face fills is animated whole (upstream's path), any other is cropped around "
         f"the face and pasted back; {FRAME_MODES[1]}: the square crop video; stretch: squash the whole photo into "
         "the square (upstream)", choices=FRAME_MODES, node="mode",
         tooltip="auto: a square portrait the face fills goes in whole (upstream's path); any other photo is "
                 f"cropped around the chosen face. {FRAME_MODES[1]}: always the square crop around the face. "
                 "stretch: squash the whole image into a square (upstream; distorts non-square photos).",
         value_aliases=(("square", FRAME_MODES[1]),)),
    Spec("margin", float, DEFAULT_MARGIN, "crop margin per side, x the face's size", lo=0.0, hi=4.0, step=0.05,
         hint="the crop grows the face box by this share of its side on every side",
         tooltip="Crop modes: the square crop grows the face box by this share of its side on every side (0.75: "
                 "the face spans 40% of the crop, as in Hallo's training data)."),
    Spec("max_side", int, DEFAULT_MAX_SIDE, "cap on the pasted-back video's long side", lo=64, hi=8192, step=2,
         hint="the long side of the output, rounded to even",
         tooltip="Longest side of the output; smaller photos keep their size. Sizes are rounded to even numbers "
                 "(H.264)."),
    Spec("detector", str, "auto", "face finder: auto = SCRFD when face_analysis/ has it, else mediapipe",
         choices=DETECTORS, hosts=frozenset((CLI,))),
    Spec("no_face", str, "error",
         "a picture without a usable face: refuse it, or animate it as upstream does (zero identity, the whole "
         "picture as the face region)", choices=("error", "fallback"),
         tooltip="No face found: stop with an error, or go on like upstream (zero identity embedding, whole image "
                 "as the face box; results will be poor)."),
    Spec("face_expand_ratio", float, 1.2, "", lo=1.0, hi=4.0, step=0.05, hosts=frozenset((NODE,)),
         tooltip="How far the face box extends beyond the face outline (upstream 1.2)."),
    Spec("feather", float, DEFAULT_FEATHER, "", lo=0.0, hi=0.5, step=0.01, hosts=frozenset((NODE,)),
         hint="share of the crop's side blended at its edge",
         tooltip="Width of the blend at the crop's edge, as a share of its side; edges on the photo's border are "
                 "not blended."),
    Spec("fps", float, 25.0, "", lo=1.0, hi=240.0, step=1.0, hosts=frozenset((NODE,)),
         tooltip="Frame rate of IMAGE frames (a VIDEO brings its own)."),
)

AUDIO = _specs(
    Spec("audio_features", str, "auto",
         "storage of the audio features: auto = float32 up to 10 min, float16 beyond (an hour is 3.3 GB as "
         "float32)", choices=("auto", "float32", "float16"), hosts=frozenset((CLI,))),
    Spec("no_separator", bool, False,
         "skip vocal separation (also skipped, with a warning, when audio_separator/ has no model)",
         hosts=frozenset((CLI,))),
)

UPSCALE = _specs(
    Spec("upscale", int, 2, "output scale: x2 by the network, the rest Lanczos (upstream)", choices=SCALES,
         flags=("-s", "--upscale"), node="scale",
         tooltip="Output size factor: x2 by the neural model, the rest Lanczos (upstream)."),
    Spec("fidelity_weight", float, 0.5, "CodeFormer fidelity w: 0 = codebook (sharper), 1 = closest to the input",
         lo=0.0, hi=1.0, step=0.05, flags=("-w", "--fidelity-weight"), aliases=("--fidelity_weight",), node="fidelity",
         tooltip="CodeFormer fidelity w: 0 = codebook (sharper, less faithful), 1 = closest to the input face."),
    Spec("smooth_landmarks", float, 0.0, "temporal smoothing of the face landmarks against jitter; 0 = off (upstream)",
         lo=0.0, hi=0.95, step=0.05, aliases=("--smooth_landmarks",), node="landmark_smoothing",
         tooltip="Temporal smoothing of face landmarks against jitter; 0 = off (upstream)."),
    Spec("bg_tile", int, 400, "RealESRGAN tile size (0 = no tiling)", lo=0, hi=8192, aliases=("--bg_tile",),
         hint="0 = no tiling", hosts=frozenset((CLI,))),
    Spec("qp", int, 20, "x264 quantiser: lower is better and larger (20 = the pack's one mp4 quality)", lo=0, hi=51,
         aliases=("--crf",), hosts=frozenset((CLI,))),  # --crf: the same 0..51 scale as x264's CRF
)

OPTIONS: Dict[str, Spec] = {**SAMPLING, **FACE, **AUDIO, **UPSCALE}


def spec(key: str) -> Spec:
    return OPTIONS[key]


def node_value(key: str, value: Any) -> Any:
    """A widget's value in the engine's type (a combo of numbers holds their text)."""
    s = OPTIONS[key]
    if s.choices and s.kind is not str and value is not None:
        try:
            return s.kind(value)
        except (TypeError, ValueError):
            return value  # refused as not one of the choices
    return value


def unset_to_none(key: str, value: Any) -> Any:
    """None where ``value`` is the option's "not given" value (``face`` -1, ``cfg_steps`` 0)."""
    s = OPTIONS[key]
    return None if value is None or (s.unset is not None and value == s.unset) else value


def check_option(key: str, value: Any, table: Mapping[str, Spec] = OPTIONS) -> Any:
    """``value`` in the option's type when the option accepts it, else a UserError keyed by the option."""
    s = table[key]
    if not s.numeric:
        if s.kind is bool:
            if not isinstance(value, bool):
                raise UserError(f"{{={key}}} is {value!r}, not true or false", key, "give true or false")
            return value
        value = node_value(key, value)
        if value not in s.choices:
            raise UserError(f"{{={key}}} is {value!r}, not one of its choices", key, s.describe())
        return value
    if value is None:
        if s.unset is not None:  # the option's "not given"
            return None
        raise UserError(f"{{={key}}} has no value", key, s.describe())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's numbers are Real too
        raise UserError(f"{{={key}}} is {value!r}, not a number", key, s.describe())
    f = float(value)
    if not math.isfinite(f):
        raise UserError(f"{{={key}}} is {value}, not a finite number", key, s.describe())
    if s.kind is int and not isinstance(value, numbers.Integral) and not f.is_integer():
        raise UserError(f"{{={key}}} is {value}, not a whole number", key, s.describe())
    v = int(value) if s.kind is int else f
    if not s.lo <= v <= s.hi or (s.multiple > 1 and v % s.multiple):
        raise UserError(f"{{={key}}} is {_fmt(v)}, outside the range it accepts", key, s.describe())
    return v


def check_options(values: Mapping[str, Any], table: Mapping[str, Spec] = OPTIONS) -> dict:
    """Check every known option in ``values`` (others are left alone); returns the checked values.

    Also the relations between options: ``cfg_steps`` may not exceed ``steps``.
    """
    out = dict(values)
    for key, v in values.items():
        if key in table:
            out[key] = check_option(key, v, table)
    cfg_steps, steps = unset_to_none("cfg_steps", out.get("cfg_steps")), out.get("steps")
    if cfg_steps is not None and steps is not None and cfg_steps > steps:
        raise UserError(f"{{=cfg_steps}} is {cfg_steps}, more than the {steps} steps", "cfg_steps",
                        "give at most {=steps}, or 0 for guidance on every step")
    return out


def for_host(host: str, keys: Sequence[str]) -> Tuple[Spec, ...]:
    """The specs of ``keys`` that ``host`` shows, in that order."""
    return tuple(OPTIONS[k] for k in keys if host in OPTIONS[k].hosts)


__all__ = ["Spec", "CLI", "NODE", "SAMPLING", "FACE", "AUDIO", "UPSCALE", "OPTIONS", "spec", "node_value",
           "unset_to_none", "check_option", "check_options", "for_host"]
