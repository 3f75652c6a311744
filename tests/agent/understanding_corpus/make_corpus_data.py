"""Write the small data sets of the task-understanding corpus (cases.yaml reads them).

Each set is made from templates with a seeded generator, so the files are the
same on every run; they are committed beside this script so the tests read
files, not code. Each is kept under 300 rows and 100 KB. Regenerate with:

    .venv/bin/python tests/agent/understanding_corpus/make_corpus_data.py
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"

NAMES = ["Sam", "Priya", "Tom", "Aisha", "Luca", "Mei", "Jonas", "Fatima", "Olek", "Grace", "Diego", "Hana"]
PLACES = ["Lisbon", "Nairobi", "Oslo", "Lima", "Hanoi", "Denver", "Krakow", "Perth", "Accra", "Quebec", "Seoul"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell", "Soylent"]


def distinct(make: Callable[[random.Random], str], n: int, rng: random.Random) -> list[str]:
    """n different strings from a template function (real texts rarely repeat)."""
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen.setdefault(make(rng), None)
    return list(seen)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- classification


def sms_spam(out: Path) -> None:
    """message,is_spam: 200 texts, 10% spam (the rare class that matters)."""
    rng = random.Random(1)

    def ham(r: random.Random) -> str:
        return r.choice(
            [
                f"Hey {r.choice(NAMES)}, are we still on for {r.choice(['lunch', 'the gym', 'dinner', 'coffee'])} "
                f"{r.choice(['today', 'tomorrow', 'on Friday', 'at 6'])}?",
                f"Running about {r.randint(5, 40)} min late, sorry! Start without me",
                f"Can you pick up {r.choice(['milk', 'bread', 'the parcel', 'batteries', 'eggs'])} on the way home?",
                f"Thanks for {r.choice(['yesterday', 'the lift', 'dinner', 'the book'])}, {r.choice(NAMES)} says hi",
                f"Ok see you at {r.randint(1, 12)}:{r.choice(['00', '15', '30', '45'])} by the "
                f"{r.choice(['station', 'cafe', 'office', 'park'])}",
                f"Did you get my email about the {r.choice(['rent', 'trip', 'meeting', 'party'])}? "
                f"Call me when free {r.randint(1, 99)}",
                f"Mum wants to know if you're coming {r.choice(['Sunday', 'for Easter', 'this weekend'])}",
                f"The {r.choice(['train', 'bus', 'flight'])} is delayed again, home by {r.randint(7, 11)} pm",
            ]
        )

    def spam(r: random.Random) -> str:
        return r.choice(
            [
                f"WINNER!! You have won a £{r.randint(5, 20) * 100} prize. Call 0906{r.randint(100000, 999999)} "
                "now to claim",
                f"URGENT: your account {r.randint(1000, 9999)} is suspended, verify at "
                f"secure-{r.choice(['bank', 'pay', 'login'])}.co/{r.randint(10, 99)}",
                f"Free entry in our weekly draw! Text WIN to {r.randint(80000, 89999)} to get a new phone. T&Cs apply",
                f"Congratulations, you were selected for a {r.randint(2, 9)}-night cruise. Reply YES, "
                f"stop to {r.randint(60000, 69999)}",
                f"Your parcel is held, pay £{r.randint(1, 3)}.{r.randint(10, 99)} fee at "
                f"dlvry-{r.randint(100, 999)}.info",
            ]
        )

    rows = [[m, 0] for m in distinct(ham, 180, rng)] + [[m, 1] for m in distinct(spam, 20, rng)]
    rng.shuffle(rows)
    write_csv(out / "sms_spam.csv", ["message", "is_spam"], rows)


NEWS = {
    "world": (
        [
            "Leaders meet in {place} over border dispute",
            "Floods force thousands from homes near {place}",
            "{place} votes in tense election",
            "Talks in {place} end without ceasefire deal",
            "Aid convoy reaches {place} after weeks of delay",
        ],
        [
            "Officials in {place} said talks would resume next week.",
            "The foreign minister called the vote a turning point.",
            "Thousands gathered in the main square of {place} on Sunday.",
            "Aid agencies warned that supplies were running low.",
            "Neighbouring countries urged both sides to show restraint.",
            "Observers reported long queues at polling stations.",
            "The United Nations envoy arrived in {place} late on Tuesday.",
            "Roads out of the city remained closed.",
        ],
    ),
    "business": (
        [
            "{company} shares jump after strong quarter",
            "{company} to cut {n} jobs in restructuring",
            "Inflation in {place} eases for third month",
            "{company} agrees takeover of smaller rival",
            "Central bank holds rates as growth slows",
        ],
        [
            "Revenue rose {n} percent from a year earlier, beating forecasts.",
            "Analysts said the outlook remained uncertain.",
            "{company} said the savings would be reinvested in new products.",
            "Shares closed up {n} percent in {place}.",
            "The chief executive told investors demand had recovered.",
            "Bond yields fell after the announcement.",
            "The deal still needs approval from regulators in {place}.",
            "Retail sales were flat over the quarter.",
        ],
    ),
    "sport": (
        [
            "{place} win late thriller to reach final",
            "Injury rules striker out for {n} weeks",
            "Record crowd watches derby in {place}",
            "Coach sacked after {n} straight defeats",
            "{name} breaks national record in {place}",
        ],
        [
            "The winning goal came in the {n}th minute.",
            "Fans in {place} celebrated long into the night.",
            "The coach praised the team's defending after the match.",
            "{name} said the record was a dream come true.",
            "The club confirmed the scan showed a torn hamstring.",
            "Tickets for the final sold out within hours.",
            "It was their first trophy in {n} years.",
            "The referee was criticised for two late decisions.",
        ],
    ),
    "technology": (
        [
            "{company} unveils new phone with longer battery",
            "Security flaw found in popular {company} router",
            "Start-up in {place} raises funds for AI chips",
            "{company} fined over data privacy breach",
            "New satellite network promises faster rural internet",
        ],
        [
            "The device goes on sale next month at a lower price.",
            "Researchers said millions of users could be affected.",
            "{company} said a software update would fix the problem.",
            "The chips are designed to run large models cheaply.",
            "Regulators in {place} said the company broke data rules.",
            "Early reviewers praised the camera but not the price.",
            "The firm employs {n} engineers in {place}.",
            "Users were advised to change their passwords.",
        ],
    ),
}


NEWS_SHARED = [
    "A spokesperson declined to comment further.", "More details are expected later this week.",
    "Local media first reported the story on {day}.", "Reporting by {name} in {place}; editing by {name}.",
    "The statement was published on the official website on {day} morning.",
    "Critics said the decision came too late and asked for an independent review.",
    "It is not yet clear how the change will affect people living in {place}.",
]  # fmt: skip


def news(out: Path) -> None:
    """headline,body,section: 100 articles, 4 balanced sections, long bodies (8 to 10 sentences)."""
    rng = random.Random(2)

    def fill(template: str) -> str:
        return template.format(
            place=rng.choice(PLACES),
            company=rng.choice(COMPANIES),
            name=rng.choice(NAMES),
            n=rng.randint(2, 90),
            day=rng.choice(["Monday", "Tuesday", "Friday", "Sunday"]),
        )

    rows, seen = [], set()
    for section, (headlines, sentences) in NEWS.items():
        while sum(r[2] == section for r in rows) < 25:
            headline = fill(rng.choice(headlines))
            if headline in seen:
                continue
            seen.add(headline)
            picked = rng.sample(sentences, rng.randint(5, 7)) + rng.sample(NEWS_SHARED, 3)
            body = " ".join(fill(s) for s in picked)
            rows.append([headline, body, section])
    rng.shuffle(rows)
    write_csv(out / "news.csv", ["headline", "body", "section"], rows)


def articles(out: Path) -> None:
    """headline,body,topic,outlet: 120 articles, 4 topics, 5 outlets (a second column of repeated values)."""
    rng = random.Random(21)
    outlets = ["Herald", "Tribune", "Gazette", "Courier", "Post"]

    def fill(template: str) -> str:
        return template.format(
            place=rng.choice(PLACES),
            company=rng.choice(COMPANIES),
            name=rng.choice(NAMES),
            n=rng.randint(2, 90),
            day=rng.choice(["Monday", "Wednesday", "Thursday", "Saturday"]),
        )

    rows, seen = [], set()
    for topic, (headlines, sentences) in NEWS.items():
        while sum(r[2] == topic for r in rows) < 30:
            headline = fill(rng.choice(headlines))
            if headline in seen:
                continue
            seen.add(headline)
            picked = rng.sample(sentences, rng.randint(3, 5)) + rng.sample(NEWS_SHARED, 2)
            rows.append([headline, " ".join(fill(s) for s in picked), topic, rng.choice(outlets)])
    rng.shuffle(rows)
    write_csv(out / "articles.csv", ["headline", "body", "topic", "outlet"], rows)


def claims(out: Path) -> None:
    """claim_text,outcome,region: 200 insurance claims, 'fraud' (15%) or 'legit', in 5 regions."""
    rng = random.Random(22)
    regions = ["north", "south", "east", "west", "central"]

    def legit(r: random.Random) -> str:
        return (
            f"{r.choice(['Water damage', 'Broken window', 'Stolen bike', 'Car scratch', 'Storm damage'])} at "
            f"{r.choice(PLACES)} on {r.choice(['Monday', 'Friday', 'the 3rd', 'the 12th'])}; receipts attached, "
            f"repair quote {r.randint(80, 900)} EUR"
        )

    def fraud(r: random.Random) -> str:
        return (
            f"{r.choice(['Total loss of', 'Lost all', 'Fire destroyed'])} "
            f"{r.choice(['jewellery', 'three laptops', 'a Rolex', 'cash'])} "
            f"worth {r.randint(9, 60)},000 EUR, {r.choice(['no receipts', 'receipts lost', 'paid cash'])}, "
            f"policy started {r.randint(2, 20)} days ago"
        )

    rows = [[t, "legit", rng.choice(regions)] for t in distinct(legit, 170, rng)]
    rows += [[t, "fraud", rng.choice(regions)] for t in distinct(fraud, 30, rng)]
    rng.shuffle(rows)
    write_csv(out / "claims.csv", ["claim_text", "outcome", "region"], rows)


TICKETS = {
    "billing": (
        [
            "Charged twice for {month}",
            "Refund not received yet",
            "Wrong amount on invoice {n}",
            "Cannot update my card details",
            "Question about my {month} bill",
        ],
        [
            "I was billed twice this month, please refund one of the payments.",
            "My invoice {n} shows a price I did not agree to.",
            "The refund you promised {days} days ago never arrived.",
            "My card was declined although it works everywhere else.",
        ],
    ),
    "technical": (
        [
            "App crashes on start",
            "Error {n} when uploading files",
            "Cannot connect to the server",
            "Sync stopped working since update",
            "Page loads forever on {device}",
        ],
        [
            "The app closes as soon as I open it on my {device}.",
            "Uploads fail with error code {n} every time.",
            "Since the last update nothing syncs between my devices.",
            "I reinstalled twice and it still hangs.",
        ],
    ),
    "account": (
        [
            "Locked out of my account",
            "Change the email on my account",
            "Delete my account please",
            "Two-factor code never arrives",
            "Add a second user to account {n}",
        ],
        [
            "I entered the wrong password and now the account is locked.",
            "Please change my login email to my new one.",
            "I want my account and all my data deleted.",
            "The verification text never comes to my {device}.",
        ],
    ),
    "shipping": (
        [
            "Where is my order {n}",
            "Parcel arrived damaged",
            "Wrong item delivered",
            "Change delivery address for order {n}",
            "Tracking has not updated in {days} days",
        ],
        [
            "The tracking page has said in transit for {days} days.",
            "The box was crushed and the item inside is broken.",
            "I ordered the blue one and got a red one instead.",
            "Can you send order {n} to my office instead?",
        ],
    ),
}


def tickets(out: Path) -> None:
    """subject,body,queue,priority,customer_id: two plausible labels and an id column (80 customers)."""
    rng = random.Random(3)
    customers = [f"C-{rng.randint(10000, 99999)}" for _ in range(80)]
    weights = {"billing": 0.3, "technical": 0.35, "account": 0.15, "shipping": 0.2}
    rows, seen = [], set()
    while len(rows) < 200:
        queue = rng.choices(list(weights), list(weights.values()))[0]
        subjects, bodies = TICKETS[queue]
        slots = {
            "n": rng.randint(1000, 9999),
            "days": rng.randint(2, 20),
            "month": rng.choice(["March", "April", "May"]),
            "device": rng.choice(["iPhone", "Android phone", "laptop", "tablet"]),
        }
        subject = rng.choice(subjects).format(**slots)
        body = " ".join(s.format(**slots) for s in rng.sample(bodies, 2))
        body += f" {rng.choice(['Thanks.', 'Please help.', 'This is urgent!', 'Regards,'])} {rng.choice(NAMES)}"
        if (subject, body) in seen:
            continue
        seen.add((subject, body))
        priority = "high" if "urgent" in body.lower() else rng.choice(["low", "medium", "medium"])
        rows.append([subject, body, queue, priority, rng.choice(customers)])
    write_csv(out / "tickets.csv", ["subject", "body", "queue", "priority", "customer_id"], rows)


REVIEWS = {
    1: (
        ["Broke after a week", "Waste of money", "Do not buy", "Terrible"],
        [
            "It stopped working after {n} days and support never answered.",
            "Cheap plastic, the {part} snapped at once.",
            "Nothing like the photos. Returned it.",
        ],
    ),
    2: (
        ["Disappointing", "Not great", "Meh, expected more"],
        [
            "The {part} feels flimsy and the battery lasts only {n} hours.",
            "It works but is loud and slow.",
            "Instructions were missing and setup took ages.",
        ],
    ),
    3: (
        ["It's okay", "Average", "Does the job I guess"],
        [
            "Fine for the price, nothing special.",
            "The {part} is good but the app is clumsy.",
            "Some days it works well, some days not.",
        ],
    ),
    4: (
        ["Pretty good", "Good value", "Happy with it"],
        [
            "Works well, only the {part} could be sturdier.",
            "Good quality for the money, arrived in {n} days.",
            "Does what it says, I would buy it again.",
        ],
    ),
    5: (
        ["Love it!", "Perfect", "Best purchase this year", "Excellent"],
        [
            "Absolutely brilliant, the {part} is solid and it charges fast.",
            "Exceeded my expectations in every way.",
            "Bought a second one for my {n} year old, they love it too.",
        ],
    ),
}


def product_reviews(out: Path) -> None:
    """title,review,stars: 250 reviews, stars 1-5 skewed towards 5 like real shops."""
    rng = random.Random(4)
    counts = {1: 25, 2: 20, 3: 35, 4: 70, 5: 100}
    rows, seen = [], set()
    for stars, n in counts.items():
        titles, bodies = REVIEWS[stars]
        made = 0
        while made < n:
            part = rng.choice(["lid", "handle", "cable", "strap", "button", "screen", "charger"])
            review = " ".join(b.format(part=part, n=rng.randint(2, 14)) for b in rng.sample(bodies, rng.randint(1, 2)))
            title = rng.choice(titles)
            if (title, review) in seen:
                continue
            seen.add((title, review))
            rows.append([title, review, stars])
            made += 1
    rng.shuffle(rows)
    write_csv(out / "product_reviews.csv", ["title", "review", "stars"], rows)


def constant_label(out: Path) -> None:
    """text,label: 60 texts, every label 'positive' (an export that kept one class only)."""
    rng = random.Random(5)

    def text(r: random.Random) -> str:
        return (
            f"{r.choice(['Great', 'Lovely', 'Friendly', 'Quick'])} "
            f"{r.choice(['service', 'staff', 'food', 'delivery'])} "
            f"at the {r.choice(PLACES)} branch, {r.choice(['will come back', 'highly recommended', 'ten out of ten'])}"
        )

    write_csv(out / "constant_label.csv", ["text", "label"], [[t, "positive"] for t in distinct(text, 60, rng)])


CATALOG = {
    "kitchen": ["{a} chef knife {n} cm", "{a} non-stick frying pan {n} cm", "{a} glass food container set of {n}"],
    "garden": ["{a} garden hose {n} m", "{a} pruning shears", "{a} bag of potting soil {n} l"],
    "electronics": ["{a} USB-C charger {n} W", "{a} wireless earbuds", "{a} HDMI cable {n} m"],
    "toys": ["{a} wooden puzzle {n} pieces", "{a} building blocks set of {n}", "{a} plush bear {n} cm"],
    "clothing": ["{a} cotton t-shirt size {n}", "{a} wool socks pack of {n}", "{a} rain jacket size {n}"],
    "books": ["{a} cookbook with {n} recipes", "{a} paperback thriller", "{a} atlas of {n} maps"],
}


def catalog(out: Path) -> None:
    """sku,product_name,category: a distinct id and a distinct name per row, 6 categories."""
    rng = random.Random(6)
    adjectives = ["Classic", "Premium", "Eco", "Compact", "Deluxe", "Basic", "Pro", "Kids'", "Travel", "Heavy-duty"]
    rows, seen = [], set()
    while len(rows) < 180:
        category = rng.choice(list(CATALOG))
        name = rng.choice(CATALOG[category]).format(a=rng.choice(adjectives), n=rng.randint(2, 60))
        if name in seen:
            continue
        seen.add(name)
        rows.append([f"SKU-{len(rows) * 7 + 10003:06d}", name, category])
    write_csv(out / "catalog.csv", ["sku", "product_name", "category"], rows)


INTENT_VERBS = ["check", "change", "cancel", "book", "report", "find", "pay", "reset", "track", "renew"]
INTENT_OBJECTS = {
    "banking": ["balance", "card", "transfer"], "travel": ["flight", "hotel", "train ticket"],
    "home": ["heating", "lights", "alarm"], "utility": ["bill", "meter reading", "direct debit"],
    "work": ["meeting", "leave request", "payslip"], "health": ["appointment", "prescription", "test result"],
}  # fmt: skip


def intents(out: Path) -> None:
    """utterance,intent,domain: 60 intents (too many classes for the rules) inside 6 domains."""
    rng = random.Random(7)
    pairs = [(v, o, d) for d, objs in INTENT_OBJECTS.items() for o in objs for v in INTENT_VERBS]
    chosen = rng.sample(pairs, 60)
    openers = ["please", "can you", "I need to", "help me", "I want to", "could you", "quickly"]
    rows = []
    for verb, obj, domain in chosen:
        for utterance in distinct(
            lambda r, v=verb, o=obj: f"{r.choice(openers)} {v} my {o} {r.choice(['now', 'today', 'for me', 'asap'])}",
            4,
            rng,
        ):
            rows.append([utterance, f"{verb}_{obj.replace(' ', '_')}", domain])
    rng.shuffle(rows)
    write_csv(out / "intents.csv", ["utterance", "intent", "domain"], rows)


def weird_names(out: Path) -> None:
    """txt,y: a sentiment set whose columns are named tersely."""
    rng = random.Random(8)

    def text(r: random.Random, good: bool) -> str:
        adjective = r.choice(["wonderful", "great", "fun", "moving"] if good else ["boring", "awful", "dull", "messy"])
        return f"The {r.choice(['plot', 'acting', 'music', 'ending', 'pacing'])} was {adjective} and the " + (
            f"{r.choice(['cast', 'crew', 'director'])} {r.choice(['shone', 'delivered', 'surprised me'])}"
            if good
            else f"{r.choice(['cast', 'crew', 'director'])} {r.choice(['failed', 'gave up', 'bored me'])}"
        )

    rows = [[t, "pos"] for t in distinct(lambda r: text(r, True), 60, rng)]
    rows += [[t, "neg"] for t in distinct(lambda r: text(r, False), 60, rng)]
    rng.shuffle(rows)
    write_csv(out / "weird_names.csv", ["txt", "y"], rows)


def toxic_comments(out: Path) -> None:
    """text,toxic,created_at (JSONL): booleans, 8% toxic, a date column with 90 values."""
    rng = random.Random(9)

    def kind(r: random.Random) -> str:
        return (
            f"{r.choice(['Nice', 'Interesting', 'Helpful', 'Thanks for the'])} "
            f"{r.choice(['post', 'write-up', 'tip'])}, "
            f"{r.choice(['I tried it on my', 'it worked on my', 'will test it on my'])} "
            f"{r.choice(['bike', 'laptop', 'garden', 'car', 'sourdough'])} {r.randint(1, 500)}"
        )

    def toxic(r: random.Random) -> str:
        return (
            f"{r.choice(['You are', 'What a', 'Only a'])} {r.choice(['complete idiot', 'pathetic loser', 'moron'])}, "
            f"{r.choice(['shut up', 'nobody asked you', 'get lost'])} {r.randint(1, 500)}"
        )

    rows = [{"text": t, "toxic": False} for t in distinct(kind, 184, rng)]
    rows += [{"text": t, "toxic": True} for t in distinct(toxic, 16, rng)]
    rng.shuffle(rows)
    for row in rows:
        row["created_at"] = f"2024-{rng.randint(1, 3):02d}-{rng.randint(1, 30):02d}"
    write_jsonl(out / "toxic_comments.jsonl", rows)


# --------------------------------------------------------------------------- token classification


def ner_people_places(out: Path) -> None:
    """tokens,tags (JSONL, BIO): 150 sentences with PER, ORG and LOC entities."""
    rng = random.Random(10)
    patterns = [
        ["{PER}", "joined", "{ORG}", "in", "{LOC}", "last", "year", "."],
        ["{ORG}", "opened", "an", "office", "in", "{LOC}", "."],
        ["{PER}", "met", "{PER}", "at", "the", "{ORG}", "summit", "."],
        ["Flights", "to", "{LOC}", "were", "cancelled", "on", "Monday", "."],
        ["{PER}", "said", "{ORG}", "would", "hire", "more", "staff", "."],
    ]
    people = [f"{n} {s}" for n in NAMES for s in ["Silva", "Okafor", "Berg", "Nguyen"]]
    rows = []
    for _ in range(150):
        tokens, tags = [], []
        for item in rng.choice(patterns):
            if item.startswith("{"):
                kind = item.strip("{}")
                words = {
                    "PER": rng.choice(people).split(),
                    "ORG": [rng.choice(COMPANIES), *rng.choice([[], ["Group"], ["Labs"]])],
                    "LOC": [rng.choice(PLACES)],
                }[kind]
                tokens += words
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)
            else:
                tokens.append(item)
                tags.append("O")
        rows.append({"tokens": tokens, "tags": tags})
    write_jsonl(out / "ner_people_places.jsonl", rows)


def drug_mentions(out: Path) -> None:
    """CoNLL token<TAB>tag: 80 clinical notes with DRUG and DOSE entities."""
    rng = random.Random(11)
    drugs = ["ibuprofen", "metformin", "amoxicillin", "warfarin", "insulin", "paracetamol", "atorvastatin"]
    lines = []
    for _ in range(80):
        dose = [str(rng.choice([5, 10, 20, 250, 500])), rng.choice(["mg", "units"])]
        parts = [
            (["Patient", "started", "on"], "O"),
            ([rng.choice(drugs)], "DRUG"),
            (dose, "DOSE"),
            ([*rng.choice(["daily", "twice daily", "at night", "every morning"]).split(), "."], "O"),
        ]
        for words, kind in parts:
            for i, w in enumerate(words):
                lines.append(f"{w}\t{'O' if kind == 'O' else ('B-' if i == 0 else 'I-') + kind}")
        lines.append("")
    (out / "drug_mentions.conll").write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------- generation


def instructions(out: Path) -> None:
    """instruction,input,output (JSONL): 150 small deterministic text tasks."""
    rng = random.Random(12)
    words = ["garden", "river", "window", "candle", "rocket", "pencil", "market", "violin", "harbour", "meadow"]
    tasks = [
        ("Write the word in capital letters.", lambda w: w.upper()),
        ("Write the word backwards.", lambda w: w[::-1]),
        ("Give the plural of the noun.", lambda w: w + "s"),
        ("Count the letters in the word.", lambda w: str(len(w))),
        ("Give the first and last letter.", lambda w: f"{w[0]} {w[-1]}"),
    ]
    rows = []
    for i in range(150):
        instruction, fn = tasks[i % len(tasks)]
        word = rng.choice(words) + rng.choice(["", "s", "ing", "er"])
        rows.append({"instruction": instruction, "input": word, "output": fn(word)})
    write_jsonl(out / "instructions.jsonl", rows)


def support_replies(out: Path) -> None:
    """prompt,response (JSONL): 100 customer messages and the agent's reply."""
    rng = random.Random(13)
    rows = []
    for _ in range(100):
        order = rng.randint(10000, 99999)
        issue = rng.choice(["late", "damaged", "missing an item", "the wrong size"])
        name = rng.choice(NAMES)
        rows.append(
            {
                "prompt": f"Hi, my order {order} is {issue}. What can you do? - {name}",
                "response": f"Sorry to hear that, {name}. I have opened a case for order {order} and will "
                f"{'send a replacement' if issue != 'late' else 'chase the courier'} today.",
            }
        )
    write_jsonl(out / "support_replies.jsonl", rows)


