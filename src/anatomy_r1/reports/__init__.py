"""Markdown, figures and output folders from what runs wrote; every number written through ``fmt``.

``fmt`` is how a number reads everywhere (percentages, points, signed values, table cells); ``plots``
draws the training and evaluation figures (reward and S(q) curves, invalid-gradient ratio per class,
per-class accuracy); ``report`` writes a training run's ``metrics.json`` (``report_summary``),
``report.md`` (``report_markdown``, with the host from ``machine``) and those figures into one folder;
``eval_report`` writes an evaluation's folder and ``metrics.md``; ``probe_report`` the probe's;
``experiment_report`` an experiment's ``results.md``, ``summary.json`` and figures. Nothing is imported
here so that ``import anatomy_r1.reports`` stays cheap; import the modules.
"""
