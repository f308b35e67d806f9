"""Putting the DEIS samplers and scheduler into ComfyUI's own lists, idempotently and without overwriting."""

import logging

log = logging.getLogger("comfyui-deis")


#: The pack's names follow this built-in in the dropdowns, so that users find them beside it.
NEIGHBOUR = "deis"


def insert_after_neighbour(names, name, ours):
    """Put ``name`` after ``NEIGHBOUR`` and the pack's names (``ours``) already there, or at the end without it.

    ComfyUI stores a sampler by name in workflows, never by position, so the place is free to choose.
    """
    if name in names:
        return
    if NEIGHBOUR not in names:
        names.append(name)
        return
    position = names.index(NEIGHBOUR) + 1
    while position < len(names) and names[position] in ours:
        position += 1
    names.insert(position, name)


def register_samplers(functions):
    """Add each ``name: function`` as ``sample_<name>`` and to every list of sampler names ComfyUI reads.

    Names go right after ComfyUI's own ``deis``, in order. A name whose ``sample_<name>`` exists and is
    not this pack's is left alone. Returns (added, skipped) lists of names.
    """
    import comfy.k_diffusion.sampling as k_sampling
    import comfy.samplers as samplers

    name_lists = []
    for owner, attribute in ((samplers, "KSAMPLER_NAMES"), (samplers, "SAMPLER_NAMES"),
                             (getattr(samplers, "KSampler", None), "SAMPLERS")):
        names = getattr(owner, attribute, None)
        if isinstance(names, list) and all(names is not other for other in name_lists):
            name_lists.append(names)
    added, skipped = [], []
    for name, function in functions.items():
        existing = getattr(k_sampling, f"sample_{name}", None)
        if existing is not None and not getattr(existing, "deis_pack", False):
            skipped.append(name)
            continue
        setattr(k_sampling, f"sample_{name}", function)
        for names in name_lists:
            insert_after_neighbour(names, name, functions)
        added.append(name)
    return added, skipped


def register_scheduler(name, handler):
    """Add a scheduler to ComfyUI's KSampler dropdown, where ComfyUI has SCHEDULER_HANDLERS. Returns success."""
    import comfy.samplers as samplers

    handlers = getattr(samplers, "SCHEDULER_HANDLERS", None)
    handler_type = getattr(samplers, "SchedulerHandler", None)
    if not isinstance(handlers, dict) or handler_type is None:
        return False
    existing = handlers.get(name)
    if existing is not None and not getattr(existing.handler, "deis_pack", False):
        return False
    handler.deis_pack = True
    handlers[name] = handler_type(handler, use_ms=True)
    for names in {id(n): n for n in (getattr(samplers, "SCHEDULER_NAMES", None),
                                       getattr(getattr(samplers, "KSampler", None), "SCHEDULERS", None))
                  if isinstance(n, list)}.values():
        if name not in names:
            names.append(name)
    return True


def register_all():
    """Register everything; log one line for whatever this ComfyUI could not take."""
    from .samplers import SAMPLER_FUNCTIONS, SCHEDULER_NAME, deis_scheduler_handler

    try:
        import comfy.samplers  # noqa: F401
    except ImportError:
        log.debug("DEIS: imported outside ComfyUI; nothing to register")
        return
    skipped = []
    try:
        added, clashes = register_samplers(SAMPLER_FUNCTIONS)
        skipped += [f"sampler {name} (the name is taken)" for name in clashes]
    except Exception as error:  # an older or changed ComfyUI: the nodes still work
        skipped.append(f"the KSampler dropdown entries ({type(error).__name__}: {error})")
    try:
        if not register_scheduler(SCHEDULER_NAME, deis_scheduler_handler):
            skipped.append(f"scheduler {SCHEDULER_NAME} (no SCHEDULER_HANDLERS, or the name is taken)")
    except Exception as error:
        skipped.append(f"scheduler {SCHEDULER_NAME} ({type(error).__name__}: {error})")
    if skipped:
        log.warning("DEIS: registered what this ComfyUI supports; skipped %s", "; ".join(skipped))
