"""The faithful scheduler is diffusers' DDIM configured exactly as upstream's inference."""

import pytest
import torch

from hallo_core.pipeline.scheduler import SCHEDULER_NAMES, make_scheduler, step_kwargs


def upstream_ddim():
    from diffusers import DDIMScheduler  # here, not at the top: diffusers takes seconds to import

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


@pytest.mark.parametrize("name,steps", [("ddim", 40), ("ddim", 4), ("dpmpp", 10), ("unipc", 10), ("euler", 10),
                                        ("dpmpp", 25), ("euler", 25)])
def test_every_scheduler_lands_on_the_data_with_an_exact_denoiser(name, steps):
    """Data = one point x0, so the exact v-prediction is known in closed form. With it, every
    scheduler (timesteps, v-prediction, zero-SNR start, final sigma 0) run through the
    sampler's loop must end at x0: a wrong prediction type, input scaling or last step
    would not."""
    from hallo_core.pipeline.sampler import denoise

    s = make_scheduler(name)
    s.set_timesteps(steps)
    acp = s.alphas_cumprod.double()
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(1, 4, 2, 8, 8, generator=g, dtype=torch.float64)

    def exact_v(latents, t, i):
        z = s.scale_model_input(latents, t)  # what the UNet sees (VP form for every scheduler)
        a, sig = acp[int(t)].sqrt(), (1 - acp[int(t)]).sqrt()
        eps = (z - a * x0) / sig
        return a * eps - sig * x0

    seen = []
    start = torch.randn(x0.shape, generator=g, dtype=torch.float64) * s.init_noise_sigma
    out = denoise(s, start, exact_v, on_step=lambda i, n: seen.append((i, n)))
    assert seen == [(i, len(s.timesteps)) for i in range(len(s.timesteps))]
    err = ((out - x0).norm() / x0.norm()).item()
    assert err < 1e-6, (name, steps, err)


def test_denoise_stops_when_asked():
    from hallo_core.pipeline.sampler import denoise

    s = make_scheduler("ddim")
    s.set_timesteps(5)
    calls = []
    out = denoise(s, torch.zeros(1, 4, 1, 4, 4), lambda x, t, i: calls.append(i) or torch.zeros_like(x),
                  should_stop=lambda: len(calls) >= 2)
    assert out is None and calls == [0, 1]
