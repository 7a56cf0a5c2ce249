"""tfstyle.vgg: layer names, preprocessing, weight loading, feature extractors (CPU, random)."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfstyle.core import vgg


@pytest.fixture(scope="module")
def base():
    keras.utils.set_random_seed(1)
    return vgg.load_vgg19(weights="random")


def _images(n=2, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def test_layer_names_map_paper_and_keras_names(base):
    assert vgg.keras_layer_name("relu1_1") == "block1_conv1"
    assert vgg.keras_layer_name("conv1_1") == "block1_conv1"
    assert vgg.keras_layer_name("relu4_1") == "block4_conv1"
    assert vgg.keras_layer_name("conv5_4") == "block5_conv4"
    assert vgg.keras_layer_name("pool3") == "block3_pool"
    assert vgg.keras_layer_name("fc6") == "fc1"
    assert vgg.keras_layer_name("block2_conv2") == "block2_conv2"
    assert vgg.paper_layer_name("block3_conv4") == "relu3_4"
    assert vgg.layers_up_to("relu2_1") == (
        "block1_conv1", "block1_conv2", "block1_pool", "block2_conv1")
    with pytest.raises(ValueError, match="relu6_1"):
        vgg.keras_layer_name("relu6_1")
    # The table agrees with the keras.applications architecture.
    convs = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)]
    assert tuple(layer.name for layer in convs) == vgg.VGG19_CONV_LAYERS
    assert all(vgg.layer_channels(layer.name) == layer.filters for layer in convs)
    assert len(vgg.VGG19_CONV_LAYERS) == 16


def test_preprocess_is_keras_caffe_preprocessing():
    x = _images()
    ours = vgg.preprocess(tf.constant(x)).numpy()
    np.testing.assert_allclose(ours, keras.applications.vgg19.preprocess_input(x.copy()),
                               atol=1e-4)
    np.testing.assert_allclose(vgg.deprocess(ours).numpy(), x, atol=1e-3)
    np.testing.assert_allclose(vgg.VGG19Preprocess()(x).numpy(), ours, atol=1e-5)
    # Channel 0 of the output is blue minus the blue mean.
    np.testing.assert_allclose(ours[..., 0], x[..., 2] - 103.939, atol=1e-4)


def test_feature_extractor_returns_named_features_and_is_cut(base):
    ex = vgg.vgg19_feature_extractor(["relu1_1", "block2_conv1"], base=base)
    out = ex(_images())
    assert set(out) == {"relu1_1", "block2_conv1"}
    assert out["relu1_1"].shape == (2, 32, 32, 64)
    assert out["block2_conv1"].shape == (2, 16, 16, 128)
    names = [layer.name for layer in ex.layers]
    assert "block2_conv1" in names and "block2_conv2" not in names  # cut after the deepest
    # Shares the base's weights, and equals the base applied to preprocessed input.
    assert ex.get_layer("block1_conv1") is base.get_layer("block1_conv1")
    raw = vgg.vgg19_feature_extractor(["block2_conv1"], base=base, preprocess_input=False)
    np.testing.assert_allclose(raw(vgg.preprocess(_images()))["block2_conv1"].numpy(),
                               out["block2_conv1"].numpy(), rtol=1e-4, atol=1e-4)
    # relu: activations are non-negative, and differ between images
    assert float(tf.reduce_min(out["relu1_1"])) >= 0.0


def test_missing_weights_file_error_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "vgg19_weights.h5"
    with pytest.raises(FileNotFoundError, match="nowhere/vgg19_weights.h5"):
        vgg.load_vgg19(weights=str(missing))
    with pytest.raises(FileNotFoundError, match="vgg19_weights.h5"):
        vgg.vgg19_feature_extractor(["relu1_1"], weights=missing)


def test_unavailable_imagenet_weights_say_how_to_supply_a_file(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(vgg.VGGWeightsUnavailableError) as info:
        vgg.load_vgg19(weights="imagenet")
    msg = str(info.value)
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg
    assert "--weights=" in msg and "no network" in msg


def test_random_weights_warn_only_when_implicit():
    with pytest.warns(RuntimeWarning, match="RANDOM weights"):
        vgg.load_vgg19(weights=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vgg.load_vgg19(weights="random")


def test_local_weight_files_load_by_name(base, tmp_path):
    x = _images(1)
    want = vgg.vgg19_feature_extractor(["block3_conv1"], base=base)(x)["block3_conv1"].numpy()

    # Keras 3 weights file of the same architecture.
    base.save_weights(tmp_path / "vgg.weights.h5")
    # A legacy HDF5 model with an extra layer (must be ignored) around the VGG19 layers.
    feats = base.output
    extra = keras.layers.Dense(3, name="extra")(keras.layers.GlobalAveragePooling2D()(feats))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.Model(base.input, extra).save(tmp_path / "legacy.h5")
    keras.Model(base.input, extra).save(tmp_path / "vgg.keras")

    for name in ("vgg.weights.h5", "legacy.h5", "vgg.keras"):
        keras.utils.set_random_seed(123)  # fresh random model differs from `base`
        loaded = vgg.load_vgg19(weights=tmp_path / name)
        got = vgg.vgg19_feature_extractor(["block3_conv1"], base=loaded)(x)["block3_conv1"]
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_weights_file_without_the_asked_layers_is_a_clear_error(tmp_path):
    small = keras.Sequential([keras.Input((8, 8, 3)),
                              keras.layers.Conv2D(64, 3, name="block1_conv1")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small.save(tmp_path / "partial.h5")
    with pytest.raises(vgg.VGGWeightsMismatchError, match="block1_conv2") as info:
        vgg.load_vgg19(weights=tmp_path / "partial.h5")
    assert "partial.h5" in str(info.value)


def test_wrong_shapes_name_the_layer_and_assign_nothing(base, tmp_path):
    """tfstyle.core.weights checks every layer's shapes before it assigns any."""
    import h5py

    layers = [(layer.name, [np.asarray(w) for w in layer.weights])
              for layer in base.layers if layer.weights]
    layers[4] = (layers[4][0], [w.T for w in layers[4][1]])  # block3_conv1 transposed
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.attrs["layer_names"] = [n.encode() for n, _ in layers]
        for name, arrays in layers:
            names = [f"{name}/w{i}" for i in range(len(arrays))]
            f.create_group(name).attrs["weight_names"] = [n.encode() for n in names]
            for n, array in zip(names, arrays):
                f[name].create_dataset(n, data=array)
    keras.utils.set_random_seed(7)
    target = vgg.load_vgg19(weights="random")
    before = [np.asarray(w).copy() for w in target.weights]
    with pytest.raises(vgg.VGGWeightsMismatchError, match="block3_conv1") as info:
        vgg.load_weights_into(target, tmp_path / "bad.h5")
    assert "bad.h5" in str(info.value) and "VGG19" in str(info.value)
    for w, b in zip(target.weights, before):  # block1_conv1 and block2_* were not assigned
        np.testing.assert_array_equal(np.asarray(w), b)
    with pytest.raises(vgg.VGGWeightsMismatchError, match="expected .h5"):
        (tmp_path / "vgg.npz").write_bytes(b"")
        vgg.load_vgg19(weights=tmp_path / "vgg.npz")
