"""Causal methods on counterfactual minimal pairs: activation patching, path patching, direct logit
attribution, attribution patching (AtP). Each probe's partner (``ProbeItem.counterfactual()``) is
the source of the activations patched in; :mod:`workbench.causal.pairs` builds the two batches."""
