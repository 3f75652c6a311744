"""The metric a description asks for, and the class it is about: read from words, never swapped in silence.

Every way of naming a metric the tool has maps to its id (`memory.records.TASK_METRICS`); names of metrics
it does not have (BLEU, Cohen's kappa, specificity, ...) are known too, so asking for one is a UserError
that names the nearest ones it has instead of becoming another metric. Where several metrics are named,
the one the description says to optimise wins, else the first; negated ones ("rather than accuracy")
and reported ones ("report accuracy too") are not chosen.

f1, precision, recall, roc_auc and pr_auc are about one class: the description names it ("recall on the
spam class", "the positive class is fresh"), or the data does (a 0/1 or true/false label), else the user
is asked, with the classes named.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from memory.errors import UserError
from memory.records import (
    DEFAULT_METRIC,
    POSITIVE_CLASS_METRICS,
    SCORE_METRICS,
    TASK_METRICS,
    ColumnProfile,
    TaskType,
)

_S = r"[-_ ]?"  # "macro-F1", "macro_f1", "macro F1", "macroF1"
_F1 = rf"f{_S}1(?:{_S}scores?|{_S}measures?)?|f{_S}(?:score|measure)s?"
_ACC = r"ac+ur+a?c(?:y|ies|i)"  # "acuracy", "accurracy": typos are common
_AVG = rf"(?:{_S}(?:avg|average[d]?))?"

# (what it names, pattern). An id of TASK_METRICS, a family resolved by the task type ("f1*": F1 with or
# without a class; "precision*", "recall*": of one class), "-" (not a metric: "mixed precision"), or
# "?name" for a metric the tool does not have. Overlapping matches: the longest wins.
METRIC_PATTERNS: tuple[tuple[str, str], ...] = (
    ("entity_macro_f1", rf"(?:entity|span){_S}(?:level{_S})?macro{_AVG}{_S}(?:{_F1})|macro{_AVG}{_S}(?:entity|span)"
                        rf"{_S}(?:level{_S})?(?:{_F1})|(?:{_F1}) macro{_AVG} over (?:entity )?types"),
    ("entity_f1", rf"(?:entity|span){_S}(?:level{_S})?(?:micro{_AVG}{_S})?(?:{_F1})|seqeval|micro{_AVG}{_S}entity"
                  rf"{_S}(?:{_F1})"),
    ("weighted_f1", rf"(?:support{_S})?weighted{_AVG}{_S}(?:{_F1})|"
                    rf"(?:{_F1}){_S}\(?weighted\)?(?: by support)?"),
    ("micro_f1", rf"micro{_AVG}{_S}(?:{_F1})|(?:{_F1}){_S}\(?micro\)?"),
    ("macro_f1", rf"macro{_AVG}{_S}(?:{_F1})|(?:{_F1}){_S}\(?macro\)?|\bmacro\b|"
                 rf"(?:{_F1})(?: per| for each| of each| by| across| over)(?: every)? (?:entity )?"
                 rf"(?:types?|class(?:es)?|labels?|categor(?:y|ies))(?:,? (?:then )?averaged)?|"
                 rf"(?:mean|average) (?:of )?(?:the )?(?:per{_S}class )?(?:{_F1})s?(?: over| across| of)? "
                 rf"(?:all )?classes"),
    ("balanced_accuracy", rf"bal+a?n+c+e?d{_S}(?:{_ACC}|acc)\b|\bbal{_S}acc\b|macro{_AVG}{_S}recall|"
                          rf"mean (?:per{_S}class )?recall(?: over| across| of all)? (?:all )?classes|"
                          r"average recall (?:over|across) classes"),
    ("mcc", rf"\bmccs?\b|matthews?(?:'s?)?(?: correlation)?(?: coefficient)?|phi{_S}coefficient"),
    ("pr_auc", rf"\bpr{_S}aucs?\b|\bauc{_S}pr\b|\bauprc\b|average{_S}precision|area under (?:the )?precision"
               rf"{_S}recall(?: curve)?|precision{_S}recall{_S}(?:auc|area|curve)"),
    ("roc_auc", rf"\broc{_S}aucs?\b|\bauc{_S}roc\b|\bauroc\b|\baurocs\b|"
                r"area under (?:the )?(?:roc|receiver)[\w -]*?curve|\broc\b(?: curve)?|\bauc\b"),
    ("precision*", r"\bprecision\b|\bppv\b|positive predictive value|"
                   r"false (?:positives?|alarms?) (?:are|is|cost|would be)\s+(?:\w+\s+){0,2}?"
                   r"(?:costly|expensive|bad|worse|unacceptable|the (?:real |main )?problem)|"
                   r"(?:avoid|minimi[sz]e|reduce|few(?:er)?) false (?:positives?|alarms?)"),
    ("recall*", r"\brecall\b|\bsensitivity\b|true positive rate|\btpr\b|hit rate|detection rate|"
                r"false negatives? (?:are|is|cost|would be)\s+(?:\w+\s+){0,2}?"
                r"(?:costly|expensive|bad|worse|unacceptable|the (?:real |main )?problem)|"
                r"(?:avoid|minimi[sz]e|reduce|few(?:er)?) false negatives?|(?:catch|find|flag|detect) (?:as many|"
                r"every|all)\b|(?:don't|do not|never) miss|missing (?:an?y? |one )?\w+ (?:is|are) (?:worse|costly|bad|"
                r"unacceptable|expensive)"),
    ("f1*", rf"\b(?:{_F1})\b|\bbinary{_S}(?:{_F1})"),
    ("accuracy", rf"\b{_ACC}\b|\bacc\b"),
    ("exact_match", rf"exact{_S}match(?:es)?(?: {_ACC}| rate| score)?|\bem\b(?= score| metric)"),
    ("rouge_l", rf"\brouge{_S}l(?:sum)?(?:{_S}(?:{_F1}))?\b|\brouge\b(?!{_S}[12n]\b)(?:{_S}(?:{_F1}))?"),
    ("chrf", rf"\bchr{_S}f(?:\+\+|\+)?(?:{_S}scores?)?\b|character(?: n{_S}gram)? f{_S}(?:score|1|measure)"),
    ("eval_loss", rf"\b(?:eval(?:uation)?|validation|val)?{_S}loss\b|cross{_S}entropy|\blog{_S}loss\b|\bnll\b|"
                  r"negative log[- ]likelihood"),
    ("perplexity*", r"\bperplexity\b|\bppl\b"),
    # not metrics: the words appear for other reasons
    ("-", rf"(?:half|mixed|full|single|double|numerical|floating{_S}point|fp16|bf16|fp32|float\d*|bit){_S}precision|"
          r"(?:loss|cross[- ]entropy) (?:weights?|function)|class[- ]weighted (?:loss|cross[- ]entropy)|"
          r"top[- ]level|\bmacro(?:s|economic\w*)\b|recall(?:ed)? (?:notices?|campaigns?)|product recalls?"),
    # metrics the tool does not have: named so that asking for one is an error, not another metric
    ("?BLEU", r"\bs?bleu(?:{_S}\d)?\b|sacrebleu"),
    ("?METEOR", r"\bmeteor\b"),
    ("?BERTScore", rf"\bbert{_S}score\b|\bbleurt\b"),
    ("?ROUGE-1/2", rf"\brouge{_S}[12n]\b"),
    ("?TER/WER/CER", r"\b(?:ter|wer|cer)\b|word error rate|character error rate"),
    ("?Cohen's kappa", r"(?:cohen'?s?\s+)?\bkappa\b|\bcohen'?s\b"),
    ("?specificity", rf"\bspecificity\b|true{_S}negative{_S}rate|\btnr\b|selectivity"),
    ("?false positive rate", rf"false{_S}positive{_S}rate|\bfpr\b|false{_S}alarm{_S}rate|fall{_S}out"),
    ("?negative predictive value", r"\bnpv\b|negative predictive value"),
    ("?F-beta", rf"\bf{_S}(?:2|0?\.5|beta|β)(?:{_S}score)?\b|\bfbeta\b"),
    ("?macro/weighted precision or recall", rf"(?:macro|weighted|micro){_AVG}{_S}(?:precision|recall)|"
                                            rf"(?:precision|recall){_S}\(?(?:macro|weighted|micro)\)?"),
    ("?top-k accuracy", rf"\btop{_S}\d+{_S}(?:{_ACC}|acc)\b|\btop{_S}k\b"),
    ("?Jaccard/IoU", r"\bjaccard\b|\biou\b|intersection over union"),
    ("?Hamming loss", r"\bhamming\b"),
    ("?Brier score", r"\bbrier\b"),
    ("?regression error", r"\b(?:r?mse|mae|mape|r2|r-squared|r²)\b|mean (?:squared|absolute) error"),
    ("?correlation", r"\b(?:spearman|pearson|kendall)(?:'s)?\b"),
    ("?ranking metric", rf"\bndcg\b|\bmrr\b|mean reciprocal rank|mean average precision|\bmap@|"
                        rf"(?:precision|recall){_S}(?:@|at{_S})(?:\d+|k)\b"),
    ("?G-mean", rf"\bg{_S}mean\b|geometric mean"),
    ("?Youden's J", r"\byouden"),
    ("?a metric at k (ranking)", r"\b[a-z][\w-]*\s?@\s?(?:\d+|k)\b"),
    ("?token F1 (SQuAD)", rf"token{_S}(?:level{_S})?(?:{_F1})|squad"),
)  # fmt: skip
_COMPILED = tuple((name, re.compile(pattern)) for name, pattern in METRIC_PATTERNS)

# The nearest metrics the tool has, for each it does not; difflib adds close spellings of the ids.
NEAREST: dict[str, tuple[str, ...]] = {
    "?BLEU": ("chrf", "rouge_l"),
    "?METEOR": ("chrf", "rouge_l"),
    "?BERTScore": ("rouge_l", "chrf"),
    "?ROUGE-1/2": ("rouge_l",),
    "?TER/WER/CER": ("chrf", "exact_match"),
    "?Cohen's kappa": ("mcc", "balanced_accuracy"),
    "?specificity": ("recall", "balanced_accuracy"),
    "?false positive rate": ("precision", "roc_auc"),
    "?negative predictive value": ("precision",),
    "?F-beta": ("f1", "recall", "precision"),
    "?macro/weighted precision or recall": ("balanced_accuracy", "macro_f1", "weighted_f1", "precision", "recall"),
    "?top-k accuracy": ("accuracy",),
    "?Jaccard/IoU": ("f1", "macro_f1", "entity_f1"),
    "?Hamming loss": ("accuracy",),
    "?Brier score": ("eval_loss", "roc_auc"),
    "?regression error": ("eval_loss",),
    "?correlation": ("mcc",),
    "?ranking metric": ("pr_auc", "roc_auc"),
    "?G-mean": ("balanced_accuracy", "mcc"),
    "?Youden's J": ("balanced_accuracy", "roc_auc"),
    "?token F1 (SQuAD)": ("rouge_l", "chrf", "exact_match"),
    "?a metric at k (ranking)": ("pr_auc", "roc_auc", "accuracy"),
    "?perplexity (a language-model metric)": ("eval_loss",),
}

# Words that rule a metric out when they come just before it: "don't optimise accuracy", "rather than accuracy".
_NEGATION = re.compile(
    r"(?:\bnot\b|n't|\bno\b|\bnever\b|rather than|instead of|other than|\bavoid\w*|\bexcept\b|\bover\b|"
    r"\bbeyond\b|\bignore\b|\bwithout\b|more than|less than|\bthan\b|\bvs\.?|\bversus\b)[^.;,!?]{0,30}$"
)
_NEGATED_AFTER = re.compile(
    r"^\W*(?:is not|isn't|does not|doesn't|(?:is )?secondary|matters less|is misleading|is useless|is meaningless|"
    r"would be misleading|won't|will not|can be ignored|is irrelevant)\b"
)
# Words that make it the objective: "optimise weighted F1", "scored by MCC", "metric: recall".
_ASKED_BEFORE = re.compile(
    r"(?:optimi[sz]\w*|maximi[sz]\w*|minimi[sz]\w*|target(?:ing)?|judged?|score[sd]?|scoring|"
    r"care\w* (?:more |most )?about|"
    r"focus\w* on|measured?|evaluated?|rank(?:ed)?|select(?:ed)?|pick(?:ed)?|prioriti[sz]\w*|aim(?:ing)? for|"
    r"go(?:ing)? for|in terms of|metric|objective|tune for|tuned for|tuning for|best|highest|lowest|maximum|"
    r"max(?:imum)?|want (?:a )?(?:good|high|the best)|success is|goal is|by)\W+(?:\w+\W+){0,3}$"
)
_ASKED_AFTER = re.compile(
    r"^\W*(?:is|as)\s+(?:the\s+)?(?:metric|objective|target|goal|priority|what (?:matters|counts|i care about))|"
    r"^\W*(?:matters(?: most)?|counts|is what (?:matters|counts)|above all|is key|is (?:all )?that matters|first)\b|"
    r"^\W*(?:should be|must be|needs to be)\s+(?:high|maximi[sz]ed|as high)"
)
# Words that make it a number to show, not the objective: "report accuracy too", "also log MCC".
_REPORTED_BEFORE = re.compile(r"(?:report|show|log|print|track|display|also|include|plus)\w*\W+(?:\w+\W+){0,2}$")
_REPORTED_AFTER = re.compile(r"^\W*(?:too|as well|also|for reference|for information)\b")
_RARE_CLASS = re.compile(
    r"\brare\b|\brarer\b|minority|imbalanc|unbalanc|skew|few (?:positive|examples)|every class (?:counts|matters)"
)
IMBALANCE_RATIO = 3  # the largest class this many times the smallest: accuracy would reward the majority

_TRUE = {"1", "true", "yes", "y", "t", "pos", "positive"}
_FALSE = {"0", "false", "no", "n", "f", "neg", "negative"}


@dataclass(frozen=True)
class MetricReading:
    """The metric a description asks for, where it came from, and its positive class (None: every class)."""

    metric: str
    source: str
    positive: str | None = None
    positive_source: str | None = None


@dataclass(frozen=True)
class _Mention:
    name: str  # as in METRIC_PATTERNS
    start: int
    end: int
    words: str


def _mentions(text: str) -> list[_Mention]:
    """Every metric named in the text, in order; of overlapping names the longest."""
    found = [_Mention(name, m.start(), m.end(), m.group(0)) for name, p in _COMPILED for m in p.finditer(text)]
    kept: list[_Mention] = []
    for m in sorted(found, key=lambda m: (-(m.end - m.start), m.start)):
        if m.end > m.start and all(m.end <= k.start or m.start >= k.end for k in kept):
            kept.append(m)
    return sorted(kept, key=lambda m: m.start)


def _clause(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of the clause around text[start:end], between sentence or clause punctuation."""
    left = max(text.rfind(c, 0, start) for c in ".;!?\n")
    rights = [i for i in (text.find(c, end) for c in ".;!?\n") if i >= 0]
    return left + 1, min(rights) if rights else len(text)


