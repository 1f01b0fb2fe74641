"""Findings: how sure a number is (intervals over seeds and test images), the claims
decided on those intervals, and the one-knob families of variants the sweeps compare."""