def summaries(out: Path) -> None:
    """document,summary (JSONL): 80 short reports and one-line summaries (no instruction/output names)."""
    rng = random.Random(14)
    rows = []
    for _ in range(80):
        company, place, n = rng.choice(COMPANIES), rng.choice(PLACES), rng.randint(2, 40)
        change = rng.choice(["rose", "fell"])
        rows.append(
            {
                "document": f"{company} reported on Tuesday that quarterly sales in {place} {change} by {n} percent. "
                f"The company said demand for its {rng.choice(['phones', 'cars', 'software', 'snacks'])} "
                f"{'was strong' if change == 'rose' else 'weakened'} and that it expects "
                f"{rng.choice(['similar', 'better', 'weaker'])} results next quarter. Its shares "
                f"{rng.choice(['gained', 'lost'])} {rng.randint(1, 9)} percent.",
                "summary": f"{company} sales in {place} {change} {n}%.",
            }
        )
    write_jsonl(out / "summaries.jsonl", rows)


def write_all(out: Path = DATA_DIR) -> list[Path]:
    """Write every data set into `out`; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    makers = [
        sms_spam, news, articles, claims, tickets, product_reviews, constant_label, catalog, intents, weird_names,
        toxic_comments, ner_people_places, drug_mentions, instructions, support_replies, summaries,
    ]  # fmt: skip
    for make in makers:
        make(out)
    return sorted(p for p in out.iterdir() if p.is_file())


def main() -> None:
    for path in write_all():
        print(f"{path.name:28s} {path.stat().st_size / 1024:6.1f} KB")


if __name__ == "__main__":
    main()