def _words(text: str) -> str:
    """Lower-case words, hyphens and underscores as spaces, for matching class names."""
    return " " + re.sub(r"[^\w]+|_", " ", text.lower()) + " "


def _class_names(label: str, classes: list[str]) -> dict[str, set[str]]:
    """What a description may call each class: its value, and for a 0/1 or true/false label the column's word."""
    names = {c: {c.lower()} for c in classes}
    lowered = {c.lower() for c in classes}
    if len(classes) == 2 and lowered & _TRUE and lowered & _FALSE and lowered <= _TRUE | _FALSE:
        true = next(c for c in classes if c.lower() in _TRUE)
        false = next(c for c in classes if c.lower() in _FALSE)
        stem = re.sub(r"^(?:is|has|flag|label|target|y)[_\- ]+|[_\- ]+(?:flag|label)$", "", label.lower())
        words = {w for w in re.split(r"[_\- ]+", stem) if len(w) > 2} | {stem.replace("_", " ")}
        names[true] |= {"positive", "positives", "true", "yes", "1"} | words
        names[false] |= (
            {"negative", "negatives", "false", "0"} | {f"not {w}" for w in words} | {f"non {w}" for w in words}
        )
    return names


def _named_classes(text: str, names: dict[str, set[str]]) -> list[str]:
    """The classes the text names (a longer name first: 'not spam' is not 'spam')."""
    words = _words(text)
    found: list[str] = []
    for cls, ns in sorted(names.items(), key=lambda kv: -max(len(n) for n in kv[1])):
        for n in sorted(ns, key=len, reverse=True):
            pattern = rf" {re.escape(_words(n).strip())}(?:e?s)? "
            if re.search(pattern, words):
                found.append(cls)
                words = re.sub(pattern, " ", words)
                break
    return found


