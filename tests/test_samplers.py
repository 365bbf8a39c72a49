"""Denoising loops (inpaint.samplers, inpaint.repaint) on tiny random UNets and exact oracles."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import pytest
import torch

from inpaint import testing
from inpaint.errors import InputError
from inpaint.repaint import (
    fast_schedule,
    repaint_schedule,
    respaced_timesteps,
    sample_repaint,
    sample_repaint_fast,
    schedule_nfe,
)
from inpaint.samplers import (
    SAMPLERS,
    completion_denoiser,
    completion_model_input,
    make_scheduler,
    masked_image,
    sample_named,
    sampler_names,
    sampler_spec,
    unconditional_denoiser,
)

SIZE = 32


@pytest.fixture(scope="module")
def schedule_config() -> dict:
    return dict(testing.tiny_ddpm_scheduler().config)


@pytest.fixture(scope="module")
def unet7():
    return testing.tiny_unet2d(in_channels=7).eval()


@pytest.fixture(scope="module")
def unet3():
    return testing.tiny_unet2d(in_channels=3).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    x0 = torch.rand(3, 3, SIZE, SIZE, generator=g) * 2 - 1
    masks = torch.zeros(3, 1, SIZE, SIZE)
    masks[0, :, 8:24, 8:24] = 1
    masks[1, :, :, :16] = 1
    masks[2, :, 4:10, :] = 1
    return x0, masks


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def assert_known_exact(images: torch.Tensor, x0: torch.Tensor, masks: torch.Tensor) -> None:
    known = (masks < 0.5).expand_as(x0)
    assert torch.equal(images[known], x0[known])
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    assert torch.isfinite(images).all()


def oracle(x_true: torch.Tensor, schedule_config: dict, calls: list | None = None) -> Callable:
    """A perfect epsilon model for a data set of one image (per batch element): eps = (x_t - √ᾱ x)/√(1-ᾱ)."""
    abar = make_scheduler("ddpm", schedule_config).alphas_cumprod

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = float(abar[int(t)])
        if calls is not None:
            calls.append((int(t), x_t.clone()))
        return (x_t - a**0.5 * x_true) / (1 - a) ** 0.5

    return denoise


# ---- model inputs --------------------------------------------------------------------------


def test_completion_model_input_layout(batch):
    x0, masks = batch
    x_t = torch.randn_like(x0)
    inp = completion_model_input(x_t, x0, masks)
    assert inp.shape == (3, 7, SIZE, SIZE)
    assert torch.equal(inp[:, :3], masked_image(x0, masks))
    assert torch.equal(inp[:, 3:4], masks)
    assert torch.equal(inp[:, 4:], x_t)
    assert not inp[:, :3][masks.expand_as(x0) > 0.5].any()  # hole zeroed in [-1, 1]
    assert torch.equal(inp[:, :3][masks.expand_as(x0) < 0.5], x0[masks.expand_as(x0) < 0.5])


# ---- scheduler samplers with the 7-channel model -------------------------------------------


PIXEL_SAMPLERS = ["ddpm", "ddim", "dpmpp", "dpmpp-sde"]


def sample(name, *args, **kwargs):
    return sample_named(name, *args, **kwargs)


@pytest.mark.parametrize("name", PIXEL_SAMPLERS)
def test_scheduler_samplers_keep_known_pixels_and_count_evaluations(name, unet7, batch, schedule_config):
    x0, masks = batch
    result = sample(name, completion_denoiser(unet7, x0, masks), x0, masks, gens(1, 2, 3), schedule_config, steps=6)
    assert result.nfe == 6
    assert result.images.shape == x0.shape
    assert_known_exact(result.images, x0, masks)
    hole = masks.expand_as(x0) > 0.5
    assert not torch.allclose(result.images[hole], x0[hole])  # something was generated


def test_ddim_ten_steps_is_ten_evaluations(unet7, batch, schedule_config):
    x0, masks = batch
    calls = []
    inner = completion_denoiser(unet7, x0, masks)

    def counting(x_t, t):
        calls.append(int(t))
        return inner(x_t, t)

    result = sample("ddim", counting, x0, masks, gens(1, 2, 3), schedule_config, steps=10)
    assert result.nfe == len(calls) == 10
    assert calls == list(range(900, -1, -100))  # DDIM: leading spacing, a constant stride


@pytest.mark.parametrize("name", PIXEL_SAMPLERS)
def test_batch_equals_single_images_and_runs_repeat(name, unet7, batch, schedule_config):
    x0, masks = batch
    together = sample(name, completion_denoiser(unet7, x0, masks), x0, masks, gens(5, 6, 7), schedule_config, steps=4)
    for i, seed in enumerate((5, 6, 7)):
        xi, mi = x0[i : i + 1], masks[i : i + 1]
        alone = sample(name, completion_denoiser(unet7, xi, mi), xi, mi, gens(seed), schedule_config, steps=4)
        # Not bit-equal: the UNet's float rounding depends on the batch size (~1e-7), and the
        # first x0 estimate at t = 999 divides by sqrt(ᾱ) ~ 0.006; measured <= 2e-5.
        assert torch.allclose(together.images[i : i + 1], alone.images, atol=1e-4, rtol=0)
    again = sample(name, completion_denoiser(unet7, x0, masks), x0, masks, gens(5, 6, 7), schedule_config, steps=4)
    assert torch.equal(together.images, again.images)
    other = sample(name, completion_denoiser(unet7, x0, masks), x0, masks, gens(8, 6, 7), schedule_config, steps=4)
    assert not torch.allclose(other.images[0], together.images[0])
    assert torch.equal(other.images[1:], together.images[1:])  # image 1 and 2 do not see image 0's seed


@pytest.mark.parametrize("name,steps", [("ddpm", 20), ("ddim", 7), ("dpmpp", 9), ("dpmpp-sde", 9), ("dpmpp-sde", 30)])
def test_perfect_model_recovers_the_image_and_known_region_sits_at_the_right_noise_level(
    name, steps, batch, schedule_config
):
    x0, masks = batch
    x_true = x0  # the hole of x0 is what a perfect model restores
    calls: list = []
    result = sample(
        name, oracle(x_true, schedule_config, calls), x0, masks, gens(1, 2, 3), schedule_config, steps=steps
    )
    assert torch.allclose(result.images, x_true, atol=2e-3)
    abar = make_scheduler("ddpm", schedule_config).alphas_cumprod
    known = (masks < 0.5).expand_as(x0)
    for t, x_t in calls:
        a = float(abar[t])
        implied_noise = ((x_t - a**0.5 * x0) / (1 - a) ** 0.5)[known]
        assert 0.9 < float(implied_noise.std()) < 1.1, (t, float(implied_noise.std()))
        assert abs(float(implied_noise.mean())) < 0.1


def test_dpmpp_sde_is_the_sde_solver_and_its_first_order_is_ddpm(unet7, batch, schedule_config):
    from inpaint.samplers import sample_ddpm, sample_with_scheduler

    x0, masks = batch
    scheduler = make_scheduler("dpmpp-sde", schedule_config)
    assert scheduler.config.algorithm_type == "sde-dpmsolver++" and scheduler.config.solver_order == 2
    denoiser = completion_denoiser(unet7, x0, masks)
    first_order = type(scheduler).from_config(scheduler.config, solver_order=1)
    one = sample_with_scheduler(denoiser, first_order, x0, masks, gens(1, 2, 3), 5)
    ancestral = sample_ddpm(denoiser, x0, masks, gens(1, 2, 3), schedule_config, steps=5)
    assert torch.allclose(one.images, ancestral.images, atol=1e-4, rtol=0)


def test_unknown_sampler_name(schedule_config):
    with pytest.raises(ValueError, match="unknown sampler 'euler' for ddpm; choose from ddpm, ddim, dpmpp, dpmpp-sde"):
        make_scheduler("euler", schedule_config)  # an sd sampler: its Euler steps are not variance-preserving
    with pytest.raises(ValueError, match="unknown sampler 'repaint' for sd"):
        make_scheduler("repaint", schedule_config, "sd")


# ---- one meaning per sampler name ------------------------------------------------------------


def test_each_name_is_one_algorithm_for_every_method(schedule_config):
    """A name builds the same scheduler class with the same algorithm settings for ddpm and sd;
    only the pixel loops' timestep spacing (and x0 clipping) is added for ddpm."""
    assert sampler_names("ddpm") == PIXEL_SAMPLERS
    assert sampler_names("sd") == [*PIXEL_SAMPLERS, "euler", "euler-a", "pndm", "unipc"]
    assert sampler_names("repaint") == ["repaint", "fast"]
    for name in PIXEL_SAMPLERS:
        pixel, pipeline = make_scheduler(name, schedule_config, "ddpm"), make_scheduler(name, schedule_config, "sd")
        assert type(pixel) is type(pipeline) and type(pixel).__name__ == SAMPLERS[name].scheduler
        for key, value in SAMPLERS[name].kwargs.items():
            assert pixel.config[key] == pipeline.config[key] == value
    for name, algorithm in (("dpmpp", "dpmsolver++"), ("dpmpp-sde", "sde-dpmsolver++")):
        assert make_scheduler(name, schedule_config, "sd").config.algorithm_type == algorithm
        assert make_scheduler(name, schedule_config, "ddpm").config.timestep_spacing == "trailing"
    assert make_scheduler("pndm", schedule_config, "sd").config.skip_prk_steps


