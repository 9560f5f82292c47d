"""Synthetic fake-and-real news (`Fake.csv`, `True.csv`) and LIAR (`train.tsv`, `valid.tsv`).

Same schema and the same quirks as the real files: Reuters datelines and curly apostrophes in the
True texts only, subjects that differ by class, several date formats (one cell holding a URL),
trailing spaces, an exact duplicate article with another subject and date, a single-space text, a
title with leading spaces, an embedded newline. The classes are learnable from the words
themselves (a few class-specific words mixed into shared ones), so a model trained on cleaned
text passes the gate as it does on real data, but not perfectly: a short article holds few telling
words, and a few articles are written in the other class's style (`STYLE_SWAP`), as some real
articles read like the other kind. Deterministic per seed; `MLOPS_SYNTHETIC_SIZE` picks the size.
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from mlops_onnx.settings import Settings

NEWS_ROWS = {"small": (320, 300), "demo": (1200, 1100), "full": (2500, 2400)}  # (Fake.csv, True.csv)
LIAR_ROWS = {"small": (240, 60), "demo": (300, 100), "full": (1200, 160)}  # (train.tsv, valid.tsv)
TITLE_SHARE, BODY_SHARE = 0.15, 0.06  # chance that a word comes from the class's own vocabulary
STYLE_SWAP = 0.03  # share of articles written with the other class's words


def _vocabulary(words: str) -> list[str]:
    return words.split()


SHARED_WORDS = _vocabulary("""the a of to and in that for on with as by at from his her their this it was is be has have
said says president trump clinton obama government state states people house senate congress republican
democrat election campaign vote voters law court official officials country new year week white policy
security military police million percent tax health care plan bill report media news public party members
former national federal city border immigration foreign leader leaders meeting support against after
before during over about more than when would could told we they it would also two three first""")
FAKE_WORDS = _vocabulary("""shocking outrage disgusting insane exposed breaking liberal libtards mainstream hypocrite
lies lying crooked hilarious epic destroys slams meltdown unhinged busted truth sheeple elite globalist
propaganda scandal traitor corrupt rigged disgrace embarrassing wow literally bombshell furious idiot
hateful deranged clueless pathetic nasty sick totally absolutely massive wake watch video tweet
thug radical snowflakes""")
TRUE_WORDS = _vocabulary("""ministry spokesman spokeswoman parliament negotiations statement officials tuesday
wednesday thursday monday friday percent agreement committee legislation sanctions delegation analysts
economy quarterly forecast lawmakers coalition minister diplomats talks summit proposal regulators
treaty testimony provisional ruling approved estimated according representatives bilateral budget
measures implementation consultations envoy agency authorities referendum""")
CITIES = ["WASHINGTON", "NEW YORK", "LONDON", "BEIJING", "MOSCOW", "BRUSSELS", "SAN JUAN, Puerto Rico"]
FAKE_SUBJECTS = ["News", "politics", "left-news", "Government News", "US_News", "Middle-east"]
TRUE_SUBJECTS = ["politicsNews", "worldnews"]
LIAR_LABELS = ["pants-fire", "false", "barely-true", "half-true", "mostly-true", "true"]


def _words(rng: np.random.Generator, n: int, own: list[str], share: float) -> list[str]:
    """n words: each from the class's own vocabulary with probability `share`, else from the shared one."""
    mine = rng.random(n) < share
    picks = [own[i] for i in rng.integers(0, len(own), n)]
    common = [SHARED_WORDS[i] for i in rng.integers(0, len(SHARED_WORDS), n)]
    return [p if m else c for p, m, c in zip(picks, mine, common)]


def _sentences(words: list[str], rng: np.random.Generator) -> str:
    out, start = [], 0
    while start < len(words):
        end = start + int(rng.integers(8, 18))
        chunk = words[start:end]
        out.append(" ".join([chunk[0].capitalize(), *chunk[1:]]) + ".")
        start = end
    return " ".join(out)


def _day(rng: np.random.Generator) -> date:
    return date(2015, 3, 31) + timedelta(days=int(rng.integers(0, 1000)))


def _date_text(day: date, style: int) -> str:
    """The real files' date styles: "December 31, 2017", "Dec 31, 2017", "31-Dec-17", "2017-12-31"."""
    return [f"{day:%B} {day.day}, {day.year}", f"{day:%b} {day.day}, {day.year}", f"{day:%d-%b-%y}", day.isoformat()][
        style
    ]


