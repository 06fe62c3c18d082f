"""Running things: one simulation, a run with its folder, sweeps, the scripts' shared argument kit and the
reproduction study."""
