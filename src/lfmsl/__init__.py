"""lfmsl: a JAX simulator for parallel split learning (LocFedMix-SL and its baselines).

    import lfmsl
    result = lfmsl.run(lfmsl.Config(algorithm="psl", clients=10, rounds=3), out="runs/psl",
                       options=lfmsl.RunOptions(progress=False))
    result.history[-1]["test_accuracy"], result.summary["sim_latency_s"]
    results = lfmsl.run([config_a, config_b], out="runs/pair")   # a list in, a list of outcomes out

`run`, `RunResult`, `RunOptions`, `RunDir` and `Config` are imported on first use, so `import lfmsl` stays cheap.
"""

__version__ = "0.1.0"
__all__ = ["Config", "RunDir", "RunOptions", "RunResult", "run"]


def __getattr__(name: str):
    if name == "run":
        from lfmsl.experiments.api import run

        return run
    if name == "RunResult":
        from lfmsl.experiments.runner import RunResult

        return RunResult
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
