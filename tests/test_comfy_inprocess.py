"""The pack inside a real ComfyUI, in-process: registration, model awareness, and the graph cases.

Needs COMFYUI_PATH (skips with a message otherwise). Models are weightless BaseModels whose
denoiser is the exact Gaussian-mixture posterior mean (tests/comfy_support.py).
"""

import logging
import re
import types

import pytest
import torch

import comfy_support
from benchmarks.problems import MIXTURE, relative_error

RES4LYF_NAMES = {"deis_2m", "deis_3m", "deis_2m_ode", "deis_3m_ode"}


@pytest.fixture(scope="module")
def comfy():
    pack = comfy_support.import_pack()
    import comfy.k_diffusion.sampling
    import comfy.model_management
    import comfy.sample
    import comfy.samplers
    import comfy.utils
    import nodes as comfy_nodes
    from comfy_extras import nodes_custom_sampler

    assert comfy_nodes.__file__.startswith(str(comfy_support.comfy_path())), "ComfyUI's nodes.py must win"
    return types.SimpleNamespace(pack=pack, samplers=comfy.samplers, sample=comfy.sample,
                                 k_sampling=comfy.k_diffusion.sampling, nodes=comfy_nodes,
                                 custom=nodes_custom_sampler, utils=comfy.utils,
                                 management=comfy.model_management)


@pytest.fixture(scope="module")
def models(comfy):
    return {"eps": comfy_support.exact_model("eps"), "flow": comfy_support.exact_model("flow")}


def pack_names(comfy, stochastic=True):
    deis = comfy.pack.deis
    return [name for name in deis.ENTRIES if stochastic or not deis.CONFIGURATIONS[name]["ve"].eta]


def start_state(model, sigmas, noise, latent):
    """The sampler's first x, as ComfyUI's KSAMPLER makes it."""
    model_sampling = model.get_model_object("model_sampling")
    max_denoise = float(sigmas[0]) >= float(model_sampling.sigma_max) * (1 - 1e-5)
    return model_sampling.noise_scaling(sigmas[0], noise, latent, max_denoise).double().numpy()


def form(kind):
    return "flow" if kind == "flow" else "ve"


def ksampler(comfy, model, name, scheduler="karras", steps=10, cfg=1.0, latent=None, seed=0, denoise=1.0):
    latent = {"samples": torch.zeros(1, 4, 8, 8)} if latent is None else latent
    cond = comfy_support.empty_conditioning()
    return comfy.nodes.KSampler().sample(model, seed, steps, cfg, name, scheduler, cond, cond, latent,
                                         denoise=denoise)[0]["samples"]


# --------------------------------------------------------------------------- registration

def test_every_name_is_registered_once_after_the_builtins(comfy):
    names = pack_names(comfy)
    assert names[0] == comfy.pack.nodes.samplers.RECOMMENDED
    assert all(n.startswith("deis_") for n in names)
    assert not set(names) & (RES4LYF_NAMES | {"deis"})
    for listing in (comfy.samplers.KSAMPLER_NAMES, comfy.samplers.SAMPLER_NAMES, comfy.samplers.KSampler.SAMPLERS):
        assert all(listing.count(n) == 1 for n in names)
        after = listing.index("deis") + 1
        assert listing[after:after + len(names)] == names  # right after ComfyUI's own deis
        assert getattr(comfy.k_sampling, f"sample_{names[0]}").deis_pack
    scheduler = comfy.pack.nodes.samplers.SCHEDULER_NAME
    assert scheduler in comfy.samplers.SCHEDULER_HANDLERS
    assert comfy.samplers.KSampler.SCHEDULERS.count(scheduler) == 1
    assert "SamplerDEIS" in comfy.pack.NODE_CLASS_MAPPINGS and "DEISScheduler" in comfy.pack.NODE_CLASS_MAPPINGS


