"""What rolldeck keeps on disk: the journal (append-only, fsync'd, 0600), the
per-service lock, and the history read back from journals."""
