"""Two helpers: the generic checks every Keras layer, and every model, of the library must pass.

`run_layer_test` is in the spirit of keras-hub's `TestCase.run_layer_test`, `run_model_test` in
that of its `run_model_saving_test` / `run_task_test`; both are plain functions so that plain
pytest functions can use them. Layer- and model-specific semantics (Toeplitz structure,
causality, parity with the paper, parameter counts, tied heads) stay in their own test files;
this file is the one place for build / call, config round trips, `.keras` round trips, SavedModel
exports, mixed precision, shorter inputs, training-mode calls and a training step.
"""

import inspect
import os
import tempfile
from typing import Any, Callable, Mapping, Optional, Union

import keras
import numpy as np
import tensorflow as tf
from keras import tree

# One shape, or one per output key for layers that return a dict.
ShapeStructure = Union[tuple, Mapping[str, tuple]]
DtypeStructure = Union[str, Mapping[str, str]]

_RTOL = _ATOL = 1e-6
# A SavedModel's traced graph may fuse ops differently from Keras' own call.
_EXPORT_RTOL = _EXPORT_ATOL = 1e-5


def run_layer_test(
    layer_cls: type,
    init_kwargs: Mapping[str, Any],
    input_data: Any,
    expected_output_shape: ShapeStructure,
    *,
    call_kwargs: Optional[Mapping[str, np.ndarray]] = None,
    unserialized_kwargs: Optional[Callable[[], Mapping[str, Any]]] = None,
    shorter_input_data: Any = None,
    shorter_call_kwargs: Optional[Mapping[str, np.ndarray]] = None,
    expected_shorter_output_shape: Optional[ShapeStructure] = None,
    run_training_check: bool = True,
    run_saving_check: bool = True,
    saving_model_fn: Optional[Callable[[keras.layers.Layer], keras.Model]] = None,
    run_mixed_precision_check: bool = True,
    expected_mixed_precision_dtype: DtypeStructure = "bfloat16",
) -> keras.layers.Layer:
    """Puts one layer configuration through the generic checks.

    1. Registration: the class is registered under the "gmlp_tf" package.
    2. Build and call: an eager call on `input_data` gives `expected_output_shape`; a symbolic call
       (keras.Input, as in the functional model of check 4) gives the same shapes, batch left
       unknown, and the same dtypes.
    3. Config: `from_config(get_config())` gives a layer with the same config that, given the same
       (randomised) weights, gives the same outputs; `serialize_keras_object` /
       `deserialize_keras_object` gives back the same class and config.
    4. Saving: a `.keras` save / `keras.models.load_model` round trip of a model wrapping the layer
       gives the same outputs (a functional model by default, or `saving_model_fn(layer)`).
    5. Mixed precision: under the global "mixed_bfloat16" policy a new layer runs, its outputs have
       `expected_mixed_precision_dtype` (as Keras' symbolic call says), its float variables stay
       float32 and every sublayer follows the policy. The previous global policy is restored even
       on failure.
    6. Shorter inputs (when `shorter_input_data` is given): the built layer runs on an input with
       fewer tokens than its maximum length and gives `expected_shorter_output_shape`.
    7. Training (when `run_training_check`): a `training=True` call, where the layer takes one,
       keeps the shapes and stays finite, and every trainable weight gets a gradient.

    Args:
      layer_cls: the layer class.
      init_kwargs: its constructor arguments.
      input_data: the call's first argument: an array or a (nested) dict of arrays.
      expected_output_shape: the output shape, or a dict of them for dict outputs.
      call_kwargs: further tensor arguments of the call, e.g. {"padding_mask": mask}.
      unserialized_kwargs: returns fresh constructor arguments that `get_config` deliberately
        leaves out (objects owned by another layer); called for every new instance, and passed
        back to `from_config`.
      shorter_input_data, shorter_call_kwargs, expected_shorter_output_shape: the shorter input
        and the shapes it must give.
      run_training_check: run check 7.
      run_saving_check: run check 4.
      saving_model_fn: wraps the built layer in the model to save, for layers a functional model
        cannot restore on its own; the model is called as model(input_data, **call_kwargs).
      run_mixed_precision_check: run check 5.
      expected_mixed_precision_dtype: the outputs' dtype under mixed_bfloat16, or a dict of them.

    Returns:
      The built layer, with randomised weights, for further layer-specific checks.
    """
    init_kwargs = dict(init_kwargs)
    call_kwargs = dict(call_kwargs or {})

    def make_layer() -> keras.layers.Layer:
        extras = unserialized_kwargs() if unserialized_kwargs else {}
        return layer_cls(**init_kwargs, **extras)

    name = keras.saving.get_registered_name(layer_cls)
    assert name == f"gmlp_tf>{layer_cls.__name__}", f"{layer_cls.__name__} is not registered: {name}"

    # 2. Build and call, eager then symbolic (the functional model of check 4, when there is one,
    # is the symbolic call: tracing the layer twice would only slow the suite).
    layer = make_layer()
    output = layer(input_data, **call_kwargs)
    _assert_shapes(output, expected_output_shape)
    functional = run_saving_check and saving_model_fn is None
    if functional:
        model = _functional_model(layer, input_data, call_kwargs)
        _assert_matches_spec(model.output, output)
    else:
        _assert_matches_symbolic_call(layer, output, input_data, call_kwargs)

    # Weights away from their initial values (the spatial projection starts at W ~ 0, b = 1), so
    # that a round trip that lost or swapped a weight changes the outputs.
    _randomize_weights(layer)
    output = layer(input_data, **call_kwargs)

    # 3. Config round trip.
    config = layer.get_config()
    extras = unserialized_kwargs() if unserialized_kwargs else {}
    revived = layer_cls.from_config({**config, **extras})
    assert revived.get_config() == config
    revived(input_data, **call_kwargs)
    revived.set_weights(layer.get_weights())
    _assert_outputs_equal(revived(input_data, **call_kwargs), output)
    if not unserialized_kwargs:
        deserialized = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(deserialized) is layer_cls and deserialized.get_config() == config

    # 4. `.keras` round trip.
    if run_saving_check:
        if functional:
            args, kwargs = (tree.flatten((input_data, call_kwargs)),), {}
        else:
            model = saving_model_fn(layer)
            args, kwargs = (input_data,), call_kwargs
            # Builds the model around the built layer, so that its build config is saved.
            _assert_outputs_equal(model(*args, **kwargs), output)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            restored = keras.models.load_model(path)
        _assert_outputs_equal(restored(*args, **kwargs), output)

    # 5. Mixed precision.
    if run_mixed_precision_check:
        _check_mixed_precision(make_layer, input_data, call_kwargs, expected_mixed_precision_dtype)

    # 6. Shorter inputs.
    if shorter_input_data is not None:
        shorter = layer(shorter_input_data, **dict(shorter_call_kwargs or {}))
        _assert_shapes(shorter, expected_shorter_output_shape)

    # 7. Training mode.
    if run_training_check:
        _check_training(layer, input_data, call_kwargs, expected_output_shape)
    return layer


