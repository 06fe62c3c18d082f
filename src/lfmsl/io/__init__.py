"""Files: datasets and their cache, run folders (configuration, metrics, summary, checkpoints), locks, atomic
writes and figures."""
