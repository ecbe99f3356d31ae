"""The gMLP / aMLP Keras layers, and the type aliases their signatures share."""

from typing import Any, Dict, Optional, Tuple, Union

import keras

# Keras 3 has no public tensor type: a backend tensor, or anything Keras converts to one (a
# NumPy array, for instance).
Tensor = Any
# A static shape, as Keras passes to build() and compute_output_shape(); None where unknown.
Shape = Tuple[Optional[int], ...]
# What keras.initializers.get() accepts: a name, a serialized config or an instance.
InitializerLike = Union[str, Dict[str, Any], keras.initializers.Initializer]


def fresh_initializer(initializer: InitializerLike) -> keras.initializers.Initializer:
    """A new instance of an initializer for each weight: Keras warns when one instance is reused."""
    return keras.initializers.get(keras.initializers.serialize(keras.initializers.get(initializer)))
