"""DEIS time schedules: uniform in the stated variable, exact ends, both parameterisations."""

import numpy as np
import pytest

from benchmarks import schedules as reference
from deis import FlowTime, VPLinearTime
from deis.schedules import log_rho_uniform, rho_polynomial, time_uniform

SD15 = reference.SD15


@pytest.mark.parametrize("kappa", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("time_map", [SD15, VPLinearTime()], ids=["sd15", "vp"])
def test_time_uniform_is_uniform_in_t_to_the_one_over_kappa(kappa, time_map):
    sigma_min, sigma_max = SD15.sigmas[0], SD15.sigmas[-1]
    sigmas = time_uniform(12, sigma_min, sigma_max, time_map, kappa=kappa)
    assert sigmas.shape == (13,) and sigmas[-1] == 0
    assert sigmas[0] == sigma_max and sigmas[-2] == pytest.approx(sigma_min, rel=1e-12)
    t = time_map.t_of_rho(sigmas[:-1])
    offset = min(t[-1], 0.0)
    ramp = (t - offset) ** (1 / kappa)
    assert np.allclose(np.diff(ramp), (ramp[-1] - ramp[0]) / 11, rtol=1e-9, atol=1e-9)
    assert np.all(np.diff(sigmas) < 0)


def test_time_uniform_in_the_flow_form_starts_at_pure_noise():
    sigmas = time_uniform(8, 0.003, 1.0, FlowTime(), "flow")
    assert sigmas[0] == 1.0 and sigmas[-1] == 0 and np.all(np.diff(sigmas) < 0)
    assert np.allclose(np.diff(np.sqrt(sigmas[:-1])), (np.sqrt(0.003) - 1.0) / 7)  # t = sigma for flow


def test_rho_spaced_schedules():
    sigmas = log_rho_uniform(6, 0.03, 14.6)
    assert np.allclose(np.diff(np.log(sigmas[:-1])), np.log(0.03 / 14.6) / 5)
    karras = rho_polynomial(6, 0.03, 14.6, power=7.0)
    np.testing.assert_allclose(karras, reference.karras(6, 0.03, 14.6), rtol=1e-12)
    flow = log_rho_uniform(6, 0.01, 0.99, "flow")
    rho = flow[:-1] / (1 - flow[:-1])
    assert np.allclose(np.diff(np.log(rho)), np.log((0.01 / 0.99) / (0.99 / 0.01)) / 5)


def test_a_single_step_schedule():
    assert time_uniform(1, 0.03, 14.6, SD15).tolist() == [14.6, 0.0]


@pytest.mark.parametrize("call, message", [
    (lambda: time_uniform(0, 0.03, 14.6, SD15), "at least 1 step"),
    (lambda: time_uniform(5, 14.6, 0.03, SD15), "sigma_min < sigma_max"),
    (lambda: time_uniform(5, 0.0, 14.6, SD15), "sigma_min < sigma_max"),
    (lambda: time_uniform(5, 0.03, 14.6, SD15, kappa=0), "kappa must be positive"),
    (lambda: time_uniform(5, 0.03, 1.0, VPLinearTime(), "flow"), "no finite time"),
    (lambda: log_rho_uniform(5, 0.01, 1.0, "flow"), "rho = inf"),
    (lambda: rho_polynomial(5, 0.01, 1.0, "flow"), "rho = inf"),
    (lambda: rho_polynomial(5, 0.01, 1.0, power=-1), "power must be positive"),
])
def test_bad_schedule_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
