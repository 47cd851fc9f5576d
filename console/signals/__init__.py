"""What rolldeck learns from the hosts: health probes, vitals, logs, metrics, and the
error-rate analyzer that judges the new version against the old one.

A signal source sits behind the probe seam (:class:`console.signals.probe.Probe`:
today the shell health probe; an HTTP or a Prometheus probe is another module here);
the engine asks for verdicts, it never parses a probe's output itself. Imports run one
way: probe <- health <- monitor.
"""