def test_a_second_import_adds_nothing_and_foreign_functions_are_kept(comfy):
    import importlib.util

    lists = (comfy.samplers.KSAMPLER_NAMES, comfy.samplers.SAMPLER_NAMES, comfy.samplers.SCHEDULER_NAMES)
    before = [list(lst) for lst in lists]
    spec = importlib.util.spec_from_file_location("comfyui_deis_second_copy", comfy_support.REPO / "__init__.py",
                                                  submodule_search_locations=[str(comfy_support.REPO)])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert [list(lst) for lst in lists] == before

    registration = comfy.pack.nodes.registration
    foreign = lambda *a, **k: None  # noqa: E731  (another pack's function under one of our names)
    original = comfy.k_sampling.sample_deis_sde
    comfy.k_sampling.sample_deis_sde = foreign
    try:
        added, skipped = registration.register_samplers(comfy.pack.nodes.samplers.SAMPLER_FUNCTIONS)
        assert skipped == ["deis_sde"] and comfy.k_sampling.sample_deis_sde is foreign
        assert "deis_sde" not in added
    finally:
        comfy.k_sampling.sample_deis_sde = original
    assert [list(lst) for lst in lists] == before


def test_model_awareness(comfy, models, caplog):
    model_info = comfy.pack.nodes.model_info
    deis = comfy.pack.deis
    eps = models["eps"].get_model_object("model_sampling")
    flow = models["flow"].get_model_object("model_sampling")
    assert model_info.parameterisation_of(eps) == "ve"
    assert model_info.parameterisation_of(flow) == "flow"
    for kind, form in (("zsnr", "ve"), ("svd", "ve"), ("audio", "ve"), ("cascade", "ve"), ("flux", "flow")):
        sampling = comfy_support.exact_model(kind).get_model_object("model_sampling")
        assert model_info.parameterisation_of(sampling) == form, kind
    table = model_info.time_map_of(eps, "ve")
    assert isinstance(table, deis.DiscreteVPTime)
    assert torch.allclose(torch.from_numpy(table.sigmas).float(), eps.sigmas)
    assert isinstance(model_info.time_map_of(flow, "flow"), deis.FlowTime)

    class Strange(torch.nn.Module):
        sigma_min, sigma_max = 0.1, 10.0

    caplog.set_level(logging.WARNING, logger="comfyui-deis")
    assert model_info.parameterisation_of(Strange()) == "ve"
    assert model_info.parameterisation_of(Strange()) == "ve"
    assert sum("unknown model_sampling class Strange" in r.message for r in caplog.records) == 1

    wrapped = types.SimpleNamespace(inner_model=types.SimpleNamespace(model_patcher=models["flow"]))
    options = model_info.model_options(wrapped)
    assert options["parameterisation"] == "flow" and isinstance(options["model_time_map"], deis.FlowTime)
    assert model_info.model_options(object()) == {"parameterisation": "ve"}


def test_stable_cascades_table_gives_a_time_without_its_repeated_ends(comfy, caplog):
    """Stable Cascade's sigma table repeats its clamped end values; its time is the index into the rest."""
    model_info = comfy.pack.nodes.model_info
    sampling = comfy_support.exact_model("cascade").get_model_object("model_sampling")
    table = sampling.sigmas.double().numpy()
    assert (table[1:] <= table[:-1]).sum() > 0  # the table does repeat values
    caplog.set_level(logging.WARNING, logger="deis")
    time_map = model_info.time_map_of(sampling, "ve")
    assert isinstance(time_map, comfy.pack.deis.DiscreteVPTime) and not caplog.records
    assert time_map.sigmas.min() == table.min() and time_map.sigmas.max() == table.max()


# --------------------------------------------------------------------------- accuracy through KSampler

