"""Shipping a leaderboard model: export, loading an export, reading inputs, evaluating."""
