"""The simulation's machinery, independent of any algorithm: numerics, batches, executors, device placement,
memory checks, partitions and evaluation."""
