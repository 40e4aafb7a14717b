"""Noise schedulers: diffusers classes configured exactly as upstream Hallo's inference.

The faithful default is DDIM with *linear* betas (upstream builds its scheduler before the
line that switches to ``scaled_linear``, so that switch never takes effect), zero terminal
SNR, trailing spacing and v-prediction. The other choices are an opt-in fast mode: they
reuse the same trained beta schedule but integrate it differently, so their output is not
bit-faithful to upstream.
"""

from __future__ import annotations

from typing import Any, Dict

# Upstream configs/inference/default.yaml noise_scheduler_kwargs + the enable_zero_snr update.
HALLO_SCHEDULE: Dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
    "prediction_type": "v_prediction",
}

SCHEDULER_NAMES = ("ddim", "dpmpp", "unipc", "euler")
FAITHFUL_SCHEDULER = "ddim"


def make_scheduler(name: str = "ddim"):
    """Return a fresh diffusers scheduler.

    ``ddim`` reproduces upstream (clip_sample False, steps_offset 1, set_alpha_to_one True;
    the sampler calls ``step`` with eta 0). ``dpmpp`` (DPM-Solver++ 2M), ``unipc`` and
    ``euler`` are fast-mode alternatives meant for 10-25 steps.
    """
    name = name.lower()
    if name == "ddim":
        from diffusers import DDIMScheduler

        return DDIMScheduler(
            **HALLO_SCHEDULE, clip_sample=False, steps_offset=1, set_alpha_to_one=True
        )
    if name in ("dpmpp", "dpm++", "dpmsolver++"):
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(
            **HALLO_SCHEDULE, algorithm_type="dpmsolver++", solver_order=2,
            # the terminal sigma is infinite under zero-SNR; a final first-order step avoids it
            final_sigmas_type="zero", lower_order_final=True,
        )
    if name == "unipc":
        from diffusers import UniPCMultistepScheduler

        return UniPCMultistepScheduler(
            **HALLO_SCHEDULE, solver_order=2, final_sigmas_type="zero", lower_order_final=True
        )
    if name == "euler":
        from diffusers import EulerDiscreteScheduler

        return EulerDiscreteScheduler(**HALLO_SCHEDULE, final_sigmas_type="zero")
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULER_NAMES)}")


def step_kwargs(scheduler) -> Dict[str, Any]:
    """Extra keyword arguments for ``scheduler.step`` (DDIM takes eta=0 like upstream)."""
    import inspect

    params = inspect.signature(scheduler.step).parameters
    return {"eta": 0.0} if "eta" in params else {}
