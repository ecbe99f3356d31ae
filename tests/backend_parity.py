"""gmlp_tf's layers and models on one Keras backend, checked against TensorFlow's numbers.

The same cases run twice. Under TensorFlow (`write_references`, called by tests/test_backends.py)
each case's weights are perturbed, so that no near-zero weight (the spatial W starts at 1e-6)
hides a mismatch, and saved as `.weights.h5` (model cases also as a whole `.keras` file); the
outputs and the gradients of a fixed weighted sum of them are saved beside. Under JAX or PyTorch
(`python tests/backend_parity.py DIR`, with KERAS_BACKEND set) every case is rebuilt, loads the
TensorFlow-written weights and is compared: outputs, gradients (weights and float inputs),
`predict`, a compiled `fit` of two steps, a `.keras` round trip on that backend and, for the
models, the TensorFlow-written `.keras` file. The figures go to DIR/<backend>.json for the test
to judge; this file asserts nothing itself.
"""

import json
import os
import sys
from typing import Any, Callable, Dict, List, Tuple

import keras
import numpy as np

import gmlp_tf
from gmlp_tf.layers.baseline_blocks import MixerBlock, SelfAttention, TransformerBlock
from gmlp_tf.layers.gmlp_block import GMLPBlock
from gmlp_tf.layers.spatial_gating import SpatialGatingUnit
from gmlp_tf.layers.spatial_projection import SpatialProjection
from gmlp_tf.layers.tiny_attention import TinyAttention

MAX_LENGTH = 32  # Weights are sized for 32 tokens; layer cases feed 24 to check shorter inputs.
SHORT = 24
BATCH = 2
VOCAB = 97

Inputs = Dict[str, np.ndarray]
Case = Tuple[keras.Model, Inputs, List[str]]  # model, inputs, names of the float inputs.


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(sum(map(ord, name)))


