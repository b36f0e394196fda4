"""The loss of NoisyStudent equals a NumPy reference of docs/design.md's formula."""

import numpy as np
import pytest
import keras

from trainer.noisy_student import NoisyStudent, is_weight_decayed


def _reference(labels, p_labeled, teacher, p_unlabeled, *, smoothing, weight, label_type, temperature,
               wd, weights):
    c = p_labeled.shape[1]
    t_l = np.eye(c)[labels] * (1 - smoothing) + smoothing / c
    ce_l = np.mean(-np.sum(t_l * np.log(np.clip(p_labeled, 1e-7, 1)), axis=1))
    if label_type == "hard":
        t_u = np.eye(c)[teacher.argmax(1)]
    else:
        s = teacher ** (1 / temperature)
        t_u = s / s.sum(1, keepdims=True)
    ce_u = np.mean(-np.sum(t_u * np.log(np.clip(p_unlabeled, 1e-7, 1)), axis=1))
    return ce_l + weight * ce_u + wd * 0.5 * sum(np.sum(w ** 2) for w in weights)


def _student():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8)(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


@pytest.mark.parametrize("label_type, temperature", [("hard", 1.0), ("soft", 1.0), ("soft", 0.5)])
def test_loss_matches_numpy_reference(label_type, temperature):
    rng = np.random.default_rng(0)
    student = _student()
    model = NoisyStudent(student)
    model.compile("sgd", unlabeled_weight=3.0, label_smoothing=0.1, label_type=label_type,
                  temperature=temperature, weight_decay=1e-3)
    x = {"labeled": rng.normal(size=(4, 4)).astype("float32"),
         "unlabeled": rng.normal(size=(12, 4)).astype("float32")}
    teacher = rng.dirichlet(np.ones(3), size=12).astype("float32")
    y = {"labeled": np.array([0, 1, 2, 1]), "unlabeled": teacher}
    y_pred = model(x, training=False)
    loss = float(model.compute_loss(x, y, y_pred))
    decayed = [np.asarray(w) for w in student.trainable_weights if is_weight_decayed(w)]
    assert len(decayed) == 4  # two kernels, two biases; BatchNorm gamma/beta are not decayed
    expected = _reference(y["labeled"], np.asarray(y_pred["labeled"]), teacher, np.asarray(y_pred["unlabeled"]),
                          smoothing=0.1, weight=3.0, label_type=label_type, temperature=temperature,
                          wd=1e-3, weights=decayed)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_weighting_is_the_concatenated_mean_times_one_plus_ratio():
    """docs/design.md: with weight = unlabel_ratio the loss is (1 + ratio) x the plain mean."""
    rng = np.random.default_rng(1)
    model = NoisyStudent(_student())
    ratio = 3
    model.compile("sgd", unlabeled_weight=ratio, label_type="soft")
    x = {"labeled": rng.normal(size=(5, 4)).astype("float32"),
         "unlabeled": rng.normal(size=(15, 4)).astype("float32")}
    labels = rng.integers(0, 3, 5)
    y = {"labeled": labels, "unlabeled": np.eye(3, dtype="float32")[rng.integers(0, 3, 15)]}
    y_pred = model(x)
    p = np.concatenate([np.asarray(y_pred["labeled"]), np.asarray(y_pred["unlabeled"])])
    t = np.concatenate([np.eye(3)[labels], y["unlabeled"]])
    plain_mean = np.mean(-np.sum(t * np.log(p), axis=1))
    assert float(model.compute_loss(x, y, y_pred)) == pytest.approx((1 + ratio) * plain_mean, rel=1e-5)


def test_bad_method_knobs_are_refused():
    with pytest.raises(ValueError, match="label_type"):
        NoisyStudent(_student()).compile("sgd", label_type="fuzzy")
    with pytest.raises(ValueError, match="temperature"):
        NoisyStudent(_student()).compile("sgd", temperature=0)
