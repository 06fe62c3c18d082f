"""`lfmsl.run`: one configuration, or a list of them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from lfmsl.config import Config
from lfmsl.errors import UsageError
from lfmsl.experiments import group_runner, runner, sweep
from lfmsl.experiments.run_options import RunOptions
from lfmsl.io.data import Dataset
from lfmsl.io.rundir import RunDir


def run(config: Config | Sequence[Config], out: str | Path | Sequence[str | Path] | None = None, resume: bool = False,
        options: RunOptions | None = None, *, dataset: Dataset | None = None, **settings: Any
        ) -> runner.RunResult | list[runner.RunResult | UsageError]:
    """One configuration: `runner.run`, whose docstring says everything. A list of configurations: a list of
    outcomes, each run in its own folder (`out`: one folder per configuration, or the folder under which each
    gets its sweep name), the runs that differ only in values trained as one program where
    `options.runs_per_program` allows (`group_runner.run_many`); a run that fails is its UsageError in the list."""
    if isinstance(config, Config):
        return runner.run(config, out, resume, options, dataset=dataset, **settings)
    configs = list(config)
    if out is None or isinstance(out, (str, Path)):
        parent = Path(out) if out is not None else RunDir.new("runs", "runs", configs[0].dataset).path
        outs = [parent / sweep.run_name(c) for c in configs]
    else:
        outs = [Path(folder) for folder in out]
        if len(outs) != len(configs) or len(set(outs)) != len(outs):
            raise UsageError(f"give one distinct folder per configuration: {len(configs)} configurations, "
                             f"{len(set(outs))} distinct folders")
    return group_runner.run_many(configs, outs, resume, dataclasses.replace(options or RunOptions(), **settings),
                                 dataset)
