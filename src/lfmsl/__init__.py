"""lfmsl: a JAX simulator for parallel split learning (LocFedMix-SL and its baselines)."""

__version__ = "0.1.0"
