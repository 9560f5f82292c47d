"""Synthetic stock archive in Kaggle's layout: `Stocks/<t>.us.txt`, `ETFs/<t>.us.txt`, CRLF, exact header.

Good tickers are geometric random walks over business days ending on the archive's last date,
with volatility clustering (GARCH(1,1)) and a weak day-to-day momentum in returns, so a forecaster
has a little to learn, as on real data. Beside them, the archive's bad-file kinds, each in its own
file: a 0-byte file, a single-row file, impossible prices (Low > High, a price ≤ 0), an illiquid
ticker with many Volume=0 days and a history too short for the model. Deterministic per seed;
`MLOPS_SYNTHETIC_SIZE` picks how many tickers and days.
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
SIZES = {"small": (6, 2, 700), "demo": (8, 2, 1500), "full": (12, 4, 3000)}
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
    sigma_long = rng.uniform(0.008, 0.025)
    alpha, beta, momentum = 0.08, 0.9, rng.uniform(0.05, 0.15)
    drift = rng.uniform(-0.0002, 0.0006)
    returns, variance = np.empty(days), sigma_long**2
    previous = 0.0
    for t in range(days):
        variance = sigma_long**2 * (1 - alpha - beta) + alpha * previous**2 + beta * variance
        previous = drift + momentum * previous + np.sqrt(variance) * rng.standard_t(5) / np.sqrt(5 / 3)
        returns[t] = previous
    close = rng.uniform(10, 200) * np.exp(np.cumsum(returns))
    gap = np.exp(rng.normal(0, 0.3, days) * np.abs(returns))
    open_ = np.concatenate([[close[0] / np.exp(returns[0])], close[:-1]]) * gap
    spread = np.abs(rng.normal(0, sigma_long / 2, (2, days)))
    high = np.maximum(open_, close) * np.exp(spread[0])
    low = np.minimum(open_, close) * np.exp(-spread[1])
    volume = np.round(rng.lognormal(13, 0.4, days) * (1 + 20 * np.abs(returns))).astype(np.int64)
    dates = pd.bdate_range(end=LAST_DATE, periods=days)
    return pd.DataFrame(
        {"Date": dates.strftime("%Y-%m-%d"), "Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume}
    )


def write_ticker(path: Path, frame: pd.DataFrame) -> None:
    """Write in the archive's format: exact header, minimal decimals, OpenInt 0, CRLF with a trailing CRLF."""
    lines = [HEADER]
    for row in frame.itertuples(index=False):
        prices = ",".join(_price(v) for v in (row.Open, row.High, row.Low, row.Close))
        lines.append(f"{row.Date},{prices},{int(row.Volume)},0")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))


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
    stale = rng.random(len(illiquid)) < 0.3
    stale[0] = False
    illiquid.loc[stale, "Volume"] = 0
    for column in ("Open", "High", "Low", "Close"):  # a day without trades repeats the previous close
        illiquid.loc[stale, column] = np.nan
    illiquid["Close"] = illiquid["Close"].ffill()
    for column in ("Open", "High", "Low"):
        illiquid[column] = illiquid[column].fillna(illiquid["Close"])
    write_ticker(dest / "Stocks/illq.us.txt", illiquid)
    write_ticker(dest / "ETFs/shrt.us.txt", random_walk(rng, 40))


def generate_stocks(dest: Path, rng: np.random.Generator, settings: Settings) -> dict:
    stocks, etfs, days = SIZES[settings.synthetic_size]
    tickers = [f"Stocks/{t}.us.txt" for t in STOCKS[:stocks]] + [f"ETFs/{t}.us.txt" for t in ETFS[:etfs]]
    for name in tickers:
        write_ticker(dest / name, random_walk(rng, days))
    _bad_files(dest, rng)
    return {"good_files": len(tickers), "days": days, "bad_files": BAD_FILES}
