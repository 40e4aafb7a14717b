"""The faithful scheduler is diffusers' DDIM configured exactly as upstream's inference."""

import torch
from diffusers import DDIMScheduler

from hallo_core.pipeline.scheduler import SCHEDULER_NAMES, make_scheduler, step_kwargs


def upstream_ddim():
    # configs/inference/default.yaml noise_scheduler_kwargs + the enable_zero_snr update
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                         steps_offset=1, rescale_betas_zero_snr=True, timestep_spacing="trailing",
                         prediction_type="v_prediction")


def test_ddim_timesteps_and_alphas_match_upstream_settings():
    ours, ref = make_scheduler("ddim"), upstream_ddim()
    ours.set_timesteps(40)
    ref.set_timesteps(40)
    assert ours.timesteps.tolist() == ref.timesteps.tolist()
    assert ours.timesteps.tolist() == list(range(999, 0, -25))  # [999, 974, ..., 24]
    assert torch.equal(ours.alphas_cumprod, ref.alphas_cumprod)
    assert ours.alphas_cumprod[999].item() == 0.0  # zero terminal SNR
    assert abs(ours.alphas_cumprod[499].item() - 0.1425) < 5e-4  # linear, not scaled_linear (0.2424)
    assert ours.config.prediction_type == "v_prediction" and ours.final_alpha_cumprod.item() == 1.0
    assert step_kwargs(ours) == {"eta": 0.0}


def test_ddim_step_equals_upstream_step():
    ours, ref = make_scheduler("ddim"), upstream_ddim()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 2, 8, 8, generator=g)
    y = x.clone()
    ours.set_timesteps(10)
    ref.set_timesteps(10)
    for t in ours.timesteps:
        v = torch.randn(1, 4, 2, 8, 8, generator=g)
        x = ours.step(v, t, x, eta=0.0).prev_sample
        y = ref.step(v, t, y, eta=0.0).prev_sample
    assert torch.equal(x, y)


def test_fast_schedulers_share_the_trained_schedule_and_stay_finite():
    ddim = make_scheduler("ddim")
    for name in SCHEDULER_NAMES[1:]:
        s = make_scheduler(name)
        # identical schedule; diffusers lifts the terminal 0 to 2**-24 to keep sigma finite
        assert torch.allclose(s.alphas_cumprod[:-1], ddim.alphas_cumprod[:-1])
        assert s.alphas_cumprod[-1].item() <= 2 ** -24 * 1.001
        s.set_timesteps(10)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(1, 4, 1, 8, 8, generator=g) * s.init_noise_sigma
        for t in s.timesteps:
            x = s.step(0.1 * torch.randn(x.shape, generator=g), t, s.scale_model_input(x, t)).prev_sample
        assert torch.isfinite(x).all(), name