def _padding_mask(batch: int, n: int) -> np.ndarray:
    mask = np.ones((batch, n), "int32")
    mask[-1, n * 2 // 3:] = 0  # The last example is padded.
    return mask


def _layer_case(name: str, make_layer: Callable[[], keras.layers.Layer], channels: int = 8,
                masked: bool = True, length: int = SHORT) -> Case:
    """A functional model around one layer: inputs "x" [batch, length, channels] and "mask"."""
    layer = make_layer()
    x_in = keras.Input((length, channels), name="x")
    inputs = {"x": x_in}
    kwargs = {}
    if masked:
        inputs["mask"] = keras.Input((length,), dtype="int32", name="mask")
        kwargs["padding_mask"] = inputs["mask"]
    model = keras.Model(inputs, layer(x_in, **kwargs), name=name)
    data = {"x": _rng(name).normal(size=(BATCH, length, channels)).astype("float32")}
    if masked:
        data["mask"] = _padding_mask(BATCH, length)
    return model, data, ["x"]


def _text_config(**fields: Any) -> gmlp_tf.GMLPConfig:
    base = dict(vocab_size=VOCAB, d_model=16, d_ffn=32, num_layers=2, max_seq_length=MAX_LENGTH,
                spatial_implementation="matmul", sgu_padding_mask=True)
    base.update(fields)
    return gmlp_tf.GMLPConfig(**base)


def _text_data(name: str, length: int, pretraining: bool) -> Inputs:
    rng = _rng(name)
    ids = rng.integers(1, VOCAB, (BATCH, length)).astype("int32")
    mask = _padding_mask(BATCH, length)
    segments = np.repeat((np.arange(length) >= length // 2)[None].astype("int32"), BATCH, axis=0)
    data = {"input_ids": ids * mask, "input_mask": mask, "segment_ids": segments}
    if pretraining:
        positions = [np.sort(rng.choice(length * 2 // 3, 5, replace=False)) for _ in range(BATCH)]
        data["masked_lm_positions"] = np.stack(positions).astype("int32")
    return data


def _text_case(name: str, config: gmlp_tf.GMLPConfig, task: str, length: int = MAX_LENGTH) -> Case:
    return gmlp_tf.build_model(config, task=task), _text_data(name, length, task == "pretraining"), []


def _vision_case(name: str) -> Case:
    config = gmlp_tf.GMLPConfig(modality="image", image_size=32, patch_size=8, d_model=16, d_ffn=32, num_layers=2,
                                num_classes=5, spatial_kind="dense")
    model = gmlp_tf.build_model(config)
    return model, {"images": _rng(name).normal(size=(BATCH, 32, 32, 3)).astype("float32")}, ["images"]


def _backbone_case(name: str) -> Case:
    return gmlp_tf.GMLPBackbone(_text_config(attention_size=8)), _text_data(name, SHORT, False), []


LAYER_CASES: Dict[str, Callable[[str], Case]] = {
    "spatial_projection_toeplitz_matmul": lambda name: _layer_case(name, lambda: SpatialProjection(
        MAX_LENGTH, kind="toeplitz", implementation="matmul")),
    "spatial_projection_toeplitz_fft": lambda name: _layer_case(name, lambda: SpatialProjection(
        MAX_LENGTH, kind="toeplitz", implementation="fft")),
    "spatial_projection_causal_fft": lambda name: _layer_case(name, lambda: SpatialProjection(
        MAX_LENGTH, kind="toeplitz", causal=True, implementation="fft")),
    "spatial_projection_causal_matmul": lambda name: _layer_case(name, lambda: SpatialProjection(
        MAX_LENGTH, kind="toeplitz", causal=True, implementation="matmul"), masked=False),
    "spatial_projection_dense": lambda name: _layer_case(name, lambda: SpatialProjection(MAX_LENGTH, kind="dense")),
    "spatial_gating_unit": lambda name: _layer_case(name, lambda: SpatialGatingUnit(
        MAX_LENGTH, spatial_kind="toeplitz", spatial_implementation="fft")),
    "tiny_attention": lambda name: _layer_case(name, lambda: TinyAttention(8, 6, causal=True)),
    "amlp_block": lambda name: _layer_case(name, lambda: GMLPBlock(
        8, 16, MAX_LENGTH, spatial_kind="toeplitz", attention_size=4, spatial_implementation="matmul")),
    "gmlp_block_multiplicative": lambda name: _layer_case(name, lambda: GMLPBlock(
        8, 16, MAX_LENGTH, gating="multiplicative", causal=True), length=MAX_LENGTH),
    "self_attention_relative": lambda name: _layer_case(name, lambda: SelfAttention(
        2, MAX_LENGTH, relative_positions=True)),
    "transformer_block": lambda name: _layer_case(name, lambda: TransformerBlock(8, 16, 2, MAX_LENGTH)),
    "mixer_block": lambda name: _layer_case(name, lambda: MixerBlock(8, 16, 12, MAX_LENGTH), length=MAX_LENGTH),
}

MODEL_CASES: Dict[str, Callable[[str], Case]] = {
    "pretraining_gmlp_toeplitz": lambda name: _text_case(name, _text_config(), "pretraining"),
    "classification_amlp_fft": lambda name: _text_case(
        name, _text_config(attention_size=8, spatial_implementation="fft"), "classification"),
    "squad_causal_fft": lambda name: _text_case(
        name, _text_config(causal=True, spatial_implementation="fft"), "squad", length=SHORT),
    "classification_transformer_relative": lambda name: _text_case(
        name, _text_config(architecture="transformer", num_attention_heads=2, position_encoding="relative"),
        "classification"),
    "pretraining_mlp_mixer": lambda name: _text_case(
        name, _text_config(architecture="mlp_mixer", d_spatial=16, sgu_padding_mask=False), "pretraining"),
    "backbone_amlp": _backbone_case,
    "vision_gmlp": _vision_case,
}

CASES = {**LAYER_CASES, **MODEL_CASES}


def _model_input(name: str, data: Inputs) -> Any:
    return data["images"] if name in ("vision_gmlp",) else data


def _flat(outputs: Any) -> List[Any]:
    """The outputs as a list: a dict's values in key order."""
    if isinstance(outputs, dict):
        return [outputs[key] for key in sorted(outputs)]
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _cotangents(name: str, outputs: List[np.ndarray]) -> List[np.ndarray]:
    rng = np.random.default_rng(len(name))
    return [rng.normal(size=np.shape(out)).astype("float32") for out in outputs]


def forward_and_gradients(name: str, model: keras.Model, data: Inputs, float_names: List[str]
                          ) -> Tuple[List[np.ndarray], Dict[str, np.ndarray]]:
    """Outputs of model(data) and the gradients of sum(outputs * fixed cotangents), by weight path
    (and "input:<name>" for float inputs), on the current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        outputs, grads = _tf_gradients(name, model, data, float_names)
    elif backend == "jax":
        outputs, grads = _jax_gradients(name, model, data, float_names)
    else:
        outputs, grads = _torch_gradients(name, model, data, float_names)
    weights = model.trainable_variables
    # By position and path below the model: auto-numbered model names differ between processes.
    names = [f"{i}:{w.path.partition('/')[2]}" for i, w in enumerate(weights)] + [f"input:{n}" for n in float_names]
    return [np.asarray(o) for o in outputs], {n: np.asarray(g) for n, g in zip(names, grads)}


def _weighted_sum(outputs: Any, cotangents: List[Any]) -> Any:
    return sum(keras.ops.sum(o * c) for o, c in zip(_flat(outputs), cotangents))


def _tf_gradients(name, model, data, float_names):
    import tensorflow as tf

    tensors = {k: tf.constant(v) for k, v in data.items()}
    with tf.GradientTape() as tape:
        tape.watch([tensors[n] for n in float_names])
        outputs = _flat(model(_model_input(name, tensors), training=False))
        loss = _weighted_sum(outputs, _cotangents(name, outputs))
    grads = tape.gradient(loss, model.trainable_variables + [tensors[n] for n in float_names])
    # Embedding gradients come as IndexedSlices.
    return [o.numpy() for o in outputs], [tf.convert_to_tensor(g).numpy() for g in grads]


def _jax_gradients(name, model, data, float_names):
    import jax
    import jax.numpy as jnp

    trainable = [w.value for w in model.trainable_variables]
    frozen = [w.value for w in model.non_trainable_variables]
    floats = {n: jnp.asarray(data[n]) for n in float_names}

    def forward(trainable, floats):
        outputs, _ = model.stateless_call(trainable, frozen, _model_input(name, {**data, **floats}), training=False)
        return _flat(outputs)

    # Shapes by tracing alone, then one compilation for outputs and gradients together: on JAX
    # every eager op compiles on its first use, which would cost more than the whole check.
    cotangents = _cotangents(name, jax.eval_shape(forward, trainable, floats))

    def loss_fn(trainable, floats):
        outputs = forward(trainable, floats)
        return _weighted_sum(outputs, cotangents), outputs

    (_, outputs), (grads, input_grads) = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))(
        trainable, floats)
    return outputs, list(grads) + [input_grads[n] for n in float_names]


def _torch_gradients(name, model, data, float_names):
    import torch

    tensors = {k: torch.tensor(v, requires_grad=k in float_names) for k, v in data.items()}
    outputs = _flat(model(_model_input(name, tensors), training=False))
    loss = _weighted_sum(outputs, [torch.tensor(c) for c in _cotangents(name, outputs)])
    sources = [w.value for w in model.trainable_variables] + [tensors[n] for n in float_names]
    grads = torch.autograd.grad(loss, sources)
    return [o.detach().numpy() for o in outputs], [g.detach().numpy() for g in grads]


def perturb(model: keras.Model, name: str) -> None:
    """Adds N(0, 0.1) noise to every weight: the spatial W, zero heads and unit norms included."""
    rng = _rng("perturb:" + name)
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        weight.assign((value + 0.1 * rng.standard_normal(value.shape)).astype(value.dtype))


def write_references(directory: str) -> None:
    """TensorFlow's side: perturbed weights, `.keras` files, outputs and gradients of every case."""
    for name, make in CASES.items():
        model, data, float_names = make(name)
        perturb(model, name)
        model.save_weights(os.path.join(directory, name + ".weights.h5"))
        if name in MODEL_CASES:
            model.save(os.path.join(directory, name + ".keras"))
        outputs, grads = forward_and_gradients(name, model, data, float_names)
        fit_losses = np.array(_fit_losses(name, model, data)) if name in MODEL_CASES else np.zeros(0)
        np.savez(os.path.join(directory, name + ".npz"), fit_losses=fit_losses,
                 **{f"output:{i}": o for i, o in enumerate(outputs)}, **{f"grad:{k}": g for k, g in grads.items()})


def relative_difference(actual: Any, expected: np.ndarray, scale: float = 0.0) -> float:
    """max |actual - expected| / max(max |expected|, scale, 1e-6)."""
    actual = np.asarray(keras.ops.convert_to_numpy(actual), "float64")
    expected = np.asarray(expected, "float64")
    if actual.shape != expected.shape:
        return float("inf")
    largest = max(float(np.max(np.abs(expected), initial=0.0)), scale, 1e-6)
    return float(np.max(np.abs(actual - expected), initial=0.0)) / largest


def _largest(pairs: List[Tuple[Any, np.ndarray]], common_scale: bool = False) -> float:
    """The largest relative difference of the pairs; with common_scale, each relative to the largest
    expected value of them all. Gradients are judged so: some are zero in exact arithmetic (the key
    bias of a softmax attention), and their float32 noise (1e-7 of the others) has no scale of its own."""
    scale = max((float(np.max(np.abs(e), initial=0.0)) for _, e in pairs), default=0.0) if common_scale else 0.0
    return max((relative_difference(a, e, scale) for a, e in pairs), default=0.0)


def _fit_losses(name: str, model: keras.Model, data: Inputs) -> List[float]:
    """Two epochs of one step each of a compiled fit toward zero outputs (Keras' jit choice for the
    backend). SGD, not Adam: Adam's first step is about lr * sign(gradient), which would turn float32
    noise in a gradient that is zero in exact arithmetic into a full step."""
    outputs = model.predict(_model_input(name, data), verbose=0)
    targets = {k: np.zeros_like(v) for k, v in outputs.items()} if isinstance(outputs, dict) else np.zeros_like(
        outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    history = model.fit(_model_input(name, data), targets, epochs=2, batch_size=BATCH, verbose=0)
    return [float(x) for x in history.history["loss"]]


def _model_difference(loaded: keras.Model, model: keras.Model) -> float:
    """0.0 when `loaded` has the config (its own name aside) and the weights of `model`, which then
    compute the same function; inf for another config; else the largest relative weight difference.
    (Comparing outputs instead would compile each model once more on JAX.)"""
    def config(m):  # A functional model's layers apart: its own config lists build shapes as tuples or lists.
        return ({k: v for k, v in m.get_config().items() if k not in ("name", "layers")},
                [layer.get_config() for layer in m.layers])

    if type(loaded) is not type(model) or config(loaded) != config(model) or len(loaded.weights) != len(model.weights):
        return float("inf")
    return _largest([(a, keras.ops.convert_to_numpy(b)) for a, b in zip(loaded.weights, model.weights)])


def check_case(name: str, directory: str) -> Dict[str, Any]:
    """This backend's figures for one case against TensorFlow's (see the module docstring)."""
    reference = np.load(os.path.join(directory, name + ".npz"))
    expected_outputs = [reference[k] for k in sorted((k for k in reference if k.startswith("output:")),
                                                     key=lambda k: int(k.split(":")[1]))]
    model, data, float_names = CASES[name](name)
    model.load_weights(os.path.join(directory, name + ".weights.h5"))
    outputs, grads = forward_and_gradients(name, model, data, float_names)
    result = {
        "output": _largest(list(zip(outputs, expected_outputs))),
        "gradient": _largest([(grads[k], reference["grad:" + k]) for k in grads], common_scale=True),
        "gradients_compared": len(grads),
        "gradients_expected": sum(k.startswith("grad:") for k in reference),
    }
    path = os.path.join(directory, f"{name}.{keras.backend.backend()}.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    result["keras_round_trip"] = _model_difference(reloaded, model)
    if name in MODEL_CASES:  # Compiled predict and fit cost a compilation each: the models only.
        result["predict"] = _largest(
            list(zip(_flat(model.predict(_model_input(name, data), verbose=0)), expected_outputs)))
        result["tensorflow_keras_file"] = _model_difference(
            keras.models.load_model(os.path.join(directory, name + ".keras")), model)
        result["fit_losses"] = _fit_losses(name, reloaded, data)
        result["fit_losses_tensorflow"] = reference["fit_losses"].tolist()
    return result


def main(directory: str) -> None:
    results = {"backend": keras.backend.backend(), "cases": {}}
    for name in CASES:
        results["cases"][name] = check_case(name, directory)
    # The spatial-projection benchmark's step runs on this backend (its figures are not judged).
    from gmlp_tf.benchmarks import spatial_projection as benchmark

    results["benchmark_seconds"] = {
        path: benchmark.measure(path, 32, 8, 1, jit_compile=True, causal=True)["seconds"]
        for path in benchmark.implementations(keras.backend.backend())}
    with open(os.path.join(directory, keras.backend.backend() + ".json"), "w") as out:
        json.dump(results, out, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
