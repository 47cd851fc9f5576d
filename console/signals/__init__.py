"""What rolldeck learns from the hosts: health probes, vitals, logs, metrics, and the
error-rate analyzer that judges the new version against the old one.

A signal source is a module here behind the probe seam; the engine asks for verdicts,
it never parses a probe's output itself.
"""
