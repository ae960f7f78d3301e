"""Reading the chosen option out of a model completion.

The same rules decide the GRPO accuracy reward (``anatomy_r1.training.rewards``) and evaluation scoring,
so a model is never trained against one reading of its answers and evaluated against another. They do not
depend on the prompt template: a letter and the option's text are both read (rule 2), so a template that
asks for the letter, one that asks for the text, and ``source`` (each item's own form) score alike.

Rules (all comparisons ignore case and collapse whitespace runs; a trailing ``.`` is ignored):

1. The completion must contain exactly one ``<answer>`` and exactly one ``</answer>``, the opening tag
   first. Tags are matched literally (lower case, no attributes). Anything else (no tags, an unclosed tag,
   two answer tags) has no answer.
2. The tag content is read in two ways, and each reading that names an option counts:

   * a *letter form*: ``B``, ``(B)``, ``[B]``, ``B.``, ``B)``, ``B:``, optionally followed by text. When
     text follows, it must be that same option's text (``B. Liver`` when B is Liver); a letter followed by
     another option's text or by free text names nothing;
   * the *option text* itself, equal to exactly one option.

   A short fixed lead-in (``the answer is``, ``the correct answer is``, ``answer is``, ``answer:``,
   ``final answer:``, ``option``, ``choice``) is removed before reading, because what remains must still be
   one of the forms above: ``the answer is B`` is accepted, ``the answer is B, not C`` is not.
3. The answer is valid only when the readings name exactly one option. ``A, B``, ``A and C``, an empty
   tag, a letter outside the option list, or text matching no option is invalid; so is a letter whose
   reading disagrees with a matching option text (options ``["B", "A"]`` and answer ``B``).

Every step is a constant number of ``str.count`` / ``str.find`` / ``split`` passes, so the cost is linear
in the completion length even for hostile megabyte inputs; no regular expressions are used.
"""

from __future__ import annotations

from typing import Any

from anatomy_r1.data.schema import LETTERS

OPEN_ANSWER = "<answer>"
CLOSE_ANSWER = "</answer>"
OPEN_THINK = "<think>"
CLOSE_THINK = "</think>"

_LOWER_LETTERS = LETTERS.lower()
# Longest first, so "the correct answer is" is removed rather than a shorter overlapping lead-in.
_LEAD_INS = (
    "the correct answer is",
    "the answer is",
    "final answer:",
    "answer is",
    "answer:",
    "option",
    "choice",
)
_LETTER_SEPARATORS = ".):"


def completion_to_text(completion: Any) -> str | None:
    """Plain text of a completion that may be a string or a conversational message list.

    TRL passes conversational completions as ``[{"role": "assistant", "content": ...}]`` where content is
    a string or a list of ``{"type": "text", "text": ...}`` parts. Assistant messages (or messages without
    a role) are joined; anything unrecognisable yields ``None`` rather than an exception, because reward
    functions must never fail a training step.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, list | tuple):
        return None
    parts: list[str] = []
    for message in completion:
        if not isinstance(message, dict):
            return None
        role = message.get("role", "assistant")
        if role != "assistant":
            continue
        content = message.get("content")
        if content is None:
            continue
        if isinstance(content, str):
            parts.append(content)
            continue
        if not isinstance(content, list | tuple):
            return None
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") not in (None, "text"):
                continue  # image or other non-text part: carries no answer text
            else:
                return None
    return "\n".join(parts) if parts else None


def extract_answer_text(completion: Any) -> str | None:
    """Raw content of the single ``<answer>...</answer>`` pair, or ``None`` when there is not exactly one."""
    text = completion_to_text(completion)
    if text is None:
        return None
    if text.count(OPEN_ANSWER) != 1 or text.count(CLOSE_ANSWER) != 1:
        return None
    start = text.find(OPEN_ANSWER) + len(OPEN_ANSWER)
    end = text.find(CLOSE_ANSWER)
    if end < start:
        return None
    return text[start:end]


def normalize(text: str) -> str:
    """Case-fold, collapse whitespace and drop trailing full stops: the comparison key for answers."""
    return " ".join(text.split()).casefold().rstrip(".。 ")


def _strip_lead_in(t: str) -> str | None:
    """``t`` without one leading lead-in phrase, or ``None`` when it has none."""
    for lead in _LEAD_INS:
        if t.startswith(lead):
            rest = t[len(lead) :]
            if lead.endswith(":") or rest.startswith((" ", ":")):
                return rest.lstrip(" :")
    return None


def _letter_form(t: str) -> tuple[int, str] | None:
    """``(index, trailing text)`` when ``t`` starts with a letter form, else ``None``."""
    if len(t) >= 3 and t[0] in "([" and t[1] in _LOWER_LETTERS and t[2] == (")" if t[0] == "(" else "]"):
        rest = t[3:].lstrip()
        if rest[:1] in (".", ":", "-"):
            rest = rest[1:]
        return _LOWER_LETTERS.index(t[1]), rest.strip()
    if t and t[0] in _LOWER_LETTERS:
        if len(t) == 1:
            return _LOWER_LETTERS.index(t), ""
        if t[1] in _LETTER_SEPARATORS:
            return _LOWER_LETTERS.index(t[0]), t[2:].strip()
    return None


def _readings(t: str, keys: list[str]) -> set[int]:
    """Option indices named by the letter reading and the text reading of normalised content ``t``."""
    found: set[int] = set()
    if not t:
        return found
    form = _letter_form(t)
    if form is not None:
        idx, rest = form
        if idx < len(keys) and (not rest or normalize(rest) == keys[idx]):
            found.add(idx)
    for i, key in enumerate(keys):
        if len(key) == len(t) and key == t:
            found.add(i)
    return found


def extract_choice(completion: Any, options: list[str]) -> int | None:
    """Index of the single option the completion's answer tag names, or ``None`` for an invalid answer."""
    if not isinstance(options, list | tuple) or not options or not all(isinstance(o, str) for o in options):
        return None
    content = extract_answer_text(completion)
    if content is None:
        return None
    t = normalize(content)
    keys = [normalize(o) for o in options]
    found = _readings(t, keys)
    stripped = _strip_lead_in(t)
    if stripped is not None:
        found |= _readings(stripped, keys)
    return found.pop() if len(found) == 1 else None


def extract_letter(completion: Any, options: list[str]) -> str | None:
    """The letter of the extracted choice (``"B"``), or ``None`` for an invalid answer."""
    idx = extract_choice(completion, options)
    return None if idx is None else LETTERS[idx]
