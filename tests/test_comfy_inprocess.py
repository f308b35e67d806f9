"""The pack inside a real ComfyUI, in-process: registration, model awareness, and the graph cases.

Needs COMFYUI_PATH (skips with a message otherwise). Models are weightless BaseModels whose
denoiser is the exact Gaussian-mixture posterior mean (tests/comfy_support.py).
"""

import logging
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
    return [name for name, options in comfy.pack.nodes.samplers.KSAMPLER_CONFIGURATIONS.items()
            if stochastic or not options.get("eta")]


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
    samplers = comfy.pack.nodes.samplers
    model_info = comfy.pack.nodes.model_info
    deis = comfy.pack.deis
    eps = models["eps"].get_model_object("model_sampling")
    flow = models["flow"].get_model_object("model_sampling")
    assert model_info.parameterisation_of(eps) == "ve"
    assert model_info.parameterisation_of(flow) == "flow"
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
    options = samplers.model_aware_options(wrapped, {"variant": "tab"})
    assert options["parameterisation"] == "flow" and isinstance(options["time_map"], deis.FlowTime)
    plain = samplers.model_aware_options(object(), {"variant": "tab"})
    assert plain["parameterisation"] == "ve" and "time_map" not in plain


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
    sampler = pack_nodes["SamplerDEIS"]().get_sampler("tab", 3, "kutta3", "auto", "auto", True, "v", 0.0, 1.0)[0]
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


def sampler_deis_combinations(comfy):
    """Every combination of Sampler DEIS's method widgets, as (widget values, options or the refusal)."""
    import itertools

    deis, options_of = comfy.pack.deis, comfy.pack.nodes.samplers.sampler_options
    for values in itertools.product(("auto",) + deis.VARIANTS, range(4), deis.TABLEAUS,
                                    ("auto", "discrete_table", "vp_linear", "flow"), (True, False), deis.INTEGRANDS,
                                    (0.0, 0.5, 1.0)):
        variant, degree, tableau, time, lower_order_final, integrand, eta = values
        try:
            yield values, options_of(variant, degree, tableau, "auto", time, lower_order_final, integrand, eta, 1.0)
        except ValueError as error:
            yield values, error


#: How far an accepted combination may be from ComfyUI's own sampler of its kind, in Frechet distance to
#: the digits: deterministic ones from deis (DDIM, degree 0, is 2.5 times at 10 steps), stochastic ones
#: from the pack's deis_sde (its degree 0 is 3.7 times at 10 steps).
ODE_FACTOR, SDE_FACTOR = 3.0, 4.0


def test_every_accepted_sampler_deis_combination_samples_the_learned_models(comfy):
    """Sampler DEIS never produces garbage: on both shipped learned models at 10 and 20 steps, every
    combination it accepts gives finite samples within a stated factor of deis (or of deis_sde)."""
    from benchmarks.digits import load_data
    from benchmarks.families import FAMILIES
    from benchmarks.quality import frechet_distance

    data, samples = load_data(), 256
    accepted = [(values, options) for values, options in sampler_deis_combinations(comfy)
                if not isinstance(options, ValueError)]
    assert len(accepted) > 200
    worst = {}
    for family, kind, scheduler in (("digits", "eps", "karras"), ("flow-digits", "flow", "simple")):
        model = comfy_support.exact_model(kind, denoiser=FAMILIES[family].denoiser(form(kind)))
        noise = torch.randn(samples, 4, 4, 4, generator=torch.Generator().manual_seed(0))
        cond = comfy_support.empty_conditioning()
        for steps in (10, 20):
            sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps)

            def fd(sampler):
                out = comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond,
                                                 torch.zeros_like(noise), disable_pbar=True, seed=0)
                assert torch.isfinite(out).all()
                return frechet_distance(out.reshape(samples, 1, 8, 8), data)

            reference = {name: fd(comfy.samplers.sampler_object(name)) for name in ("deis", "deis_sde")}
            for values, options in accepted:
                stochastic = values[-1] > 0
                sampler = comfy.samplers.KSAMPLER(comfy.pack.nodes.samplers.comfy_sampler({}),
                                                  extra_options=options)
                if kind == "flow" and values[3] == "discrete_table":  # refused once the model is known
                    with pytest.raises(ValueError, match="time = 'discrete_table' needs an SD-style model"):
                        fd(sampler)
                    continue
                ratio = fd(sampler) / reference["deis_sde" if stochastic else "deis"]
                key = (family, steps, values)
                worst[key] = ratio
                assert ratio < (SDE_FACTOR if stochastic else ODE_FACTOR), key
    assert max(worst.values()) > 2.0  # degree 0 (DDIM) is the loosest, and the bound is near it


def test_refused_sampler_deis_combinations_name_the_widget_and_a_value(comfy):
    refused = [(values, error) for values, error in sampler_deis_combinations(comfy) if isinstance(error, ValueError)]
    assert len(refused) > 1000
    widgets = ("variant", "degree", "tableau", "time", "lower_order_final", "integrand", "eta")
    for values, error in refused:
        message = str(error)
        assert message.startswith("Sampler DEIS: ") and " set " in message, message
        named = [w for w in widgets if message.startswith(f"Sampler DEIS: {w} ")]
        assert named, message
    node = comfy.pack.NODE_CLASS_MAPPINGS["SamplerDEIS"]()
    with pytest.raises(ValueError, match="s_noise = 1.3 scales noise that only eta > 0 adds; set s_noise to 1.0"):
        node.get_sampler("auto", 2, "kutta3", "auto", "auto", True, "eps", 0.0, 1.3)
    with pytest.raises(ValueError, match="integrand = 'eps' cannot carry noise.*set integrand to 'data'"):
        node.get_sampler("logrhoab", 2, "kutta3", "auto", "auto", True, "eps", 1.0, 1.0)


