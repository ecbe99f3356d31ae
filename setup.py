"""Installs gmlp_tf: gMLP and aMLP ("Pay Attention to MLPs") in TensorFlow 2 / Keras 3."""

import setuptools

INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    # tensorflow-text ships custom ops compiled against one TensorFlow minor version.
    "tensorflow-text>=2.21,<2.22",
    "tensorflow-datasets>=4.9.10",
    "keras-cv>=0.9.0",
    "absl-py>=2.0",
    # TensorFlow 2.21 no longer installs it; Keras' TensorBoard callback needs it.
    "tensorboard",
    "sentencepiece>=0.2.0",
    # Reads timm's .safetensors checkpoints (its NumPy API; no torch needed).
    "safetensors>=0.4",
    # Figures: ablation.png and the spatial-weight plots.
    "matplotlib>=3.7",
    # tensorflow-datasets imports it on Python 3.11 without declaring it.
    "importlib_resources",
]

setuptools.setup(
    name="gmlp_tf",
    version="0.1.0",
    description="gMLP and aMLP (Pay Attention to MLPs) in TensorFlow 2 / Keras 3, BERT-style scripts.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The preset JSON files live in the top-level configs/ folder, as bert_config.json files
    # would; they are installed as the package data of gmlp_tf.configs.
    packages=setuptools.find_packages(include=["gmlp_tf", "gmlp_tf.*"]) + ["gmlp_tf.configs"],
    package_dir={"gmlp_tf": "gmlp_tf", "gmlp_tf.configs": "configs"},
    package_data={"gmlp_tf.configs": ["*.json"]},
    install_requires=INSTALL_REQUIRES,
    # bench: keras-hub's BERT, the peer that scripts/benchmark_pretraining.py times beside gMLP.
    extras_require={
        # The tests also run the model side on Keras' JAX and PyTorch backends. torch is pinned to the
        # release whose CPU build CI machines hold; an open range would pull a CUDA build of several GB.
        # keras-hub: the ablation's external BERT row is tested end to end.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "ruff>=0.6", "jax[cpu]>=0.4.30", "torch==2.13.0",
                 "keras-hub>=0.32"],
        # For the model side on those backends without the tests.
        "jax": ["jax[cpu]>=0.4.30"],
        "torch": ["torch>=2.4"],
        "bench": ["keras-hub>=0.32"],
    },
)
