"""Picks the tf.distribute strategy: TPU first, then mirrored GPUs, GPU hosts (multi_worker), one
device, or the default."""

import os
from typing import Optional

import tensorflow as tf
from absl import logging

from gmlp_tf.runtime import cluster

STRATEGIES = ("default", "one_device", "mirrored", "tpu", "multi_worker")


def get_strategy(
    strategy: str = "default",
    tpu: Optional[str] = None,
    tpu_zone: Optional[str] = None,
    gcp_project: Optional[str] = None,
    cluster_timeout_s: float = 600,
) -> tf.distribute.Strategy:
    """Returns a tf.distribute.Strategy.

    Args:
      strategy: one of STRATEGIES. A `tpu` address implies "tpu". "multi_worker" is
        MultiWorkerMirroredStrategy over the cluster in TF_CONFIG.
      tpu: TPU name or grpc:// address ("local" for a TPU VM), as BERT's --tpu_name.
      tpu_zone, gcp_project: where to find a named TPU (optional on TPU VMs).
      cluster_timeout_s: seconds a multi_worker job waits for every worker of TF_CONFIG's cluster
        (runtime.cluster).

    Raises:
      ValueError: for an unknown strategy; for multi_worker, a TF_CONFIG unset or malformed.
      runtime.cluster.ClusterTimeoutError: some workers were not up within cluster_timeout_s.
    """
    if tpu:
        strategy = "tpu"
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if strategy == "multi_worker":
        # The cluster and this process's task come from TF_CONFIG; every worker runs the same command.
        # Keras fit() cannot run under it: the jobs train through runtime.custom_loop instead.
        result = _join_cluster(cluster.read_tf_config(os.environ.get("TF_CONFIG")), cluster_timeout_s)
        logging.info("Strategy MultiWorkerMirroredStrategy with %d replica(s)", result.num_replicas_in_sync)
        return result
    if strategy == "tpu":
        if not tpu:
            raise ValueError("--strategy=tpu needs --tpu (a TPU name, grpc:// address, or 'local')")
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu, zone=tpu_zone, project=gcp_project
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        result = tf.distribute.TPUStrategy(resolver)
    elif strategy == "mirrored":
        if not tf.config.list_logical_devices("GPU"):
            logging.warning("--strategy=mirrored found no GPU: MirroredStrategy mirrors over this host's CPU "
                            "devices instead")
        result = tf.distribute.MirroredStrategy()
    elif strategy == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        result = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    else:
        result = tf.distribute.get_strategy()
    logging.info("Strategy %s with %d replica(s)", type(result).__name__, result.num_replicas_in_sync)
    return result


def _join_cluster(workers: cluster.Cluster, timeout_s: float) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy once every worker is up (runtime.cluster.join: a line every 10 s
    naming the workers not up yet, one error line past timeout_s, SIGTERM and Ctrl-C end the wait)."""

    def connect() -> tf.distribute.Strategy:
        result = tf.distribute.MultiWorkerMirroredStrategy()
        # The first collective returns once every worker has joined.
        result.reduce(tf.distribute.ReduceOp.SUM, result.run(lambda: tf.constant(1.0)), axis=None)
        return result

    return cluster.join(workers, timeout_s, connect)
