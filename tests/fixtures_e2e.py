"""Constants shared by the end-to-end tests (the fixtures themselves are in tests/e2e/conftest.py)."""

#: The tiny marketplace every end-to-end pipeline run simulates (a minute or two through kfp.local).
TINY_SIM = (
    '{"n_listings": 600, "n_users": 300, "n_sellers": 80, "days": 5, "checkouts_per_day": 80}'
)
