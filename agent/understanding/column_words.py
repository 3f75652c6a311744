"""Columns named in prose: "Inputs: X", "X+Y", "both X and Y", "X only", "everything except X", a name in quotes or
backticks, a column's spoken name ("product categories" for `product_category`), and what a sentence negates."""

from __future__ import annotations

import difflib
import re

from memory.records import ColumnProfile

_NEGATED_BEFORE = re.compile(
    r"(?:\bnot\b(?!\W+(?:just|only|merely)\b)|(?<!/)\bno\b(?!/)|n't(?!\W+(?:just|only)\b)|\bignore|\bwithout\b|"
    r"\bexcept\b|\bexcluding\b|\bbut\b(?<=\ball but)|\bbut\b(?<=\beverything but)|rather than|instead of|\bskip|"
    r"\bdrop|\bexclude|leave out|\bminus\b|apart from|other than|\bbesides\b|\bnever\b)"
    r"[^\w.?!;:]+(?:\w+[^\w.?!;:]+)?$"  # within the sentence: "remote or not? use title" rules nothing out
)
_NEGATED_AFTER = re.compile(
    r"^\W*(?:is|are)\s+(?:just|only)\s+(?:an?\s+)?(?:id|identifier|key)\b|^[^.;]{0,30}\bignore (?:it|them)\b|"
    r"^\W*(?:column\s+|field\s+)?(?:is|are)\s+(?:(?:just|only|mostly|pure|too|very|so)\s+)?(?:noise|noisy|useless|"
    r"irrelevant|unreliable|untrustworthy|misleading|clickbait\w*|junk|leak\w*|cheating|not (?:useful|needed|relevant|"
    r"reliable|helpful|informative|trustworthy)|too \w+ to (?:trust|use|rely on))|"
    r"^\W*(?:column\s+|field\s+)?(?:can't|cannot|can not|shouldn't|should not) be (?:trusted|used)|"
    r"^\W*(?:column\s+|field\s+)?(?:isn't|aren't|doesn't|don't|does not|do not)\s+(?:useful|needed|relevant|"
    r"reliable|help|matter|informative)|^\s+out\b"
)
# A column named as an input: "from the headline", "use the body", "title and review", "the subject line only",
# "Inputs: headline", "headline+body", "just the body", "both title and review".
_INPUT_BEFORE = re.compile(
    r"(?:\bfrom|\buse|\busing|\buses|\bwith|based on|\bgiven|\bonly|\bjust|\band|\bplus|\bread|\breading|"
    r"\blook(?:ing)? at|\bboth|\bon|\boff|\bvia|\binputs?|\bfeatures?|\bfeed(?:ing)?|\bconsider(?:ing)?|"
    r"\bcombin(?:e|ing)|\bconcatenat\w*|\balso|\bsolely|\bexclusively|\bpurely|\btrain(?:ed)? on|\bin|"
    r"(?:input|text|feature)\s+(?:columns?|fields?)\s*(?:is|are|=|:)?"
    r"|[+&,/])\W*(?:the\W+|its\W+|their\W+|each\W+|an?\W+)?$"
)
_INPUT_AFTER = re.compile(
    r"^\s*(?:[+&/]|->|→|=>)|^\W*(?:only|alone|column|field|text|line|and|as (?:the )?(?:inputs?|features?)|"
    r"is (?:the|our) inputs?|are (?:the|our) inputs?|is enough|suffices|says it all)(?!\w)"
)
# "Inputs: headline, body", "features = title and review", "use: subject": every column in the list is an input
INPUT_LIST = re.compile(
    r"\b(?:inputs?|input (?:columns?|fields?|text)|features?|feature columns?|text columns?|text fields?|predictors?|"
    r"columns? to (?:use|read)|use(?: only)?|using)\s*(?:[:=]|are|is)\s*([^.;\n]*)"
)
# "everything except sku", "all columns but the id", "all the text columns": every text column not ruled out
ALL_INPUTS = re.compile(
    r"\b(?:everything|every(?: other)? (?:column|field)|all(?: the| of the)?(?: other| remaining)?(?: text)?"
    r"(?: columns| fields| inputs| text)?)\s+(?:but|except|save|apart from|other than|besides|minus|excluding)\b|"
    r"\ball(?: the| of the)? (?:other |remaining )?(?:text )?(?:columns|fields|inputs)\b|\bnot (?:just|only|merely)\b"
)


_FUNCTION_WORDS = {"is", "has", "was", "the", "a", "an", "of", "in", "to", "no", "not", "by", "for", "on", "at", "y"}


def _spoken(name: str) -> list[str]:
    """How prose names a column: "product_category" as "product category(ies)", "reviewText" as "review text"."""
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ").lower().split()
    if len(words) < 2 or words[0] in _FUNCTION_WORDS:
        return []
    spoken = " ".join(words)
    plural = spoken[:-1] + "ies" if spoken.endswith("y") else spoken + "s"
    return [plural, spoken]


