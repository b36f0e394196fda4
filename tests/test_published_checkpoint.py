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


# The original's B0 blocks (efficientnet_builder.py, `blocks_args`), transcribed: repeats, kernel,
# stride, expand ratio, input and output filters, se ratio 0.25.
_B0_BLOCKS = ["r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24_se0.25", "r2_k5_s22_e6_i24_o40_se0.25",
              "r3_k3_s22_e6_i40_o80_se0.25", "r3_k5_s11_e6_i80_o112_se0.25", "r4_k5_s22_e6_i112_o192_se0.25",
              "r1_k3_s11_e6_i192_o320_se0.25"]


def _original_b0_variables(num_classes):
    """(name, shape) of an original EfficientNet-B0 checkpoint, written from efficientnet_model.py's
    call order, not from model/original_names.py: stem conv and BN; per block expand conv, bn0,
    depthwise conv, bn1, se/ reduce and expand convs, project conv, bn2 (MBConvBlock.call, lines
    286-320); head conv, BN and dense. TF1's tf.layers number a scope's repeats: conv2d, conv2d_1."""
    variables, counts = [], {}

    def layer(scope, base, weights):
        n = counts.get((scope, base), 0)
        counts[(scope, base)] = n + 1
        name = f"efficientnet-b0/{scope}/{base}" + (f"_{n}" if n else "")
        variables.extend((f"{name}/{w}", shape) for w, shape in weights)

    def bn(scope, channels):
        layer(scope, "tpu_batch_normalization",
              [(w, (channels,)) for w in ("gamma", "beta", "moving_mean", "moving_variance")])

    layer("stem", "conv2d", [("kernel", (3, 3, 3, 32))])
    bn("stem", 32)
    index = 0
    for spec in _B0_BLOCKS:
        fields = dict((part[0], part[1:]) for part in spec.split("_") if not part.startswith("se"))
        repeats, kernel, expand = int(fields["r"]), int(fields["k"]), int(fields["e"])
        filters_in, filters_out = int(fields["i"]), int(fields["o"])
        for r in range(repeats):
            scope = f"blocks_{index}"
            block_in = filters_in if r == 0 else filters_out
            expanded = block_in * expand
            if expand != 1:
                layer(scope, "conv2d", [("kernel", (1, 1, block_in, expanded))])
                bn(scope, expanded)
            layer(scope, "depthwise_conv2d", [("depthwise_kernel", (kernel, kernel, expanded, 1))])
            bn(scope, expanded)
            squeezed = max(1, int(block_in * 0.25))
            layer(scope + "/se", "conv2d", [("kernel", (1, 1, expanded, squeezed)), ("bias", (squeezed,))])
            layer(scope + "/se", "conv2d", [("kernel", (1, 1, squeezed, expanded)), ("bias", (expanded,))])
            layer(scope, "conv2d", [("kernel", (1, 1, expanded, filters_out))])
            bn(scope, filters_out)
            index += 1
    layer("head", "conv2d", [("kernel", (1, 1, 320, 1280))])
    bn("head", 1280)
    layer("head", "dense", [("kernel", (1280, num_classes)), ("bias", (num_classes,))])
    return variables


def test_a_checkpoint_named_as_the_original_code_names_it_loads_weight_for_weight(tmp_path):
    expected = _original_b0_variables(10)
    assert len(expected) == len({name for name, _ in expected}) == 311  # 12 stem + head, 14 + 15 x 19 blocks
    rng = np.random.default_rng(3)
    values = [rng.normal(size=shape).astype("float32") for _, shape in expected]
    with tf.Graph().as_default():
        variables = {name: tf.compat.v1.Variable(v, name=f"v{i}") for i, ((name, _), v) in
                     enumerate(zip(expected, values))}
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            path = saver.save(sess, str(tmp_path / "model.ckpt"))
    model = build_model("efficientnet-b0", 10, input_shape=(32, 32, 3))
    report = load_original_checkpoint(model, path, strict=True)
    assert report.loaded == len(model.weights) == len(expected)
    # Our weights in layer order pair with the original's in call order, one for one.
    for weight, (name, shape), value in zip(model.weights, expected, values):
        assert tuple(weight.shape) == shape, (weight.path, name)
        np.testing.assert_array_equal(np.asarray(weight), value, err_msg=f"{weight.path} <- {name}")