@pytest.mark.parametrize("method", ["ddpm", "sd"])
def test_dpmpp_is_the_deterministic_solver_and_dpmpp_sde_draws_noise(method, schedule_config):
    """A dpmpp step draws nothing from the image's generator; a dpmpp-sde step does (for both methods)."""
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for name, draws in (("dpmpp", False), ("dpmpp-sde", True)):
        scheduler = make_scheduler(name, schedule_config, method)
        scheduler.set_timesteps(5)
        g = torch.Generator().manual_seed(1)
        state = g.get_state()
        scheduler.step(torch.zeros_like(x), scheduler.timesteps[0], x, generator=[g])
        assert torch.equal(g.get_state(), state) is not draws, name


def test_sampler_spec_errors_list_the_methods_names():
    assert sampler_spec("ddpm", "dpmpp").steps == 25 and sampler_spec("sd", "euler-a").scheduler is not None
    with pytest.raises(InputError, match=r"^--sampler 'euler': ddpm supports ddpm, ddim, dpmpp, dpmpp-sde$"):
        sampler_spec("ddpm", "euler")
    with pytest.raises(InputError, match=r"^--sampler 'plms': sd supports ddpm, ddim, dpmpp, dpmpp-sde, euler, "):
        sampler_spec("sd", "plms")
    with pytest.raises(InputError, match=r"^--sampler 'ddim': repaint supports repaint, fast$"):
        sampler_spec("repaint", "ddim")


