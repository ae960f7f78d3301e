"""What a record's ``meta`` says about its option set, and so stops being true when the options change.

Two layers re-pose a question with other distractors: the curriculum (``pose_at_levels``) and GDQA's
distractor redraw. Both must drop the same facts, and GDQA may not import the curriculum, so the list
lives here, below both.
"""

from __future__ import annotations

import math

from anatomy_r1.data.schema import Record

OPTION_DEPENDENT_META: tuple[str, ...] = ("oracle_accuracy", "oracle_correct", "distractors", "s_q_backend")
"""``meta`` keys that describe a record's option set, dropped when it is re-posed with other options.
``s_q`` describes it too; each caller either scores it anew in place or drops it to be scored later."""


def s_q_of(record: Record) -> float:
    """A record's S(q), NaN when it has none (a missing or non-numeric ``meta['s_q']``)."""
    v = record.meta.get("s_q")
    return float(v) if isinstance(v, int | float) else math.nan
