"""What the server can learn of a client's inputs: leakage measures, attacks and defences."""
