"""The one skeleton every Beam job runs: prepare the output, grow the graph, run, prove, summarise.

A job describes itself as a `JobPlan` (its output, its graph, how it accounts and describes
what it wrote); `run_job` does the rest in the same order for all of them:

    prepare_output_dir -> build(pipeline) -> run (or dry-run: describe and stop)
    -> summarize_reports -> finish(summary, result): check_accounting + the job's fields
    -> write summary.json (last: a directory without it is incomplete)
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Mapping, Optional, Sequence

import apache_beam as beam

from beam_pipelines import dataset_output as out
from beam_pipelines.pipeline_options import is_dry_run, make_pipeline_options, normalise_beam_args, run_pipeline
from noisystudent import dataset_dir

log = logging.getLogger(__name__)


@dataclasses.dataclass
class JobPlan:
    output_dir: str
    num_shards: Mapping[str, int]  # split -> shards the job writes (prepared, then summarised)
    overwrite: bool
    build: Callable[[beam.Pipeline], None]  # the job's graph, reports and dead letters included
    finish: Callable[[dict, Any], dict]  # (summary of the reports, PipelineResult) -> summary.json
    summarized_splits: Optional[Sequence[str]] = None  # default: num_shards' splits
    other_outputs: Sequence[str] = ()  # globs of the job's other files, removed with the stale shards


def run_job(plan: JobPlan, beam_args: Sequence[str], save_main_session: bool = True,
            test_pipeline: Optional[beam.Pipeline] = None):
    """Run the plan; returns the summary written (or, in a dry run, the job's description)."""
    beam_args = normalise_beam_args(beam_args)
    dry_run = is_dry_run(beam_args)
    if not dry_run:
        out.prepare_output_dir(plan.output_dir, plan.num_shards, plan.overwrite, plan.other_outputs)
    pipeline = test_pipeline or beam.Pipeline(options=make_pipeline_options(beam_args, save_main_session))
    plan.build(pipeline)
    result = run_pipeline(pipeline, dry_run)
    if dry_run:
        return result
    splits = plan.num_shards if plan.summarized_splits is None else plan.summarized_splits
    summary = plan.finish(out.summarize_reports(plan.output_dir, splits), result)
    dataset_dir.write_summary(plan.output_dir, summary)
    log.info("%s written to %s: %s", summary.get("job") or summary.get("dataset") or "records", plan.output_dir,
             {split: entry["records"] for split, entry in summary.get("splits", {}).items()})
    return summary
