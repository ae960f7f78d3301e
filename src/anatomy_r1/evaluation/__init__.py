"""Scoring a model's answers: generation, Avg@k and greedy metrics, predictions files, and the probe.

``metrics`` and ``predictions`` turn completions into numbers with the rules the GRPO reward uses;
``generate`` and ``vllm_engine`` produce completions; ``run_settings`` reads a run's template, length and
dtype; ``probe`` (with ``probe_vocabulary``, ``confusion`` and ``stats``) measures whether similar answer
choices make questions harder. Writing any of it is ``anatomy_r1.reports``' job.
"""
