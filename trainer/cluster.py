"""The trainer on many hosts (TPU pod slices, GPU clusters): start the cluster, say who writes, wait together.

Every host of a multi-host job runs `python -m trainer.task` with the same flags. Before anything
touches a device, `start()` joins the processes into one JAX cluster:
- Keras' own variables (`KERAS_DISTRIBUTION_JOB_ADDRESSES`, `_NUM_PROCESSES`, `_PROCESS_ID`; how
  GPU clusters and the tests start it) go to `keras.distribution.initialize`;
- `NOISYSTUDENT_HOSTS=N` alone (what `submit-training --tpu v5e-16` sets) lets JAX detect the TPU
  VM's slice (`jax.distributed.initialize()` with no arguments, as JAX's Cloud TPU docs say).
CPU collectives go through gloo (the only CPU implementation that spans processes). Then process 0
writes every file and all hosts leave through `barrier`: Vertex AI watches the first host only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
from typing import Mapping

import keras
import numpy as np

log = logging.getLogger(__name__)

HOSTS_ENV = "NOISYSTUDENT_HOSTS"  # set by deploy/vertex.py for a slice of more than one host
KERAS_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
KERAS_NUM_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
KERAS_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where this process stands: its index, how many processes, how many devices over all of them."""

    process_id: int = 0
    num_processes: int = 1
    num_devices: int = 1

    @property
    def is_writer(self) -> bool:
        return self.process_id == 0

    @property
    def is_multi_process(self) -> bool:
        return self.num_processes > 1

    def local_batch(self, global_batch: int) -> int:
        """What this host feeds per step: its share of the global batch."""
        return global_batch // self.num_processes


def check_global_batch(batch_size: int, cluster: Cluster) -> None:
    """The batch is global (the same run on any slice): every device takes an equal part of it."""
    if batch_size % cluster.num_devices:
        raise ValueError(f"config field 'batch_size': {batch_size} labeled images per step do not split over "
                         f"{cluster.num_devices} devices ({cluster.num_processes} processes); pass a multiple of "
                         f"{cluster.num_devices} (the batch is global: each device takes an equal part)")


def requested_processes(env: Mapping[str, str]) -> int:
    """How many processes the environment asks for (1: a single-host job)."""
    for name in (KERAS_NUM_PROCESSES, HOSTS_ENV):
        if env.get(name, "").strip():
            try:
                count = int(env[name])
            except ValueError:
                raise ValueError(f"environment variable {name}={env[name]!r} is not a process count") from None
            if count < 1:
                raise ValueError(f"environment variable {name}={count}: must be >= 1")
            return count
    return 1


def start(env: Mapping[str, str] = os.environ) -> Cluster:
    """Join the cluster the environment describes (once per process), before any device is touched."""
    requested = requested_processes(env)
    if keras.backend.backend() != "jax":
        if requested > 1:
            raise ValueError(f"a job over {requested} processes needs KERAS_BACKEND=jax (this process runs "
                             f"{keras.backend.backend()}): the trainer's multi-host path is Keras on JAX")
        return Cluster()
    import jax

    if requested > 1 and not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts (the tests); no-op on TPU/GPU
        if env.get(KERAS_ADDRESSES):
            if not env.get(KERAS_PROCESS_ID, "").strip():
                raise ValueError(f"{KERAS_ADDRESSES} is set but {KERAS_PROCESS_ID} is not: every process needs "
                                 "its own id, 0 being the coordinator")
            keras.distribution.initialize(env[KERAS_ADDRESSES], requested, int(env[KERAS_PROCESS_ID]))
        else:  # a Cloud TPU VM slice: JAX reads the hosts from the VM's metadata
            jax.distributed.initialize()
    cluster = Cluster(jax.process_index(), jax.process_count(), jax.device_count())
    if cluster.num_processes != requested:
        raise RuntimeError(f"the environment asks for {requested} processes but JAX joined {cluster.num_processes}: "
                           f"set {KERAS_ADDRESSES}, {KERAS_NUM_PROCESSES} and {KERAS_PROCESS_ID} on every host")
    log.info("training on %d process%s, %d %s devices (this is process %d)", cluster.num_processes,
             "" if cluster.num_processes == 1 else "es", cluster.num_devices, jax.devices()[0].platform,
             cluster.process_id)
    return cluster


def barrier(cluster: Cluster, name: str, timeout_s: int = 3600) -> None:
    """Every process waits here until all have arrived (a no-op on one process); `name` is used once.

    The JAX coordination service's barrier (the one JAX's own multi-process tests use) waits up to
    `timeout_s` without holding a device collective open while process 0 writes a model; without
    the service's client, a collective (multihost_utils.sync_global_devices)."""
    if not cluster.is_multi_process:
        return
    from jax._src import distributed

    client = distributed.global_state.client
    if client is not None:
        client.wait_at_barrier(name, timeout_s * 1000)
        return
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def local_value(variable) -> np.ndarray:
    """A replicated variable's value from this host's own copy (a global array spanning other hosts'
    devices cannot be fetched whole)."""
    value = getattr(variable, "value", variable)
    if hasattr(value, "is_fully_addressable") and not value.is_fully_addressable:
        if not value.is_fully_replicated:
            raise ValueError(f"{getattr(variable, 'path', variable)} is sharded over hosts, not replicated: "
                             "it has no whole copy on this host")
        value = value.addressable_data(0)
    return np.asarray(value)


@contextlib.contextmanager
def process_local():
    """No distribution while one process works alone: Keras' saving builds throwaway variables, which
    under a distribution are placed on every host's devices, a collective the other hosts never join."""
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def weights_fingerprint(model: keras.Model) -> str:
    """A digest of every weight's bytes: equal on every host when the hosts trained in step."""
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(local_value(variable)).tobytes())
    return digest.hexdigest()[:16]


class SharedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """keras.callbacks.BackupAndRestore for many hosts: process 0 writes, every host waits for the write,
    and every host must resume from the same epoch (else the checkpoint dir is not shared: refused).

    Keras' own callback writes from every process: on one shared directory the hosts' writes race."""

    def __init__(self, cluster: Cluster, backup_dir: str, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.cluster = cluster

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.model._initial_epoch:
            log.info("resuming from the checkpoint of epoch %d in %s", self.model._initial_epoch, self.backup_dir)
        if self.cluster.is_multi_process:
            from jax.experimental import multihost_utils

            epochs = multihost_utils.process_allgather(np.array(self.model._initial_epoch or 0))
            if len(set(int(e) for e in np.ravel(epochs))) > 1:
                raise RuntimeError(f"the hosts would resume from different epochs ({list(np.ravel(epochs))}) of "
                                   f"{self.backup_dir}: the checkpoint dir must be one directory every host reads "
                                   "(gs:// on Vertex AI)")

    def _save_model(self):
        if self.cluster.is_writer:
            with process_local():
                super()._save_model()
        barrier(self.cluster, f"checkpoint-{self._current_epoch}-{self._last_batch_seen}")
