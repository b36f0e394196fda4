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
as in the original, so BatchNorm sees both. The loss lives in `compute_loss`
(keras.ops only), so the same code trains on TensorFlow and JAX.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

LABEL_TYPES = ("hard", "soft")
_EPS = 1e-7


def sharpen(probabilities, temperature: float):
    """q^(1/T), renormalised: T < 1 sharpens, T = 1 keeps the teacher's distribution."""
    if temperature == 1.0:
        return probabilities / ops.sum(probabilities, axis=-1, keepdims=True)
    logp = ops.log(ops.clip(probabilities, _EPS, 1.0)) / temperature
    return ops.softmax(logp, axis=-1)


def unlabeled_targets(teacher_probabilities, label_type: str, temperature: float):
    """What the student is trained towards on unlabeled images."""
    if label_type == "hard":
        return ops.one_hot(ops.argmax(teacher_probabilities, axis=-1), ops.shape(teacher_probabilities)[-1])
    return sharpen(teacher_probabilities, temperature)


def cross_entropy(targets, probabilities):
    """Mean over the batch of -sum(t * log p), in float32 whatever the compute precision."""
    targets, probabilities = ops.cast(targets, "float32"), ops.cast(probabilities, "float32")
    return ops.mean(-ops.sum(targets * ops.log(ops.clip(probabilities, _EPS, 1.0)), axis=-1))


def is_weight_decayed(variable) -> bool:
    """The original decays every trainable weight except BatchNorm's gamma and beta."""
    path = getattr(variable, "path", variable.name)
    return not (path.endswith("gamma") or path.endswith("beta"))


class NoisyStudent(keras.Model):
    """Trains `student` on labeled + pseudo-labeled images; `teacher` (frozen) labels online."""

    def __init__(self, student: keras.Model, teacher: Optional[keras.Model] = None, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.labeled_loss_tracker = keras.metrics.Mean(name="labeled_loss")
        self.unlabeled_loss_tracker = keras.metrics.Mean(name="unlabeled_loss")
        self.labeled_accuracy = keras.metrics.SparseCategoricalAccuracy(name="labeled_accuracy")
        # The networks are built already; BackupAndRestore needs a built model to restore into.
        self.built = True

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
        if not isinstance(inputs, dict):
            return self.student(inputs, training=training)
        labeled = inputs["labeled"]
        if "unlabeled" not in inputs:
            return {"labeled": self.student(labeled, training=training)}
        both = ops.concatenate([labeled, inputs["unlabeled"]], axis=0)
        probs = self.student(both, training=training)
        n = ops.shape(labeled)[0]
        return {"labeled": probs[:n], "unlabeled": probs[n:]}

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
        targets = ops.one_hot(labels, num_classes)
        if self.label_smoothing:
            targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        labeled_loss = cross_entropy(targets, y_pred["labeled"])
        loss = labeled_loss
        self.labeled_loss_tracker.update_state(labeled_loss)
        self.labeled_accuracy.update_state(labels, y_pred["labeled"])
        if "unlabeled" in y_pred:
            teacher = self.teacher_probabilities(x, y)
            unlabeled_loss = cross_entropy(
                unlabeled_targets(teacher, self.label_type, self.temperature), y_pred["unlabeled"])
            loss = loss + self.unlabeled_weight * unlabeled_loss
            self.unlabeled_loss_tracker.update_state(unlabeled_loss)
        if self.weight_decay:
            decayed = [ops.sum(ops.square(v)) for v in self.student.trainable_weights if is_weight_decayed(v)]
            loss = loss + self.weight_decay * 0.5 * ops.sum(ops.stack(decayed))
        self.loss_tracker.update_state(loss)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return {m.name: m.result() for m in self.metrics}
