"""Schedules, shapes, dtypes, callbacks, the cache, and bad input."""

import re
import threading

import numpy as np
import pytest
import torch

from benchmarks import schedules
from benchmarks.problems import GAUSSIAN, MIXTURE, relative_error
from deis import (CoefficientCache, Config, DiscreteVPTime, VPLinearTime, get_plan, get_runge_kutta_plan, named_config,
                  sample_deis, sample_deis_rk)

#: Entries by name, configurations, and rhoRK (its tableau).
SAMPLERS = {
    "deis_auto": "deis_auto", "deis_corrected": "deis_corrected", "tab3": Config(),
    "tab2-data": Config(degree=2, integrand="data"), "tab2-data-corrected": Config(degree=2, integrand="data",
                                                                                  corrector=True),
    "tab2-v-corrected-capped": Config(degree=2, integrand="v", corrector=True, max_amplification=1.5),
    "logrhoab2-corrected": Config(variant="logrhoab", degree=2, corrector=True), "rhoab3": Config(variant="rhoab"),
    "ipndm2-corrected": Config(variant="ipndm", degree=2, corrector=True), "rk4": "rk4",
}
CONFIGS, IDS = list(SAMPLERS.values()), list(SAMPLERS)


def sample(model, x, sigmas, config, **options):
    if config == "rk4":
        return sample_deis_rk(model, x, sigmas, tableau="rk4", **options)
    return sample_deis(model, x, sigmas, config=config, **options)


def config_of(config, form="ve"):
    """The configuration a sampler of ``SAMPLERS`` runs on a form (None for rhoRK)."""
    if config == "rk4":
        return None
    return config if isinstance(config, Config) else named_config(config, form)


def plan_of(sigmas, config):
    return get_runge_kutta_plan(sigmas, "rk4") if config == "rk4" else get_plan(sigmas, config_of(config))


