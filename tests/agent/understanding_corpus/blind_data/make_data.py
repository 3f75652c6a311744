#!/usr/bin/env python3
"""Deterministically generate small blind-test data sets (standard library only).

Outputs in ./data/ (next to this script):
  customer_emails.csv   subject, body, sender_domain, department (5 classes)      300 rows
  insurance_claims.csv  claim_id, filed_date, policy_type, claimant_statement,
                        adjuster_notes, fraud (yes/no, ~7% yes)                   350 rows
  job_postings.csv      title, description, location, seniority (3), remote       260 rows
  qa_pairs.jsonl        question, context, answer (extractive-style generation)  220 rows
"""

import csv
import datetime
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data")
os.makedirs(OUT, exist_ok=True)


# ---------------------------------------------------------------------------
# 1. customer emails -> department
# ---------------------------------------------------------------------------
def make_emails(rng):
    products = [
        "Pro plan",
        "Starter plan",
        "Team workspace",
        "mobile app",
        "desktop client",
        "API access",
        "Enterprise license",
        "analytics add-on",
    ]
    months = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ]
    names = [
        "Dana",
        "Luis",
        "Priya",
        "Tom",
        "Mei",
        "Olu",
        "Sara",
        "Jonas",
        "Fatima",
        "Ken",
        "Ines",
        "Raj",
        "Chloe",
        "Marek",
        "Ana",
    ]
    domains_personal = ["gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com"]
    domains_company = [
        "acme-corp.com",
        "brightlabs.io",
        "northwind.co",
        "globex.net",
        "initech.com",
        "umbrella-health.org",
        "stark-ind.com",
        "wayne-ent.com",
    ]

    depts = {
        "billing": {
            "subjects": [
                "Invoice {n} looks wrong",
                "Double charged this month",
                "Refund request for {m}",
                "Question about my bill",
                "Update credit card on file",
                "VAT number missing on invoice",
                "Why did my price go up?",
                "Charged after cancelling",
            ],
            "bodies": [
                "Hi, I was charged twice for the {p} in {m}. Can you refund the duplicate payment? Thanks, {name}",
                "Hello, invoice {n} shows 12 seats but we only have 9. Please correct it and resend.",
                "I cancelled the {p} last month but my card was still charged on the 3rd. I'd like a refund.",
                "Could you add our VAT number to the invoices going forward? Accounting needs it for {m}.",
                "Our card expires soon, where do I update the payment method for the {p}?",
                "The renewal price for the {p} jumped by 20 percent. Is there a discount for annual billing?",
            ],
        },
        "technical_support": {
            "subjects": [
                "App crashes on startup",
                "Can't log in",
                "Error 500 when exporting",
                "Sync not working",
                "API returns 401",
                "Bug: charts not loading",
                "Password reset email never arrives",
                "Very slow dashboard",
            ],
            "bodies": [
                "Since the last update the {p} crashes right after the splash screen. I reinstalled it twice. {name}",
                "When I export a report I get error 500. This started on {m} {d}. Steps: open report, click export.",
                "Our API calls to the {p} return 401 even though the key is valid. Did something change?",
                "Files are not syncing between the {p} and the web version anymore. Tried logging out and in.",
                "I requested a password reset three times and no email arrived, not even in spam.",
                "The dashboard takes over a minute to load since {m}. Other sites are fine on my connection.",
            ],
        },
        "sales": {
            "subjects": [
                "Pricing for 50 seats",
                "Interested in Enterprise",
                "Request a demo",
                "Volume discount?",
                "Quote for our team",
                "Comparing you with a competitor",
                "Upgrade options",
                "Non-profit pricing",
            ],
            "bodies": [
                "We are a team of about {k} people evaluating the {p}. Could we get a quote and a short demo?",
                "Hi, I'd like to know whether you offer volume discounts above {k} seats. Best, {name}",
                "Our procurement needs a formal quote for the {p} before {m}. Who should I talk to?",
                "We are comparing a few vendors. What does the {p} include that others don't?",
                "Do you have special pricing for non-profits? We have {k} volunteers who would use it.",
                "Can someone walk us through the {p}? We want to roll it out to {k} users next quarter.",
            ],
        },
        "hr": {
            "subjects": [
                "Application for backend role",
                "Internship question",
                "Reference check",
                "Interview rescheduling",
                "Job offer follow-up",
                "Employment verification",
                "Open positions?",
                "Benefits question from new hire",
            ],
            "bodies": [
                "Hello, I applied for the backend engineer role on {m} {d} and wanted to check on the status. {name}",
                "Could we move my second interview to next week? Something came up. Thank you, {name}",
                "I'm a former employee and need an employment verification letter for a mortgage application.",
                "Are you offering summer internships this year? I'm a student in computer science.",
                "I am calling to provide a reference for {name}, who listed your company. Who handles this?",
                "I start on the 1st and have a question about the health plan enrollment deadline.",
            ],
        },
        "legal": {
            "subjects": [
                "GDPR data deletion request",
                "DPA signature needed",
                "Trademark concern",
                "Subpoena notice",
                "Contract redlines",
                "Data processing question",
                "Terms of service clarification",
                "Copyright complaint",
            ],
            "bodies": [
                "Under GDPR article 17 I request deletion of all personal data you hold about me. {name}",
                "Our legal team needs your signed DPA before we can start using the {p}. Template attached.",
                "Please find attached our redlines to the master services agreement, section 9 on liability.",
                "A user on your platform is using our registered trademark without permission. Please advise.",
                "Where is customer data for the {p} stored and which subprocessors do you use?",
                "We received a notice regarding content hosted on your service that infringes our copyright.",
            ],
        },
    }
    # mildly unbalanced 5 classes
    weights = {"billing": 70, "technical_support": 90, "sales": 55, "hr": 40, "legal": 45}
    labels = [lab for lab, w in weights.items() for _ in range(w)]
    rng.shuffle(labels)
    rows = []
    for lab in labels:
        spec = depts[lab]
        fill = dict(
            n=rng.randint(10000, 99999),
            m=rng.choice(months),
            d=rng.randint(1, 28),
            p=rng.choice(products),
            name=rng.choice(names),
            k=rng.choice([12, 25, 40, 60, 150, 300]),
        )
        subject = rng.choice(spec["subjects"]).format(**fill)
        body = rng.choice(spec["bodies"]).format(**fill)
        if rng.random() < 0.3:
            body = rng.choice(["Hi team, ", "Hello, ", "Good morning. ", "Dear support, "]) + body
        if rng.random() < 0.2:
            subject = rng.choice(["Re: ", "Fwd: ", "URGENT: "]) + subject
        dom = rng.choice(domains_company if rng.random() < 0.6 else domains_personal)
        rows.append({"subject": subject, "body": body, "sender_domain": dom, "department": lab})
    with open(os.path.join(OUT, "customer_emails.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["subject", "body", "sender_domain", "department"])
        w.writeheader()
        w.writerows(rows)
    return len(rows)


# ---------------------------------------------------------------------------
# 2. insurance claims -> fraud yes/no (~7% yes)
# ---------------------------------------------------------------------------
def make_claims(rng):
    n = 350
    n_fraud = 25  # 7.1%
    fraud_idx = set(rng.sample(range(n), n_fraud))
    policy_types = ["auto", "home", "renters", "travel", "health"]
    incidents = {
        "auto": [
            "rear-ended at a traffic light",
            "hit a deer on the highway",
            "scraped a pole in a parking garage",
            "windshield cracked by gravel",
            "car stolen from driveway",
        ],
        "home": [
            "pipe burst in the kitchen",
            "storm damaged the roof",
            "kitchen fire from stove",
            "tree fell on the garage",
            "basement flooded after heavy rain",
        ],
        "renters": [
            "laptop stolen during break-in",
            "water leak from upstairs unit",
            "bike stolen from storage",
            "smoke damage from neighbor's fire",
        ],
        "travel": [
            "luggage lost by airline",
            "trip cancelled due to illness",
            "phone stolen abroad",
            "missed connection and hotel costs",
        ],
        "health": [
            "emergency room visit after fall",
            "ambulance transport",
            "out-of-network specialist visit",
            "physical therapy sessions",
        ],
    }
    normal_notes = [
        "Photos consistent with described damage. Repair estimate within expected range.",
        "Police report on file, matches statement. Recommend approval.",
        "Contractor invoice verified by phone. No prior claims in 5 years.",
        "Receipts provided for all items. Values reasonable.",
        "Spoke with claimant, timeline consistent. Standard processing.",
        "Third party confirmed incident. Deductible applied.",
        "Medical records received and match billed codes.",
    ]
    fraud_notes = [
        "Policy started 3 weeks before loss. Claimant unable to provide receipts for high-value items.",
        "Damage photos appear to be from a different vehicle; metadata dates predate policy.",
        "Repair shop linked to two other flagged claims this quarter. Estimate inflated ~40%.",
        "Statement changed between first and second call. Witness could not be reached.",
        "Same items claimed on a prior policy with another carrier. Referred to SIU.",
        "Police report number does not exist. Claimant pushing for fast cash settlement.",
    ]
    ambiguous_notes = [
        "Some receipts missing, claimant says they were lost in the incident.",
        "Estimate slightly above average for the area. Requested second quote.",
        "Claimant reported late (18 days after incident), explained travel.",
    ]
    statements_open = ["On {date} I", "Around {date}, I", "I am filing because on {date} I", "Last week ({date}) I"]
    start = datetime.date(2023, 1, 1)
    rows = []
    for i in range(n):
        is_fraud = i in fraud_idx
        pt = rng.choice(policy_types)
        inc = rng.choice(incidents[pt])
        filed = start + datetime.timedelta(days=rng.randint(0, 540))
        inc_date = filed - datetime.timedelta(days=rng.randint(1, 20))
        amount = rng.randint(300, 9000) if not is_fraud else rng.randint(4000, 25000)
        stmt = (
            rng.choice(statements_open).format(date=inc_date.strftime("%b %d"))
            + f" had this happen: {inc}. I am claiming ${amount:,} for the loss."
        )
        if is_fraud and rng.random() < 0.5:
            stmt += rng.choice(
                [
                    " I need the payment as soon as possible.",
                    " I don't have the receipts anymore but everything was new.",
                    " My cousin's shop already did the repairs.",
                ]
            )
        elif rng.random() < 0.3:
            stmt += rng.choice(
                [
                    " Photos attached.",
                    " The police report number is on the form.",
                    " Please call me if you need more information.",
                ]
            )
        if is_fraud:
            notes = rng.choice(fraud_notes)
            if rng.random() < 0.3:
                notes = rng.choice(ambiguous_notes)  # some frauds look ordinary
        else:
            notes = rng.choice(normal_notes) if rng.random() < 0.88 else rng.choice(ambiguous_notes)
        rows.append(
            {
                "claim_id": f"CLM-{100000 + i * 7 + rng.randint(0, 6)}",
                "filed_date": filed.isoformat(),
                "policy_type": pt,
                "claimant_statement": stmt,
                "adjuster_notes": notes,
                "fraud": "yes" if is_fraud else "no",
            }
        )
    with open(os.path.join(OUT, "insurance_claims.csv"), "w", newline="") as f:
        w = csv.DictWriter(
            f, fieldnames=["claim_id", "filed_date", "policy_type", "claimant_statement", "adjuster_notes", "fraud"]
        )
        w.writeheader()
        w.writerows(rows)
    return len(rows), n_fraud


# ---------------------------------------------------------------------------
# 3. job postings -> seniority (junior/mid/senior), remote (true/false)
# ---------------------------------------------------------------------------
def make_jobs(rng):
    roles = [
        "Software Engineer",
        "Data Analyst",
        "Product Designer",
        "DevOps Engineer",
        "Marketing Manager",
        "Accountant",
        "Data Scientist",
        "QA Engineer",
        "Account Executive",
    ]
    prefix = {
        "junior": ["Junior", "Associate", "Entry-level", "Graduate", ""],
        "mid": ["", "", "Mid-level", "II"],
        "senior": ["Senior", "Lead", "Staff", "Principal", "Sr."],
    }
    years = {
        "junior": [
            "0-2 years of experience",
            "no prior experience required",
            "1+ year of experience",
            "recent graduates welcome",
        ],
        "mid": [
            "3-5 years of experience",
            "3+ years of relevant experience",
            "at least 4 years of experience",
            "2-5 years in a similar role",
        ],
        "senior": [
            "7+ years of experience",
            "8+ years of relevant experience",
            "10 years in the field",
            "6+ years, including team leadership",
        ],
    }
    duties = {
        "junior": [
            "learn from experienced teammates",
            "support the team with day-to-day tasks",
            "work on well-scoped tickets",
            "participate in our mentorship program",
        ],
        "mid": [
            "own features end to end",
            "collaborate with product and design",
            "improve our processes",
            "work independently on medium-sized projects",
        ],
        "senior": [
            "mentor other team members",
            "set technical direction",
            "lead cross-team initiatives",
            "own the roadmap for your area",
            "hire and grow the team",
        ],
    }
    cities = [
        "Berlin, Germany",
        "Austin, TX",
        "London, UK",
        "Toronto, ON",
        "Bangalore, India",
        "Lisbon, Portugal",
        "New York, NY",
        "Sydney, Australia",
        "Warsaw, Poland",
    ]
    remote_phr_yes = [
        "This is a fully remote position.",
        "Work from anywhere in the time zone.",
        "Remote-first team with quarterly offsites.",
        "100% remote.",
    ]
    remote_phr_no = [
        "This role is on-site.",
        "Hybrid: 3 days a week in the office.",
        "You will work from our downtown office.",
        "Office-based, relocation support available.",
    ]
    comp = [
        "Competitive salary and equity.",
        "Great benefits and 30 days PTO.",
        "Health insurance included.",
        "Annual learning budget.",
        "",
    ]
    sen_labels = ["junior"] * 80 + ["mid"] * 100 + ["senior"] * 80
    rng.shuffle(sen_labels)
    rows = []
    for sen in sen_labels:
        role = rng.choice(roles)
        p = rng.choice(prefix[sen])
        if p == "II":
            title = f"{role} II"
        else:
            title = f"{p} {role}".strip()
        remote = rng.random() < 0.4
        desc = (
            f"We are hiring a {title.lower() if rng.random() < 0.5 else role.lower()} to {{}} and {{}}. ".format(
                *rng.sample(duties[sen], 2)
            )
            + f"Requirements: {rng.choice(years[sen])}. "
            f"{rng.choice(remote_phr_yes if remote else remote_phr_no)} {rng.choice(comp)}"
        ).strip()
        # a few titles don't reveal seniority
        if rng.random() < 0.25:
            title = role
        location = "Remote" if (remote and rng.random() < 0.5) else rng.choice(cities)
        rows.append(
            {
                "title": title,
                "description": desc,
                "location": location,
                "seniority": sen,
                "remote": "true" if remote else "false",
            }
        )
    with open(os.path.join(OUT, "job_postings.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["title", "description", "location", "seniority", "remote"])
        w.writeheader()
        w.writerows(rows)
    return len(rows)


# ---------------------------------------------------------------------------
# 4. question / context / answer (generation)
# ---------------------------------------------------------------------------
def make_qa(rng):
    people = [
        "Ada Moreno",
        "Kofi Mensah",
        "Lena Vogel",
        "Hiro Tanaka",
        "Sofia Rossi",
        "Nadia Haddad",
        "Peter Olsen",
        "Maya Cohen",
        "Arjun Rao",
        "Grace Liu",
    ]
    towns = ["Elmsford", "Port Valen", "Karsby", "Mirefield", "Oakhaven", "Silverbay", "Dunmore", "Brightwater"]
    things = ["bridge", "library", "observatory", "clock tower", "railway station", "museum", "lighthouse"]
    companies = ["Fenwick Tools", "BlueHarbor Foods", "Quanta Rail", "Northstar Textiles", "Velo Motors"]
    products = ["a folding bicycle", "canned sardines", "a night train service", "wool blankets", "electric scooters"]
    rows = []
    for _ in range(220):
        kind = rng.randint(0, 3)
        if kind == 0:
            t, th, yr, who = rng.choice(towns), rng.choice(things), rng.randint(1820, 1990), rng.choice(people)
            ctx = (
                f"The {th} in {t} was completed in {yr}. It was designed by the architect {who}, "
                f"who also worked on several public buildings in the region. "
                f"Today it is one of the most visited sites in {t}."
            )
            q, a = rng.choice(
                [
                    (f"When was the {th} in {t} completed?", str(yr)),
                    (f"Who designed the {th} in {t}?", who),
                    (f"In which town is the {th} designed by {who}?", t),
                ]
            )
        elif kind == 1:
            c, p, yr, ceo = rng.choice(companies), rng.choice(products), rng.randint(1950, 2020), rng.choice(people)
            emp = rng.choice([120, 450, 900, 2300, 7800])
            ctx = (
                f"{c} was founded in {yr} and is best known for {p}. The company employs about {emp} people "
                f"and is currently led by chief executive {ceo}."
            )
            q, a = rng.choice(
                [
                    (f"What is {c} best known for?", p),
                    (f"Who leads {c}?", ceo),
                    (f"How many people does {c} employ?", f"about {emp}"),
                    (f"In what year was {c} founded?", str(yr)),
                ]
            )
        elif kind == 2:
            who, t = rng.choice(people), rng.choice(towns)
            sport = rng.choice(["marathon", "chess championship", "rowing regatta", "cycling race"])
            yr, place = rng.randint(1990, 2023), rng.choice(["first", "second", "third"])
            ctx = (
                f"In {yr}, {who} took part in the {t} {sport}. After a difficult start, "
                f"{who.split()[0]} finished in {place} place, the best result of the season."
            )
            q, a = rng.choice(
                [
                    (f"Where did {who} finish in the {t} {sport}?", f"{place} place"),
                    (f"In which year did {who} compete in the {t} {sport}?", str(yr)),
                ]
            )
        else:
            t = rng.choice(towns)
            pop = rng.randint(2000, 90000)
            river = rng.choice(["Aller", "Mose", "Tarn", "Wend", "Ouse"])
            ctx = (
                f"{t} is a town on the river {river} with a population of {pop:,}. "
                f"It is known for its weekly market and an annual autumn festival."
            )
            q, a = rng.choice(
                [
                    (f"Which river is {t} on?", f"the {river}"),
                    (f"What is the population of {t}?", f"{pop:,}"),
                    (f"What is {t} known for?", "its weekly market and an annual autumn festival"),
                ]
            )
        rows.append({"question": q, "context": ctx, "answer": a})
    with open(os.path.join(OUT, "qa_pairs.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return len(rows)


if __name__ == "__main__":
    print("customer_emails.csv", make_emails(random.Random(101)))
    print("insurance_claims.csv", make_claims(random.Random(202)))
    print("job_postings.csv", make_jobs(random.Random(303)))
    print("qa_pairs.jsonl", make_qa(random.Random(404)))
