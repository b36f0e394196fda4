"""Apache Beam jobs: ingestion, bulk teacher inference, pseudo-label selection.

Each job is a module runnable as `python -m beam_pipelines.<job>` with the
standard Beam flags (--runner, --project, --region, --temp_location, ...).
"""
