"""Figures and the before/after report of a training run.

``plots`` draws the training and evaluation figures (reward and S(q) curves, invalid-gradient ratio per
class, per-class accuracy); ``report`` writes ``metrics.json``, ``report.md`` and those figures into one
folder. Nothing is imported here so that ``import anatomy_r1.reports`` stays cheap; import the modules.
"""
