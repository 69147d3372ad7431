"""Spatial probes: controlled scenes, questions with counterfactuals, probe sets, benchmark loaders.

    scenes    geometry and rendering of 2–3 object scenes
    tasks     question builders (spatial: relation, verify; control: color, shape, count, exists)
    items     ProbeItem, one probe as plain data
    probeset  ProbeSet: items + images, content hash, atomic save / verified load
    generate  the seeded, balanced generator with disjoint splits
    contact   contact sheets for eyeballing a set
    loaders   SpatialEval, What'sUp, VSR, CV-Bench from local files
"""

from workbench.probes.generate import ProbeConfig, generate
from workbench.probes.items import CONTROL_TASKS, SPATIAL_TASKS, TASKS, ProbeItem
from workbench.probes.probeset import ProbeSet
from workbench.probes.scenes import RELATIONS

__all__ = ["CONTROL_TASKS", "RELATIONS", "SPATIAL_TASKS", "TASKS", "ProbeConfig", "ProbeItem", "ProbeSet", "generate"]
