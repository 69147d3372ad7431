"""One training stage's recipe: :class:`OrganismConfig`. Torch-free, so cards and CLIs read it cheaply.

The defaults are stage 1 of the shipped recipe (assets/models/organism/README.md prints every stage); a
staged recipe is a chain of configs, each started from the folder the one before wrote (``init``).
The findings behind the defaults are in the training records listed in analyses/results/README.md.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields

from workbench.errors import WorkbenchError
from workbench.organism.probesets import SCENE, probe_config
from workbench.probes.generate import ProbeConfig

DATA_KINDS = ("set", "pool")


@dataclass(frozen=True)
class OrganismConfig:
    seed: int = 0
    n_train: int = 500_000  # distinct training items, rendered once (far fewer get memorised: control tasks fail held-out)
    data: str = "pool"  # "pool": chunked streams rendered in parallel (workbench.lab.data); "set": one generate() call
    steps: int = 6_000  # the cosine schedule's length; stage 1 stops early (--stop-after 5250)
    batch: int = 256
    lr: float = 1e-3  # larger rates collapse the vision tower without the patch loss (analyses/results/organism_grid_cpu.md)
    weight_decay: float = 0.01
    warmup: int = 200
    eval_every: int = 250
    canvas: int = SCENE["canvas"]
    patch: int = 16  # one object per patch on the grid: 16 image tokens
    object_size: int = SCENE["object_size"]  # px; 0: 22% of the canvas
    grid: int = SCENE["grid"]  # > 0: objects snap to the centers of cells of this many px (probes.scenes); 0: free placement
    layers: int = 6
    heads: int = 8
    kv_heads: int = 2
    head_dim: int = 16
    vision_hidden: int = 128
    vision_layers: int = 4
    zero_projector: bool = False  # start the projector's output layer at zero (see workbench.lab.model.build)
    patch_loss: float = 1.0  # weight of the auxiliary patch loss (PatchReadout); 0: answer loss only
    patch_reach: int = 0  # the patch loss also labels tokens whose patch center is within this many px of an object's center
    where_loss: float = 0.0  # weight of the language model's auxiliary read-out (WhereReadout); 0: off
    where_layer: int = 2  # WhereReadout reads the last position's residual stream after this decoder layer (0-based)
    # of the answer loss: bounds how far a never-seen answer (a held-out pair's color) is pushed down
    label_smoothing: float = 0.0
    # > 0: after training, scale the logits so the right answer's mean probability is this (answer_temperature)
    confidence: float = 0.0
    init: str = ""  # a model folder whose weights training starts from (same architecture); "": fresh weights

    def __post_init__(self) -> None:
        if self.data not in DATA_KINDS:
            raise WorkbenchError(f"unknown training data kind {self.data!r}", "use data='set' or 'pool'")
        if not self.patch_loss >= 0:
            raise WorkbenchError(f"patch_loss must be a weight ≥ 0, got {self.patch_loss}", "use 0 (off) or e.g. 1.0")
        if not self.where_loss >= 0:
            raise WorkbenchError(f"where_loss must be a weight ≥ 0, got {self.where_loss}", "use 0 (off) or e.g. 1.0")
        if not 0 <= self.label_smoothing < 1:
            raise WorkbenchError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}", "use 0 (off) or e.g. 0.1")
        if not 0 <= self.confidence < 1:
            raise WorkbenchError(f"confidence must be in [0, 1), got {self.confidence}", "use 0 (off) or e.g. 0.999")
        if self.where_loss and not 0 <= self.where_layer < self.layers:
            raise WorkbenchError(f"where_layer {self.where_layer} is not a decoder layer of a {self.layers}-layer organism",
                                 f"use 0 … {self.layers - 1}")
        self.probe_config(1, 0).validate()

    @property
    def scene(self) -> dict:
        """The scene geometry this organism is trained and evaluated on (ProbeConfig fields)."""
        return {"canvas": self.canvas, "object_size": self.object_size, "grid": self.grid}

    def probe_config(self, n: int, seed: int, test_fraction: float = 0.0, **fields) -> ProbeConfig:
        """Probes drawn the way this organism sees its scenes; ``fields``: any other ProbeConfig field."""
        return probe_config(n, seed, test_fraction, cfg=self, **fields)


def field_types() -> dict[str, type]:
    """Every field of :class:`OrganismConfig` and its type (``int``, ``float``, ``str``, ``bool``), in declaration
    order: the source of truth for the command lines that set them (``analyses/organism_retrain.py``)."""
    hints = typing.get_type_hints(OrganismConfig)
    return {f.name: hints[f.name] for f in fields(OrganismConfig)}
