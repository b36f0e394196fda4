"""Load a published Noisy Student / EfficientNet TensorFlow checkpoint into a model of model/.

    model = build_model("efficientnet-b7", 1000)
    load_original_checkpoint(model, "noisy_student_efficientnet-b7/model.ckpt")

The mapping (model/original_names.py) is explicit and checked: every weight of
the model must be found with the same shape, else a ValueError lists what is
missing or mismatched (and, with strict=True, what the checkpoint has beyond
the model). EMA weights are used when present (`use_ema`), as the authors
evaluated them. `skip_head=True` leaves the classifier alone, to fine-tune a
new head with a different number of classes.

Preprocessing the checkpoints expect, which the models of model/ reproduce
when given RGB pixels in [0, 255]: ImageNet mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225), at the variant's resolution (B0 224 ... B7 600, L2 800;
the authors' L2 was also evaluated at 475), from a center crop of
size / (size + 32) of the shorter side, resized bicubically.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from model.original_names import original_names

EMA_SUFFIX = "/ExponentialMovingAverage"
HEAD = ("predictions/kernel", "predictions/bias")


@dataclasses.dataclass
class LoadReport:
    loaded: int
    used_ema: int
    skipped: list[str]
    unused: list[str]


def load_original_checkpoint(model: keras.Model, checkpoint: str, scope: str | None = None,
                             use_ema: bool = True, skip_head: bool = False, strict: bool = False) -> LoadReport:
    """Assign the checkpoint's variables to the model's weights; errors list every problem."""
    scope = scope or model.name
    reader = tf.train.load_checkpoint(checkpoint)
    shapes = reader.get_variable_to_shape_map()
    mapping = original_names(model, scope)
    weights = {w.path: w for w in model.weights}
    unknown = sorted(set(weights) - set(mapping))
    if unknown:
        raise ValueError(f"{model.name}: weights with no original name (not an EfficientNet of model/?): "
                         f"{unknown[:10]}")
    missing, mismatched, values, ema = [], [], {}, 0
    skipped = [p for p in HEAD if skip_head]
    for path, name in mapping.items():
        if path in skipped:
            continue
        source = name + EMA_SUFFIX if use_ema and name + EMA_SUFFIX in shapes else name
        if source not in shapes:
            missing.append(name)
            continue
        expected = tuple(weights[path].shape)
        if tuple(shapes[source]) != expected:
            mismatched.append(f"{source}: checkpoint {tuple(shapes[source])}, model {expected}")
            continue
        values[path] = reader.get_tensor(source)
        ema += source.endswith(EMA_SUFFIX)
    used = {mapping[p] for p in values}
    unused = sorted(n for n in shapes if n.startswith(scope + "/") and not n.endswith(EMA_SUFFIX)
                    and n not in used and not any(n == mapping[p] for p in skipped))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing from {checkpoint}: {missing[:8]}")
    if mismatched:
        problems.append(f"{len(mismatched)} with other shapes: {mismatched[:8]}")
    if strict and unused:
        problems.append(f"{len(unused)} in the checkpoint but not in the model: {unused[:8]}")
    if not any(n.startswith(scope + "/") for n in shapes):
        problems.insert(0, f"no variable under scope {scope!r} (pass scope=...)")
    if problems:
        raise ValueError(f"checkpoint {checkpoint} does not fit {model.name}: " + "; ".join(problems))
    for path, value in values.items():
        weights[path].assign(np.asarray(value, dtype=weights[path].dtype))
    return LoadReport(loaded=len(values), used_ema=ema, skipped=skipped, unused=unused)


def freeze_all_but_head(model: keras.Model) -> None:
    """Fine-tune only the classifier: every other layer stops training (BatchNorm too)."""
    for layer in model.layers:
        layer.trainable = layer.name == "predictions"
