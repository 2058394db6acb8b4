"""Shipping a leaderboard model.

Modules: ``layout`` (the export format's file names and version folders),
``export`` (writing a verified version), ``load`` (loading one), ``inputs``
(reading pictures, arrays and CSV rows), ``evaluate`` (scoring on labelled
data) and ``commands`` (the ``export``, ``predict`` and ``evaluate`` subcommands).
"""
