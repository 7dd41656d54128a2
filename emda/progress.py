"""Progress that shows in a terminal and in a batch job's log alike.

In a terminal: a rich progress bar. Without one (a SLURM or PBS log, a pipe), a bar
would show only when the command ends, so a plain line goes to stderr when a task
starts, every ``EMDA_PROGRESS_SECONDS`` seconds (60 unless set) and when it finishes:
someone tailing the log of a job sees how far it got and how long it has left.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import Progress, ProgressColumn

DEFAULT_SECONDS = 60.0


def make_progress(
    enabled: bool, *columns: str | ProgressColumn, console: Console | None = None,
    transient: bool = False,
) -> Any:  # fmt: skip
    """A rich :class:`~rich.progress.Progress` in a terminal (or a disabled one), else a
    :class:`LineProgress` with the same ``add_task`` / ``update`` calls."""
    console = console or Console(stderr=True)
    if enabled and not console.is_terminal:
        return LineProgress(_interval())
    return Progress(*columns, console=console, disable=not enabled, transient=transient)


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("EMDA_PROGRESS_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


class LineProgress:
    """Progress as lines of text, for logs: at most one per task every ``interval`` s."""

    def __init__(self, interval: float = DEFAULT_SECONDS, stream: TextIO | None = None):
        self.interval, self.stream = interval, stream
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add_task(self, description: str, total: float | None = None, completed: float = 0,
                 **fields: Any) -> int:  # fmt: skip
        task = len(self.tasks)
        now = time.monotonic()
        self.tasks[task] = {
            "description": description, "total": total, "done": completed, "start": now,
            "first": completed, "printed": now, "fields": fields,
        }  # fmt: skip
        print(self.line(self.tasks[task], now), file=self.stream or sys.stderr, flush=True)
        return task

    def update(self, task: int, *, completed: float | None = None, advance: float | None = None,
               total: float | None = None, **fields: Any) -> None:  # fmt: skip
        t = self.tasks[task]
        if total is not None:
            t["total"] = total
        if completed is not None:
            t["done"] = completed
        if advance is not None:
            t["done"] += advance
        t["fields"].update(fields)
        now = time.monotonic()
        finished = t["total"] is not None and t["done"] >= t["total"]
        if finished and t.get("reported"):
            return
        if finished or now - t["printed"] >= self.interval:
            t["printed"], t["reported"] = now, finished
            print(self.line(t, now), file=self.stream or sys.stderr, flush=True)

    @staticmethod
    def line(t: dict[str, Any], now: float) -> str:
        done, total, elapsed = t["done"], t["total"], now - t["start"]
        text = f"{t['description']}: {done:g}"
        if total:
            text += f"/{total:g} ({100 * done / total:.0f} %)"
        text += f", {_duration(elapsed)} elapsed"
        rate = (done - t["first"]) / elapsed if elapsed > 0 else 0
        if total and rate > 0 and done < total:
            text += f", ~{_duration((total - done) / rate)} left"
        extra = t["fields"].get("terms")
        return f"{text}  {extra}" if extra else text


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
