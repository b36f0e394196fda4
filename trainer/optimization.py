"""Optimizer, learning-rate schedule and distribution strategy for a TrainConfig."""

from __future__ import annotations

import glob
import logging
import os

import keras

from trainer.config import TrainConfig

log = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="noisystudent")
class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then peak * rate^((step - warmup) / decay_steps), staircase."""

    def __init__(self, peak: float, warmup_steps: int, decay_steps: int, rate: float = 0.97):
        self.peak, self.warmup_steps, self.decay_steps, self.rate = peak, warmup_steps, decay_steps, rate

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / max(1, self.warmup_steps)
        decayed = self.peak * keras.ops.power(
            self.rate, keras.ops.floor(keras.ops.maximum(step - self.warmup_steps, 0.0) / self.decay_steps))
        return keras.ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return dict(peak=self.peak, warmup_steps=self.warmup_steps, decay_steps=self.decay_steps,
                    rate=self.rate)


def peak_learning_rate(config: TrainConfig) -> float:
    """The original's rule: base LR per 256 labeled images, scaled linearly with the batch."""
    return config.learning_rate * config.batch_size / 256.0


def learning_rate_schedule(config: TrainConfig, steps: int, peak: float):
    if config.lr_schedule == "cosine":
        if config.warmup_steps:
            return keras.optimizers.schedules.CosineDecay(
                0.0, steps - config.warmup_steps, warmup_target=peak, warmup_steps=config.warmup_steps)
        return keras.optimizers.schedules.CosineDecay(peak, steps)
    decay_steps = config.lr_decay_steps or max(1, int(2.4 * config.steps_per_epoch))
    return WarmupExponentialDecay(peak, config.warmup_steps, decay_steps)


def make_optimizer(config: TrainConfig, steps: int, peak: float | None = None) -> keras.optimizers.Optimizer:
    """Optimizer with the schedule; EMA of weights (the optimizer's own) when ema_momentum > 0."""
    lr = learning_rate_schedule(config, steps, peak_learning_rate(config) if peak is None else peak)
    ema = dict(use_ema=config.ema_momentum > 0, ema_momentum=config.ema_momentum or 0.99)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, **ema)
    if config.optimizer == "rmsprop":  # the EfficientNet recipe
        return keras.optimizers.RMSprop(lr, rho=0.9, momentum=0.9, epsilon=1e-3, **ema)
    return keras.optimizers.Adam(lr, **ema)


def has_tpu() -> bool:
    """A Cloud TPU VM (Vertex AI TPU jobs) exposes /dev/accel* or /dev/vfio devices."""
    return bool(os.environ.get("TPU_NAME") or glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def make_strategy(config: TrainConfig):
    """TPUStrategy on a TPU VM, MirroredStrategy on several GPUs, else the default strategy."""
    import tensorflow as tf

    if keras.backend.backend() == "jax":
        import jax

        if len(jax.devices()) > 1:  # TPU cores or several GPUs: data parallel over all of them
            keras.distribution.set_distribution(keras.distribution.DataParallel())
            log.info("training data-parallel on %d %s devices", len(jax.devices()), jax.devices()[0].platform)
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
