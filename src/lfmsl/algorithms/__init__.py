"""The algorithms, by name: each parallel split algorithm is a Recipe of shared parts."""

from __future__ import annotations

from lfmsl.algorithms import centralized, fedavg, sl
from lfmsl.algorithms.base import Algorithm, Context, State
from lfmsl.algorithms.split import Recipe, build_split

__all__ = ["Algorithm", "Context", "State", "Recipe", "build", "recipe_for"]


def recipe_for(config) -> Recipe | None:
    """The Recipe of a parallel split algorithm, or None for sl / centralized / fedavg."""
    name = config.algorithm
    if name == "psl":
        return Recipe()
    if name == "locfedmix":
        return Recipe(local="decoder" if config.loc else None, mix=config.mix, average_clients=config.fed)
    if name == "locsplitfed":
        return Recipe(local="aux", send_grad=False, average_clients=True)
    if name == "sflv1":
        return Recipe(server="per_client", average_clients=True, average_server=True)
    if name == "sflv2":
        return Recipe(server="sequential", average_clients=True)
    if name == "sglr":
        return Recipe(grad_rule="mean", server_lr_scale="clients")
    if name == "mix2sfl":
        return Recipe(mix=True, grad_rule="gradmix", average_clients=True)
    return None


def build(ctx: Context) -> Algorithm:
    """The algorithm that ctx.config names."""
    recipe = recipe_for(ctx.config)
    if recipe is not None:
        return build_split(ctx, recipe)
    return {"sl": sl.build, "centralized": centralized.build, "fedavg": fedavg.build}[ctx.config.algorithm](ctx)
