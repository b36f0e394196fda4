"""The loss of NoisyStudent equals a NumPy reference of docs/design.md's formula; its EMA is the original's."""

import numpy as np
import pytest
import keras

from trainer.noisy_student import NoisyStudent, is_weight_decayed


def _log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _reference(labels, logits_labeled, teacher, logits_unlabeled, *, smoothing, weight, label_type, temperature,
               wd, weights):
    """The original's softmax_cross_entropy on logits (main.py), label smoothing on the labeled part."""
    c = logits_labeled.shape[1]
    t_l = np.eye(c)[labels] * (1 - smoothing) + smoothing / c
    ce_l = np.mean(-np.sum(t_l * _log_softmax(logits_labeled), axis=1))
    if label_type == "hard":
        t_u = np.eye(c)[teacher.argmax(1)] * (1 - smoothing) + smoothing / c  # main.py:526-529
    else:
        s = teacher ** (1 / temperature)
        t_u = s / s.sum(1, keepdims=True)
    ce_u = np.mean(-np.sum(t_u * _log_softmax(logits_unlabeled), axis=1))
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
    logits = np.concatenate([np.asarray(y_pred["labeled"]), np.asarray(y_pred["unlabeled"])])
    t = np.concatenate([np.eye(3)[labels], y["unlabeled"]])
    plain_mean = np.mean(-np.sum(t * _log_softmax(logits), axis=1))
    assert float(model.compute_loss(x, y, y_pred)) == pytest.approx((1 + ratio) * plain_mean, rel=1e-5)


def test_bad_method_knobs_are_refused():
    with pytest.raises(ValueError, match="label_type"):
        NoisyStudent(_student()).compile("sgd", label_type="fuzzy")
    with pytest.raises(ValueError, match="temperature"):
        NoisyStudent(_student()).compile("sgd", temperature=0)


def test_the_loss_comes_from_logits_where_clipped_probabilities_would_saturate():
    # A confidently wrong student: p(label) ~ e^-60. Clipping p at 1e-7 would cap the loss at 16.1
    # and zero its gradient; the original's softmax_cross_entropy on logits does neither.
    student = _student()
    student.layers[-1].set_weights([np.zeros((8, 3), "float32"), np.array([60.0, 0.0, 0.0], "float32")])
    model = NoisyStudent(student)
    model.compile("sgd")
    x = {"labeled": np.zeros((2, 4), "float32")}
    y = {"labeled": np.array([1, 2])}
    y_pred = model(x)
    np.testing.assert_allclose(np.asarray(model.student(x["labeled"]))[:, 1], 0.0, atol=1e-20)
    assert float(model.compute_loss(x, y, y_pred)) == pytest.approx(60.0, rel=1e-4)
    with pytest.raises(ValueError, match="Dense layer with a softmax"):
        NoisyStudent(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))


def _original_ema(states, decay):
    """tf.train.ExponentialMovingAverage(decay, num_updates=global_step).apply after each step
    (main.py:472-476, 606-608): shadows start at the initial values; update n (n = 1, 2, ...)
    uses d = min(decay, (1 + n) / (10 + n)) and shadow -= (1 - d) * (shadow - value)."""
    shadow = [np.array(v, np.float32) for v in states[0]]
    for n, state in enumerate(states[1:], start=1):
        d = np.float32(min(decay, (1.0 + n) / (10.0 + n)))
        shadow = [s - (np.float32(1) - d) * (s - v) for s, v in zip(shadow, state)]
    return shadow


def test_ema_averages_weights_and_batchnorm_statistics_as_the_original():
    rng = np.random.default_rng(2)
    student = _student()
    model = NoisyStudent(student, ema_decay=0.9)
    model.compile(keras.optimizers.SGD(0.1), label_smoothing=0.1)
    averaged = [v for v in student.weights if "moving" in v.path or v.trainable]
    assert len(averaged) == 8  # 2 kernels, 2 biases, gamma, beta, moving mean and variance

    states = [[np.array(v) for v in averaged]]

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            states.append([np.array(v) for v in averaged])

    x = {"labeled": rng.normal(size=(64, 4)).astype("float32")}
    y = {"labeled": rng.integers(0, 3, 64)}
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[Record()])
    assert len(states) == 17
    expected = _original_ema(states, 0.9)
    for variable, want, last in zip(averaged, expected, states[-1]):
        np.testing.assert_allclose(np.array(variable), want, rtol=1e-5, atol=1e-6, err_msg=variable.path)
        assert not np.allclose(want, last, rtol=1e-3, atol=0), f"{variable.path}: the average is the last value"
    assert int(model.ema_updates) == 17
