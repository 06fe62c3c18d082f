"""lfmsl: a JAX simulator for parallel split learning (LocFedMix-SL and its baselines).

    import lfmsl
    result = lfmsl.run(lfmsl.Config(algorithm="psl", clients=10, rounds=3), out="runs/psl",
                       options=lfmsl.RunOptions(progress=False))
    result.history[-1]["test_accuracy"], result.summary["sim_latency_s"]

`run`, `RunResult`, `RunOptions`, `RunDir` and `Config` are imported on first use, so `import lfmsl` stays cheap.
"""

__version__ = "0.1.0"
__all__ = ["Config", "RunDir", "RunOptions", "RunResult", "run"]


def __getattr__(name: str):
    if name in ("run", "RunResult"):
        from lfmsl.experiments import runner

        return getattr(runner, name)
    if name == "RunOptions":
        from lfmsl.experiments.run_options import RunOptions

        return RunOptions
    if name == "RunDir":
        from lfmsl.io.rundir import RunDir

        return RunDir
    if name == "Config":
        from lfmsl.config import Config

        return Config
    raise AttributeError(f"module 'lfmsl' has no attribute {name!r}")
