"""The method as a keras.Model: `NoisyStudent(student, teacher=None)`, trained with plain `fit`.

Inputs per step are a dict:
- "labeled":          augmented labeled images, B of them;
- "unlabeled":        augmented (noised) unlabeled images, unlabel_ratio x B;
- "unlabeled_clean":  the same unlabeled images un-augmented (online mode only:
                      the frozen teacher labels these inside the step).
Targets are {"labeled": int labels, "unlabeled": teacher probabilities} (offline
mode; online mode computes the second). Supervised mode (the first teacher)
feeds only "labeled".

Loss (the original main.py, weights made explicit):

    L = CE(y_l, p_student(x_l); label smoothing)
        + unlabeled_weight * CE(target(q_teacher), p_student(x_u))
        + weight_decay * sum(||w||^2) / 2   over non-BatchNorm weights

with target = q^(1/T) renormalised (soft) or one-hot argmax q (hard). With
unlabeled_weight = unlabel_ratio (the original's default) and means over B
labeled and unlabel_ratio*B unlabeled images this is (1 + unlabel_ratio) times
the plain mean over the concatenated batch, the paper's objective: the
constant acts on the learning rate.

Labeled and unlabeled images go through the student as one concatenated batch,
as in the original, so BatchNorm sees both. Both cross-entropies are computed
from the student's logits (log-softmax, as the original's
`tf.losses.softmax_cross_entropy`, main.py): the student's classifier, its last
layer, is a Dense with a softmax, and training reads its pre-activation. The
loss lives in `compute_loss` (keras.ops only), so the same code trains on
TensorFlow and JAX.

EMA (`ema_decay` > 0), as the original's `tf.train.ExponentialMovingAverage(
decay, num_updates=global_step)` over the trainable weights *and* BatchNorm's
moving statistics (main.py:472-476, 606-608; utils.py:352-360): after update n,
average -= (1 - d_n) * (average - value), d_n = min(decay, (1 + n) / (10 + n)).
The averages are updated at the start of each training forward pass (the state
update n - 1 left) and once more at the end of `fit` (`finalize_ema`), which
also copies them into the student for evaluation and export.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

from noisystudent.teacher import classifier_head

LABEL_TYPES = ("hard", "soft")
_EPS = 1e-7


def sharpen(probabilities, temperature: float):
    """q^(1/T), renormalised: T < 1 sharpens, T = 1 keeps the teacher's distribution."""
    if temperature == 1.0:
        return probabilities / ops.sum(probabilities, axis=-1, keepdims=True)
    logp = ops.log(ops.clip(probabilities, _EPS, 1.0)) / temperature
    return ops.softmax(logp, axis=-1)


def smooth(one_hot, label_smoothing: float):
    """tf.losses.softmax_cross_entropy's label smoothing: t * (1 - s) + s / classes."""
    if not label_smoothing:
        return one_hot
    return one_hot * (1.0 - label_smoothing) + label_smoothing / ops.cast(ops.shape(one_hot)[-1], one_hot.dtype)


def unlabeled_targets(teacher_probabilities, label_type: str, temperature: float, label_smoothing: float = 0.0):
    """What the student is trained towards on unlabeled images: the teacher's argmax, label-smoothed
    like the labeled part (main.py:517-529), or its distribution sharpened by 1/T (main.py:530-541)."""
    if label_type == "hard":
        classes = ops.shape(teacher_probabilities)[-1]
        return smooth(ops.one_hot(ops.argmax(teacher_probabilities, axis=-1), classes), label_smoothing)
    return sharpen(teacher_probabilities, temperature)


def cross_entropy(targets, logits):
    """Mean over the batch of -sum(t * log_softmax(logits)), in float32 whatever the compute precision."""
    targets, logits = ops.cast(targets, "float32"), ops.cast(logits, "float32")
    return ops.mean(-ops.sum(targets * ops.log_softmax(logits, axis=-1), axis=-1))


def averaged_variables(student: keras.Model) -> list:
    """What the EMA averages: trainable weights and BatchNorm moving statistics (utils.py:352-360)."""
    moving = [v for v in student.non_trainable_variables
              if v.path.endswith("moving_mean") or v.path.endswith("moving_variance")]
    return list(student.trainable_variables) + moving


class _Untracked:
    """Holds a model Keras must not track (its variables are the student's)."""

    def __init__(self, model: keras.Model):
        self.model = model


def is_weight_decayed(variable) -> bool:
    """The original decays every trainable weight except BatchNorm's gamma and beta."""
    path = getattr(variable, "path", variable.name)
    return not (path.endswith("gamma") or path.endswith("beta"))


