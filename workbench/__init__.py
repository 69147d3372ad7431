"""Spatial Head Workbench: find the attention heads that carry spatial relations in VLMs and
repair spatial reasoning with ScAle, a few learned, bounded scalars on head outputs.

Data flow: probes → models/sites → interventions → sweeps → store → scale/discovery → app.
"""

from workbench.errors import WorkbenchError

__version__ = "0.1.0"
__all__ = ["WorkbenchError", "__version__"]
