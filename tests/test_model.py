"""model/: every registered network builds, has the published size, and is noised only in training."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from model import MODELS, build_model, count_params, size_ratio
from trainer.export import export_saved_model

# keras.applications' parameter counts at 1000 classes (the EfficientNet paper's
# 5.3M ... 66M); our models hold the 7 normalisation numbers as constants.
KERAS_APPLICATIONS_PARAMS = {
    "efficientnet-b0": 5_330_571, "efficientnet-b1": 7_856_239, "efficientnet-b2": 9_177_569,
    "efficientnet-b3": 12_320_535, "efficientnet-b4": 19_466_823, "efficientnet-b5": 30_562_527,
    "efficientnet-b6": 43_265_143, "efficientnet-b7": 66_658_687,
}


@pytest.mark.parametrize("name", ["efficientnet-b0", "efficientnet-b1", "efficientnet-b2"])
def test_built_efficientnet_matches_keras_applications(name):
    built = build_model(name, 1000).count_params()
    reference = getattr(keras.applications, "EfficientNetB" + name[-1])(weights=None).count_params()
    assert built == reference - 7 == count_params(name, 1000)


@pytest.mark.parametrize("name", sorted(KERAS_APPLICATIONS_PARAMS))
def test_parameter_counts_equal_the_published_ones(name):
    assert count_params(name, 1000) == KERAS_APPLICATIONS_PARAMS[name] - 7


def test_l2_is_the_noisy_student_papers_480m():
    assert 475e6 < count_params("efficientnet-l2", 1000) < 485e6
    assert size_ratio("efficientnet-l2", "efficientnet-b7", 1000) > 7
    assert size_ratio("efficientnet-b0", "efficientnet-b7", 1000) < 1


def test_small_nets_sizes():
    assert 1.4e6 < count_params("wrn-28-2", 10) < 1.55e6
    assert count_params("cnn-small", 10) < 100_000
    # the larger student for the small-image presets: the same network twice as wide, 4x the parameters
    assert 3.9 < size_ratio("cnn-medium", "cnn-small", 10) < 4.0
    medium = build_model("cnn-medium", 10)
    assert medium.name == "cnn-medium"
    assert [medium.get_layer(f"stage{i}_conv").filters for i in (1, 2, 3)] == [32, 64, 96]


@pytest.mark.parametrize("name, shape", [
    ("cnn-small", (32, 32, 3)), ("cnn-small", (48, 40, 3)), ("cnn-medium", (32, 32, 3)), ("wrn-28-2", (32, 32, 3)),
    ("efficientnet-b0", (32, 32, 3)), ("efficientnet-b0", (224, 224, 3)),
])
def test_output_shapes(name, shape):
    model = build_model(name, 7, input_shape=shape)
    out = model(np.zeros((2,) + shape, np.float32), training=False)
    assert tuple(out.shape) == (2, 7)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)


def test_unknown_model_and_bad_rates_are_named():
    with pytest.raises(ValueError, match="unknown model 'resnet-9000'.*efficientnet-b0"):
        build_model("resnet-9000", 10)
    with pytest.raises(ValueError, match="dropout_rate must be in"):
        build_model("cnn-small", 10, dropout_rate=1.5)


@pytest.mark.parametrize("name", ["cnn-small", "cnn-medium", "wrn-28-2", "efficientnet-b0"])
def test_noise_only_in_training(name):
    model = build_model(name, 10, input_shape=(32, 32, 3), dropout_rate=0.5, stochastic_depth_rate=0.5)
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    a, b = model(x, training=True), model(x, training=True)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))


def _original_block_drop_rate(stochastic_depth_rate, idx, num_blocks):
    """google-research/noisystudent efficientnet_model.py:477-479, transcribed."""
    drop_rate = stochastic_depth_rate
    if drop_rate:
        drop_rate *= float(idx) / num_blocks
    return drop_rate


def test_stochastic_depth_rate_per_block_is_the_originals():
    model = build_model("efficientnet-b0", 10, input_shape=(32, 32, 3), stochastic_depth_rate=0.2)
    rates = {int(l.name.split("_")[0][len("block"):]) - 1: l.rate
             for l in model.layers if l.name.endswith("stochastic_depth")}
    # B0 has 16 blocks; the 9 with a skip connection (stride 1, same width) carry stochastic depth.
    assert sorted(rates) == [2, 4, 6, 7, 9, 10, 12, 13, 14]
    for idx, rate in rates.items():
        assert rate == pytest.approx(_original_block_drop_rate(0.2, idx, 16))
    assert model.get_layer("top_dropout").rate == 0.2


def test_keras_save_load_in_safe_mode_gives_same_predictions(tmp_path):
    model = build_model("wrn-28-2", 10)
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_saved_model_runs_with_plain_tensorflow(tmp_path):
    from noisystudent import records

    model = build_model("cnn-small", 4)
    pixels = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    expected = model.predict(pixels.astype(np.float32), verbose=0)
    export_saved_model(model, str(tmp_path / "sm"), class_names=["a", "b", "c", "d"])
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    png = [tf.io.encode_png(p).numpy() for p in pixels]
    examples = [records.encode_image_record(f"x/{i}", e) for i, e in enumerate(png)]
    out = {
        "serving_images": loaded.signatures["serving_images"](images=tf.constant(pixels)),
        "serving_encoded": loaded.signatures["serving_encoded"](images=tf.constant(png)),
        "serving_default": loaded.signatures["serving_default"](examples=tf.constant(examples)),
    }
    for name, result in out.items():
        np.testing.assert_allclose(result["probabilities"].numpy(), expected, atol=1e-5, err_msg=name)


def test_registry_lists_the_required_models():
    required = {f"efficientnet-b{i}" for i in range(8)} | {"efficientnet-l2", "wrn-28-2", "cnn-small", "cnn-medium"}
    assert required <= set(MODELS)
