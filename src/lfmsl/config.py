"""The run configuration: every option of a simulation, with its default and its checks.

Defaults marked [default] in the specification (docs/ALGORITHMS.md) are our choices; each of
them is an option here.
"""

from __future__ import annotations

import dataclasses
import math

from lfmsl.core.numerics import RECONSTRUCTION_LOSSES
from lfmsl.datasets import DATASETS
from lfmsl.errors import UsageError
from lfmsl.core.executors import parse_executor
from lfmsl.models import MODELS, cut_range, default_model_for
from lfmsl.core.partition import parse_partition
from lfmsl.profiles import PROFILES

ROUND_MODES = ("wrap", "epoch")


@dataclasses.dataclass(frozen=True)
class Config:
    """All options of one run. Field names match the command-line flags (with '-' for '_')."""

    algorithm: str = "locfedmix"
    dataset: str = "fashion_mnist"
    model: str | None = None  # None: the dataset's default model
    cut: int | None = None  # client blocks; None: the model's default cut
    clients: int = 100
    clients_per_round: int | None = None  # K participants drawn per round; None: all N
    dropout: float = 0.0  # each participant fails during a round with this probability
    rounds: int = 10
    batch_size: int = 32
    round_mode: str = "wrap"  # "wrap": every client does the largest client's iterations; "epoch": its own epoch
    partition: str = "iid"
    train_size: int | None = None
    samples_per_client: int | None = None  # each client holds K samples of a stratified draw of N x K
    seed: int = 0
    executor: str = "auto"
    conv: str = "patches"  # every model's convolutions: "patches" (im2col + matmul) or "xla"
    # LocFedMix-SL's three parts and their settings.
    mix: bool = True
    loc: bool = True
    fed: bool = True
    mix_alpha: float = 1.0
    mix_partners: int = 1
    avg_every: int | None = None  # iterations between averaging; None: once per round
    loc_weight: float = 1.0
    loc_loss: str = "mse"
    average_decoders: bool = True
    client_grad: str = "own"
    gradmix_fraction: float = 0.5
    # Optimisers: Adam by default, one per model part.
    optimizer: str = "adam"
    lr: float = 1e-3
    client_lr: float | None = None
    server_lr: float | None = None
    # Evaluation.
    eval_clients: int = 10  # clients evaluated per round where clients keep their own models; 0: all
    test_size: int | None = None  # score on a class-stratified subset of the test set (quick runs); None: all
    # Simulated latency (lfmsl.costs.latency): a named device/link profile, each value overridable.
    latency_profile: str = "default"
    client_flops: float | None = None  # FLOP/s of each client; None: the profile's
    server_flops: float | None = None  # FLOP/s of the server; None: the profile's
    uplink_mbps: float | None = None  # Mbit/s per client; None: the profile's
    downlink_mbps: float | None = None
    target_accuracy: float | None = None  # the summary reports the first round reaching it
    overlap: bool = True  # client-local work overlaps the wait (LocFedMix-SL) or pipelines (LocSplitFed)
    device_spread: float = 0.0  # log-standard-deviation of each client's speeds around the profile's
    round_deadline: float | None = None  # simulated seconds; participants whose round takes longer are left out
    # What the server can learn of the clients' inputs (lfmsl.privacy, docs/PRIVACY.md): off unless privacy_every is set.
    privacy_every: int | None = None  # measure leakage after round 1, every R-th round and the last; None: never
    privacy_probes: int = 32  # each evaluated client's own training samples the measures rebuild
    aux_size: int = 1000  # the attacker's auxiliary set: training samples no client holds
    attacks: str = "auto"  # comma-separated of lfmsl.privacy.threats.ATTACKS, or auto: every one that applies
    attack_steps: int = 300  # Adam steps of each network an attack trains
    attack_lr: float = 1e-3
    # Defences; zero strength runs the very program without them.
    nopeek_weight: float = 0.0  # NoPeek: alpha * dCor(inputs, smashed data) added to each client's loss
    smash_noise: float = 0.0  # Gaussian noise of this standard deviation added to the smashed data before it leaves a client

    @property
    def resolved_client_lr(self) -> float:
        return self.lr if self.client_lr is None else self.client_lr

    @property
    def resolved_server_lr(self) -> float:
        return self.lr if self.server_lr is None else self.server_lr

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**values)


