"""The simulation's machinery, independent of any algorithm: building blocks, batches, executors, device placement, memory checks, partitions and evaluation."""