def _adjacent_classes(text: str, start: int, end: int, names: dict[str, set[str]]) -> list[str]:
    """Classes named right beside a metric: "F1 on the spam class", "recall of toxic", "the spam-class F1"."""
    after = re.match(
        r"\W*(?:score\s+|rate\s+)?(?:on|of|for|in|over|about|at|regarding)\s+(?:the\s+|a\s+|our\s+|its\s+)?"
        r"(?:class(?:es)?\s+|label\s+)?[`'\"]?([\w-]+(?:\s+[\w-]+)?)",
        text[end : end + 50],
    )
    before = re.search(
        r"([\w-]+(?:\s+[\w-]+)?)[`'\"]?(?:[- ]class(?:'s)?|'s)?\s*[-:]?\s*$", text[max(0, start - 30) : start]
    )
    found: list[str] = []
    for m in (after, before):
        for cls in _named_classes(m.group(1), names) if m else []:
            if cls not in found:
                found.append(cls)
    return found


def _rare_near(text: str, start: int, end: int) -> bool:
    """ "recall on the rare class", "the minority class's F1": the rarest class, named by its size."""
    window = text[max(0, start - 30) : end + 40]
    return bool(re.search(r"\b(?:rare|rarer|rarest|minority|smaller|smallest) (?:class|label|one)", window))


