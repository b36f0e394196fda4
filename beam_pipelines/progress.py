"""Progress lines for long local work: count, rate and (when the total is known) an ETA.

    predict: labelled 120,000 of 1,000,000 images (12.0%), 2,431 images/s, ETA 0:06:02

Logged at most every `every_s` seconds from the worker doing the work. Jobs pass the total
only when it is known and one worker does all of it (local runs); on Dataflow each worker
logs its own count and rate, without an ETA.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Callable, Sequence

from noisystudent import dataset_dir

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, what: str, unit: str, total: int = 0, every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.unit, self.total, self.every_s, self._clock = what, unit, total, every_s, clock
        self.done, self._started, self._last = 0, None, 0.0

    def add(self, n: int = 1, detail: str = "") -> None:
        """Count `n` more; `detail` (e.g. where the time goes) is appended to the line when one is due."""
        now = self._clock()
        if self._started is None:
            self._started = self._last = now
        self.done += n
        if now - self._last >= self.every_s:
            self._last = now
            log.info("%s%s", self.line(now), f"; {detail}" if detail else "")

    def line(self, now: float) -> str:
        rate = self.done / max(now - (self._started or now), 1e-9)
        if not self.total:
            return f"{self.what}: {self.done:,} {self.unit}, {rate:,.0f} {self.unit}/s"
        left = max(self.total - self.done, 0)
        eta = datetime.timedelta(seconds=round(left / rate)) if rate > 0 else "unknown"
        return (f"{self.what}: {self.done:,} of {self.total:,} {self.unit} ({100 * self.done / self.total:.1f}%), "
                f"{rate:,.0f} {self.unit}/s, ETA {eta}")


def is_local(beam_args: Sequence[str]) -> bool:
    """A local runner with one worker: it does all the work, so its ETA is the job's."""
    runner = next((a.split("=", 1)[1] for a in beam_args if a.startswith("--runner=")), "")
    workers = next((a.split("=", 1)[1] for a in beam_args if a.startswith("--direct_num_workers=")), "1")
    return runner in ("", "FnApiRunner", "DirectRunner", "BundleBasedDirectRunner") and workers in ("0", "1")


def expected_records(location: str, split: str, beam_args: Sequence[str], dry_run: bool) -> int:
    """The input's record count for the progress ETA: known for a dataset dir run locally, else 0."""
    if dry_run or not is_local(beam_args) or dataset_dir.is_glob(location):
        return 0
    summary = dataset_dir.load_summary(location)
    return summary.splits[split].records if split in summary.splits else 0
