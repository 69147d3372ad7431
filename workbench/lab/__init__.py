"""The lab: where organisms are made. Training, data pools, staged recipes, the planted deficit, model cards.

    config       OrganismConfig: one training stage's recipe (torch-free)
    data         training items as tensors; the large pool rendered in parallel, saved and memory-mapped
    model        a fresh or initialised organism, and the model of a training checkpoint
    readouts     the auxiliary read-outs (patch loss, where loss), used only while training
    calibration  the temperature folded into the output layer after label smoothing
    checkpoint   a training run's state: saved at every evaluation, read back safely
    stages       a staged recipe's links: a stage's record, an exported checkpoint to start the next from
    train        the training loop; a pool built for a recipe
    deficit      choosing spatial heads by ablation and turning them down (planted.json = ground truth)
    card         model cards (README.md) from measured numbers

The CLI is ``workbench lab`` (:mod:`workbench.cli.lab`). The library uses the shipped organism through
:mod:`workbench.organism` only; no module outside this package and its CLI imports it
(tests/unit/test_import_graph.py), so serving, sweeps, discovery and the app never depend on training code.
"""
