"""Synthetic stock archive in Kaggle's layout: `Stocks/<t>.us.txt`, `ETFs/<t>.us.txt`, CRLF, exact header.

Good tickers are geometric random walks over business days ending on the archive's last date,
with volatility clustering (GARCH(1,1)) and a weak day-to-day momentum in returns, so a forecaster
has a little to learn, as on real data. Beside them, the archive's bad-file kinds, each in its own
file: a 0-byte file, a single-row file, impossible prices (Low > High, a price ≤ 0), an illiquid
ticker with many Volume=0 days and a history too short for the model. Deterministic per seed;
`MLOPS_SYNTHETIC_SIZE` picks how many tickers and days.

`kaggle` is the real archive's size and shape (times MLOPS_SYNTHETIC_SCALE): 7,195 stock and 1,344 ETF
files whose histories are as uneven as the archive's (a few rows to 50 years, median about 1,150 days),
with its defects spread through them at about its rates: empty files, one-row files, histories shorter
than a trading year, illiquid tickers with Volume=0 days, impossible prices. The walks are computed a
block of tickers at a time (one vectorised GARCH recursion per block).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlops_onnx.settings import Settings

HEADER = "Date,Open,High,Low,Close,Volume,OpenInt"
LAST_DATE = "2017-11-10"
STOCKS = ("acme", "bolt", "cobl", "dyna", "echo", "flux", "grid", "hale", "iris", "jolt", "kite", "lumo")
ETFS = ("mkt", "bond", "gold", "tech")
# MLOPS_SYNTHETIC_SIZE -> (stock tickers, ETF tickers, business days of history)
SIZES = {"small": (6, 2, 700), "demo": (8, 2, 1500)}
# `kaggle`: the archive's file counts; history lengths log-normal (median, sigma) within [1, KAGGLE_MAX_DAYS].
KAGGLE_FILES = (7195, 1344)
KAGGLE_DAYS = (1150, 0.9)
KAGGLE_MAX_DAYS = 12_600  # 1962-01-02 to the archive's last date, in business days
KAGGLE_DEFECTS = {"empty": 0.004, "one_row": 0.002, "illiquid": 0.08, "impossible": 0.002}
BLOCK = 256  # tickers whose walks are computed together
BAD_FILES = {
    "Stocks/empt.us.txt": "0-byte file, no header",
    "Stocks/solo.us.txt": "a single data row",
    "Stocks/badp.us.txt": "impossible prices: Low > High and a Close <= 0",
    "Stocks/illq.us.txt": "illiquid: Volume=0 on 30% of the days, stale prices",
    "ETFs/shrt.us.txt": "history too short for the window and the split",
}


def _price(value: float) -> str:
    """The archive's minimal decimal form: `10`, `10.12`, `0.4239`."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


def random_walk(rng: np.random.Generator, days: int) -> pd.DataFrame:
    """One ticker's daily OHLCV: GARCH(1,1) log returns with weak momentum, business-day dates."""
    sigma_long = rng.uniform(0.008, 0.025, 1)
    momentum = rng.uniform(0.05, 0.15, 1)
    drift = rng.uniform(-0.0002, 0.0006, 1)
    shocks = rng.standard_t(5, (1, days))
    returns = _garch_returns(shocks, sigma_long, momentum, drift)
    columns = _ohlcv(rng, returns, sigma_long, rng.uniform(10, 200, 1))
    return _frame({k: v[0] for k, v in columns.items()})


def _garch_returns(shocks: np.ndarray, sigma_long: np.ndarray, momentum: np.ndarray, drift: np.ndarray) -> np.ndarray:
    """Log returns [tickers, days] from Student-t shocks: GARCH(1,1) volatility, AR(1) momentum; one step
    of the recursion for every ticker at once."""
    alpha, beta = 0.08, 0.9
    returns = np.empty_like(shocks)
    variance, previous = sigma_long**2, np.zeros(len(shocks))
    for t in range(shocks.shape[1]):
        variance = sigma_long**2 * (1 - alpha - beta) + alpha * previous**2 + beta * variance
        previous = drift + momentum * previous + np.sqrt(variance) * shocks[:, t] / np.sqrt(5 / 3)  # unit variance
        returns[:, t] = previous
    return returns


