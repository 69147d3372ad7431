"""Stores: the effect store (content-addressed sweep results)."""

from workbench.store.effects import EffectStore, sweep_key

__all__ = ["EffectStore", "sweep_key"]