def _style(rng: np.random.Generator, own: list[str], other: list[str]) -> list[str]:
    return other if rng.random() < STYLE_SWAP else own


def _fake_article(rng: np.random.Generator) -> list[str]:
    words = _style(rng, FAKE_WORDS, TRUE_WORDS)
    title = " ".join(_words(rng, int(rng.integers(6, 13)), words, TITLE_SHARE)).title()
    if rng.random() < 0.3:
        title += " (VIDEO)"
    body = _sentences(_words(rng, int(rng.integers(40, 160)), words, BODY_SHARE), rng)
    body = body.replace(" trump ", " Trump s ")  # the fake sites' scrape lost its apostrophes
    if rng.random() < 0.1:
        body = "21st Century Wire says " + body
    if rng.random() < 0.3:
        body += " Featured image via Chip Somodevilla/Getty Images"
    day = _date_text(_day(rng), int(rng.integers(0, 4)))
    return [title, body, FAKE_SUBJECTS[int(rng.integers(0, len(FAKE_SUBJECTS)))], day]


def _true_article(rng: np.random.Generator) -> list[str]:
    words = _style(rng, TRUE_WORDS, FAKE_WORDS)
    title = " ".join(_words(rng, int(rng.integers(6, 13)), words, TITLE_SHARE)).capitalize()
    body = _sentences(_words(rng, int(rng.integers(40, 160)), words, BODY_SHARE), rng)
    body = body.replace(" trump ", " Trump\u2019s ")  # Reuters keeps its (curly) apostrophes
    body = f"{CITIES[int(rng.integers(0, len(CITIES)))]} (Reuters) - {body}"
    day = _date_text(_day(rng), 0) + " "  # the real True.csv dates end with a space
    return [title, body, TRUE_SUBJECTS[int(rng.integers(0, len(TRUE_SUBJECTS)))], day]


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(["title", "text", "subject", "date"])
        writer.writerows(rows)


def generate_news(dest: Path, rng: np.random.Generator, settings: Settings) -> dict:
    n_fake, n_true = NEWS_ROWS[settings.synthetic_size]
    fake = [_fake_article(rng) for _ in range(n_fake - 1)]
    true = [_true_article(rng) for _ in range(n_true)]
    # The real files' quirks, once each.
    fake.append([fake[0][0], fake[0][1], "politics", "Dec 31, 2017"])  # duplicate: other subject and date
    fake[1][1] = " "  # a single-space text; the title carries the article
    fake[2][0] = "   " + fake[2][0]  # leading spaces in a title
    fake[3][3] = "https://100percentfedup.com/video-hillary-asked-about-trump/"  # a URL in a date cell
    fake[4][1] = fake[4][1].replace(". ", ".\n", 1)  # an embedded newline
    true[0][1] = true[0][1].replace(" said ", " said \u201cwe agree\u201d ", 1)  # curly quotes
    _write_csv(dest / "Fake.csv", fake)
    _write_csv(dest / "True.csv", true)
    return {"rows": {"Fake.csv": len(fake), "True.csv": len(true)}}


def _liar_row(rng: np.random.Generator, index: int) -> list[str]:
    label = LIAR_LABELS[int(rng.integers(0, len(LIAR_LABELS)))]
    own = FAKE_WORDS if LIAR_LABELS.index(label) < 3 else TRUE_WORDS
    statement = _sentences(_words(rng, int(rng.integers(8, 25)), own, 0.2), rng)
    counts = [str(int(c)) for c in rng.integers(0, 20, 5)]
    return [
        f"{index}.json",
        label,
        statement,
        "economy,taxes",
        "jane-doe",
        "State senator",
        "Ohio",
        ["republican", "democrat", "none"][index % 3],
        *counts,
        "a news release",
    ]


def generate_liar(dest: Path, rng: np.random.Generator, settings: Settings) -> dict:
    rows = {}
    start = 1
    for name, n in zip(("train.tsv", "valid.tsv"), LIAR_ROWS[settings.synthetic_size]):
        lines = ["\t".join(_liar_row(rng, start + i)) for i in range(n)]
        (dest / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        rows[name] = n
        start += n
    return {"rows": rows}
