"""Checks shared by the Dataflow and Vertex AI submitters: clear errors before any network call."""

from __future__ import annotations

import re
from typing import Optional, Sequence


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


# GPU type (Dataflow's lowercase name; Vertex AI's enum is the same upper-cased with "_") -> the one
# machine family that carries it, and that family's machine for 1, 2, 4, 8 GPUs (Compute Engine's
# GPU machine tables: T4/P4/V100/P100 attach to N1, A100 only on A2, L4 only on G2, H100 only on A3).
GPU_MACHINES: dict[str, tuple[str, dict[int, str]]] = {
    "nvidia-tesla-t4": ("n1", {1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32"}),
    "nvidia-tesla-p4": ("n1", {1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32"}),
    "nvidia-tesla-v100": ("n1", {1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32",
                                 8: "n1-standard-64"}),
    "nvidia-tesla-p100": ("n1", {1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32"}),
    "nvidia-tesla-a100": ("a2", {1: "a2-highgpu-1g", 2: "a2-highgpu-2g", 4: "a2-highgpu-4g",
                                 8: "a2-highgpu-8g"}),
    "nvidia-a100-80gb": ("a2", {1: "a2-ultragpu-1g", 2: "a2-ultragpu-2g", 4: "a2-ultragpu-4g",
                                8: "a2-ultragpu-8g"}),
    "nvidia-l4": ("g2", {1: "g2-standard-8", 2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"}),
    "nvidia-h100-80gb": ("a3", {1: "a3-highgpu-1g", 2: "a3-highgpu-2g", 4: "a3-highgpu-4g",
                                8: "a3-highgpu-8g"}),
}


# Compute Engine's GPU machine tables: N1 takes T4, P4, V100 and P100 in these counts, up to this many vCPUs;
# on A2, A3 and G2 the machine type fixes the count (a2-highgpu-2g: 2; g2-standard-24: 2; the other
# G2 sizes: 1).
N1_GPU_VCPUS: dict[str, dict[int, int]] = {
    "nvidia-tesla-t4": {1: 48, 2: 48, 4: 96},
    "nvidia-tesla-p4": {1: 24, 2: 48, 4: 96},
    "nvidia-tesla-v100": {1: 12, 2: 24, 4: 48, 8: 96},
    "nvidia-tesla-p100": {1: 16, 2: 32, 4: 64},
}
G2_GPUS = {"g2-standard-24": 2, "g2-standard-48": 4, "g2-standard-96": 8}  # every other G2 size: 1


def gpus_of_machine(machine_type: str) -> Optional[int]:
    """The GPU count an A2, A3 or G2 machine type carries (None for N1, where it is chosen)."""
    family = machine_type.split("-", 1)[0]
    if family in ("a2", "a3"):
        match = re.search(r"-(\d+)g$", machine_type)
        return int(match.group(1)) if match else None
    if family == "g2":
        return G2_GPUS.get(machine_type, 1)
    return None


def gpu_machine_type(gpu: str, machine_type: str = "") -> str:
    """Check a TYPE:COUNT GPU request against the machine; return the machine (a default if none given).

    Accepts Dataflow's names (nvidia-l4:1) and Vertex AI's (NVIDIA_L4:1); errors list the valid choices.
    The count must be one the machine takes (Compute Engine's tables): Vertex AI and Dataflow reject
    NVIDIA_L4:2 on g2-standard-8 or a V100 on n1-standard-16 only after submission.
    """
    kind, _, count_text = gpu.partition(":")
    key = kind.lower().replace("_", "-")
    if key not in GPU_MACHINES or not count_text.isdigit():
        names = ", ".join(sorted(GPU_MACHINES)) if kind.islower() else ", ".join(
            sorted(k.upper().replace("-", "_") for k in GPU_MACHINES))
        raise ValueError(f"--gpu {gpu!r}: expected TYPE:COUNT with TYPE one of {names}")
    family, machines = GPU_MACHINES[key]
    count = int(count_text)
    if not machine_type:
        if count not in machines:
            raise ValueError(f"--gpu {gpu!r}: {family.upper()} machines carry {sorted(machines)} of these GPUs")
        return machines[count]
    if machine_type.split("-", 1)[0] != family:
        raise ValueError(f"--gpu {gpu!r} needs a {family.upper()} machine ({family}-...), not --machine_type "
                         f"{machine_type}; e.g. {machines[min(machines)]}")
    carried = gpus_of_machine(machine_type)
    if carried is not None and carried != count:
        raise ValueError(f"--gpu {gpu!r}: --machine_type {machine_type} carries {carried} GPU(s), not {count}; "
                         f"for {count}: {machines.get(count, 'none of this family')}")
    if key in N1_GPU_VCPUS:
        limits = N1_GPU_VCPUS[key]
        match = re.search(r"-(\d+)$", machine_type)
        vcpus = int(match.group(1)) if match else 0
        if count not in limits:
            raise ValueError(f"--gpu {gpu!r}: N1 machines take {sorted(limits)} of these GPUs")
        if vcpus > limits[count]:
            raise ValueError(f"--gpu {gpu!r}: {count} of these GPUs allow at most {limits[count]} vCPUs, and "
                             f"--machine_type {machine_type} has {vcpus}; e.g. {machines[count]}")
    return machine_type


# Dataflow TPU workers (Dataflow docs: tpu/tpu-support, tpu/use-tpus): our name -> the worker_accelerator
# type and topology, and the one machine type Dataflow accepts with that pair (a wrong pair is refused:
# "The requested accelerator type ... requires setting the worker machine type to ..."). Single-host only.
DATAFLOW_TPUS: dict[str, tuple[str, str, str]] = {
    "v5e-1": ("tpu-v5-lite-podslice", "1x1", "ct5lp-hightpu-1t"),
    "v5e-4": ("tpu-v5-lite-podslice", "2x2", "ct5lp-hightpu-4t"),
    "v5e-8": ("tpu-v5-lite-podslice", "2x4", "ct5lp-hightpu-8t"),
    "v6e-1": ("tpu-v6e-slice", "1x1", "ct6e-standard-1t"),
    "v6e-4": ("tpu-v6e-slice", "2x2", "ct6e-standard-4t"),
    "v6e-8": ("tpu-v6e-slice", "2x4", "ct6e-standard-8t"),
    "v5p-8": ("tpu-v5p-slice", "2x2x1", "ct5p-hightpu-4t"),
}


def dataflow_tpu(tpu: str, machine_type: str = "") -> tuple[str, str, str]:
    """(accelerator type, topology, machine type) of a Dataflow TPU worker; errors list the valid choices."""
    if tpu not in DATAFLOW_TPUS:
        raise ValueError(f"--tpu {tpu!r}: Dataflow TPU workers are single-host slices; choose one of "
                         f"{', '.join(DATAFLOW_TPUS)}")
    kind, topology, machine = DATAFLOW_TPUS[tpu]
    if machine_type and machine_type != machine:
        raise ValueError(f"--tpu {tpu} ({kind}, topology {topology}) needs --machine_type {machine}, not "
                         f"{machine_type} (Dataflow refuses any other pair)")
    return kind, topology, machine