def _ohlcv(rng: np.random.Generator, returns: np.ndarray, sigma_long: np.ndarray, start: np.ndarray) -> dict:
    """Open, high, low, close and volume [tickers, days] around the closes the returns make."""
    days = returns.shape[1]
    close = start[:, None] * np.exp(np.cumsum(returns, axis=1))
    gap = np.exp(rng.normal(0, 0.3, returns.shape) * np.abs(returns))
    open_ = np.concatenate([close[:, :1] / np.exp(returns[:, :1]), close[:, :-1]], axis=1) * gap
    spread = np.abs(rng.normal(0, sigma_long[:, None, None] / 2, (len(returns), 2, days)))
    high = np.maximum(open_, close) * np.exp(spread[:, 0])
    low = np.minimum(open_, close) * np.exp(-spread[:, 1])
    volume = np.round(rng.lognormal(13, 0.4, returns.shape) * (1 + 20 * np.abs(returns))).astype(np.int64)
    return {"Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume}


def _frame(columns: dict, calendar: np.ndarray | None = None) -> pd.DataFrame:
    """A ticker's frame, its days the last business days up to the archive's last date (from `calendar`,
    the archive's business days as text, when given: building the dates anew for every ticker is slow)."""
    days = len(columns["Close"])
    if calendar is None:
        calendar = business_days(days)
    return pd.DataFrame({"Date": calendar[len(calendar) - days :], **columns})


def business_days(days: int) -> np.ndarray:
    return np.asarray(pd.bdate_range(end=LAST_DATE, periods=days).strftime("%Y-%m-%d"))


def write_ticker(path: Path, frame: pd.DataFrame) -> None:
    """Write in the archive's format: exact header, minimal decimals, OpenInt 0, CRLF with a trailing CRLF."""
    columns = [frame["Date"].astype(str).tolist()]
    columns += [_prices(frame[c].to_numpy(dtype=np.float64)) for c in ("Open", "High", "Low", "Close")]
    columns.append(list(map(str, frame["Volume"].to_numpy(dtype=np.int64).tolist())))
    columns.append(["0"] * len(frame))
    lines = [HEADER, *map(",".join, zip(*columns))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))


# ".4239", ".42", "" for 4239, 4200, 0 ten-thousandths: the fraction part of `_price`, looked up.
_FRACTIONS = np.array([f".{i:04d}".rstrip("0").rstrip(".") for i in range(10_000)], dtype=object)


