"""A study's budget read from words: "two and a half hours", "half a day", "a dozen trials", "90 minutes max".

Number words become digits with text2num (`alpha2digit`: "twenty-five" -> 25, "one hundred twenty" -> 120);
what it leaves as words, one small grammar rewrites: fractions ("and a half", "a quarter of an hour",
"three quarters of an hour"), articles ("an hour", "a day"), dozens and couples, and days as hours.
Then the one duration grammar of `--time` (`memory.records.DURATION_PATTERN`) reads the time, and a number
before a word like "trials" or "runs" the trial count.
"""

from __future__ import annotations

import re
from typing import Any

from memory.records import DURATION_PATTERN, Budget, find_duration

_NUM = r"(\d+(?:\.\d+)?)"
_TRIALS = r"(?:trials?|runs?|experiments?|attempts?|tries|configs?|configurations?|combinations?|rounds?|fine-?tunes?)"
_UNIT = r"(hours?|hrs?|days?|minutes?|mins?)"
_FRACTION = {
    "a half": 0.5, "1 half": 0.5, "a quarter": 0.25, "1 quarter": 0.25, "3 quarters": 0.75, "three quarters": 0.75,
}  # fmt: skip
_FRACTIONS = "|".join(_FRACTION)
# A duration that is about the data, not the study: "customers expect a reply within 4 hours".
_NOT_A_BUDGET = re.compile(r"(?:repl(?:y|ies)|respon\w*|resolv\w*|answer\w*|deliver\w*|arriv\w*|ship\w*)\s+\w*\s*$")


def _num(value: float) -> str:
    return f"{value:g}"


def _unit(word: str) -> str:
    """A unit word the duration grammar reads; days become hours."""
    return {"d": "hours", "h": "hours", "m": "minutes"}[word[0]]


def _scale(word: str) -> float:
    return 24.0 if word.startswith("d") else 1.0


def _number_words(text: str) -> str:
    """Number words as digits, by text2num; the text unchanged where it cannot read it."""
    from text_to_num import alpha2digit

    # "one-hour" and "twenty-five" read alike: a hyphen between a number and its unit is a space
    text = re.sub(r"(\w)-(hours?|hrs?|days?|minutes?|mins?)\b", r"\1 \2", text)
    try:
        return alpha2digit(text, "en", threshold=0)
    except Exception:  # noqa: BLE001 - a library failure must not cost the budget: the grammar below still reads digits
        return text


def spoken_to_digits(text: str) -> str:
    """Rewrite a budget in words to digits and units the duration grammar reads ("half a day" -> "12 hours")."""
    text = _number_words(text.lower())
    text = re.sub(r"\b(\d+)\s*h\s*(\d{1,2})\b(?!\s*(?:m|min|s)\b)", r"\1h\2m", text)  # "2h30" is 2h30m
    text = re.sub(r"\bhalf an? dozen\b", "6", text)
    text = re.sub(r"\b(\d+) dozens?\b", lambda m: str(12 * int(m.group(1))), text)
    text = re.sub(r"\b(?:an? |one )?dozens?\b", "12", text)
    text = re.sub(r"\ba couple(?: of)?\b", "2", text)
    text = re.sub(r"\ba (single|solitary)\b", "1", text)
    # "two and a half hours", "an hour and a quarter", "2 hours and a half"
    text = re.sub(
        rf"\b(?:(\d+(?:\.\d+)?)|an?|one) and ({_FRACTIONS}) {_UNIT}\b",
        lambda m: f"{_num((float(m.group(1) or 1) + _FRACTION[m.group(2)]) * _scale(m.group(3)))} {_unit(m.group(3))}",
        text,
    )
    text = re.sub(
        rf"\b(?:(\d+(?:\.\d+)?)|an?|one) {_UNIT} and ({_FRACTIONS})\b",
        lambda m: f"{_num((float(m.group(1) or 1) + _FRACTION[m.group(3)]) * _scale(m.group(2)))} {_unit(m.group(2))}",
        text,
    )
    # "half a day", "half an hour", "a half hour", "a quarter of an hour", "three quarters of an hour"
    text = re.sub(
        rf"\b(?:half an?|an? half|half)[- ]{_UNIT}\b",
        lambda m: f"{_num(0.5 * _scale(m.group(1)))} {_unit(m.group(1))}",
        text,
    )
    text = re.sub(
        rf"\b(?:(\d+) quarters?|(?:a |one )?quarter) (?:of )?(?:an? )?{_UNIT}\b",
        lambda m: f"{_num(0.25 * int(m.group(1) or 1) * _scale(m.group(2)))} {_unit(m.group(2))}",
        text,
    )
    text = re.sub(r"\b(?:an?|one) (hours?|hrs?|days?|minutes?|mins?)\b", r"1 \1", text)
    # days as hours, the largest unit the duration grammar reads
    text = re.sub(rf"{_NUM} days?\b", lambda m: f"{_num(float(m.group(1)) * 24)} hours", text)
    return text


def parse_budget(text: str) -> Budget | None:
    """Read a budget from words like "20 trials", "within 1h30m", "two and a half hours" or "a dozen runs"."""
    text = spoken_to_digits(text)
    found: dict[str, Any] = {}
    # "12 trials", "3 training runs" (a word or two between, never a unit: "30 minutes on runs"); "trials: 20"
    counted = rf"{_NUM}[\s-]*(?:more\s+)?(?:(?!{_UNIT}\b|gpu|device)[a-z]+[- ]){{0,2}}?{_TRIALS}\b"
    named = rf"\b(?:n_?|max_?|max |number of )?{_TRIALS}\s*(?:budget)?\s*(?:[:=]|of|is|at most|max)?\s*"
    named += rf"{_NUM}\b(?!\s*{_UNIT})"
    times = rf"\b(?:run|try|train|tune|repeat)\w*\s+(?:it\s+|this\s+|them\s+)?{_NUM}\s*(?:times|x)\b"
    trials = re.search(counted, text) or re.search(named, text) or re.search(times, text)
    if trials:
        count = float(next(g for g in trials.groups() if g))
        if count >= 1:
            found["max_trials"] = int(count)
    device = re.search(_NUM + r"\s*(?:gpu|device)[- ]?hours?\b|" + _NUM + r"\s*hours? of (?:gpu|device) time", text)
    if device:
        found["max_device_hours"] = float(device.group(1) or device.group(2))
    else:
        for match in DURATION_PATTERN.finditer(text):
            if not _NOT_A_BUDGET.search(text[max(0, match.start() - 40) : match.start()].removesuffix("within ")):
                seconds = find_duration(match.group(0))
                if seconds:
                    found["max_seconds"] = seconds
                    break
    return Budget(**found) if found else None
