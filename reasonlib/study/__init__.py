"""The study runner: the sweep over seeds and notebooks, metric records, length buckets and
calibration rows. Imports from core and train only; docs/layout.md."""
