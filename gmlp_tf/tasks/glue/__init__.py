"""GLUE finetuning (Table 9): readers, tf.data pipeline, the official metrics, the job and the sentiment demo."""
