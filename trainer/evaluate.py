"""Final evaluation of a classifier: top-1, top-5 and per-class accuracy, as JSON."""

from __future__ import annotations

import json
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf


def accuracy_report(probabilities: np.ndarray, labels: np.ndarray,
                    class_names: Optional[Sequence[str]] = None) -> dict:
    """Metrics from predicted probabilities [N, C] and true labels [N]."""
    if len(labels) == 0:
        raise ValueError("evaluation data is empty")
    num_classes = probabilities.shape[1]
    top1 = probabilities.argmax(axis=1)
    report = {"num_examples": int(len(labels)), "top1_accuracy": float(np.mean(top1 == labels))}
    if num_classes > 5:
        top5 = np.argsort(-probabilities, axis=1)[:, :5]
        report["top5_accuracy"] = float(np.mean(np.any(top5 == labels[:, None], axis=1)))
    names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
    per_class = {}
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            per_class[names[c]] = {"examples": int(mask.sum()), "accuracy": float(np.mean(top1[mask] == c))}
    report["per_class"] = per_class
    return report


def evaluate_model(model: keras.Model, dataset: tf.data.Dataset,
                   class_names: Optional[Sequence[str]] = None) -> dict:
    """Run the model (inference mode) over (images, labels) batches and report."""
    probs, labels = [], []
    for images, batch_labels in dataset:
        probs.append(np.asarray(model(images, training=False)))
        labels.append(batch_labels.numpy())
    if not probs:
        raise ValueError("evaluation data is empty")
    return accuracy_report(np.concatenate(probs), np.concatenate(labels), class_names)


def write_report(report: dict, path: str) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(report, f, indent=2)
