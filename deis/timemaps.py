"""Time maps: the model's own time ``t`` as a function of rho, for tAB.

tAB interpolates ``eps_hat`` by a polynomial in the model's time, so it needs to know
how that time relates to ``rho = sigma / alpha``, the noise-to-signal ratio. That ratio
does not depend on the parameterisation, so every map here is a map between ``t`` and
``rho``: a VP model's table of sigmas is a table of rho, and a flow model's time is
``t = sigma = rho / (1 + rho)``.

The coefficient integrals are done in ``l = log rho``. Each map therefore gives ``t(l)``
(vectorised, float64) and the places in ``l`` where ``t`` is not smooth (``knots``). The step
into sigma = 0 is always taken in rho (deis.plan), so no map needs a time at rho = 0.
"""

import hashlib
import logging

import numpy as np

log = logging.getLogger("deis")


class TimeMap:
    #: Cache key; two maps with the same key give the same coefficients. None: the map equals only itself.
    key = None
    knots = np.empty(0)

    def t_of_logrho(self, log_rho):
        raise NotImplementedError

    def rho_of_t(self, t):
        raise NotImplementedError

    def t_of_rho(self, rho):
        with np.errstate(divide="ignore"):
            return self.t_of_logrho(np.log(np.asarray(rho, dtype=np.float64)))

    def __eq__(self, other):
        if self.key is None:
            return self is other
        return isinstance(other, TimeMap) and type(self) is type(other) and self.key == other.key

    def __hash__(self):
        return id(self) if self.key is None else hash(self.key)


class FlowTime(TimeMap):
    """``t = sigma`` of a flow model: ``t = rho / (1 + rho)``, so ``t = 1`` at pure noise."""

    key = ("flow",)

    def t_of_logrho(self, log_rho):
        # The logistic function of log rho, exact at log rho = +-inf.
        return np.exp(-np.logaddexp(0.0, -np.asarray(log_rho, dtype=np.float64)))

    def rho_of_t(self, t):
        t = np.asarray(t, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return t / (1.0 - t)

    def __repr__(self):
        return "FlowTime()"


class VPLinearTime(TimeMap):
    """Continuous VP with linear beta: ``alpha_bar(t) = exp(-beta_min t - (beta_max - beta_min) t^2 / 2)``.

    ``rho^2 = 1 / alpha_bar - 1``. The defaults are the score-SDE values the paper uses.
    """

    def __init__(self, beta_min=0.1, beta_max=20.0):
        beta_min, beta_max = float(beta_min), float(beta_max)
        if not (np.isfinite(beta_min) and np.isfinite(beta_max) and 0 <= beta_min <= beta_max and beta_max > 0):
            raise ValueError(f"VP-linear time map needs 0 <= beta_min <= beta_max, beta_max > 0; "
                             f"got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = beta_min, beta_max
        self.key = ("vp_linear", beta_min, beta_max)

    def t_of_logrho(self, log_rho):
        # B = -log alpha_bar = log(1 + rho^2); t solves beta_min t + (beta_d / 2) t^2 = B.
        # This root form has no cancellation when B is small.
        integral_beta = np.logaddexp(0.0, 2.0 * np.asarray(log_rho, dtype=np.float64))
        beta_d = self.beta_max - self.beta_min
        with np.errstate(invalid="ignore"):
            t = 2.0 * integral_beta / (np.sqrt(self.beta_min ** 2 + 2.0 * beta_d * integral_beta) + self.beta_min)
        return np.where(np.isinf(integral_beta), np.inf, t)

    def rho_of_t(self, t):
        t = np.asarray(t, dtype=np.float64)
        return np.sqrt(np.expm1(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2))

    def __repr__(self):
        return f"VPLinearTime(beta_min={self.beta_min}, beta_max={self.beta_max})"


class DiscreteVPTime(TimeMap):
    """The fractional index into a discrete model's sigma table (SD1.x, SD2.x, SDXL, ...).

    ``t`` is interpolated linearly in ``log sigma`` between table entries, as ComfyUI's
    ``ModelSamplingDiscrete.sigma(t)`` does, and extended linearly beyond both ends so that
    schedules reaching past the table (an EDM schedule on SD, the step into sigma = 0) still
    have a time.
    """

    def __init__(self, sigmas):
        table = np.asarray(sigmas, dtype=np.float64).reshape(-1)
        if table.size < 2 or not np.all(np.isfinite(table)) or table.min() <= 0:
            raise ValueError("a discrete time map needs at least 2 finite, positive sigmas")
        if not np.all(np.diff(table) > 0):
            raise ValueError("a discrete time map needs a strictly increasing sigma table")
        self.sigmas = table
        self.knots = np.log(table)
        self.key = ("discrete_vp", table.size, hashlib.sha1(table.tobytes()).hexdigest())

    @classmethod
    def from_betas(cls, linear_start=0.00085, linear_end=0.012, timesteps=1000):
        """The sqrt-linear beta schedule of Stable Diffusion 1.x/2.x/XL (ComfyUI's ``"linear"``)."""
        betas = np.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=np.float64) ** 2
        alphas_cumprod = np.cumprod(1.0 - betas)
        return cls(np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod))

    def t_of_logrho(self, log_rho):
        log_rho = np.asarray(log_rho, dtype=np.float64)
        knots, last = self.knots, self.knots.size - 1
        t = np.interp(log_rho, knots, np.arange(knots.size, dtype=np.float64))
        below = (log_rho - knots[0]) / (knots[1] - knots[0])
        above = last + (log_rho - knots[last]) / (knots[last] - knots[last - 1])
        return np.where(log_rho < knots[0], below, np.where(log_rho > knots[last], above, t))

    def rho_of_t(self, t):
        t = np.asarray(t, dtype=np.float64)
        knots, last = self.knots, self.knots.size - 1
        log_sigma = np.interp(t, np.arange(knots.size, dtype=np.float64), knots)
        below = knots[0] + t * (knots[1] - knots[0])
        above = knots[last] + (t - last) * (knots[last] - knots[last - 1])
        return np.exp(np.where(t < 0, below, np.where(t > last, above, log_sigma)))

    def __repr__(self):
        return f"DiscreteVPTime(<{self.sigmas.size} sigmas, {self.sigmas[0]:.4g}..{self.sigmas[-1]:.4g}>)"


def default_time_map(parameterisation_name):
    """The time tAB uses when nothing is known about the model.

    Flow models have a time of their own (``t = sigma``). For the VE form the paper's
    continuous VP (beta 0.1 to 20) is used: it is defined for every rho, so it fits any
    schedule, and it is the time the paper's tAB results were measured in.
    """
    return FlowTime() if parameterisation_name == "flow" else VPLinearTime()


def model_time_map(parameterisation_name, sigma_table=None):
    """The model's own time for tAB, from what a host knows of the model: its form and its table of sigmas.

    Flow models: ``t = sigma``. A VE-form model with a table: the fractional index into the table's
    distinct sigmas (Stable Cascade's table repeats its clamped end values, which carry no time).
    Otherwise, or where the table is unusable, ``default_time_map``.
    """
    if parameterisation_name == "flow":
        return FlowTime()
    if sigma_table is None:
        return default_time_map("ve")
    table = np.unique(np.asarray(sigma_table, dtype=np.float64).reshape(-1))
    try:
        return DiscreteVPTime(table)
    except ValueError as error:
        log.warning("DEIS: the model's sigma table is unusable (%s); tAB uses the paper's VP-linear time", error)
        return default_time_map("ve")