_DECLARED = (
    r"positive (?:class|label)\s*(?:is|=|:|should be|being)?\s*(?:the\s+)?[`'\"]?([\w-]+)",
    r"[`'\"]?([\w-]+)[`'\"]?\s+(?:is|as|=)\s+(?:the\s+)?positive(?:\s+class|\s+label)?\b",
    r"treat(?:ing)?\s+[`'\"]?([\w-]+)[`'\"]?\s+as\s+(?:the\s+)?positive",
)


def _declared(text: str, names: dict[str, set[str]]) -> tuple[str | None, str | None]:
    """The class the description declares positive; a quoted or plainly declared one that is no class is an error.

    Raises:
        UserError: "'suspicious' as the positive class" where no class is called so (the classes are named).
    """
    for pattern in _DECLARED:
        for m in re.finditer(pattern, text):
            named = _named_classes(m.group(1), names)
            if len(named) == 1:
                return named[0], f"description: {m.group(0).strip()!r}"
            quoted = re.search(rf"[`'\"]{re.escape(m.group(1))}[`'\"]", m.group(0))
            if not named and (quoted or pattern == _DECLARED[0]) and m.group(1) not in _NOT_A_CLASS:
                raise UserError(
                    f"the description makes {m.group(1)!r} the positive class, but the label's classes are "
                    + ", ".join(map(repr, list(names)[:10]))
                    + "; name one of them, or pass --positive-label CLASS"
                )
    return None, None