@pytest.mark.parametrize("kind, scheduler", [("eps", "karras"), ("flow", "simple")])
def test_each_registered_name_beats_euler_through_ksampler(comfy, models, kind, scheduler):
    model, steps = models[kind], 10
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 0)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps)
    exact = MIXTURE.reference(start_state(model, sigmas, noise, latent), float(sigmas[0]), 0.0, form(kind))
    euler = relative_error(ksampler(comfy, model, "euler", scheduler, steps), exact)
    tolerance = 0.6 * euler  # a tolerance that ComfyUI's euler fails at the same step count
    for name in pack_names(comfy, stochastic=False):
        error = relative_error(ksampler(comfy, model, name, scheduler, steps), exact)
        assert error < tolerance, (name, error, euler)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_sampler_custom_advanced_with_sampler_deis_and_the_deis_scheduler(comfy, models, kind):
    model = models[kind]
    pack_nodes = comfy.pack.NODE_CLASS_MAPPINGS
    sigmas = pack_nodes["DEISScheduler"]().get_sigmas(model, 10, 1.0, "deis_time_quadratic", 2.0, 7.0)[0]
    assert sigmas.shape == (11,) and sigmas[-1] == 0
    assert torch.isclose(sigmas[0], model.get_model_object("model_sampling").sigma_max.float())
    widgets = dict(zip(comfy.pack.nodes.samplers.ADVANCED_WIDGETS, ("tab", 2, "v", True, 1, 0.0, 0.0, 0.0, 0.0, 1.0,
                                                                       0.0, 0.0)))
    sampler = pack_nodes["SamplerDEISAdvanced"]().get_sampler(**widgets)[0]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    noise = comfy.custom.RandomNoise().get_noise(3)[0]
    guider = comfy.custom.CFGGuider().get_guider(model, comfy_support.empty_conditioning(),
                                                 comfy_support.empty_conditioning(), 4.0)[0]
    out = comfy.custom.SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, latent)[0]["samples"]
    start = start_state(model, sigmas, noise.generate_noise(latent), latent["samples"])
    exact = MIXTURE.reference(start, float(sigmas[0]), 0.0, form(kind))
    euler = comfy.custom.SamplerCustomAdvanced().sample(
        noise, guider, comfy.samplers.sampler_object("euler"), sigmas, latent)[0]["samples"]
    assert relative_error(out, exact) < relative_error(euler, exact) / 2


def advanced_combinations(comfy, sampled=False):
    """Every combination of Sampler DEIS (advanced)'s widgets (degree 1 to 3; eta 0, 0.5 and 1; s_noise 1 and 0.8;
    the cap off and 1.5; each angle off and 0.3), as (widget values, its ``deis.Config`` or the refusal). With
    ``sampled``, the caps, angles and s_noise vary one at a time from their defaults (each still meets every
    combination of the method widgets), which keeps the sampling test fast."""
    import itertools

    samplers = comfy.pack.nodes.samplers
    for values in itertools.product(samplers.ADVANCED_VARIANTS, range(1, 4), comfy.pack.deis.INTEGRANDS,
                                    (False, True), range(3), (0.0, 1.5), (0.0, 0.3), (0.0, 0.3), (0.0, 0.5, 1.0),
                                    (1.0, 0.8), (0.0, 0.05), (0.0, 4.0)):
        if sampled and sum((values[5] != 0.0, values[6] != 0.0, values[7] != 0.0, values[9] != 1.0,
                            values[10] != 0.0, values[11] != 0.0)) > 1:
            continue
        try:
            yield values, samplers.advanced_config(**dict(zip(samplers.ADVANCED_WIDGETS, values)))
        except ValueError as error:
            yield values, error


