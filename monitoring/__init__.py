"""Monitoring: Evidently drift reports, thresholds, the drift flag, alert rules.

Importing this package is cheap: Evidently is imported inside ``monitoring.drift`` only, and the
drift flag (``monitoring.flag``) needs nothing but redis, so serving can read it.
"""
