"""Discovery: rank heads and save the sets you find (JSON / CSV), bound to the model they came from.

    headsets       HeadSet (heads + scores + model fingerprint), top_heads, recall_at_k: torch-free
    attention      where each head looks: the last token's attention over the image patches
    linear_probes  per-head logistic regressions on the last-token head output (Li et al., 2023)

(``linear_probes`` is not the probe *sets* of :mod:`workbench.probes`: those are the inputs; these are classifiers.)
"""
