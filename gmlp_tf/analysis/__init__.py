"""What a trained model learned: its spatial weights W, their Toeplitz scores, the tiny attention maps, and figures.

spatial_weights.py reads W and the attention maps out of a model (NumPy, no plotting); figures.py
draws them as the paper's Figures 3, 4, 9 and 10 (matplotlib, Agg, PNG) and offers a generic line
plot; report.py is scripts/plot_spatial_weights.py: a run directory in, figures and
spatial_weights.json out.
"""