def test_auto_with_eta_is_deis_sde_at_that_eta_and_parameterisation_must_match_the_model(comfy, models):
    node = comfy.pack.NODE_CLASS_MAPPINGS["SamplerDEIS"]()
    model, cond = models["flow"], comfy_support.empty_conditioning()
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 3)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 12)

    def run(sampler):
        return comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond, latent, disable_pbar=True,
                                          seed=5)

    auto = run(node.get_sampler("auto", 2, "kutta3", "auto", "auto", True, "eps", 0.7, 1.0)[0])
    sde = run(comfy.samplers.ksampler("deis_sde", {"eta": 0.7}))
    assert torch.equal(auto, sde)
    assert torch.equal(run(node.get_sampler("auto", 2, "kutta3", "auto", "auto", True, "eps", 0.0, 1.0)[0]),
                       run(comfy.samplers.sampler_object("deis_auto")))
    assert torch.equal(run(node.get_sampler("auto", 2, "kutta3", "flow", "auto", True, "eps", 0.0, 1.0)[0]),
                       run(comfy.samplers.sampler_object("deis_auto")))
    with pytest.raises(ValueError, match="parameterisation 've' does not match this model .*set parameterisation"):
        run(node.get_sampler("auto", 2, "kutta3", "ve", "auto", True, "eps", 0.0, 1.0)[0])
    with pytest.raises(ValueError, match="time = 'discrete_table' needs an SD-style model's table"):
        run(node.get_sampler("tab", 2, "kutta3", "auto", "discrete_table", True, "eps", 0.0, 1.0)[0])
    eps_model = models["eps"]
    eps_sigmas = comfy.samplers.calculate_sigmas(eps_model.get_model_object("model_sampling"), "karras", 6)
    with pytest.raises(ValueError, match="parameterisation 'flow' does not match this model"):
        comfy.sample.sample_custom(eps_model, noise, 1.0,
                                   node.get_sampler("tab", 2, "kutta3", "flow", "auto", True, "eps", 0.0, 1.0)[0],
                                   eps_sigmas, cond, cond, latent, disable_pbar=True)


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
                              parameterisation="flow", time_map=deis.FlowTime(), **deis.CONFIGURATIONS[name])
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


def test_cfg_one_and_above_one_agree_on_a_condition_free_model(comfy, models):
    one = ksampler(comfy, models["eps"], "deis_auto", "karras", 8, cfg=1.0)
    seven = ksampler(comfy, models["eps"], "deis_auto", "karras", 8, cfg=7.0)
    torch.testing.assert_close(one, seven, rtol=1e-5, atol=1e-5)


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
    sampler = comfy.pack.NODE_CLASS_MAPPINGS["SamplerDEIS"]().get_sampler("rhork", 2, "kutta3", "auto", "auto", True,
                                                                          "eps", 0.0, 1.0)[0]
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
    node = comfy.pack.NODE_CLASS_MAPPINGS["SamplerDEIS"]()
    sampler = node.get_sampler("logrhoab", 1, "kutta3", "auto", "auto", False, "data", 0.0, 1.0)[0]
    model, cond = models["eps"], comfy_support.empty_conditioning()
    latent = torch.zeros(2, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 5)
    for scheduler in ("karras", "normal"):
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, 12)
        ours = comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond, latent, disable_pbar=True)
        theirs = comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.sampler_object("res_multistep"),
                                            sigmas, cond, cond, latent, disable_pbar=True)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind, oracle", [("eps", "euler_ancestral"), ("flow", "euler_ancestral")])
def test_degree_zero_with_eta_is_comfyuis_ancestral_euler(comfy, models, kind, oracle):
    """eta = 1 (and 0.5), degree 0: ComfyUI's euler_ancestral, which runs euler_ancestral_RF on flow models,
    step for step from the same seed (the same noise draws)."""
    def sampler(eta):  # the core's option; Sampler DEIS takes eta with the data integrand only
        return comfy.samplers.KSAMPLER(comfy.pack.nodes.samplers.comfy_sampler({}), extra_options=dict(
            variant="tab", degree=0, integrand="eps", eta=eta))

    model, cond = models[kind], comfy_support.empty_conditioning()
    latent = torch.zeros(2, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 7)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 10)
    for eta in (1.0, 0.5):
        ours = comfy.sample.sample_custom(model, noise, 1.0, sampler(eta), sigmas, cond, cond, latent,
                                          disable_pbar=True, seed=11)
        theirs = comfy.sample.sample_custom(
            model, noise, 1.0, comfy.samplers.ksampler(oracle, {"eta": eta}), sigmas, cond, cond, latent,
            disable_pbar=True, seed=11)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * float(theirs.abs().max()))
        ode = comfy.sample.sample_custom(model, noise, 1.0, sampler(0.0), sigmas, cond, cond, latent,
                                         disable_pbar=True, seed=11)
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
