"""Synthetic fake-and-real news (`Fake.csv`, `True.csv`) and LIAR (`train.tsv`, `valid.tsv`).

Same schema and the same quirks as the real files: Reuters datelines and curly apostrophes in the
True texts only, subjects that differ by class, several date formats (one cell holding a URL),
trailing spaces, an exact duplicate article with another subject and date, a single-space text, a
title with leading spaces, an embedded newline. The classes are learnable from the words
themselves (a few class-specific words mixed into shared ones), so a model trained on cleaned
text passes the gate as it does on real data, but not perfectly: a short article holds few telling
words, and a few articles are written in the other class's style (`STYLE_SWAP`), as some real
articles read like the other kind. Deterministic per seed; `MLOPS_SYNTHETIC_SIZE` picks the size
(`kaggle`: the real files' 23,481 + 21,417 articles of realistic length and LIAR's 10,240 + 1,284
statements). The texts are drawn with numpy many at a time (`_Writer`).
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from mlops_onnx.settings import Settings

# (Fake.csv, True.csv) and (LIAR train.tsv, valid.tsv) rows per MLOPS_SYNTHETIC_SIZE; `kaggle`: the real counts.
NEWS_ROWS = {"small": (320, 300), "demo": (1200, 1100), "kaggle": (23481, 21417)}
LIAR_ROWS = {"small": (240, 60), "demo": (300, 100), "kaggle": (10240, 1284)}
# Words in an article's body: uniform in [low, high) for the small sizes; at the kaggle size log-normal around
# the real files' median (about 330 words; mean about 400, a long tail of long reads), within [20, 3000].
BODY_WORDS = (40, 160)
KAGGLE_BODY_WORDS = (330, 0.6)
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


class _Writer:
    """Texts from index arrays: every word of the three vocabularies in four forms (as is, capitalised to
    start a sentence, with a full stop to end one, both), so many texts are drawn at once with numpy and
    only joined one by one."""

    def __init__(self) -> None:
        words = list(dict.fromkeys(SHARED_WORDS + FAKE_WORDS + TRUE_WORDS))
        index = {w: i for i, w in enumerate(words)}
        self.shared, self.fake, self.true = (
            np.array([index[w] for w in v]) for v in (SHARED_WORDS, FAKE_WORDS, TRUE_WORDS)
        )
        forms = [f for w in words for f in (w, w.capitalize(), w + ".", w.capitalize() + ".")]
        self.forms = np.array(forms, dtype=object)

    def texts(
        self, rng: np.random.Generator, lengths: np.ndarray, true_style: np.ndarray, share: float, form: str
    ) -> list[str]:
        """One text per length: each word from its text's own vocabulary (`true_style`: the True one) with
        probability `share`, else from the shared one. `form`: "sentences" (8 to 17 words, capitalised, full
        stops), "title" (every word capitalised) or "first" (the first word capitalised)."""
        total = int(lengths.sum())
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        style = np.repeat(true_style, lengths)
        u = rng.random(total)
        own = np.where(style, self.true[(u * len(self.true)).astype(int)], self.fake[(u * len(self.fake)).astype(int)])
        common = self.shared[rng.integers(0, len(self.shared), total)]
        words = np.where(rng.random(total) < share, own, common)
        starts = np.zeros(total, dtype=bool)
        starts[offsets[lengths > 0]] = True
        if form == "sentences":
            breaks = np.cumsum(rng.integers(8, 18, total // 8 + 1))
            starts[breaks[breaks < total]] = True
            ends = np.append(starts[1:], True)
            shape = starts.astype(int) + 2 * ends
        else:
            shape = np.ones(total, dtype=int) if form == "title" else starts.astype(int)
        tokens = self.forms[words * 4 + shape].tolist()
        return [" ".join(tokens[o : o + n]) for o, n in zip(offsets, lengths)]


_WRITER = _Writer()


def _lengths(rng: np.random.Generator, n: int, size: str) -> np.ndarray:
    if size == "kaggle":
        median, sigma = KAGGLE_BODY_WORDS
        return np.clip(np.rint(rng.lognormal(np.log(median), sigma, n)), 20, 3000).astype(np.int64)
    return rng.integers(*BODY_WORDS, n)


def _date_text(day: date, style: int) -> str:
    """The real files' date styles: "December 31, 2017", "Dec 31, 2017", "31-Dec-17", "2017-12-31"."""
    return [f"{day:%B} {day.day}, {day.year}", f"{day:%b} {day.day}, {day.year}", f"{day:%d-%b-%y}", day.isoformat()][
        style
    ]


