"""The multiple-choice task itself, shared by training and evaluation.

Prompt rendering (:mod:`.prompts`), reading the chosen option out of a completion (:mod:`.answers`) and
the arithmetic of GRPO groups (:mod:`.groups`) must mean exactly the same thing when a model is trained
and when it is scored; they live here, below both, so neither has to import the other.
"""