# ---- RePaint -------------------------------------------------------------------------------


def test_paper_schedule_costs_2410_evaluations_and_matches_diffusers():
    from diffusers import RePaintScheduler

    schedule = repaint_schedule(250, 10, 10)
    assert schedule_nfe(schedule) == 2410
    assert schedule[0] == 249 and schedule[-1] == -1
    assert all(abs(b - a) == 1 for a, b in pairwise(schedule))
    reference = RePaintScheduler(num_train_timesteps=1000)
    reference.set_timesteps(250, jump_length=10, jump_n_sample=10)
    assert [t * 4 for t in schedule[:-1]] == reference.timesteps.tolist()


@pytest.mark.parametrize("t_T,length,n", [(250, 10, 10), (100, 5, 3), (20, 5, 2), (50, 10, 1), (7, 10, 4)])
def test_schedule_cost_formula(t_T, length, n):
    jump_points = len(range(0, t_T - length, length))
    assert schedule_nfe(repaint_schedule(t_T, length, n)) == t_T + jump_points * (n - 1) * length


def test_fast_schedule_is_the_paper_schedule_shrunk_and_within_budget():
    schedule = fast_schedule()
    assert schedule == repaint_schedule(50, 5, 5)
    assert schedule_nfe(schedule) == 50 + 9 * 4 * 5 == 230 <= 250
    assert schedule[0] == 49 and schedule[-1] == -1
    ups = [a for a, b in pairwise(schedule) if b > a]
    assert min(ups) == 0  # resampling runs to the clean end of the chain
    assert max(ups) < 45  # nothing to resample above the last full jump


