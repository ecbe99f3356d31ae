"""Utilities below every level of gmlp_tf: progress lines and files fetched from package registries.

Nothing here imports any other part of gmlp_tf.
"""