_NOT_A_CLASS = {"the", "a", "an", "one", "this", "that", "it", "which", "whichever", "rare", "minority", "class"}


def declared_positive(text: str, label: str, info: ColumnProfile | None) -> tuple[str | None, str | None]:
    """A positive class the description declares ("the positive class is spam"), whatever the metric."""
    classes = list((info.value_counts or {}) if info is not None else {})
    return _declared(text, _class_names(label, classes)) if classes else (None, None)


def positive_class(
    text: str, metric: str, label: str, info: ColumnProfile | None, near: tuple[int, int] | None = None
) -> tuple[str | None, str]:
    """The class `metric` is about, and where it came from; (None, why) when nothing settles it."""
    classes = list((info.value_counts or {}) if info is not None else {})
    if not classes:
        return None, "the label's classes are unknown"
    names = _class_names(label, classes)
    declared, why = _declared(text, names)
    if declared is not None and why is not None:  # a class is declared with the words that declare it
        return declared, why
    rare = min(classes, key=lambda c: (info.value_counts or {})[c]) if info is not None else None
    if near is not None:
        named = _adjacent_classes(text, *near, names)
        if len(named) == 1:
            return named[0], f"description: {text[max(0, near[0] - 30) : near[1] + 40].strip()!r}"
        if not named and rare is not None and _rare_near(text, *near):
            return rare, "description: the rare class - the rarest in the data"
        start, end = _clause(text, *near)
        clause = text[start:end]
        named = _named_classes(clause, names)
        if len(named) == 1:
            return named[0], f"description: {clause.strip()!r}"
    lowered = {c.lower() for c in classes}
    if len(classes) == 2 and lowered <= _TRUE | _FALSE and lowered & _TRUE and lowered & _FALSE:
        true = next(c for c in classes if c.lower() in _TRUE)
        return true, f"data: {label} holds {' / '.join(classes)}, so {true!r} is the positive class"
    named = _named_classes(text, {c: {c.lower()} for c in classes})
    if len(named) == 1 and len(classes) > 1:
        return named[0], f"description: names the class {named[0]!r}"
    if metric == "roc_auc" and len(classes) == 2:
        # ROC-AUC is the same whichever of two classes is positive: any choice measures the same thing.
        chosen = sorted(classes)[-1]
        return chosen, f"default: ROC-AUC is the same whichever class is positive; scored for {chosen!r}"
    return None, "no class named"


