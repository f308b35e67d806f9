"""A bounded, thread-safe LRU cache for coefficient plans, with hit and miss counters."""

import threading
from collections import OrderedDict, namedtuple

CacheInfo = namedtuple("CacheInfo", "hits misses size maxsize")


class CoefficientCache:
    """Maps a key (exact float64 sigmas, variant, degree, parameterisation, time map, ...) to a plan.

    ComfyUI samples many images with the same schedule, so the plan is computed once.
    Plans are immutable, so one can be shared between threads.
    """

    def __init__(self, maxsize=256):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._plans = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key, compute):
        """The plan for ``key``, computed by ``compute()`` on a miss."""
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                self.hits += 1
                return plan
            self.misses += 1
        plan = compute()  # outside the lock: other threads keep hitting while this one computes
        with self._lock:
            self._plans[key] = plan
            self._plans.move_to_end(key)
            while len(self._plans) > self.maxsize:
                self._plans.popitem(last=False)
        return plan

    def info(self):
        with self._lock:
            return CacheInfo(self.hits, self.misses, len(self._plans), self.maxsize)

    def clear(self):
        with self._lock:
            self._plans.clear()
            self.hits = self.misses = 0


#: The cache the samplers use unless they are given another.
default_cache = CoefficientCache()