def test_every_accepted_sampler_deis_combination_samples_the_learned_models(comfy):
    """Every combination either node accepts samples both shipped learned models and is no worse than the
    plainest method with half the steps: at 20 steps a deterministic one is at least as close to the exact ODE
    solution as DDIM at 10 (64 samples), a stochastic one, whatever its eta, at least as close in Frechet distance
    to the model's own samples (drawn at 200 steps) as ancestral DDIM (eta 1) at 10 (512 samples, enough that
    the distance measures the sampler rather than the draw). Combinations whose plans are equal on a schedule are
    run once."""
    from benchmarks.families import FAMILIES, reference_solution
    from benchmarks.quality import frechet_distance

    samplers, deis, samples, sde_samples = comfy.pack.nodes.samplers, comfy.pack.deis, 64, 512
    configs = [config for _, config in advanced_combinations(comfy, sampled=True) if isinstance(config, deis.Config)]
    methods = [(method, eta) for method in samplers.METHODS for eta in (0.0, 0.5, 1.0)
               if not eta or method in samplers.METHODS_WITH_ETA]
    assert len(configs) > 400
    checked = 0
    for family, kind, scheduler in (("digits", "eps", "karras"), ("flow-digits", "flow", "simple")):
        denoiser = FAMILIES[family].denoiser(form(kind))
        model = comfy_support.exact_model(kind, denoiser=denoiser)
        model_sampling = model.get_model_object("model_sampling")
        noise = torch.randn(samples, 4, 4, 4, generator=torch.Generator().manual_seed(0))
        sde_noise = torch.randn(sde_samples, 4, 4, 4, generator=torch.Generator().manual_seed(2))
        cond = comfy_support.empty_conditioning()

        def run(function, stochastic, steps, seed=0):
            start = sde_noise if stochastic else noise
            sigmas = comfy.samplers.calculate_sigmas(model_sampling, scheduler, steps)
            out = comfy.sample.sample_custom(model, start, 1.0, comfy.samplers.KSAMPLER(function), sigmas, cond,
                                             cond, torch.zeros_like(start), disable_pbar=True, seed=seed)
            assert torch.isfinite(out).all()
            return out

        sigmas_20 = comfy.samplers.calculate_sigmas(model_sampling, scheduler, 20)
        start = start_state(model, sigmas_20, noise, torch.zeros_like(noise))
        exact = reference_solution(FAMILIES[family].reference_denoiser(form(kind)), start, float(sigmas_20[0]))
        ddim = deis.Config(degree=0, integrand="data")
        ode_bound = relative_error(run(samplers.comfy_sampler(ddim), False, 10), exact)
        ancestral = samplers.comfy_sampler(ddim.replace(eta=1.0))
        own = run(ancestral, True, 200, seed=1).reshape(sde_samples, 1, 8, 8)
        sde_bound = frechet_distance(run(ancestral, True, 10).reshape(sde_samples, 1, 8, 8), own)

        def check(function, stochastic, label):
            out = run(function, stochastic, 20)
            if stochastic:
                distance = frechet_distance(out.reshape(sde_samples, 1, 8, 8), own)
                assert distance <= sde_bound, (family, label, distance, sde_bound)
            else:
                error = relative_error(out, exact)
                assert error <= ode_bound, (family, label, error, ode_bound)

        seen = set()
        for config in configs:
            key = (deis.get_plan(sigmas_20, config, **comfy_support.model_form(model)).steps, config.s_noise)
            if key not in seen:
                seen.add(key)
                check(samplers.comfy_sampler(config), bool(config.eta), config)
                checked += 1
        for method, eta in methods:
            check(samplers.method_sampler(method, eta), bool(eta), (method, eta))
    assert checked > 100


def test_refused_combinations_name_every_problem_in_one_message(comfy):
    """Each refused combination is one message, naming the node and for each problem a widget and a value that
    works (or the corrector to turn off); the same settings with ComfyUI's own range checks (a widget holds its
    min to max) are refused the same way when the node runs."""
    samplers = comfy.pack.nodes.samplers
    refused = [(values, error) for values, error in advanced_combinations(comfy) if isinstance(error, ValueError)]
    assert refused
    for values, error in refused:
        message = str(error)
        assert message.startswith("Sampler DEIS (advanced): "), message
        assert any(f"{w} " in message for w in samplers.ADVANCED_WIDGETS), message
        assert "; set " in message or "turn the corrector off" in message, message
        with pytest.raises(ValueError, match=re.escape(message)):
            samplers.SamplerDEISAdvanced().get_sampler(**dict(zip(samplers.ADVANCED_WIDGETS, values)))
    with pytest.raises(ValueError, match="^Sampler DEIS: eta 0.5 adds noise, which method \"tAB3, the paper's\""):
        comfy.pack.NODE_CLASS_MAPPINGS["SamplerDEIS"]().get_sampler("tAB3, the paper's", 0.5)
    verdict = comfy.pack.NODE_CLASS_MAPPINGS["SamplerDEIS"].VALIDATE_INPUTS("auto")
    assert "earlier release" in verdict and "'uncorrected'" in verdict