def ask_for_positive(metric: str, classes: list[str]) -> UserError:
    """The error that asks which class a one-class metric is about, naming the classes."""
    shown = ", ".join(map(repr, classes[:10]))
    example = classes[0] if classes else "CLASS"
    return UserError(
        f"{metric} measures one class: which is the positive one of {shown}? say e.g. "
        f"'{metric} of the {example} class', or pass --positive-label CLASS (or pass --metric macro_f1)"
    )


def unknown_metric(words: str, name: str, kind: TaskType) -> UserError:
    """The error for a metric the tool does not have: the nearest ones it has, and all it has for the task."""
    have = TASK_METRICS[kind]
    nearest = [m for m in NEAREST.get(name, ()) if m in have]
    nearest += [m for m in difflib.get_close_matches(words.lower().replace(" ", "_"), have, n=3, cutoff=0.6)
                if m not in nearest]  # fmt: skip
    hint = f"nearest it has: {', '.join(nearest)}; " if nearest else ""
    what = name.lstrip("?") if name.startswith("?") else name
    return UserError(
        f"the description asks for {words!r} ({what}), a metric this tool does not compute; {hint}"
        f"{kind.value} metrics: {', '.join(have)} - pass --metric with one of them"
    )


def _resolve(mention: _Mention, kind: TaskType, text: str, label: str, info: ColumnProfile | None) -> str | None:
    """The metric id a mention means for this task type; '?...' for one the tool lacks; None to pass it over."""
    name = mention.name
    if name == "-":
        return None
    if name == "perplexity*":  # exp of the loss: the same ranking, for text a model writes
        return "eval_loss" if kind == TaskType.generation else "?perplexity (a language-model metric)"
    if name.startswith("?"):
        return name
    if kind == TaskType.token_classification:
        return {
            "f1*": "entity_f1", "macro_f1": "entity_macro_f1", "micro_f1": "entity_f1",
            "entity_f1": "entity_f1", "entity_macro_f1": "entity_macro_f1", "accuracy": "accuracy",
            "eval_loss": "eval_loss",
        }.get(name, f"?{name.rstrip('*')} (not an entity metric)")  # fmt: skip
    if kind == TaskType.generation:
        return {
            "exact_match": "exact_match", "accuracy": "exact_match", "rouge_l": "rouge_l", "chrf": "chrf",
            "eval_loss": "eval_loss",
        }.get(name, f"?{name.rstrip('*')} (not a metric of generated text)")  # fmt: skip
    if name in ("entity_f1", "entity_macro_f1"):
        return None  # entities in a classification task: a slip of the tongue, the other words decide
    if name in ("rouge_l", "chrf"):
        return f"?{name} (not a classification metric)"
    if name == "exact_match":
        return "accuracy"
    if name == "f1*":
        # F1 of a class when the clause names one ("F1 on the spam class", "binary F1"), else over every class
        if "binary" in mention.words:
            return "f1"
        names = _class_names(label, list((info.value_counts or {}) if info is not None else {}))
        start, end = mention.start, mention.end
        window = text[max(0, start - 30) : end + 40]
        if _adjacent_classes(text, start, end, names) or _rare_near(text, start, end):
            return "f1"
        return "f1" if re.search(r"positive (?:class|label)|\bbinary\b", window) else "macro_f1"
    return name.rstrip("*")


