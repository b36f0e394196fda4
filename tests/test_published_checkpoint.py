"""Published Noisy Student checkpoints: load the original TF variable layout into model/, fine-tune the head."""

import numpy as np
import pytest
import tensorflow as tf

from model import build_model
from model.original_names import original_names
from trainer.published_checkpoint import EMA_SUFFIX, freeze_all_but_head, load_original_checkpoint


def write_original_checkpoint(model, path, scope, ema_offset=0.0, drop=(), extra=()):
    """A TF1 name-based checkpoint laid out like the authors' (model.ckpt with EMA copies)."""
    names = original_names(model, scope)
    weights = {w.path: np.asarray(w) for w in model.weights}
    with tf.Graph().as_default():
        variables = {}
        for weight_path, name in names.items():
            if name in drop:
                continue
            variables[name] = tf.compat.v1.Variable(weights[weight_path], name="v%d" % len(variables))
            variables[name + EMA_SUFFIX] = tf.compat.v1.Variable(weights[weight_path] + ema_offset,
                                                                 name="v%d" % len(variables))
        for name in extra:
            variables[name] = tf.compat.v1.Variable(np.zeros(3, np.float32), name="v%d" % len(variables))
        variables["global_step"] = tf.compat.v1.Variable(123, dtype=tf.int64, name="global_step")
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, str(path))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    model = build_model("efficientnet-b0", 10, input_shape=(32, 32, 3))
    # Non-trivial BatchNorm statistics, so a wrong mapping shows in the outputs.
    rng = np.random.default_rng(0)
    for w in model.weights:
        if w.path.endswith(("moving_mean", "moving_variance", "beta")):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    path = write_original_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "model.ckpt", "efficientnet-b0")
    return model, path


def test_loaded_checkpoint_reproduces_the_original_outputs(source):
    original, path = source
    fresh = build_model("efficientnet-b0", 10, input_shape=(32, 32, 3))
    report = load_original_checkpoint(fresh, path, strict=True)
    assert report.loaded == len(fresh.weights) and report.used_ema == report.loaded
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(fresh(x, training=False), original(x, training=False), atol=1e-6)


def test_ema_weights_are_preferred(tmp_path):
    model = build_model("efficientnet-b0", 10, input_shape=(32, 32, 3))
    path = write_original_checkpoint(model, tmp_path / "model.ckpt", "efficientnet-b0", ema_offset=0.5)
    fresh = build_model("efficientnet-b0", 10, input_shape=(32, 32, 3))
    load_original_checkpoint(fresh, path)
    np.testing.assert_allclose(np.asarray(fresh.get_layer("stem_conv").kernel),
                               np.asarray(model.get_layer("stem_conv").kernel) + 0.5, atol=1e-6)
    load_original_checkpoint(fresh, path, use_ema=False)
    np.testing.assert_allclose(np.asarray(fresh.get_layer("stem_conv").kernel),
                               np.asarray(model.get_layer("stem_conv").kernel), atol=1e-6)


def test_missing_extra_and_mismatched_variables_are_listed(source, tmp_path):
    original, _ = source
    path = write_original_checkpoint(original, tmp_path / "model.ckpt", "efficientnet-b0",
                                     drop=("efficientnet-b0/blocks_3/conv2d_1/kernel",),
                                     extra=("efficientnet-b0/blocks_99/conv2d/kernel",))
    fresh = build_model("efficientnet-b0", 10, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"1 missing .*blocks_3/conv2d_1/kernel"):
        load_original_checkpoint(fresh, path)
    other_classes = build_model("efficientnet-b0", 5, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"head/dense/kernel.*checkpoint \(1280, 10\), model \(1280, 5\)"):
        load_original_checkpoint(other_classes, source[1])
    with pytest.raises(ValueError, match="no variable under scope 'efficientnet-b2'"):
        load_original_checkpoint(build_model("efficientnet-b2", 10, input_shape=(32, 32, 3)), source[1])


def test_fine_tune_a_new_head_changes_only_the_head(source):
    _, path = source
    model = build_model("efficientnet-b0", 5, input_shape=(32, 32, 3))
    report = load_original_checkpoint(model, path, skip_head=True)
    assert report.skipped == ["predictions/kernel", "predictions/bias"]
    freeze_all_but_head(model)
    before = {w.path: np.asarray(w).copy() for w in model.weights}
    model.compile("adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(2)
    model.fit(rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32"), rng.integers(0, 5, 16),
              epochs=2, batch_size=8, verbose=0)
    changed = {p for p, v in before.items() if not np.array_equal(v, np.asarray(
        next(w for w in model.weights if w.path == p)))}
    assert changed == {"predictions/kernel", "predictions/bias"}
