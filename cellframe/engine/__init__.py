"""Run per-plate steps locally or on a Ray cluster, with the same result.

Every per-plate step is a pure function of one plate's rows. The local engine
loops over plates in this process; the Ray engine maps the same function over
plates as Ray tasks, each writing its plate as one Parquet partition
(:mod:`cellframe.partitions`). Steps that need statistics over all plates use
:func:`reduce_plates`: exact sufficient statistics per plate, combined on the
driver.
"""

from cellframe.engine.base import ENGINES, EngineUnavailableError, MapReport
from cellframe.engine.run import map_plates, reduce_plates

__all__ = ["ENGINES", "EngineUnavailableError", "MapReport", "map_plates", "reduce_plates"]