def test_recommended_with_eta_is_deis_sde_at_that_eta_and_the_model_is_read(comfy, models):
    node = comfy.pack.NODE_CLASS_MAPPINGS["SamplerDEIS"]()
    model, cond = models["flow"], comfy_support.empty_conditioning()
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 3)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 12)

    def run(sampler):
        return comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond, latent, disable_pbar=True,
                                          seed=5)

    assert torch.equal(run(node.get_sampler("recommended", 0.7)[0]),
                       run(comfy.samplers.ksampler("deis_sde", {"eta": 0.7})))
    assert torch.equal(run(node.get_sampler("recommended", 0.0)[0]),
                       run(comfy.samplers.sampler_object("deis_corrected")))
    direct = comfy.pack.deis.sample_deis(MIXTURE.denoiser("flow"), noise.double(), sigmas.double(), disable=True,
                                         config="deis_corrected", parameterisation="flow",
                                         model_time_map=comfy.pack.deis.FlowTime())
    torch.testing.assert_close(run(node.get_sampler("recommended", 0.0)[0]).double(), direct, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_deis_corrected_reads_the_cfg_scale_from_comfyuis_guider(comfy, models, kind):
    """KSampler's cfg reaches deis_corrected through ComfyUI's CFGGuider: above the entry's corrector_max_cfg (4) it
    samples exactly as its configuration without the corrector, at cfg 4 or less as the configuration itself."""
    model, cond = models[kind], comfy_support.empty_conditioning()
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 3)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", 10)
    config = comfy.pack.deis.named_config("deis_corrected", "flow" if kind == "flow" else "ve")
    assert config.corrector_max_cfg == 4.0

    def run(sampler, cfg):
        return comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, cond, cond, latent, disable_pbar=True,
                                          seed=5)

    entry = comfy.samplers.sampler_object("deis_corrected")
    uncorrected = comfy.samplers.KSAMPLER(comfy.pack.nodes.samplers.comfy_sampler(config.replace(corrector=False)))
    corrected = comfy.samplers.KSAMPLER(comfy.pack.nodes.samplers.comfy_sampler(config.replace(corrector_max_cfg=None)))
    assert torch.equal(run(entry, 6.0), run(uncorrected, 6.0))
    assert torch.equal(run(entry, 4.0), run(corrected, 4.0))
    assert not torch.equal(run(entry, 6.0), run(corrected, 6.0))


# --------------------------------------------------------------------------- graph cases

def test_ksampler_advanced_start_and_end_steps_chain(comfy, models):
    model, advanced = models["eps"], comfy.nodes.KSamplerAdvanced()
    cond = comfy_support.empty_conditioning()
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    name = comfy.pack.nodes.samplers.RECOMMENDED
    first = advanced.sample(model, "enable", 0, 20, 1.0, name, "karras", cond, cond, latent, 0, 8, "enable")[0]
    second = advanced.sample(model, "disable", 0, 20, 1.0, name, "karras", cond, cond, first, 8, 20, "disable")[0]
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", 20)
    noise = comfy.sample.prepare_noise(latent["samples"], 0)
    start = start_state(model, sigmas, noise, latent["samples"])
    middle = MIXTURE.reference(start, float(sigmas[0]), float(sigmas[8]))
    assert relative_error(first["samples"], middle) < 5e-3  # a segment ends at its last sigma
    whole = ksampler(comfy, model, name, "karras", 20)
    exact = MIXTURE.reference(start, float(sigmas[0]), 0.0)
    assert relative_error(second["samples"], exact) < 2e-2 and relative_error(whole, exact) < 2e-2


def test_split_sigmas_segments_start_with_fresh_history(comfy, models):
    model = models["flow"]
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 12)
    high, low = comfy.custom.SplitSigmas().get_sigmas(sigmas, 5)
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 2)
    name = comfy.pack.nodes.samplers.RECOMMENDED
    sampler = comfy.samplers.sampler_object(name)
    cond = comfy_support.empty_conditioning()
    middle = comfy.sample.sample_custom(model, noise, 1.0, sampler, high, cond, cond, latent, disable_pbar=True)
    final = comfy.sample.sample_custom(model, torch.zeros_like(noise), 1.0, sampler, low, cond, cond, middle,
                                       disable_pbar=True)
    # the first segment is exactly the core sampler on those sigmas, in the flow form, with the flow time
    deis = comfy.pack.deis
    direct = deis.sample_deis(MIXTURE.denoiser("flow"), noise.double(), high.double(), disable=True,
                              parameterisation="flow", model_time_map=deis.FlowTime(), config=name)
    ms = model.get_model_object("model_sampling")
    torch.testing.assert_close(ms.noise_scaling(high[-1], torch.zeros_like(noise), middle, False).double(),
                               direct, rtol=1e-4, atol=1e-4)
    exact = MIXTURE.reference(noise.double().numpy(), 1.0, 0.0, "flow")
    assert relative_error(final, exact) < 0.1