def _articles(rng: np.random.Generator, n: int, fake: bool, size: str) -> list[list[str]]:
    """`n` rows of Fake.csv (`fake`) or True.csv: title, text, subject, date."""
    swapped = rng.random(n) < STYLE_SWAP
    true_style = swapped if fake else ~swapped
    titles = _WRITER.texts(rng, rng.integers(6, 13, n), true_style, TITLE_SHARE, "title" if fake else "first")
    bodies = _WRITER.texts(rng, _lengths(rng, n, size), true_style, BODY_SHARE, "sentences")
    days = [date(2015, 3, 31) + timedelta(days=int(d)) for d in rng.integers(0, 1000, n)]
    if fake:
        video, wire, image = (rng.random(n) < p for p in (0.3, 0.1, 0.3))
        styles, subjects = rng.integers(0, 4, n), rng.integers(0, len(FAKE_SUBJECTS), n)
        return [
            [
                title + (" (VIDEO)" if video[i] else ""),
                ("21st Century Wire says " if wire[i] else "")
                + body.replace(" trump ", " Trump s ")  # the fake sites' scrape lost its apostrophes
                + (" Featured image via Chip Somodevilla/Getty Images" if image[i] else ""),
                FAKE_SUBJECTS[subjects[i]],
                _date_text(days[i], int(styles[i])),
            ]
            for i, (title, body) in enumerate(zip(titles, bodies))
        ]
    cities, subjects = rng.integers(0, len(CITIES), n), rng.integers(0, len(TRUE_SUBJECTS), n)
    return [
        [
            title,
            f"{CITIES[cities[i]]} (Reuters) - " + body.replace(" trump ", " Trump\u2019s "),  # curly apostrophes
            TRUE_SUBJECTS[subjects[i]],
            _date_text(days[i], 0) + " ",  # the real True.csv dates end with a space
        ]
        for i, (title, body) in enumerate(zip(titles, bodies))
    ]


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(["title", "text", "subject", "date"])
        writer.writerows(rows)


def generate_news(dest: Path, rng: np.random.Generator, settings: Settings) -> dict:
    from mlops_onnx.sources.synthetic import scaled

    n_fake, n_true = scaled(NEWS_ROWS, settings)
    fake = _articles(rng, n_fake - 1, True, settings.synthetic_size)
    true = _articles(rng, n_true, False, settings.synthetic_size)
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


def generate_liar(dest: Path, rng: np.random.Generator, settings: Settings) -> dict:
    from mlops_onnx.sources.synthetic import scaled

    rows = {}
    start = 1
    for name, n in zip(("train.tsv", "valid.tsv"), scaled(LIAR_ROWS, settings)):
        labels = rng.integers(0, len(LIAR_LABELS), n)
        statements = _WRITER.texts(rng, rng.integers(8, 25, n), labels >= 3, 0.2, "sentences")
        counts = rng.integers(0, 20, (n, 5)).astype(str).tolist()
        lines = [
            "\t".join(
                [
                    f"{start + i}.json",
                    LIAR_LABELS[labels[i]],
                    statements[i],
                    "economy,taxes",
                    "jane-doe",
                    "State senator",
                    "Ohio",
                    ["republican", "democrat", "none"][(start + i) % 3],
                    *counts[i],
                    "a news release",
                ]
            )
            for i in range(n)
        ]
        (dest / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        rows[name] = n
        start += n
    return {"rows": rows}