def _takes_training(layer: keras.layers.Layer) -> bool:
    return "training" in inspect.signature(layer.call).parameters


def _assert_shapes(output: Any, expected: ShapeStructure) -> None:
    if isinstance(output, Mapping):
        assert set(output) == set(expected), f"output keys {sorted(output)} != {sorted(expected)}"
        for key in output:
            actual = tuple(output[key].shape)
            assert actual == tuple(expected[key]), f"{key}: {actual} != {tuple(expected[key])}"
    else:
        assert tuple(output.shape) == tuple(expected), f"{tuple(output.shape)} != {tuple(expected)}"


def _assert_outputs_equal(actual: Any, expected: Any) -> None:
    tree.map_structure(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=_RTOL, atol=_ATOL),
        actual,
        expected,
    )


def _symbolic(array: np.ndarray) -> keras.KerasTensor:
    # The batch is left unknown, as in any real model.
    return keras.Input(shape=array.shape[1:], dtype=str(array.dtype))


def _assert_matches_symbolic_call(
    layer: keras.layers.Layer, output: Any, input_data: Any, call_kwargs: Mapping[str, np.ndarray]
) -> None:
    """Keras' symbolic call (what a functional model sees) must agree with the eager one."""
    symbolic_kwargs = {key: _symbolic(value) for key, value in call_kwargs.items()}
    spec = layer(tree.map_structure(_symbolic, input_data), **symbolic_kwargs)
    _assert_matches_spec(spec, output)


