"""``hallo convert``: a network checkpoint to fp16 (or another dtype) safetensors."""

from __future__ import annotations

from .common import dtype as _dtype, print_findings as _print_findings


def run(a) -> int:
    from ..media.atomic import atomic_output
    from ..io.checkpoints import convert_to_safetensors
    from .preflight import preflight_convert

    _print_findings(preflight_convert(a.src, a.dst))
    a.interrupt_note = f"nothing was written ({a.dst} is as it was)"
    with atomic_output(a.dst) as tmp:
        n = convert_to_safetensors(a.src, tmp, _dtype(a.dtype))
    print(f"wrote {a.dst} ({n} tensors)")
    return 0
