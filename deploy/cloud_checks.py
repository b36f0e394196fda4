"""Checks shared by the Dataflow and Vertex AI submitters: clear errors before any network call."""

from __future__ import annotations

import re
from typing import Sequence


def check_project_and_region(project: str, region: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", project or ""):
        raise ValueError(f"--project {project!r}: expected a Google Cloud project id (6-30 lowercase "
                         "letters, digits, hyphens)")
    if not re.fullmatch(r"[a-z]+-[a-z]+\d+", region or ""):
        raise ValueError(f"--region {region!r}: expected a region such as us-central1")


def check_cloud_paths(args: Sequence[str], path_flags: Sequence[str], who: str) -> None:
    """Every value of `path_flags` in `args` (--flag v or --flag=v) must be a gs:// path."""
    for i, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if name in path_flags:
            value = value or (args[i + 1] if i + 1 < len(args) else "")
            if value and not value.startswith("gs://"):
                raise ValueError(f"{who} flag {name} {value!r}: cloud workers cannot read local paths; "
                                 "use gs://")