def test_denoise_below_one_starts_below_sigma_max(comfy, models):
    model = models["eps"]
    image = torch.from_numpy(MIXTURE.means[:1]).float().expand(1, 4, 8, 8).clone()
    latent = {"samples": image}
    out = ksampler(comfy, model, comfy.pack.nodes.samplers.RECOMMENDED, "karras", 10, latent=latent, denoise=0.5)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", 20)[-11:]
    noise = comfy.sample.prepare_noise(image, 0)
    start = start_state(model, sigmas, noise, image)
    exact = MIXTURE.reference(start, float(sigmas[0]), 0.0)
    euler = ksampler(comfy, model, "euler", "karras", 10, latent=latent, denoise=0.5)
    assert relative_error(out, exact) < relative_error(euler, exact) / 2


def test_inpainting_mask_keeps_the_unmasked_latent(comfy, models):
    image = torch.full((1, 4, 8, 8), 0.5)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1.0  # sample the left half, keep the right half
    out = ksampler(comfy, models["eps"], comfy.pack.nodes.samplers.RECOMMENDED, "karras", 8,
                   latent={"samples": image, "noise_mask": mask})
    torch.testing.assert_close(out[..., 4:], image[..., 4:])
    assert not torch.allclose(out[..., :4], image[..., :4])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 4, 3, 8, 8)], ids=["batch3", "video5d"])
def test_batches_and_video_latents(comfy, models, shape):
    model = models["flow"]
    latent = torch.zeros(shape)
    out = ksampler(comfy, model, comfy.pack.nodes.samplers.RECOMMENDED, "simple", 10, latent={"samples": latent})
    assert out.shape == shape and torch.isfinite(out).all()
    noise = comfy.sample.prepare_noise(latent, 0)
    exact = MIXTURE.reference(noise.double().numpy(), 1.0, 0.0, "flow")
    euler = ksampler(comfy, model, "euler", "simple", 10, latent={"samples": latent})
    assert relative_error(out, exact) < relative_error(euler, exact) / 2


