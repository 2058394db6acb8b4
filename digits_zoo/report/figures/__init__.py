"""Figures of digits, models and searches, one module per subject; import from the modules."""
