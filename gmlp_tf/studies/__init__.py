"""Studies of the paper's findings that run tasks many times: the Table 3 ablation (ablation.py).

A study sits above the tasks and the analysis: it runs a task's jobs and draws their figures.
"""