def _without_label_name(text: str, label: str | None) -> str:
    """The text with the label column's name blanked where it is not a class ("predict is_spam" names no class
    "spam"), and "is_spam=1" read as the class "1"; offsets are kept."""
    if not label or not re.search(r"[_-]", label):
        return text
    name = re.escape(label.lower())
    text = re.sub(rf"{name}(\s*(?:==?|:)\s*)", lambda m: " " * len(m.group(0)), text)
    return re.sub(name, lambda m: " " * len(m.group(0)), text)


def names_one_class_metric(text: str) -> bool:
    """Whether the description asks for a metric of one class (precision, recall, ROC-AUC, ...), not ruled out."""
    for mention in _mentions(text):
        if mention.name in ("precision*", "recall*", "roc_auc", "pr_auc") or (
            mention.name == "f1*" and ("binary" in mention.words or _rare_near(text, mention.start, mention.end))
        ):
            clause_start, _ = _clause(text, mention.start, mention.end)
            if not _NEGATION.search(text[clause_start : mention.start]):
                return True
    return False


def read_metric(
    text: str, kind: TaskType, label: str | None, info: ColumnProfile | None, *, ask: bool = True
) -> MetricReading:
    """The metric the description asks for (or the task type's default), and its positive class.

    Raises:
        UserError: the description asks for a metric the tool does not have, or for a one-class metric whose
            class neither the description nor the data settles (unless not `ask`: the caller has the class).
    """
    text = _without_label_name(text, label)
    ruled_out: list[str] = []
    usable: list[tuple[int, int, str, _Mention]] = []  # (asked: 1 / named: 0 / reported: -1, -position, id, ...)
    for mention in _mentions(text):
        before, after = text[max(0, mention.start - 40) : mention.start], text[mention.end :]
        clause_start, _ = _clause(text, mention.start, mention.end)
        if _NEGATION.search(text[clause_start : mention.start]) or _NEGATED_AFTER.search(after):
            ruled_out.append(mention.name)
            continue
        metric = _resolve(mention, kind, text, label or "", info)
        if metric is None:
            continue
        if _ASKED_BEFORE.search(before) or _ASKED_AFTER.search(after):
            asked = 1
        elif _REPORTED_BEFORE.search(before) or _REPORTED_AFTER.search(after):
            asked = -1
        else:
            asked = 0
        if metric.startswith("?") and asked < 0:
            continue  # "report BLEU too": not the objective, and nothing to choose
        usable.append((asked, -mention.start, metric, mention))
    if usable:  # the one the user says to optimise, else the first named
        _, _, metric, mention = max(usable, key=lambda u: (u[0], u[1]))
        if metric.startswith("?"):
            raise unknown_metric(mention.words.strip(), metric, kind)
        source = f"description: {mention.words.strip()!r}"
        if metric not in POSITIVE_CLASS_METRICS or not ask:  # not ask: --positive-label settles the class
            declared = declared_positive(text, label or "", info) if ask else (None, None)
            return MetricReading(metric, source, *declared)
        return _with_positive(text, metric, source, label, info, (mention.start, mention.end))
    reading = _default_metric(text, kind, info, ruled_out)
    positive, why = declared_positive(text, label or "", info)
    return MetricReading(reading.metric, reading.source, positive, why) if positive is not None else reading


