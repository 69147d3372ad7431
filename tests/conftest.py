"""Shared fixtures. Generated probe sets are cached per session: they are pure functions of the config."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from workbench.probes.generate import ProbeConfig, generate


@functools.lru_cache(maxsize=8)
def cached_probes(**kw):
    return generate(ProbeConfig(**kw))


@pytest.fixture(scope="session")
def small_probes():
    return cached_probes(n=240, seed=3)


def pixels(ps, key) -> np.ndarray:
    return np.asarray(ps.image(key))
