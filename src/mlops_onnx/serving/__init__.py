"""Serving: the fake-news FastAPI app and the stock-forecast dashboard."""