def test_progress_callback_once_per_step_and_cancel_between_steps(comfy, models):
    calls, model_calls = [], []
    model = models["eps"].clone()

    def counting(apply_model, args):
        model_calls.append(float(args["timestep"][0]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    model.set_model_unet_function_wrapper(counting)

    def hook(value, total, preview, **kwargs):
        calls.append(value)
        if value == 3:
            comfy.management.interrupt_current_processing(True)
        comfy.management.throw_exception_if_processing_interrupted()

    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(comfy.management.InterruptProcessingException):
            ksampler(comfy, model, comfy.pack.nodes.samplers.RECOMMENDED, "karras", 10)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        comfy.management.interrupt_current_processing(False)
    assert calls == [1, 2, 3] and len(model_calls) == 3

    # Runge-Kutta: three model calls per step, one progress tick per step.
    steps = []
    sampler = comfy.pack.NODE_CLASS_MAPPINGS["SamplerDEIS"]().get_sampler("Runge-Kutta 3", 0.0)[0]
    sigmas = comfy.samplers.calculate_sigmas(models["eps"].get_model_object("model_sampling"), "karras", 6)
    guider = comfy.custom.CFGGuider().get_guider(models["eps"], comfy_support.empty_conditioning(),
                                                 comfy_support.empty_conditioning(), 1.0)[0]
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, **kwargs: steps.append((value, total)))
    try:
        comfy.custom.SamplerCustomAdvanced().sample(comfy.custom.RandomNoise().get_noise(0)[0], guider, sampler,
                                                    sigmas, {"samples": torch.zeros(1, 4, 8, 8)})
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert steps == [(i, 6) for i in range(1, 7)]


# --------------------------------------------------------------------------- oracles and stochastic DEIS

def test_data_form_linear_in_log_sigma_is_comfyuis_res_multistep(comfy, models):
    """Independent oracle: ComfyUI's res_multistep is the exponential integrator with D linear in -log sigma."""
    node = comfy.pack.NODE_CLASS_MAPPINGS["SamplerDEISAdvanced"]()
    values = ("logrhoab", 1, "data", False, 0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    sampler = node.get_sampler(**dict(zip(comfy.pack.nodes.samplers.ADVANCED_WIDGETS, values)))[0]
    model, cond = models["eps"], comfy_support.empty_conditioning()
    latent = torch.zeros(2, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 5)
    for scheduler in ("karras", "normal"):
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, 12)
        ours = comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond, latent, disable_pbar=True)
        theirs = comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.sampler_object("res_multistep"),
                                            sigmas, cond, cond, latent, disable_pbar=True)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_ddim_with_eta_one_is_comfyuis_ancestral_euler(comfy, models):
    """The core's DDIM at eta = 1 on an SD-style model, the SDE's own first-order step, is ancestral Euler (DDPM's
    posterior step) step for step from the same seed (the same noise draws). (Sampler DEIS refuses that pair, as
    benchmarks/results/ddim_eta.md measures: it offers nothing euler_ancestral does not.)"""
    samplers, deis = comfy.pack.nodes.samplers, comfy.pack.deis
    sampler = comfy.samplers.KSAMPLER(samplers.comfy_sampler(deis.Config(degree=0, integrand="data", eta=1.0)))
    model, cond = models["eps"], comfy_support.empty_conditioning()
    latent = torch.zeros(2, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 7)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 10)
    ours = comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond, latent, disable_pbar=True,
                                      seed=11)
    theirs = comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.ksampler("euler_ancestral", {"eta": 1.0}),
                                        sigmas, cond, cond, latent, disable_pbar=True, seed=11)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * float(theirs.abs().max()))
    ode = comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.sampler_object("euler"), sigmas, cond, cond,
                                     latent, disable_pbar=True, seed=11)
    assert (ours - ode).abs().max() > 0.1  # the noise is there


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_the_stochastic_entry_follows_the_seed(comfy, models, kind):
    name = "deis_sde"
    first = ksampler(comfy, models[kind], name, "simple", 12, seed=1)
    again = ksampler(comfy, models[kind], name, "simple", 12, seed=1)
    other = ksampler(comfy, models[kind], name, "simple", 12, seed=2)
    assert torch.equal(first, again) and torch.isfinite(first).all()
    assert (first - other).abs().max() > 0.1


def test_the_stochastic_entry_with_split_sigmas_and_sampler_custom_advanced_noise(comfy, models):
    """SplitSigmas: each segment draws its own noise and the chain stays finite; SamplerCustomAdvanced's
    NOISE seed sets the injected noise too."""
    model = models["eps"]
    sampler = comfy.samplers.sampler_object("deis_sde")
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", 12)
    high, low = comfy.custom.SplitSigmas().get_sigmas(sigmas, 5)
    guider = comfy.custom.CFGGuider().get_guider(model, comfy_support.empty_conditioning(),
                                                 comfy_support.empty_conditioning(), 1.0)[0]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    run = comfy.custom.SamplerCustomAdvanced().sample
    first = run(comfy.custom.RandomNoise().get_noise(4)[0], guider, sampler, high, latent)[0]
    second = run(comfy.custom.DisableNoise().get_noise()[0], guider, sampler, low, first)[0]["samples"]
    assert torch.isfinite(second).all() and second.abs().max() < 5
    whole_a = run(comfy.custom.RandomNoise().get_noise(4)[0], guider, sampler, sigmas, latent)[0]["samples"]
    whole_b = run(comfy.custom.RandomNoise().get_noise(4)[0], guider, sampler, sigmas, latent)[0]["samples"]
    whole_c = run(comfy.custom.RandomNoise().get_noise(5)[0], guider, sampler, sigmas, latent)[0]["samples"]
    assert torch.equal(whole_a, whole_b) and (whole_a - whole_c).abs().max() > 0.1


