"""Running things: one simulation, a run with its folder, sweeps, the scripts' shared parts and the reproduction study."""
