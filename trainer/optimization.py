"""Optimizer, learning-rate schedule and distribution strategy for a TrainConfig."""

from __future__ import annotations

import glob
import logging
import math
import os

import keras

from trainer.cluster import Cluster, check_global_batch
from trainer.config import TrainConfig

log = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="noisystudent")
class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The original's learning rate (google-research/noisystudent utils.py:39-74, exponential).

    peak * rate^floor(step / decay_steps) (staircase, counted from step 0, as
    tf.train.exponential_decay), and during the first `warmup_steps` steps
    peak * step / warmup_steps instead (from 0).
    """

    def __init__(self, peak: float, warmup_steps: int, decay_steps: float, rate: float = 0.97):
        self.peak, self.warmup_steps, self.decay_steps, self.rate = peak, warmup_steps, decay_steps, rate

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        decayed = self.peak * keras.ops.power(self.rate, keras.ops.floor(step / self.decay_steps))
        if not self.warmup_steps:
            return decayed
        warm = self.peak * step / float(self.warmup_steps)
        return keras.ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return dict(peak=self.peak, warmup_steps=self.warmup_steps, decay_steps=self.decay_steps,
                    rate=self.rate)


def peak_learning_rate(config: TrainConfig) -> float:
    """The original's rule: base LR per 256 labeled images, scaled linearly with the batch (main.py:568)."""
    return config.learning_rate * config.batch_size / 256.0


def data_steps_per_epoch(config: TrainConfig, num_train_images: int) -> float:
    """Steps in one epoch of the labeled data (main.py:691: num_train_images / train_batch_size)."""
    return num_train_images / config.batch_size


def decay_epochs(config: TrainConfig, num_train_images: int) -> float:
    """Epochs per x0.97 decay; with final_base_lr, spread so the base LR ends there (main.py:569-577).

    As the original: the 5 warm-up epochs are taken off the total, and the
    decay count compares the unscaled base LRs.
    """
    if not config.final_base_lr:
        return config.decay_epochs
    total_epochs = config.train_steps * config.batch_size / num_train_images - 5
    if total_epochs <= 0:
        raise ValueError(f"config field 'final_base_lr': {config.train_steps} steps of {config.batch_size} are "
                         f"{total_epochs + 5:.2f} epochs of {num_train_images} images, not more than the 5 "
                         "warm-up epochs it spreads the decays after; train longer or drop final_base_lr")
    decay_times = math.log(config.final_base_lr / config.learning_rate) / math.log(0.97)
    return total_epochs / decay_times


def warmup_steps(config: TrainConfig, num_train_images: int) -> int:
    """Warm-up in steps: explicit, or int(warmup_epochs * steps per data epoch) (utils.py:68)."""
    if config.warmup_steps or not config.warmup_epochs:
        return config.warmup_steps
    return int(config.warmup_epochs * data_steps_per_epoch(config, num_train_images))


def learning_rate_schedule(config: TrainConfig, steps: int, peak: float, num_train_images: int = 0):
    """The LR per optimizer step; epochs of the schedule are epochs of the labeled data."""
    if config.lr_schedule == "exponential" or config.warmup_epochs:
        if not num_train_images:
            raise ValueError("config field 'num_train_images': the schedule counts epochs of the labeled "
                             "data; give the labeled set's size (or a dataset dir with summary.json)")
    warmup = warmup_steps(config, num_train_images)
    if warmup >= steps:
        raise ValueError(f"config field 'warmup_epochs': {warmup} warm-up steps leave none of the "
                         f"{steps} training steps")
    if config.lr_schedule == "cosine":
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                0.0, steps - warmup, warmup_target=peak, warmup_steps=warmup)
        return keras.optimizers.schedules.CosineDecay(peak, steps)
    decay_steps = data_steps_per_epoch(config, num_train_images) * decay_epochs(config, num_train_images)
    return WarmupExponentialDecay(peak, warmup, decay_steps)


@keras.saving.register_keras_serializable("noisystudent")
class TF1RMSprop(keras.optimizers.RMSprop):
    """RMSprop as TF1's tf.train.RMSPropOptimizer, what the original trains with (utils.py:92): the mean
    square of the gradients starts at 1 (its `_create_slots`: ones_initializer), not at 0 as in Keras.
    From 0, the first steps divide by sqrt((1 - rho) g^2 + eps): updates of about lr / sqrt(0.1) whatever
    the gradient's size, 18-30x the original's on a toy problem, fading after ~100 steps."""

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        for velocity in self._velocities:
            if velocity is not None:
                velocity.assign(keras.ops.ones(velocity.shape, velocity.dtype))


def make_optimizer(config: TrainConfig, steps: int, peak: float | None = None,
                   num_train_images: int = 0) -> keras.optimizers.Optimizer:
    """Optimizer with the schedule (the EMA is NoisyStudent's: it averages BatchNorm statistics too)."""
    lr = learning_rate_schedule(config, steps, peak_learning_rate(config) if peak is None else peak,
                                num_train_images)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    if config.optimizer == "rmsprop":  # the EfficientNet recipe (utils.py:90-93)
        return TF1RMSprop(lr, rho=0.9, momentum=0.9, epsilon=1e-3)
    return keras.optimizers.Adam(lr)


def compute_precision(config: TrainConfig) -> str:
    """float32 or bfloat16: `auto` means bfloat16 on TPUs (their native matmul type), else float32."""
    if config.precision != "auto":
        return config.precision
    if keras.backend.backend() == "jax":
        import jax

        return "bfloat16" if jax.devices()[0].platform == "tpu" else "float32"
    return "bfloat16" if config.tpu == "auto" and has_tpu() else "float32"


def has_tpu() -> bool:
    """A Cloud TPU VM (Vertex AI TPU jobs) exposes /dev/accel* or /dev/vfio devices."""
    return bool(os.environ.get("TPU_NAME") or glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def make_strategy(config: TrainConfig, cluster: Cluster = Cluster()):
    """Keras on JAX: data parallel over every device of every process (built after `cluster.start`).
    TensorFlow: TPUStrategy on a TPU VM, MirroredStrategy on several GPUs, else the default strategy."""
    import tensorflow as tf

    if keras.backend.backend() == "jax":
        import jax

        if cluster.num_devices > 1:  # TPU cores, several GPUs or hosts: data parallel over all of them
            check_global_batch(config.batch_size, cluster)
            # Each host feeds its own part of the global batch (trainer/data.py shards the files by host):
            # auto_shard_dataset=True would have every host read and decode everything.
            keras.distribution.set_distribution(
                keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False))
            log.info("training data-parallel on %d %s devices: %d labeled images per device per step",
                     cluster.num_devices, jax.devices()[0].platform, config.batch_size // cluster.num_devices)
        return None
    if keras.backend.backend() != "tensorflow":
        return None
    if config.tpu == "auto" and has_tpu():
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", "local"))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        log.info("training on TPU: %s", resolver.cluster_spec().as_dict())
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        log.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