def test_the_stochastic_entry_in_img2img_and_ksampler_advanced(comfy, models):
    """denoise < 1 starts below sigma_max with fresh noise from the seed; KSamplerAdvanced's start and end
    steps chain two stochastic segments, each drawing its own noise from its seed."""
    model = models["eps"]
    latent = {"samples": torch.full((1, 4, 8, 8), 0.5)}
    first, again = (ksampler(comfy, model, "deis_sde", "karras", 12, latent=latent, denoise=0.5, seed=s)
                    for s in (1, 1))
    other = ksampler(comfy, model, "deis_sde", "karras", 12, latent=latent, denoise=0.5, seed=2)
    assert torch.equal(first, again) and torch.isfinite(first).all() and (first - other).abs().max() > 0.01
    advanced, cond = comfy.nodes.KSamplerAdvanced(), comfy_support.empty_conditioning()
    empty = {"samples": torch.zeros(1, 4, 8, 8)}
    head = advanced.sample(model, "enable", 3, 20, 1.0, "deis_sde", "karras", cond, cond, empty, 0, 8, "enable")[0]
    tails = [advanced.sample(model, "disable", seed, 20, 1.0, "deis_sde", "karras", cond, cond, head, 8, 20,
                             "disable")[0]["samples"] for seed in (3, 4)]
    assert all(torch.isfinite(t).all() for t in tails) and (tails[0] - tails[1]).abs().max() > 0.01


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_the_advanced_node_with_its_help_pages_settings_is_deis_corrected(comfy, models, kind):
    """Sampler DEIS (advanced) opens on deis_corrected's SD-style settings, and its help page gives the flow ones;
    either gives the entry's plan on that kind of model."""
    import re

    samplers, model = comfy.pack.nodes.samplers, models[kind]
    inputs = comfy.pack.nodes.help.node_inputs(samplers.SamplerDEISAdvanced)
    widgets = {name: spec[1]["default"] for name, spec in inputs.items()}
    if kind == "flow":
        page = " ".join((comfy_support.REPO / "web" / "docs" / "SamplerDEISAdvanced.md").read_text().split())
        settings = re.search(r"On flow models \*\*deis_corrected\*\* is: (.*?)\. ", page).group(1)
        widgets.update(max_step_angle=0.0, corrector_max_angle=0.0, max_amplification=0.0)
        for setting in settings.replace("corrector,", "corrector True,").split(", "):
            words = setting.split()
            if len(words) == 1:  # a value whose widget is plain: the variant or the integrand
                widgets["variant" if words[0].startswith("tab") else "integrand"] = words[0]
            else:
                value = words[1]
                widgets[words[0]] = True if value == "True" else float(value) if "." in value else int(value)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", 12)
    node_plan = comfy.pack.deis.get_plan(sigmas, samplers.advanced_config(**widgets), **comfy_support.model_form(model))
    entry = comfy.pack.deis.named_config("deis_corrected", form(kind))
    entry_plan = comfy.pack.deis.get_plan(sigmas, entry, **comfy_support.model_form(model))
    assert node_plan.steps == entry_plan.steps


def test_of_comfyuis_schedulers_only_linear_quadratic_has_near_repeats(comfy):
    """ComfyUI's schedulers at 5 to 50 steps on every model kind: no polynomial of any entry leaves a node out
    (deis.coefficients.step_nodes), so the plans are those of the plain rule, but on linear_quadratic, where its
    linear part meets its quadratic one with a step a small fraction of the next."""
    import numpy as np

    deis, left_out = comfy.pack.deis, set()
    for kind in comfy_support.MODEL_KINDS:
        model = comfy_support.exact_model(kind)
        model_sampling = model.get_model_object("model_sampling")
        for scheduler in comfy.samplers.SCHEDULER_NAMES:
            for steps in (5, 8, 10, 15, 20, 30, 50):
                sigmas = comfy.samplers.calculate_sigmas(model_sampling, scheduler, steps).double().numpy()
                sigmas = sigmas[np.append(True, np.diff(sigmas) != 0)]
                for entry in deis.ENTRIES:
                    config = deis.named_config(entry, form(kind))
                    plan = deis.get_plan(sigmas, config, **comfy_support.model_form(model))
                    if any(0.0 in tuple(step.update.weights)[:-1] + tuple(step.correction or ())[:-1]
                           for step in plan.steps):
                        left_out.add(scheduler)
    assert left_out == {"linear_quadratic"}
