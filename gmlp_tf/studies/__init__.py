"""Studies of the paper's findings that run tasks many times: the Table 3 ablation (ablation.py),
scaling at small scale (scaling.py), and what they use: keras-hub's BERT as an external reference
(keras_hub_bert.py) and the Transformers' attention at every checkpoint (attention_probe.py).

A study sits above the tasks and the analysis: it runs a task's jobs and draws their figures.
"""