def _assert_matches_spec(spec: Any, output: Any) -> None:
    """Symbolic outputs: the eager outputs' shapes (batch unknown) and dtypes."""

    def check(s: keras.KerasTensor, o: Any) -> None:
        shapes_agree = s.shape[0] is None and tuple(s.shape[1:]) == tuple(o.shape[1:])
        assert shapes_agree, f"symbolic shape {s.shape} vs eager {tuple(o.shape)}"
        assert keras.backend.standardize_dtype(s.dtype) == keras.backend.standardize_dtype(o.dtype), (
            f"spec dtype {s.dtype} vs output dtype {o.dtype}"
        )

    tree.map_structure(check, spec, output)


def _randomize_weights(layer: keras.layers.Layer, scale: float = 0.1) -> None:
    rng = np.random.default_rng(0)
    for weight in layer.trainable_weights:
        value = np.asarray(weight)
        weight.assign(value + rng.normal(0.0, scale, value.shape).astype(value.dtype))


def _functional_model(
    layer: keras.layers.Layer, input_data: Any, call_kwargs: Mapping[str, np.ndarray]
) -> keras.Model:
    """A functional model over the flat list of the call's tensors (nested dicts included)."""
    flat = tree.flatten((input_data, call_kwargs))
    inputs = [_symbolic(array) for array in flat]
    packed_data, packed_kwargs = tree.pack_sequence_as((input_data, call_kwargs), inputs)
    return keras.Model(inputs, layer(packed_data, **packed_kwargs))


def _check_mixed_precision(
    make_layer: Callable[[], keras.layers.Layer],
    input_data: Any,
    call_kwargs: Mapping[str, np.ndarray],
    expected_dtype: DtypeStructure,
) -> None:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = make_layer()
        output = layer(input_data, **call_kwargs)
        if isinstance(output, Mapping) and isinstance(expected_dtype, str):
            expected_dtype = {key: expected_dtype for key in output}
        tree.map_structure(_assert_dtype, output, expected_dtype)
        _assert_matches_symbolic_call(layer, output, input_data, call_kwargs)
        for weight in layer.weights:
            if keras.backend.is_float_dtype(weight.dtype):
                dtype = keras.backend.standardize_dtype(weight.dtype)
                assert dtype == "float32", f"variable {weight.path} is {dtype}"
        for sublayer in layer._flatten_layers(include_self=True):
            assert sublayer.dtype_policy.name == "mixed_bfloat16", (
                f"sublayer {sublayer.name} has policy {sublayer.dtype_policy.name}"
            )
    finally:
        keras.config.set_dtype_policy(previous)


def _assert_dtype(tensor: Any, dtype: str) -> None:
    actual = keras.backend.standardize_dtype(tensor.dtype)
    assert actual == dtype, f"output dtype {actual}, expected {dtype}"


def _check_training(
    layer: keras.layers.Layer,
    input_data: Any,
    call_kwargs: Mapping[str, np.ndarray],
    expected_output_shape: ShapeStructure,
) -> None:
    training = {"training": True} if _takes_training(layer) else {}
    with tf.GradientTape() as tape:
        output = layer(input_data, **call_kwargs, **training)
        floats = [o for o in tree.flatten(output) if keras.backend.is_float_dtype(o.dtype)]
        loss = sum(tf.reduce_mean(tf.square(tf.cast(o, "float32"))) for o in floats)
    _assert_shapes(output, expected_output_shape)
    for o in floats:
        assert np.all(np.isfinite(np.asarray(o))), "non-finite output in training mode"
    weights = layer.trainable_weights
    for weight, grad in zip(weights, tape.gradient(loss, weights)):
        assert grad is not None, f"no gradient reaches {weight.path}"


