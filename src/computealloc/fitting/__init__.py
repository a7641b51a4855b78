"""Policies and stopping rules: fitting, calibration and the JSON policy files."""
