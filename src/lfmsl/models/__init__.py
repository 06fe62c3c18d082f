"""Split models: a client (lower) segment, a server (upper) segment and the clients' local heads.

Every part is a plain Flax Linen module applied as ``part.apply({"params": p}, x)``, so a
stacked parameter pytree with a leading clients axis runs under ``jax.vmap`` or ``jax.lax.map``
without any Flax lifting. The cut is part of the model description (see docs/DESIGN.md).

Parts:
- ``client``: images float32 [B,H,W,C] in [0,1] -> smashed data [B, *smashed_shape].
- ``server``: smashed data -> logits [B, num_classes].
- ``decoder``: smashed data -> reconstruction [B,H,W,C] in (0,1); LocFedMix-SL's local
  regulariser.
- ``aux``: smashed data -> logits; LocSplitFed's auxiliary classifier.

The package: `layers` (patch convolutions, pooling), `cnn` and `resnet` (architectures as
numbered blocks), `heads` (decoder and auxiliary classifiers), `factory` (the cut into a
`SplitModel`, initialisation) and `flops` (parameter and FLOP counts).
"""

from lfmsl.models.factory import (
    ARCHITECTURES,
    MODELS,
    Architecture,
    Segment,
    SplitModel,
    cut_range,
    default_model_for,
    get_model,
    init_params,
)
from lfmsl.models.flops import count_jaxpr_flops, count_params, flops_per_sample
from lfmsl.models.heads import Decoder, FlatAux, PoolAux
from lfmsl.models.layers import PRECISIONS, PatchConv, PatchConvTranspose, extract_patches, reshape_max_pool

__all__ = [
    "ARCHITECTURES", "MODELS", "PRECISIONS", "Architecture", "Decoder", "FlatAux", "PatchConv", "PatchConvTranspose",
    "PoolAux", "Segment", "SplitModel", "count_jaxpr_flops", "count_params", "cut_range", "default_model_for",
    "extract_patches", "flops_per_sample", "get_model", "init_params", "reshape_max_pool",
]
