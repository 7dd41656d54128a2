"""Spreading a prediction's blocks over Dask workers.

Dask (``pip install "emda[distributed]"``) does the scheduling, retries and scaling
(LocalCluster on one machine; dask-jobqueue, Kubernetes or any ``dask-scheduler``
elsewhere). emda only maps :func:`emda.inference.jobs.run_block` over the blocks: every
worker loads the model once per job and writes its blocks straight into the partial
output, which therefore must be on a file system all workers see. The driver records
each finished block, shows progress and commits the output, exactly as a single process
does, so the result is the same.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from emda.errors import EmdaError
from emda.inference.blocks import Block
from emda.inference.jobs import PredictJob, run_block


def require_dask() -> None:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise EmdaError(
            "--scheduler/--workers need Dask: pip install 'emda[distributed]' (or dask distributed)"
        ) from None


@contextmanager
def dask_client(scheduler: str | None, workers: int | None) -> Iterator:
    """A client of the scheduler at ``scheduler``, or of a local cluster of ``workers``
    processes on the loopback interface (one task at a time each); closed on exit."""
    from dask.distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)  # its INFO chatter is not ours
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise EmdaError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,  # one block at a time per worker: the model is not shared
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False},  # no web server on a workstation's port
        silence_logs=logging.ERROR,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def run_blocks_on_dask(
    job: PredictJob,
    blocks: Sequence[Block],
    client,
    on_done: Callable[[str], None],
    stop,
) -> None:
    """Map :func:`run_block` over ``blocks`` on ``client``'s workers; ``on_done(key)`` is
    called in this process as blocks finish; ``stop.requested`` (Ctrl-C) cancels the rest."""
    from dask.distributed import as_completed

    futures = client.map(run_block, [job] * len(blocks), blocks, pure=False)
    try:
        for future in as_completed(futures):
            on_done(future.result())
            if stop.requested:
                raise KeyboardInterrupt
    except BaseException:
        client.cancel(futures)  # a failed block or Ctrl-C: the rest is not wanted
        raise


def worker_job(
    job: PredictJob, scheduler: str | None, workers: int | None, threads: int | None = None
) -> PredictJob:
    """The job as workers run it: a remote cluster's workers pick their own device (their
    GPU where they have one); a local cluster splits this machine's CPU threads, unless
    ``threads`` (``--threads``) says how many each worker uses."""
    if scheduler:
        return dataclasses.replace(job, device="auto", threads=threads)
    assert workers is not None
    return dataclasses.replace(job, threads=threads or max(1, (os.cpu_count() or 1) // workers))