def _prices(values: np.ndarray) -> list[str]:
    """`_price` of every value, vectorised: whole part and four decimals, trailing zeros dropped."""
    ten_thousandths = np.rint(np.abs(values) * 10_000).astype(np.int64)
    whole = map(str, (ten_thousandths // 10_000).tolist())
    text = list(map(str.__add__, whole, _FRACTIONS[ten_thousandths % 10_000].tolist()))
    negative = (values < 0) & (ten_thousandths > 0)
    return [f"-{t}" if n else t for t, n in zip(text, negative)] if negative.any() else text


def _bad_files(dest: Path, rng: np.random.Generator) -> None:
    (dest / "Stocks").mkdir(parents=True, exist_ok=True)
    (dest / "Stocks/empt.us.txt").write_bytes(b"")
    write_ticker(dest / "Stocks/solo.us.txt", random_walk(rng, 1))
    impossible = random_walk(rng, 400)
    high, low = impossible.at[100, "High"], impossible.at[100, "Low"]
    impossible.loc[100, ["High", "Low"]] = [low, high]  # Low > High
    impossible.loc[250, "Close"] = 0.0
    write_ticker(dest / "Stocks/badp.us.txt", impossible)
    illiquid = random_walk(rng, 400)
    _make_illiquid(illiquid, rng, 0.3)  # a day without trades repeats the previous close
    write_ticker(dest / "Stocks/illq.us.txt", illiquid)
    write_ticker(dest / "ETFs/shrt.us.txt", random_walk(rng, 40))


def generate_stocks(dest: Path, rng: np.random.Generator, settings: Settings) -> dict:
    if settings.synthetic_size == "kaggle":
        return generate_kaggle_archive(dest, rng, settings.synthetic_scale)
    stocks, etfs, days = SIZES[settings.synthetic_size]
    tickers = [f"Stocks/{t}.us.txt" for t in STOCKS[:stocks]] + [f"ETFs/{t}.us.txt" for t in ETFS[:etfs]]
    for name in tickers:
        write_ticker(dest / name, random_walk(rng, days))
    _bad_files(dest, rng)
    return {"good_files": len(tickers), "days": days, "bad_files": BAD_FILES}


def kaggle_names(scale: float) -> list[str]:
    """The archive's files at `scale`: `Stocks/aaaa.us.txt` … then `ETFs/…`, four-letter names, none repeated."""
    stocks, etfs = (max(1, round(n * scale)) for n in KAGGLE_FILES)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    index = np.arange(stocks + etfs)
    codes = ["".join(row) for row in letters[np.stack([index // 26**k % 26 for k in (3, 2, 1, 0)], axis=1)]]
    return [f"Stocks/{c}.us.txt" for c in codes[:stocks]] + [f"ETFs/{c}.us.txt" for c in codes[stocks:]]


def generate_kaggle_archive(dest: Path, rng: np.random.Generator, scale: float = 1.0) -> dict:
    """The archive at its real size times `scale` (module docstring); returns what was written, by kind."""
    names = kaggle_names(scale)
    median, sigma = KAGGLE_DAYS
    days = np.clip(np.rint(rng.lognormal(np.log(median), sigma, len(names))), 2, KAGGLE_MAX_DAYS).astype(int)
    # Each defect on its own files, at least one of each at any scale.
    order, defect, taken = rng.permutation(len(names)), {}, 0
    for kind, share in KAGGLE_DEFECTS.items():
        count = max(1, round(share * len(names)))
        defect[kind] = np.isin(np.arange(len(names)), order[taken : taken + count])
        taken += count
    days[defect["one_row"]] = 1
    written = {"files": len(names), "rows": 0, "empty": 0, "one_row": 0, "illiquid": 0, "impossible": 0}
    calendar = business_days(KAGGLE_MAX_DAYS)
    by_length = np.argsort(days, kind="stable")  # a block's walks are as long as its longest history
    for start in range(0, len(names), BLOCK):
        block = by_length[start : start + BLOCK]
        k, longest = len(block), int(days[block].max())
        sigma_long = rng.uniform(0.008, 0.025, k)
        returns = _garch_returns(
            rng.standard_t(5, (k, longest)), sigma_long, rng.uniform(0.05, 0.15, k), rng.uniform(-0.0002, 0.0006, k)
        )
        columns = _ohlcv(rng, returns, sigma_long, rng.uniform(1, 200, k))
        for i, row in enumerate(block):
            name = names[row]
            if defect["empty"][row]:
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                (dest / name).write_bytes(b"")
                written["empty"] += 1
                continue
            frame = _frame({c: v[i, longest - days[row] :] for c, v in columns.items()}, calendar)  # its last days
            if defect["illiquid"][row]:
                _make_illiquid(frame, rng, rng.uniform(0.05, 0.4))
                written["illiquid"] += 1
            if defect["impossible"][row]:
                at = int(rng.integers(0, len(frame)))
                frame.loc[at, ["High", "Low"]] = frame.loc[at, ["Low", "High"]].to_numpy()
                written["impossible"] += 1
            written["one_row"] += int(len(frame) == 1)
            written["rows"] += len(frame)
            write_ticker(dest / name, frame)
    written["shorter_than_a_year"] = int(np.sum((days < 250) & ~defect["empty"]))
    return {"size": "kaggle", "scale": scale, **written}


def _make_illiquid(frame: pd.DataFrame, rng: np.random.Generator, share: float) -> None:
    """Volume=0 on about `share` of the days (never the first), the prices then stale at the last close."""
    stale = rng.random(len(frame)) < share
    stale[0] = False
    frame.loc[stale, "Volume"] = 0
    for column in ("Open", "High", "Low", "Close"):
        frame.loc[stale, column] = np.nan
    frame["Close"] = frame["Close"].ffill()
    for column in ("Open", "High", "Low"):
        frame[column] = frame[column].fillna(frame["Close"])
