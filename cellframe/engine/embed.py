"""Crop + embed single cells plate by plate on Ray actors, one model per actor.

Each actor builds its network once (on its GPU when the cluster has GPUs, else
on CPU) and embeds whole plates: it streams the plate's sites through the same
:func:`cellframe.embed.embed_objects` the local engine uses and writes the
plate's rows as one Parquet partition (temporary name, then rename). The
output has exactly the local engine's columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from cellframe.columns import PLATE, SITE, WELL
from cellframe.engine.base import MapReport
from cellframe.engine.ray import RayEngine
from cellframe.engine.run import MAX_RETRIES, connect_ray
from cellframe.partitions import (
    check_partition_version,
    completed_plates,
    remove_stale_temporaries,
    write_plate_partition,
)

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = ["embed_plates"]


class _EmbedWorker:
    """Body of a Ray actor: one network, many plates."""

    def __init__(self, make_embedder: Callable[[], Any]) -> None:
        self.embedder = make_embedder()

    def embed_plate(
        self,
        objects: pl.DataFrame,
        images: Any,
        channels: Sequence[str],
        table_root: str,
        plate: str,
        parameters: dict[str, Any],
        options: dict[str, Any],
    ) -> int:
        from cellframe.embed import embed_objects

        frame = embed_objects(
            objects, images, self.embedder, channels=channels, progress=False, **options
        )
        # Only the sites embedded here are replaced: the plate's other sites,
        # embedded by an earlier run, stay.
        return write_plate_partition(
            Path(table_root),
            plate,
            frame,
            step="embed",
            parameters=parameters,
            replace_keys=[c for c in (WELL, SITE) if c in frame.columns],
        )


def embed_plates(
    store: Store,
    objects: str | pl.DataFrame,
    images: Any,
    make_embedder: Callable[[], Any],
    *,
    channels: Sequence[str],
    dest: str | None = None,
    engine: RayEngine | None = None,
    n_actors: int | None = None,
    progress: bool = True,
    **options: Any,
) -> MapReport:
    """Embed every object of every plate on Ray and store ``cells_<model>`` as partitions.

    Parameters
    ----------
    store : Store
        Destination store (and source of the ``objects`` table when named).
    objects : str or polars.DataFrame
        The objects table (name or frame) with keys and ``Location_Center_X/Y``.
    images : mapping or picklable callable
        Site key ``(plate, well, site)`` -> ``(C, H, W)`` array, as for
        :func:`cellframe.embed.embed_objects` (e.g. a
        :class:`cellframe.embed.sources.StackLoader`); sent to every actor.
    make_embedder : callable
        Builds the network in each actor, e.g.
        ``functools.partial(ChannelEmbedder, "efficientnet_lite0", weights=...)``.
    channels : sequence of str
        Channel names in image order.
    dest : str, optional
        Output table (default ``cells_<model name>``).
    engine : RayEngine, optional
        The Ray cluster (``RayEngine(address=...)``; default: a local
        instance) and whether to recompute plates already complete
        (``RayEngine(force=True)``).
    n_actors : int, optional
        Models to run at once (default: one per GPU, else one per 2 CPUs).
    **options
        Passed to :func:`cellframe.embed.embed_objects` (``batch_size``,
        ``crops=CropSettings(...)``, ...).

    Returns
    -------
    MapReport
    """
    engine = engine if engine is not None else RayEngine()
    force = engine.force
    ray = connect_ray(engine.address, num_cpus=engine.num_cpus)
    frame = store.read(objects) if isinstance(objects, str) else objects
    embedder = make_embedder()  # on the driver only for its name and provenance
    table = dest or f"cells_{embedder.name}"
    store.check_partition_target(table)  # a native table: refused before any plate is embedded
    params = {**embedder.provenance, "channels": list(channels), "engine": "ray"}
    del embedder
    root = store.parts_dir / table
    remove_stale_temporaries(root)
    plates = sorted(frame[PLATE].unique().to_list())
    done = set(completed_plates(root))
    report = MapReport(table=table, engine="ray")
    if not force:
        for plate in sorted(done & set(plates)):
            check_partition_version(root, plate, "embed")
        report.skipped = [p for p in plates if p in done]
    todo = [p for p in plates if force or p not in done]
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    count = n_actors or (gpus if gpus else max(1, cpus // 2))
    actor_cls = ray.remote(num_gpus=1 if gpus else 0, max_restarts=MAX_RETRIES,
                           max_task_retries=MAX_RETRIES)(_EmbedWorker)  # fmt: skip
    actors = [actor_cls.remote(make_embedder) for _ in range(min(count, max(1, len(todo))))]
    images_ref = ray.put(images)
    from ray.util import ActorPool

    pool = ActorPool(actors)
    jobs = [(p, frame.filter(pl.col(PLATE) == p)) for p in todo]
    results = pool.map(
        lambda actor, job: actor.embed_plate.remote(
            job[1], images_ref, list(channels), str(root), job[0], params, options
        ),
        jobs,
    )
    from cellframe._progress import progress as progress_bar

    for (plate, _), rows in zip(
        jobs, progress_bar(results, total=len(jobs), desc="embed (ray)", unit="plate",
                           enabled=progress), strict=True,
    ):  # fmt: skip
        report.rows += rows
        report.computed.append(plate)
    remove_stale_temporaries(root)
    if completed_plates(root):
        store.register_partitions(table)
        store.record_provenance(table, "embed", {**params, "plates": report.computed},
                                n_rows=report.rows)  # fmt: skip
    return report