def _positive(name: str, value: float | int | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UsageError(f"--{name} must be a positive number, got {value}")


def check_options(config: Config) -> Config:
    """Check each option on its own, whatever the algorithm; raise UsageError saying what to do.

    What the chosen algorithm makes of them is checked by `lfmsl.algorithms.validate`."""
    if not isinstance(config.algorithm, str) or not config.algorithm:
        raise UsageError(f"--algorithm must name an algorithm, got {config.algorithm!r}")
    if config.dataset not in DATASETS:
        raise UsageError(f"unknown --dataset {config.dataset!r}; choose one of {', '.join(DATASETS)}")
    for name in ("clients", "rounds", "batch_size", "mix_partners"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    for name in ("lr", "client_lr", "server_lr", "mix_alpha"):
        _positive(name.replace("_", "-"), getattr(config, name))
    if config.clients_per_round is not None:
        if not isinstance(config.clients_per_round, int) or config.clients_per_round < 1:
            raise UsageError(f"--clients-per-round must be a positive integer, got {config.clients_per_round}")
        if config.clients_per_round > config.clients:
            raise UsageError(f"--clients-per-round {config.clients_per_round} is more than --clients {config.clients}; "
                             "draw at most every client each round")
    if not (isinstance(config.dropout, (int, float)) and 0 <= config.dropout < 1):
        raise UsageError(f"--dropout is the probability that a participant fails during a round, from 0 up to (not including) 1; "
                         f"got {config.dropout}")
    if not (isinstance(config.device_spread, (int, float)) and math.isfinite(config.device_spread) and config.device_spread >= 0):
        raise UsageError(f"--device-spread is a log-standard-deviation: zero or a positive number, got {config.device_spread}")
    _positive("round-deadline", config.round_deadline)
    if config.train_size is not None and config.train_size < 1:
        raise UsageError(f"--train-size must be a positive integer, got {config.train_size}")
    if config.samples_per_client is not None:
        if not isinstance(config.samples_per_client, int) or config.samples_per_client < 1:
            raise UsageError(f"--samples-per-client must be a positive integer, got {config.samples_per_client}")
        if config.train_size is not None:
            raise UsageError("give --train-size (a fixed training set split among the clients) or --samples-per-client "
                             "(K samples per client, so the data grows with the clients), not both")
    if config.test_size is not None and config.test_size < 1:
        raise UsageError(f"--test-size must be a positive integer, got {config.test_size}")
    if config.avg_every is not None and config.avg_every < 1:
        raise UsageError(f"--avg-every must be a positive number of iterations, got {config.avg_every}")
    if not (config.loc_weight >= 0 and math.isfinite(config.loc_weight)):
        raise UsageError(f"--loc-weight must be zero or positive, got {config.loc_weight}")
    if not 0 < config.gradmix_fraction <= 1:
        raise UsageError(f"--gradmix-fraction must be in (0, 1], got {config.gradmix_fraction}")
    if not 0 <= config.seed < 2**32:  # jax.random.key(2**32) is key(0)
        raise UsageError(f"--seed must be an integer from 0 to {2**32 - 1}, got {config.seed}")
    if config.eval_clients < 0:
        raise UsageError(f"--eval-clients must be zero (all) or positive, got {config.eval_clients}")
    if config.loc_loss not in RECONSTRUCTION_LOSSES:
        raise UsageError(f"--loc-loss must be {' or '.join(RECONSTRUCTION_LOSSES)}, got {config.loc_loss!r}")
    if config.optimizer not in ("adam", "sgd"):
        raise UsageError(f"--optimizer must be adam or sgd, got {config.optimizer!r}")
    if config.round_mode not in ROUND_MODES:
        raise UsageError(f"--round-mode must be wrap or epoch, got {config.round_mode!r}")
    if config.conv not in ("patches", "xla"):
        raise UsageError(f"--conv must be patches or xla, got {config.conv!r}")
    if config.client_grad not in ("own", "global"):
        raise UsageError(f"--client-grad must be own or global, got {config.client_grad!r}")
    if config.model is not None and config.model not in MODELS:
        raise UsageError(f"unknown --model {config.model!r}; choose one of {', '.join(MODELS)}")
    if config.cut is not None:
        model = config.model or default_model_for(config.dataset)
        low, high = cut_range(model)
        if not isinstance(config.cut, int) or not low <= config.cut <= high:
            raise UsageError(f"--cut {config.cut} is out of range for --model {model}: cut after block {low} to {high} "
                             "(see 'lfmsl run --help')")
    for name in ("client_flops", "server_flops", "uplink_mbps", "downlink_mbps"):
        _positive(name.replace("_", "-"), getattr(config, name))
    if config.target_accuracy is not None and not 0 < config.target_accuracy <= 1:
        raise UsageError(f"--target-accuracy is a fraction in (0, 1], e.g. 0.85; got {config.target_accuracy}")
    _check_privacy_options(config)
    if config.latency_profile not in PROFILES:
        raise UsageError(f"unknown --latency-profile {config.latency_profile!r}; choose one of {', '.join(PROFILES)}")
    parse_executor(config.executor)
    parse_partition(config.partition)
    return config


def _check_privacy_options(config: Config) -> None:
    """The leakage measures' and the defences' own values (what the algorithm makes of them: lfmsl.privacy.threats)."""
    from lfmsl.privacy.threats import parse_attacks

    if config.privacy_every is not None:
        if not isinstance(config.privacy_every, int) or config.privacy_every < 1:
            raise UsageError(f"--privacy-every must be a positive number of rounds, got {config.privacy_every}")
        if config.privacy_every > config.rounds:
            raise UsageError(f"--privacy-every {config.privacy_every} is past --rounds {config.rounds}: leakage would be measured "
                             f"after round 1 and the last only; use --privacy-every {config.rounds} or less")
    for name in ("privacy_probes", "aux_size", "attack_steps"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if config.privacy_probes < 2:
        raise UsageError(f"--privacy-probes must be 2 or more (distance correlation compares samples), got {config.privacy_probes}")
    _positive("attack-lr", config.attack_lr)
    for name in ("nopeek_weight", "smash_noise"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise UsageError(f"--{name.replace('_', '-')} must be zero (off) or positive, got {value}")
    parse_attacks(config.attacks)


def flag(name: str, value) -> str:
    """How the command line spells option `name` set to `value` (e.g. --no-mix, --mix-alpha 0.5)."""
    option = "--" + name.replace("_", "-")
    return (option if value else f"--no-{option[2:]}") if isinstance(value, bool) else f"{option} {value}"