class NoisyStudent(keras.Model):
    """Trains `student` on labeled + pseudo-labeled images; `teacher` (frozen) labels online."""

    def __init__(self, student: keras.Model, teacher: Optional[keras.Model] = None, ema_decay: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self._head = classifier_head(student)
        self._features = _Untracked(keras.Model(student.inputs, self._head.input, name="features"))
        self.ema_decay = float(ema_decay)
        self._averaged = averaged_variables(student) if ema_decay else []
        self.ema_averages = [self.add_weight(shape=v.shape, initializer="zeros", trainable=False,
                                             name="ema_" + v.path.replace("/", "_"), autocast=False,
                                             aggregation="only_first_replica") for v in self._averaged]
        self.ema_updates = self.add_weight(shape=(), initializer="zeros", dtype="int64", trainable=False,
                                           name="ema_updates", aggregation="only_first_replica")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.labeled_loss_tracker = keras.metrics.Mean(name="labeled_loss")
        self.unlabeled_loss_tracker = keras.metrics.Mean(name="unlabeled_loss")
        self.labeled_accuracy = keras.metrics.SparseCategoricalAccuracy(name="labeled_accuracy")
        # The networks are built already; BackupAndRestore needs a built model to restore into.
        self.built = True

    def update_ema(self):
        """One EMA update from the student's current state (tf.train.ExponentialMovingAverage.apply)."""
        if not self._averaged:
            return
        n = ops.cast(self.ema_updates, "float32")
        decay = ops.where(n == 0, 0.0, ops.minimum(self.ema_decay, (1.0 + n) / (10.0 + n)))
        for average, variable in zip(self.ema_averages, self._averaged):
            average.assign(average - (1.0 - decay) * (average - ops.cast(variable, average.dtype)))
        self.ema_updates.assign(self.ema_updates + 1)

    def finalize_ema(self):
        """After training: the last update, then the averages become the student's weights."""
        if not self._averaged:
            return
        self.update_ema()
        for average, variable in zip(self.ema_averages, self._averaged):
            variable.assign(average)

    def fit(self, *args, **kwargs):
        """keras.Model.fit, then `finalize_ema`: the student leaves with the averaged weights."""
        history = super().fit(*args, **kwargs)
        self.finalize_ema()
        return history

    def logits(self, images, training=False):
        """The student's classifier before its softmax."""
        features = ops.cast(self._features.model(images, training=training), self._head.kernel.dtype)
        return ops.matmul(features, self._head.kernel) + self._head.bias

    def compile(self, optimizer="sgd", *, unlabeled_weight: float = 1.0, label_smoothing: float = 0.0,
                label_type: str = "hard", temperature: float = 1.0, weight_decay: float = 0.0, **kwargs):
        if label_type not in LABEL_TYPES:
            raise ValueError(f"label_type must be one of {LABEL_TYPES}, got {label_type!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().compile(optimizer=optimizer, **kwargs)
        self.unlabeled_weight = float(unlabeled_weight)
        self.label_smoothing = float(label_smoothing)
        self.label_type = label_type
        self.temperature = float(temperature)
        self.weight_decay = float(weight_decay)

    @property
    def metrics(self):
        return [self.loss_tracker, self.labeled_loss_tracker, self.unlabeled_loss_tracker,
                self.labeled_accuracy]

    def call(self, inputs, training=False):
        """Plain images -> the student's probabilities; the training dict -> logits per part."""
        if not isinstance(inputs, dict):
            return self.student(inputs, training=training)
        if training:
            self.update_ema()
        labeled = inputs["labeled"]
        if "unlabeled" not in inputs:
            return {"labeled": self.logits(labeled, training=training)}
        both = ops.concatenate([labeled, inputs["unlabeled"]], axis=0)
        logits = self.logits(both, training=training)
        n = ops.shape(labeled)[0]
        return {"labeled": logits[:n], "unlabeled": logits[n:]}

    def teacher_probabilities(self, x, y):
        """Offline: the stored labels; online: the frozen teacher on the clean images."""
        if "unlabeled_clean" in x:
            if self.teacher is None:
                raise ValueError("online mode needs a teacher: NoisyStudent(student, teacher=...)")
            return ops.stop_gradient(self.teacher(x["unlabeled_clean"], training=False))
        return y["unlabeled"]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        num_classes = ops.shape(y_pred["labeled"])[-1]
        labels = ops.cast(ops.reshape(y["labeled"], (-1,)), "int32")
        targets = smooth(ops.one_hot(labels, num_classes), self.label_smoothing)
        labeled_loss = cross_entropy(targets, y_pred["labeled"])  # y_pred holds logits
        loss = labeled_loss
        self.labeled_loss_tracker.update_state(labeled_loss)
        self.labeled_accuracy.update_state(labels, y_pred["labeled"])
        if "unlabeled" in y_pred:
            teacher = self.teacher_probabilities(x, y)
            unlabeled_loss = cross_entropy(
                unlabeled_targets(teacher, self.label_type, self.temperature, self.label_smoothing),
                y_pred["unlabeled"])
            loss = loss + self.unlabeled_weight * unlabeled_loss
            self.unlabeled_loss_tracker.update_state(unlabeled_loss)
        if self.weight_decay:
            decayed = [ops.sum(ops.square(v)) for v in self.student.trainable_weights if is_weight_decayed(v)]
            loss = loss + self.weight_decay * 0.5 * ops.sum(ops.stack(decayed))
        self.loss_tracker.update_state(loss)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return {m.name: m.result() for m in self.metrics}
