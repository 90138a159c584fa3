"""The Ray engine: plates as Ray tasks, each writing its plate's Parquet partition.

:class:`RayEngine` maps a per-plate function over plates as Ray tasks (a
bounded window at a time), each writing its plate as one Parquet partition
(:mod:`cellframe.partitions`) under a temporary name and renaming it, so a
retried or killed task never leaves half a plate, and an interrupted run
resumes where it stopped. ``gather`` (and so ``reduce``) returns per-plate
results to the driver in plate order, so merged floating-point statistics do
not depend on which worker finished first. No step logic lives here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl

from cellframe._progress import progress as progress_bar
from cellframe.engine.base import Engine, MapReport, Plates
from cellframe.engine.run import (
    MAX_RETRIES,
    _load_plate,
    _plate_source,
    _plate_task,
    connect_ray,
    run_tasks,
)
from cellframe.partitions import (
    check_partition_version,
    completed_plates,
    partition_dir,
    remove_stale_temporaries,
)

__all__ = ["RayEngine"]


@dataclass(frozen=True)
class RayEngine(Engine):
    """Run steps on Ray: one task per plate, resumable, each plate's output written atomically.

    Parameters
    ----------
    address : str, optional
        ``None`` starts a local Ray instance (or reuses the one this process
        is connected to); ``"auto"``, ``HOST:PORT`` or ``ray://HOST:PORT``
        joins a cluster (reachability is checked first, in 5 seconds).
    force : bool, default False
        Recompute plates a previous run already completed (default: skip
        them, so an interrupted run resumes). Their old partitions are set
        aside when the run starts (so the new plates may have other columns)
        and deleted when it ends.
    num_cpus : int, optional
        CPUs of a local instance (default: all).

    Examples
    --------
    >>> RayEngine(address="auto", force=True)
    RayEngine(address='auto', force=True, num_cpus=None)
    """

    address: str | None = None
    force: bool = False
    num_cpus: int | None = None

    name: ClassVar[str] = "ray"

    def map(
        self,
        fn: Callable[[pl.DataFrame], Any],
        plates: Plates,
        dest: str,
        *,
        step: str = "map",
        parameters: Mapping[str, Any] | None = None,
        progress: bool = True,
    ) -> MapReport:
        """Apply ``fn`` to each plate as a Ray task writing ``dest``'s partition of that plate.

        See :meth:`cellframe.engine.base.Engine.map`. Plates already complete
        in ``dest`` are skipped unless ``force``; the destination is
        registered as a view over the partitions, with provenance, at the end.

        Raises
        ------
        EngineUnavailableError
            If Ray cannot be reached.
        TableExistsError
            If ``dest`` exists as a native table (or a plain view); checked
            before any work.
        cellframe.partitions.PartitionVersionError
            If a complete plate of ``dest`` was written by another cellframe
            version or step, and ``force`` is not set.
        """
        store, source = plates.store, plates.table
        names = plates.names()
        params = dict(parameters or {})
        report = MapReport(table=dest, engine=self.name)
        store.check_partition_target(dest)  # before Ray starts or a partition is written
        ray = connect_ray(self.address, num_cpus=self.num_cpus)
        table_root = store.parts_dir / dest
        remove_stale_temporaries(table_root)
        done = set(completed_plates(table_root))
        if not self.force:
            for plate in sorted(done & set(names)):
                check_partition_version(table_root, plate, step)
            report.skipped = [p for p in names if p in done]
        todo = [p for p in names if self.force or p not in done]
        if self.force:
            # Set the plates to recompute aside first: their new columns may differ
            # from the old ones (another feature selection), and each new plate is
            # checked against its siblings. The old folders go at the end of the run.
            for plate in todo:
                folder = partition_dir(table_root, plate)
                if folder.exists():
                    folder.rename(table_root / f".old-{uuid.uuid4().hex}")
        task = ray.remote(max_retries=MAX_RETRIES)(_plate_task)

        def submit(plate: str) -> Any:
            src = _plate_source(ray, store, source, plate)
            return task.remote(fn, src, str(table_root), plate, step, params)

        bar = progress_bar(range(len(todo)), desc=f"{step} (ray)", unit="plate", enabled=progress)
        for plate, rows in run_tasks(
            ray,
            todo,
            submit,
            describe=lambda plate: f"while running step {step!r} on plate {plate!r} (Ray engine)",
            bar=bar,
        ):
            report.rows += rows
            report.computed.append(plate)
        remove_stale_temporaries(table_root)
        store.register_partitions(dest)
        store.record_provenance(
            dest,
            step,
            {**params, "engine": "ray", "plates": report.computed},
            n_rows=report.rows,
            source=source,
        )
        return report

    def gather(
        self,
        fn: Callable[[pl.DataFrame], Any],
        plates: Plates,
        combine: Callable[[Iterable[Any]], Any],
        *,
        desc: str = "statistics",
        progress: bool = True,
    ) -> Any:
        """``combine`` of ``fn`` of each plate, computed as Ray tasks and combined in plate order.

        See :meth:`cellframe.engine.base.Engine.gather`.

        Raises
        ------
        EngineUnavailableError
            If Ray cannot be reached.
        """
        store, source = plates.store, plates.table
        names = plates.names()
        ray = connect_ray(self.address, num_cpus=self.num_cpus)

        def run(src: Any, plate: str) -> Any:
            return fn(_load_plate(src, plate))

        task = ray.remote(max_retries=MAX_RETRIES)(run)

        def submit(plate: str) -> Any:
            return task.remote(_plate_source(ray, store, source, plate), plate)

        def results() -> Iterator[Any]:
            # In plate order, so the combined floating-point sums do not depend on
            # which worker finished first; each result is released once combined.
            bar = progress_bar(
                range(len(names)), desc=f"{desc} (ray)", unit="plate", enabled=progress
            )
            for _, value in run_tasks(
                ray,
                names,
                submit,
                describe=lambda plate: f"while computing {desc!r} on plate {plate!r} (Ray engine)",
                ordered=True,
                bar=bar,
            ):
                yield value

        return combine(results())

    def gather_tasks(
        self,
        fn: Callable[[Any], Any],
        tasks: Sequence[Any],
        combine: Callable[[Iterable[Any]], Any],
        *,
        desc: str = "tasks",
        progress: bool = True,
    ) -> Any:
        """``combine`` of ``fn(task)`` for each task, each a Ray task, combined in task order.

        See :meth:`cellframe.engine.base.Engine.gather_tasks`. A failed task
        cancels the others and raises its own error.

        Raises
        ------
        EngineUnavailableError
            If Ray cannot be reached.
        """
        tasks = list(tasks)
        ray = connect_ray(self.address, num_cpus=self.num_cpus)
        remote = ray.remote(max_retries=MAX_RETRIES)(_call)
        positions = range(len(tasks))

        def results() -> Iterator[Any]:
            bar = progress_bar(positions, desc=f"{desc} (ray)", unit="plate", enabled=progress)
            for _, value in run_tasks(
                ray,
                positions,
                lambda i: remote.remote(fn, tasks[i]),
                describe=lambda i: (
                    f"while running {desc!r} on task {i + 1} of {len(tasks)} (Ray engine)"
                ),
                ordered=True,
                bar=bar,
            ):
                yield value

        stream = results()
        try:
            return combine(stream)
        finally:
            stream.close()  # a combine that stopped early: the tasks still running are cancelled


def _call(fn: Callable[[Any], Any], task: Any) -> Any:
    """Body of a :meth:`RayEngine.gather_tasks` task (any callable, builtins included)."""
    return fn(task)
