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


@pytest.fixture(scope="session")
def llava_folder(tmp_path_factory):
    """A tiny random LLaVA saved as a full local checkpoint (tokenizer, processor, chat template)."""
    from workbench.models.scaffold import random_llava_folder

    return random_llava_folder(tmp_path_factory.mktemp("models") / "tiny-llava", layers=2, heads=4, kv_heads=2, head_dim=16,
                               image_size=32, vision_hidden=32, vision_layers=1, vision_heads=2)


@pytest.fixture(scope="session")
def llava_vlm(llava_folder):
    from workbench.models.load import load_vlm

    return load_vlm(llava_folder, attn_implementation="eager")


@pytest.fixture(scope="session")
def probes32():
    """Probes rendered at the tiny LLaVA's 32 px image size."""
    return cached_probes(n=24, seed=2, canvas=32, object_size=7)