def noise(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def karras(n, sigma_max=80.0):
    return torch.from_numpy(schedules.karras(n, 0.002, sigma_max))


@pytest.mark.parametrize("options", CONFIGS, ids=IDS)
def test_a_schedule_ending_above_zero_returns_x_at_its_last_sigma(options):
    sigmas = karras(60)
    x = noise(1, 2, 8, 8) * 80.0
    head, tail = sigmas[:35], sigmas[34:]
    middle = sample(MIXTURE.denoiser(), x, head, options, disable=True)
    assert relative_error(middle, MIXTURE.reference(x.numpy(), 80.0, float(head[-1]))) < 2e-3
    # the rest, chained with fresh history, pays only for its lower-order warm start
    chained = sample(MIXTURE.denoiser(), middle, tail, options, disable=True)
    whole = sample(MIXTURE.denoiser(), x, sigmas, options, disable=True)
    exact = MIXTURE.reference(x.numpy(), 80.0, 0.0)
    assert relative_error(whole, exact) < 2e-3 and relative_error(chained, exact) < 1e-2


@pytest.mark.parametrize("options", CONFIGS, ids=IDS)
@pytest.mark.parametrize("sigma_next", [0.0, 2.0])
def test_a_single_step_is_ddim(options, sigma_next):
    x = noise(2, 3, 4, 4) * 10.0
    model = MIXTURE.denoiser()
    out = sample(model, x, torch.tensor([10.0, sigma_next], dtype=torch.float64), options, disable=True)
    denoised = model(x, torch.full([2], 10.0, dtype=torch.float64))
    ddim = denoised + sigma_next / 10.0 * (x - denoised)
    # v's degree 0 is exact for N(0, 1) data, not DDIM
    if getattr(config_of(options), "integrand", None) == "v" and sigma_next > 0:
        exact = MIXTURE.reference(x.numpy(), 10.0, 2.0)
        assert relative_error(out, exact) < relative_error(ddim, exact)
    elif options == "rk4" and sigma_next > 0:  # one RK4 step: better than DDIM
        exact = MIXTURE.reference(x.numpy(), 10.0, 2.0)
        assert relative_error(out, exact) < 0.7 * relative_error(ddim, exact)
    else:
        torch.testing.assert_close(out, ddim, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("options", CONFIGS, ids=IDS)
def test_a_schedule_starting_below_sigma_max_starts_with_empty_history(options):
    sigmas = karras(30, sigma_max=3.0)  # img2img / denoise < 1
    x = noise(1, 1, 8, 8) + noise(1, 1, 8, 8, seed=1) * 3.0
    first = []
    out = sample(MIXTURE.denoiser(), x, sigmas, options, disable=True,
                 callback=lambda d: first.append(d["x"]) if d["i"] == 1 else None)
    denoised = MIXTURE.denoiser()(x, sigmas[:1])
    config = config_of(options)
    if config is not None and config.integrand != "v":  # v's degree 0 is not DDIM, nor is rhoRK's step
        torch.testing.assert_close(first[0], denoised + sigmas[1] / sigmas[0] * (x - denoised))
    assert relative_error(out, MIXTURE.reference(x.numpy(), 3.0, 0.0)) < 5e-3


@pytest.mark.parametrize("options", CONFIGS, ids=IDS)
def test_batch_elements_and_5d_latents_are_sampled_independently(options):
    sigmas = karras(12)
    x = noise(3, 2, 3, 4, 4) * 80.0  # batch 3, video-like 5-D
    batch = sample(MIXTURE.denoiser(), x, sigmas, options, disable=True)
    assert batch.shape == x.shape
    for b in range(3):
        alone = sample(MIXTURE.denoiser(), x[b:b + 1].reshape(1, 6, 4, 4), sigmas, options, disable=True)
        torch.testing.assert_close(batch[b:b + 1].reshape(1, 6, 4, 4), alone, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("options", CONFIGS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("form", ["ve", "flow"])
def test_half_precision_latents_stay_close_to_float32(options, dtype, form):
    sigmas = (torch.from_numpy(schedules.flow_shift(10)) if form == "flow" else karras(10)).float()
    z = noise(2, 4, 16, 16, dtype=torch.float32)
    x = z if form == "flow" else z * 80.0
    model = GAUSSIAN.denoiser(form)
    reference = sample(model, x, sigmas, options, disable=True, parameterisation=form)
    out = sample(model, x.to(dtype), sigmas, options, disable=True, parameterisation=form)
    assert out.dtype == dtype and torch.isfinite(out).all()
    # the latent is rounded at every model call and at the end: a few units of the dtype's rounding
    assert relative_error(out.float(), reference.numpy()) < 3 * torch.finfo(dtype).eps


@pytest.mark.parametrize("options", CONFIGS, ids=IDS)
def test_callback_runs_once_per_step_with_the_current_x_and_true_denoised(options):
    sigmas = karras(7)
    x = noise(1, 1, 4, 4) * 80.0
    model = MIXTURE.denoiser()
    calls = []
    out = sample(model, x, sigmas, options, disable=True, callback=calls.append)
    assert [c["i"] for c in calls] == list(range(7))
    assert torch.equal(calls[0]["x"], x)
    for c in calls:
        assert set(c) == {"x", "i", "sigma", "sigma_hat", "denoised"}
        assert c["sigma"] == sigmas[c["i"]] and c["sigma_hat"] == sigmas[c["i"]]
        torch.testing.assert_close(c["denoised"], model(c["x"], c["sigma"].reshape(1)))
    last = plan_of(sigmas, options).steps[-1]
    if len(last.update.weights) == 1 and not getattr(last, "correction", None):  # DDIM into 0, nothing to keep
        torch.testing.assert_close(calls[-1]["denoised"], out, rtol=1e-14, atol=1e-12)


def test_progress_bar_honours_disable(capsys):
    sigmas, x = karras(5), noise(1, 1, 2, 2)
    sample_deis(MIXTURE.denoiser(), x, sigmas, disable=True)
    assert capsys.readouterr().err == ""
    sample_deis(MIXTURE.denoiser(), x, sigmas, disable=False)
    assert "5/5" in capsys.readouterr().err


class NoSyncTensor(torch.Tensor):
    """Raises on every operation that would make the host wait for the device, once armed."""

    armed = False
    SYNCING = {torch.Tensor.item, torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__,
               torch.Tensor.__index__, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu}

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if cls.armed and func in cls.SYNCING:
            raise AssertionError(f"host-device synchronisation in the step loop: {func.__name__}")
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize("options", CONFIGS, ids=IDS)
def test_the_step_loop_never_synchronises(options):
    sigmas = karras(10).as_subclass(NoSyncTensor)
    x = (noise(1, 2, 4, 4) * 80.0).as_subclass(NoSyncTensor)
    inner = MIXTURE.denoiser()

    def model(x, sigma):
        NoSyncTensor.armed = True  # everything before the first model call may read the host
        return inner(x.as_subclass(torch.Tensor), sigma.as_subclass(torch.Tensor)).as_subclass(NoSyncTensor)

    try:
        out = sample(model, x, sigmas, options, disable=True, callback=lambda d: None)
    finally:
        NoSyncTensor.armed = False
    assert torch.isfinite(out.as_subclass(torch.Tensor)).all()
    with pytest.raises(AssertionError):  # the trap works
        NoSyncTensor.armed = True
        try:
            bool(sigmas[0] > 0)
        finally:
            NoSyncTensor.armed = False


# --------------------------------------------------------------------------- cache

def test_cache_hits_on_the_exact_same_schedule_and_options():
    cache = CoefficientCache(maxsize=16)
    sigmas = schedules.sd15_karras(20)
    first = get_plan(sigmas, Config(time_map=schedules.SD15), cache=cache)
    again = get_plan(torch.tensor(sigmas), Config(time_map=DiscreteVPTime(schedules.SD15.sigmas.copy())), cache=cache)
    assert again is first and cache.info()[:3] == (1, 1, 1)
    # The model's own time, where the configuration has none, is part of the key too: the same plan.
    assert get_plan(sigmas, Config(), model_time_map=schedules.SD15, cache=cache) is first
    nudged = sigmas.copy()
    nudged[3] = np.nextafter(nudged[3], 0)
    assert get_plan(nudged, Config(time_map=schedules.SD15), cache=cache) is not first
    for key_change in [dict(degree=2), dict(variant="rhoab"), dict(time_map=VPLinearTime()),
                       dict(lower_order_final=False), dict(corrector=True, degree=2)]:
        assert get_plan(sigmas, Config(time_map=schedules.SD15).replace(**key_change), cache=cache) is not first
    flow = schedules.flow_shift(20)
    assert get_plan(flow, Config(), "flow", cache=cache) is not get_plan(flow, Config(), cache=cache)
    assert cache.info()[:3] == (2, 9, 9)


def test_cache_is_bounded_lru():
    cache = CoefficientCache(maxsize=3)
    plans = [get_plan(schedules.edm(n), Config(), cache=cache) for n in (5, 6, 7)]
    assert get_plan(schedules.edm(5), Config(), cache=cache) is plans[0]  # 5 is now most recent
    get_plan(schedules.edm(8), Config(), cache=cache)  # evicts 6
    assert cache.info().size == 3
    assert get_plan(schedules.edm(5), Config(), cache=cache) is plans[0]
    assert get_plan(schedules.edm(6), Config(), cache=cache) is not plans[1]


def test_cache_is_thread_safe():
    cache = CoefficientCache(maxsize=4)
    results, errors = [], []

    def work(k):
        try:
            for n in range(50):
                results.append((n % 6, get_plan(schedules.edm(5 + n % 6), Config(), cache=cache)))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    info = cache.info()
    assert info.hits + info.misses == 400 and info.size <= 4
    for n in range(6):  # every plan for a schedule is the same numbers
        steps = {p.steps for m, p in results if m == n}
        assert len(steps) == 1


# --------------------------------------------------------------------------- bad input

BAD_SIGMAS = [
    ([], "at least 2"), ([5.0], "at least 2"), ([1.0, 2.0, 0.0], "sigmas must decrease"),
    ([3.0, 3.0, 3.0], "at least 2"), ([3.0, float("nan"), 0.0], "finite"),
    ([float("inf"), 1.0, 0.0], "finite"), ([3.0, 1.0, -0.5], "negative"), ([[3.0, 0.0]], "1-D"),
]


@pytest.mark.parametrize("sigmas, message", BAD_SIGMAS)
def test_bad_sigmas_are_named(sigmas, message):
    with pytest.raises(ValueError, match=message):
        sample_deis(MIXTURE.denoiser(), noise(1, 1, 2, 2), torch.tensor(sigmas, dtype=torch.float64))


BAD_OPTIONS = [
    (dict(config="deis_auto", variant="dpmpp"), "variant 'dpmpp' is not one of tab, rhoab, logrhoab, ipndm"),
    (dict(variant="tab", degree=3), "variant without config: 0.1.0 took it as the paper's configuration"),
    (dict(degree=4), "degree 4 is outside its range: degree must be from 0 to 3"),
    (dict(degree=-1), "degree -1 is outside its range"),
    (dict(degree=2.5), "degree must be an integer from 0 to 3"),
    (dict(degree=True), "degree must be an integer"),
    (dict(degree=float("nan")), "degree must be an integer"),
    (dict(parameterisation="vp"), "unknown parameterisation"),
    (dict(config=Config(), variant="ipndm_v"), "variant 'ipndm_v' is not one of"),
    (dict(config=Config(), variant=None), "variant None is not one of"),
    (dict(max_amplification=0.5), "max_amplification 0.5 is outside its range: max_amplification must be from 1 "
                                  "to 4, or off (None; 0 on a node's widget)"),
    (dict(max_amplification=float("inf")), "max_amplification must be a number from 1 to 4, or off"),
    (dict(max_step_angle=0.0), "max_step_angle 0 is outside its range: max_step_angle must be above 0 and at "
                               "most 1.57, or off (None; 0 on a node's widget)"),
    (dict(max_step_angle=2.0), "max_step_angle 2 is outside its range"),
    (dict(eta=1.5), "eta 1.5 is outside its range"),
    (dict(eta=float("nan")), "eta must be a number"),
    (dict(eta=1.0), "eta 1 needs integrand data"),
    (dict(eta=0.5), "for the stochastic entry call deis.sample_deis_sde(..., eta=...)"),
    (dict(config="deis_auto", variant="rhork"), "rhoRK is its own sampler: call deis.sample_deis_rk"),
    (dict(config="deis_sde", s_noise=float("nan")), "s_noise must be a number"),
    (dict(config="deis_sde", s_noise=-1.0), "s_noise -1 is outside its range"),
    (dict(config="deis_sde", s_noise=float("inf")), "s_noise must be a number from 0 to 2"),
    (dict(time_map="sd15"), "time_map must be a deis.timemaps.TimeMap"),
    (dict(corrector="yes"), "corrector must be on or off (True or False)"),
    (dict(config="deis_fast"), "unknown entry 'deis_fast'; the entries are deis_corrected, deis_auto, deis_sde"),
    (dict(config=dict(degree=2)), "config must be a deis.Config"),
    (dict(tableau="rk4"), "rhoRK is its own sampler: call deis.sample_deis_rk"),
    (dict(corrector_max_step=1.0), "option 'corrector_max_step': it was removed"),
    (dict(corrector_max_amplification=1.5), "option 'corrector_max_amplification': it was removed"),
    (dict(steps=3), "unknown option 'steps'; the options are variant, degree"),
    (dict(degree=3, corrector=True), "degree 3 with the corrector"),
]


@pytest.mark.parametrize("options, message", BAD_OPTIONS)
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        sample_deis(MIXTURE.denoiser(), noise(1, 1, 2, 2), karras(5), **options)


def test_time_maps_without_a_key_are_equal_only_to_themselves():
    """Two user time maps with no key must not share a cache entry (they may give different times)."""
    from deis import TimeMap

    class Shifted(TimeMap):
        def __init__(self, shift):
            self.shift = shift

        def t_of_logrho(self, log_rho):
            return np.asarray(log_rho, dtype=np.float64) + self.shift

    a, b = Shifted(0.0), Shifted(1.0)
    assert a != b and a == a and Config(time_map=a) != Config(time_map=b)
    sigmas, cache = schedules.sd15_karras(8), CoefficientCache()
    assert get_plan(sigmas, Config(time_map=a), cache=cache) is not get_plan(sigmas, Config(time_map=b), cache=cache)


def test_every_problem_is_named_at_once():
    with pytest.raises(ValueError) as refused:
        Config(degree=3, corrector=True, eta=0.5, integrand="v", max_step_angle=-1.0)
    assert len(refused.value.problems) == 5
    for words in ("max_step_angle -1 is outside", "degree 3 with the corrector", "eta 0.5 needs integrand data",
                  "final_degree 1 with eta 0.5", "degree 3 is unstable with eta"):
        assert words in str(refused.value)


def test_an_option_the_configuration_does_not_use_is_ignored():
    """time_map outside tAB, corrector_max_angle without the corrector, s_noise without eta and final_degree above
    degree do nothing: one plan (one cache entry) with them and without them. A configuration keeps what it was
    given, so changing one option never loses another."""
    sigmas, cache = schedules.sd15_karras(10), CoefficientCache()

    def same_plan(a, b):
        return get_plan(sigmas, a, cache=cache) is get_plan(sigmas, b, cache=cache)

    assert same_plan(Config(variant="rhoab", time_map=VPLinearTime()), Config(variant="rhoab"))
    assert same_plan(Config(corrector_max_angle=0.3), Config())
    assert same_plan(Config(s_noise=1.5), Config())
    assert same_plan(Config(degree=1, final_degree=2), Config(degree=1, final_degree=1))  # never above degree
    assert not same_plan(Config(corrector=True, degree=2, corrector_max_angle=0.3), Config(corrector=True, degree=2))
    assert Config(degree=0).replace(degree=3).final_degree == 1
    assert Config(corrector_max_angle=0.3).replace(corrector=True, degree=2).corrector_max_angle == 0.3


@pytest.mark.parametrize("options", CONFIGS, ids=IDS)
def test_a_repeated_sigma_is_a_step_of_length_zero(options):
    """ComfyUI's beta scheduler on Stable Cascade repeats a sigma; the repeats are dropped, one model call fewer."""
    sigmas = karras(10)
    repeated = torch.cat([sigmas[:4], sigmas[3:4], sigmas[4:]])
    x = noise(1, 2, 4, 4) * 80.0
    calls = []

    def model(x, sigma):
        calls.append(1)
        return MIXTURE.denoiser()(x, sigma)

    expected = sample(model, x, sigmas, options, disable=True)
    count = len(calls)
    torch.testing.assert_close(sample(model, x, repeated, options, disable=True), expected, rtol=0, atol=0)
    assert len(calls) == 2 * count


def test_flow_sigmas_above_one_are_rejected():
    with pytest.raises(ValueError, match=r"flow sigmas must lie in \[0, 1\]"):
        sample_deis(MIXTURE.denoiser("flow"), noise(1, 1, 2, 2), karras(5), parameterisation="flow")


def test_integer_latents_are_rejected():
    with pytest.raises(ValueError, match="floating-point"):
        sample_deis(MIXTURE.denoiser(), torch.zeros(1, 1, 2, 2, dtype=torch.int64), karras(5))


def test_bad_time_map_tables_are_rejected():
    for table, message in [([1.0], "at least 2"), ([1.0, 0.5], "strictly increasing"), ([0.0, 1.0], "positive")]:
        with pytest.raises(ValueError, match=message):
            DiscreteVPTime(table)
    for beta_min, beta_max in [(-0.1, 20.0), (0.0, 0.0), (5.0, 1.0), (float("nan"), 20.0)]:
        with pytest.raises(ValueError, match="beta_min"):
            VPLinearTime(beta_min, beta_max)


def test_sigmas_as_a_list_or_in_another_dtype_work():
    x = noise(1, 1, 4, 4, dtype=torch.float32) * 80.0
    sigmas = karras(8)
    expected = sample_deis(MIXTURE.denoiser(), x, sigmas.float(), disable=True)
    from_list = sample_deis(MIXTURE.denoiser(), x, sigmas.float().tolist(), disable=True)
    torch.testing.assert_close(from_list, expected)
    from_float64 = sample_deis(MIXTURE.denoiser(), x, sigmas, disable=True)
    assert from_float64.dtype == torch.float32
    torch.testing.assert_close(from_float64, expected, rtol=1e-5, atol=1e-5)