def run_model_test(
    model: keras.Model,
    input_data: Any,
    expected_output_shape: ShapeStructure,
    *,
    target_data: Any = None,
    loss: Any = None,
    expected_output_dtype: DtypeStructure = "float32",
    run_predict_check: bool = True,
    run_saving_check: bool = True,
    run_export_check: bool = True,
    run_fit_check: bool = True,
) -> keras.Model:
    """Puts one built model through the generic model-level checks.

    The model's trainable weights are first moved away from their initial values (zero heads,
    W ~ 0 and b = 1 spatial projections), so that a round trip that lost or swapped a weight
    changes the outputs; every later check compares against an eager call with those weights.

    1. Predict: `model.predict` (batch = the whole input) gives `expected_output_shape` (a dict of
       shapes for dict outputs) and `expected_output_dtype`, finite values, and the eager call's
       outputs within 1e-5.
    2. Saving: a `.keras` save / `keras.models.load_model` round trip gives a model of the same
       class and config whose outputs are the same within 1e-6.
    3. Export: `model.export(dir, format="tf_saved_model")` (Keras 3 export) then
       `tf.saved_model.load(dir).serve(input_data)` gives the eager call's outputs within 1e-5.
    4. Fit: after `compile(optimizer=SGD(0.1), loss=loss)`, one `fit` step on (input_data,
       target_data) reports one finite loss and changes at least one trainable weight. It runs
       last, since it changes the weights and leaves the model compiled.

    Args:
      model: a built keras.Model (e.g. `gmlp_tf.build_model(config, task)`).
      input_data: its input: an array or a dict of arrays, batch first. For check 3 it must be
        what the exported `serve` endpoint takes (for the text task models: exactly the keys of
        their `serving_inputs`).
      expected_output_shape: the output shape, or a dict of them for dict outputs.
      target_data: the targets of check 4; default: zeros shaped as the outputs.
      loss: the loss of check 4, anything `compile` takes (a dict per output for dict
        outputs); default: "mse".
      expected_output_dtype: the outputs' dtype, or a dict of them.
      run_predict_check, run_saving_check, run_export_check, run_fit_check: run checks 1-4.

    Returns:
      The model, with the weights that check 4 left (randomised ones if it did not run), for
      further model-specific checks.
    """
    batch_size = int(tree.flatten(input_data)[0].shape[0])
    _randomize_weights(model)
    expected = _to_numpy(model(input_data))
    _assert_shapes(expected, expected_output_shape)

    # 1. Predict.
    if run_predict_check:
        predicted = model.predict(input_data, batch_size=batch_size, verbose=0)
        _assert_shapes(predicted, expected_output_shape)
        if isinstance(predicted, Mapping) and isinstance(expected_output_dtype, str):
            expected_output_dtype = {key: expected_output_dtype for key in predicted}
        tree.map_structure(_assert_dtype, predicted, expected_output_dtype)
        for value in tree.flatten(predicted):
            assert np.all(np.isfinite(value)), "non-finite prediction"
        _assert_outputs_close(predicted, expected, _EXPORT_RTOL, _EXPORT_ATOL)

    # 2. `.keras` round trip.
    if run_saving_check:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            restored = keras.models.load_model(path)
        assert type(restored) is type(model), f"restored a {type(restored).__name__}, not a {type(model).__name__}"
        assert restored.get_config() == model.get_config()
        _assert_outputs_equal(_to_numpy(restored(input_data)), expected)

    # 3. SavedModel export.
    if run_export_check:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "export")
            model.export(path, format="tf_saved_model", verbose=False)
            reloaded = tf.saved_model.load(path)
            served = reloaded.serve(tree.map_structure(tf.constant, input_data))
        _assert_outputs_close(_to_numpy(served), expected, _EXPORT_RTOL, _EXPORT_ATOL)

    # 4. One training step.
    if run_fit_check:
        if target_data is None:
            target_data = tree.map_structure(np.zeros_like, expected)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=loss or "mse")
        before = [np.array(weight) for weight in model.trainable_weights]
        assert before, "the model has no trainable weights"
        history = model.fit(input_data, target_data, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        losses = history.history["loss"]
        assert len(losses) == 1 and np.isfinite(losses[0]), f"fit losses {losses}"
        changed = [not np.array_equal(b, np.asarray(w)) for b, w in zip(before, model.trainable_weights)]
        assert any(changed), "one fit step changed no trainable weight"
    return model


def _to_numpy(output: Any) -> Any:
    return tree.map_structure(np.asarray, output)


def _assert_outputs_close(actual: Any, expected: Any, rtol: float, atol: float) -> None:
    if isinstance(expected, Mapping):
        assert isinstance(actual, Mapping) and set(actual) == set(expected), (
            f"output keys {sorted(actual) if isinstance(actual, Mapping) else type(actual)} != {sorted(expected)}"
        )
        actual = {key: actual[key] for key in expected}
    tree.map_structure(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol),
        actual,
        expected,
    )
