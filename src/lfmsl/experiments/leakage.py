"""--privacy-every: what the server could rebuild of the clients' inputs, measured on a run's own state.

The probes are each evaluated client's first `--privacy-probes` training samples (the same every round); the
auxiliary set is `--aux-size` training samples no client holds, drawn from the seed. A measurement takes the
state after a round, passes each evaluated client's probes through that client's own segment (what the server
saw of them), and runs every attack the algorithm allows (lfmsl.privacy.threats) with one key per seed, so the
rounds of a run and the algorithms of a study are attacked alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lfmsl.algorithms import exchange
from lfmsl.algorithms.base import Algorithm, State
from lfmsl.config import Config
from lfmsl.core import numerics
from lfmsl.core.batching import ClientData, gather
from lfmsl.errors import UsageError
from lfmsl.models import SplitModel
from lfmsl.privacy import attacks
from lfmsl.privacy.threats import attacks_for, holdings

ATTACK_STREAM = 0x1EAC  # the attacks' key: fold_in(key(seed), ATTACK_STREAM), apart from every training draw


def measured_rounds(config: Config) -> set[int]:
    """The rounds (1-based) after which leakage is measured: 1, every R-th and the last; none without R."""
    if config.privacy_every is None:
        return set()
    return {1, config.rounds, *range(config.privacy_every, config.rounds + 1, config.privacy_every)}


def auxiliary_indices(config: Config, num_samples: int, client_indices: list[np.ndarray]) -> np.ndarray:
    """`--aux-size` training samples that no client holds, drawn from the seed."""
    free = np.setdiff1d(np.arange(num_samples), np.concatenate(client_indices))
    if config.aux_size > len(free):
        raise UsageError(f"--aux-size {config.aux_size} is more than the {len(free)} training samples no client "
                         "holds; lower it, or hold samples back from the clients with --samples-per-client or "
                         "--train-size")
    return np.sort(np.random.default_rng([config.seed, 0xA0C5]).choice(free, config.aux_size, replace=False))


def probe_indices(config: Config, client_indices: list[np.ndarray], clients: np.ndarray) -> np.ndarray:
    """[E, P]: each evaluated client's first P samples (repeated where a client holds fewer)."""
    return np.stack([client_indices[c][np.arange(config.privacy_probes) % len(client_indices[c])] for c in clients])


class Leakage:
    """The compiled measurement of one run: `measure(state, data) -> (scalars, images)`, as device arrays."""

    def __init__(self, config: Config, model: SplitModel, algorithm: Algorithm, client_indices: list[np.ndarray],
                 num_samples: int, clients: np.ndarray):
        sent = exchange(config)
        self.config, self.model, self.clients = config, model, clients
        self.attacks = attacks_for(config.attacks, holdings(sent))
        self.relayed = sent.schedule == "relay"  # sequential SL: one client model, handed from client to client
        self.averages_server = algorithm.averages_server
        self.probes = jnp.asarray(probe_indices(config, client_indices, clients))
        self.aux = jnp.asarray(auxiliary_indices(config, num_samples, client_indices))
        self.key = jax.random.fold_in(jax.random.key(config.seed), ATTACK_STREAM)
        self.rounds = measured_rounds(config)

    def __call__(self, state: State, data: ClientData) -> tuple[dict, dict]:
        config, model = self.config, self.model
        lower = state.clients["lower"]
        if self.relayed:
            held, own = (jax.tree.map(lambda leaf: leaf[0], lower),
                         jax.tree.map(lambda leaf: leaf[jnp.zeros_like(self.clients)], lower))
        else:
            held, own = (numerics.weighted_average(lower, data.weights),
                         jax.tree.map(lambda leaf: leaf[self.clients], lower))
        probes, _ = gather(data, self.probes)
        noise_key, attack_key = jax.random.split(self.key)
        smashed = jax.vmap(lambda p, x: model.client.apply({"params": p}, x))(own, probes)
        observed = attacks.Observed(probes, attacks.add_noise(smashed, config.smash_noise, noise_key))
        decoder = (numerics.weighted_average(state.clients["decoder"], data.weights) if "decoder" in self.attacks
                   else None)
        server = numerics.weighted_average(state.server, data.weights) if self.averages_server else state.server
        aux_images, aux_labels = gather(data, self.aux)
        knowledge = attacks.Knowledge(server, held if "inverse" in self.attacks else None, decoder, aux_images,
                                      aux_labels)
        return attacks.measure(model, self.attacks, observed, knowledge, attack_key, config.attack_steps,
                               config.attack_lr, config.smash_noise)
