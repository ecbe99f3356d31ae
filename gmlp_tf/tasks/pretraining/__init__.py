"""Masked-LM pretraining (Table 8): the data pipeline, recipe, metrics, job, benchmark and demo corpus."""