def _with_positive(
    text: str, metric: str, source: str, label: str | None, info: ColumnProfile | None, near: tuple[int, int] | None
) -> MetricReading:
    classes = list((info.value_counts or {}) if info is not None else {})
    if metric in SCORE_METRICS and len(classes) != 2:
        raise UserError(
            f"{metric} ranks scores of two classes, and {label!r} has {len(classes)}; pass --metric macro_f1, "
            "or f1/precision/recall of one class with --positive-label CLASS"
        )
    positive, why = positive_class(text, metric, label or "", info, near)
    if positive is None:
        raise ask_for_positive(metric, classes)
    return MetricReading(metric, source, positive, why)


def _default_metric(text: str, kind: TaskType, label: ColumnProfile | None, ruled_out: list[str]) -> MetricReading:
    default = DEFAULT_METRIC[kind]
    if kind != TaskType.classification:
        return MetricReading(default, "default for the task type")
    if "accuracy" in ruled_out:
        return MetricReading("macro_f1", "description rules out accuracy; macro-F1 weighs every class equally")
    if m := _RARE_CLASS.search(text):
        return MetricReading("macro_f1", f"description: {m.group(0)!r} - macro-F1 weighs every class equally")
    counts = list((label.value_counts or {}).values()) if label is not None else []
    if len(counts) >= 2 and max(counts) >= IMBALANCE_RATIO * min(counts):
        return MetricReading(
            "macro_f1", f"data: imbalanced classes ({max(counts)} vs {min(counts)} rows), so not accuracy"
        )
    return MetricReading(default, "default for classification")


def positive_for_flags(
    metric: str, positive: str | None, text: str, label: str, info: ColumnProfile | None
) -> tuple[str | None, str | None]:
    """The positive class of a metric given by --metric: --positive-label, else the description or the data.

    Raises:
        UserError: the class is not one of the label's, or nothing settles it.
    """
    classes = list((info.value_counts or {}) if info is not None else {})
    text = _without_label_name(text, label)
    if positive is not None:
        match = next((c for c in classes if c == positive), None) or next(
            (c for c in classes if c.lower() == positive.lower()), None
        )
        if classes and match is None:
            raise UserError(
                f"--positive-label {positive!r} is not a class of {label!r}; its classes: "
                + ", ".join(map(repr, classes[:10]))
            )
        return match or positive, "--positive-label"
    if metric not in POSITIVE_CLASS_METRICS:
        return None, None
    reading = _with_positive(text, metric, "--metric", label, info, None)
    return reading.positive, reading.positive_source
