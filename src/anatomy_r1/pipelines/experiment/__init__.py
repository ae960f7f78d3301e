"""The ablation runner: every method of the paper's tables on one harness, several seeds, one report.

An experiment YAML names shared settings (data, a base ``TrainConfig``, evaluation) and a set of methods,
each a list of ``--set``-style overrides of that one base config, so a table row differs from another
only in what the method changes. Runs are resumable: a finished run is skipped, an unfinished one
continues from its last checkpoint.

- :mod:`~anatomy_r1.pipelines.experiment.config`: the experiment YAML's schema and ``load_experiment``;
- :mod:`~anatomy_r1.pipelines.experiment.plan`: every method x seed resolved to a ``TrainConfig``, budgets
  checked, before any training;
- :mod:`~anatomy_r1.pipelines.experiment.launch`: how each run is launched (in this process, as its own
  ``accelerate launch``, or as a script);
- :mod:`~anatomy_r1.pipelines.experiment.run`: training and evaluating every planned run, then the report
  (``results.md``, ``summary.json`` and ``figures/``, written by :mod:`anatomy_r1.reports.experiment_report`).

Each module imports only those listed before it.
"""