def _fuzzy_name(text: str, column: str) -> str:
    """A long column name written with a typo ("claimant statment") as the name; short names must be exact."""
    spoken = _spoken(column)
    if not spoken or len(spoken[-1]) < 10:
        return text
    target, n = spoken[-1], len(spoken[-1].split())
    words = list(re.finditer(r"[a-z][\w'-]*", text))
    for i in range(len(words) - n, -1, -1):  # from the end, so replacing keeps the earlier offsets
        start, end = words[i].start(), words[i + n - 1].end()
        phrase = text[start:end]
        if phrase != target and difflib.SequenceMatcher(None, phrase, target).ratio() >= 0.9:
            text = text[:start] + column.lower() + text[end:]
    return text


def with_column_names(text: str, columns: dict[str, ColumnProfile], n_rows: int) -> str:
    """The description with columns named in plain words written as the columns' names.

    "product categories" names product_category, "the email body" email_body; a free-text column whose last word
    no other column has is named by it too ("the body" is email_body when there is no body column).
    """
    names = {c.lower() for c in columns}
    for column in sorted(columns, key=len, reverse=True):
        for spoken in _spoken(column):
            text = re.sub(rf"(?<![\w]){re.escape(spoken)}(?![\w])", column.lower(), text)
        text = _fuzzy_name(text, column)
    lasts: dict[str, list[str]] = {}
    for column in columns:
        parts = re.sub(r"([a-z])([A-Z])", r"\1 \2", column).replace("-", "_").replace(" ", "_").lower().split("_")
        if len(parts) > 1 and len(parts[-1]) >= 4:
            lasts.setdefault(parts[-1], []).append(column)
    for last, owners in lasts.items():
        if len(owners) == 1 and last not in names and free_text(columns[owners[0]], n_rows):
            text = re.sub(rf"(?<![\w_-]){re.escape(last)}(?![\w_-])", owners[0].lower(), text)
    return text


def occurrences(text: str, name: str) -> list[re.Match[str]]:
    """Where `name` appears as a word, plural included ("queues" names the column queue)."""
    name = re.escape(name.lower())
    plural = rf"|{name[:-1]}ies" if name.endswith("y") else ""  # "priorities" names the column priority
    plural += rf"|{name[:-1]}" if name.endswith("s") and len(name) > 4 else ""  # "the star rating": stars
    return list(re.finditer(rf"(?<![\w])(?:{name}(?:e?s)?{plural})(?![\w])", text))


# The columns listed before a name in the same list: "except the priority and customer_id" rules out both.
_LIST_BEFORE = re.compile(r"(?:[\w-]+\s*,\s*(?:the\s+)?)*(?:[\w-]+\s*(?:\band\b|\bor\b|\bnor\b|/)\s*(?:the\s+)?)+$")


def negated(text: str, name: str) -> bool:
    for m in occurrences(text, name):
        before = text[max(0, m.start() - 80) : m.start()]
        listed = _LIST_BEFORE.sub("", before)
        if _NEGATED_BEFORE.search(before[-30:]) or _NEGATED_BEFORE.search(listed[-30:]):
            return True
        if _NEGATED_AFTER.search(text[m.end() :]):
            return True
    return False


def names_value(text: str, value: str) -> bool:
    """A class value named as a word, or as the start of one ("fraudulent" names fraud); not ruled out."""
    value = value.lower()
    if len(value) < 4 or not re.fullmatch(r"[a-z][a-z-]*", value):
        return False
    return any(not negated(text[: m.end()], m.group(0)) for m in re.finditer(rf"\b{re.escape(value)}\w*", text))


def mentions(text: str, name: str) -> bool:
    """The description names `name`, and does not rule it out."""
    return bool(occurrences(text, name)) and not negated(text, name)


# "train on the job description", "from the article body": a strong cue, then one word before the name
_INPUT_BEFORE_MODIFIED = re.compile(
    r"(?:\bfrom|\buse|\busing|\bon|based on|\bgiven|\bonly|\bjust|\bread|\breading|\bwith)\s+"
    r"(?:the|its|their|each|an?)\s+[a-z]+\s+$"
)


# A possessive is a word about the name after it: "use the review and the movie's synopsis" reads the synopsis
# (the cue stands before the possessor) and not the movie column.
_POSSESSIVE = re.compile(r"['’]s(?!\w)")
_POSSESSOR = re.compile(r"\b[a-z][\w-]*['’]s\s+$")


def named_as_input(text: str, name: str) -> bool:
    if not mentions(text, name):
        return False
    if any(occurrences(m.group(1), name) for m in INPUT_LIST.finditer(text)):
        return True
    for m in occurrences(text, name):
        after = text[m.end() :]
        if _POSSESSIVE.match(after):
            continue
        before = _POSSESSOR.sub("", text[max(0, m.start() - 50) : m.start()])
        if _INPUT_BEFORE.search(before[-30:]) or _INPUT_BEFORE_MODIFIED.search(before) or _INPUT_AFTER.search(after):
            return True
    return False


# "the answer column is is_spam", "label column: queue", "predict the `queue` column", "by their queue column"


def free_text(info: ColumnProfile, n_rows: int) -> bool:
    """Sentences, or a value in most rows: text to read or write, not a class."""
    return info.kind == "text" and (info.mean_words >= 4 or info.n_unique >= 0.5 * max(1, n_rows - info.missing))