def test_respaced_timesteps_span_the_chain():
    assert respaced_timesteps(1000, 1000) == list(range(1000))
    taus = respaced_timesteps(1000, 250)
    assert taus[0] == 0 and taus[-1] == 999 and len(set(taus)) == 250


def test_repaint_keeps_known_pixels_and_counts(unet3, batch, schedule_config):
    x0, masks = batch
    result = sample_repaint(
        unconditional_denoiser(unet3),
        x0,
        masks,
        gens(1, 2, 3),
        schedule_config,
        steps=20,
        jump_length=5,
        jump_n_sample=2,
    )
    assert result.nfe == schedule_nfe(repaint_schedule(20, 5, 2)) == 35
    assert_known_exact(result.images, x0, masks)


def test_repaint_batch_equals_singles_and_is_deterministic(unet3, batch, schedule_config):
    x0, masks = batch
    kwargs = dict(steps=10, jump_length=3, jump_n_sample=2)
    together = sample_repaint(unconditional_denoiser(unet3), x0, masks, gens(4, 5, 6), schedule_config, **kwargs)
    for i, seed in enumerate((4, 5, 6)):
        xi, mi = x0[i : i + 1], masks[i : i + 1]
        alone = sample_repaint(unconditional_denoiser(unet3), xi, mi, gens(seed), schedule_config, **kwargs)
        assert torch.allclose(together.images[i : i + 1], alone.images, atol=1e-5, rtol=0)
    again = sample_repaint(unconditional_denoiser(unet3), x0, masks, gens(4, 5, 6), schedule_config, **kwargs)
    assert torch.equal(together.images, again.images)


def test_repaint_with_a_perfect_model_recovers_the_image(batch, schedule_config):
    x0, masks = batch
    x_true = x0
    result = sample_repaint(
        oracle(x_true, schedule_config),
        x0,
        masks,
        gens(1, 2, 3),
        schedule_config,
        steps=20,
        jump_length=5,
        jump_n_sample=3,
    )
    assert torch.allclose(result.images, x_true, atol=2e-3)


def test_repaint_fast_small(unet3, batch, schedule_config):
    x0, masks = batch
    result = sample_repaint_fast(
        unconditional_denoiser(unet3),
        x0,
        masks,
        gens(1, 2, 3),
        schedule_config,
        steps=10,
        jump_length=2,
        jump_n_sample=2,
    )
    assert result.nfe == schedule_nfe(fast_schedule(10, 2, 2)) > 10
    assert_known_exact(result.images, x0, masks)


def test_bench_protocol_records_what_each_sampler_name_ran():
    from inpaint.bench.protocol import sampler_meanings

    meanings = sampler_meanings(["ddpm", "telea"])
    assert list(meanings) == PIXEL_SAMPLERS
    assert meanings["dpmpp"] == "DPM-Solver++: DPMSolverMultistepScheduler(algorithm_type=dpmsolver++, solver_order=2)"
    assert "sde-dpmsolver++" in meanings["dpmpp-sde"]
    assert sampler_meanings(["repaint"])["fast"] == "RePaint-fast: its own loop (inpaint.repaint)"
    assert sampler_meanings(["telea"]) == {}
