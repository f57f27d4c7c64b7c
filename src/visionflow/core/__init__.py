"""Plumbing every layer may use: atomic files, cache paths, devices and precision, progress
output, typed configuration from JSON.  Nothing here knows about datasets, models or training."""
