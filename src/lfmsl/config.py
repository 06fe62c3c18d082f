"""The run configuration: every option of a simulation, with its default, its help and its checks.

Each option is declared once, as a `Config` field whose metadata (`Option`) says how it reads on a
command line: help, metavar, allowed values and kind. The command line, the sweep's comma lists
and the scripts' parsers are generated from these declarations (`lfmsl.experiments.flags`), and
`check_options` checks a configuration against them, however it was made.
Defaults marked [default] in the specification (docs/ALGORITHMS.md) are our choices; each of
them is an option here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

from lfmsl.core.numerics import RECONSTRUCTION_LOSSES
from lfmsl.datasets import DATASETS
from lfmsl.errors import UsageError
from lfmsl.core.executors import parse_executor
from lfmsl.models import MODELS, PRECISIONS, cut_range, default_model_for
from lfmsl.core.partition import parse_partition
from lfmsl.profiles import PROFILES

ROUND_MODES = ("wrap", "epoch")
OPTIMIZERS = ("adam", "sgd")
CONV_IMPLS = ("patches", "xla")  # lfmsl.models.get_model's conv_impl
CLIENT_GRADS = ("own", "global")


@dataclasses.dataclass(frozen=True)
class Kind:
    """What values an option takes: how a command line's text becomes one, and which are allowed."""

    expected: str  # in messages: "--rounds must be <expected>"
    convert: Callable[[str], Any]  # raises ValueError
    accepts: Callable[[Any], bool]

    def parse(self, text: str) -> Any:
        """The value `text` spells; ValueError saying what was expected."""
        try:
            value = self.convert(text)
        except (ValueError, OverflowError):
            raise ValueError(f"expected {self.expected}, got {text!r}") from None
        if not self.accepts(value):
            raise ValueError(f"expected {self.expected}, got {value}")
        return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


POSITIVE_INT = Kind("a positive integer", int, lambda v: _is_int(v) and v >= 1)
COUNT_OR_ALL = Kind("zero (all) or a positive integer", int, lambda v: _is_int(v) and v >= 0)
# jax.random.key(2**32) is key(0)
SEED = Kind(f"an integer from 0 to {2**32 - 1}", int, lambda v: _is_int(v) and 0 <= v < 2**32)
PROBES = Kind("2 or more (distance correlation compares samples)", int, lambda v: _is_int(v) and v >= 2)
POSITIVE = Kind("a positive number", float, lambda v: _is_number(v) and v > 0)
NON_NEGATIVE = Kind("zero or a positive number", float, lambda v: _is_number(v) and v >= 0)
PROBABILITY = Kind("a probability from 0 up to (not including) 1", float, lambda v: _is_number(v) and 0 <= v < 1)
FRACTION = Kind("a fraction in (0, 1], e.g. 0.85", float, lambda v: _is_number(v) and 0 < v <= 1)

# The help's groups, in the order `--help` shows them.
SIMULATE = "what to simulate"
COMPONENTS = "LocFedMix-SL components (locfedmix only; --mix-* also for mix2sfl)"
OPTIMISATION = "optimisation and evaluation"
PRIVACY = "privacy: what the server can rebuild of the clients' inputs (docs/PRIVACY.md)"
LATENCY = "simulated latency (see lfmsl.costs.latency)"
GROUPS = (SIMULATE, COMPONENTS, OPTIMISATION, PRIVACY, LATENCY)


@dataclasses.dataclass(frozen=True)
class Option:
    """How one option reads on a command line; the field it describes holds its default.

    help: what it does; the flag's help adds "(default: ...)" from `default_help` or the field's
    value (a switch's help does not). choices: the allowed values, from their owner; "{choices}" in the
    help lists them. kind: a `Kind` for numbers. spec: a parser that raises UsageError on a bad
    value, for strings with a grammar (`--partition dirichlet:0.3`). default_help: the help's words for
    a default that depends on other options (`--client-lr`: "--lr"). rule: what a bad value's message
    says of the option where "must be <kind>" says too little.
    """

    group: str
    help: str
    metavar: str | None = None
    choices: Sequence[str] | None = None
    kind: Kind | None = None
    spec: Callable[[str], Any] | None = None
    default_help: str | None = None
    rule: str | None = None

    def check(self, name: str, value: Any, default: Any) -> None:
        """Raise UsageError when `value` is not one this option takes (None only where the default is None)."""
        if value is None and default is None:
            return
        flag = "--" + name.replace("_", "-")
        if self.kind is not None and not self.kind.accepts(value):
            raise UsageError(f"{flag} {self.rule or 'must be ' + self.kind.expected}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{flag} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.spec is not None:
            self.spec(value)


def option(default: Any, group: str, **how: Any) -> Any:
    """A dataclass field with its default and its `Option` (`group`, `help` and the rest of `how`)."""
    return dataclasses.field(default=default, metadata={"option": Option(group, **how)})


def option_of(owner: type, name: str) -> Option:
    """The `Option` declared with field `name` of the dataclass `owner`."""
    return owner.__dataclass_fields__[name].metadata["option"]


def _profile_override(metavar: str, help: str) -> Any:
    """A latency option whose default is the --latency-profile's value."""
    return option(None, LATENCY, metavar=metavar, kind=POSITIVE, default_help="the profile's", help=help)


def _attacks(text: str):
    from lfmsl.privacy.threats import parse_attacks

    return parse_attacks(text)


@dataclasses.dataclass(frozen=True)
class Config:
    """All options of one run. Field names match the command-line flags (with '-' for '_')."""

    algorithm: str = option("locfedmix", SIMULATE, metavar="NAME", help="one of {choices}")  # choices: the registry's
    dataset: str = option("fashion_mnist", SIMULATE, metavar="NAME", choices=DATASETS, help="one of {choices}")
    model: str | None = option(
        None, SIMULATE, choices=MODELS, default_help="cnn for MNIST and Fashion-MNIST, resnet18 for CIFAR-10",
        help="split model; allconv: an all-convolutional network for 28x28 images whose cut can go deep")
    cut: int | None = option(
        None, SIMULATE, metavar="K", kind=POSITIVE_INT, default_help="the model's",
        help=("the client segment is the model's first K blocks, the server the rest: cnn 1-3 (conv 32 | conv 64 | "
              "Dense 128 | Dense classes; default 2), allconv 1-5 (conv 16, pool | conv 16 | conv 32, pool | "
              "conv 32 | conv 64 | pool, Dense classes; default 2), resnet18 1-3 (stem and stage 1 | stage 2 | "
              "stage 3 | stage 4, Dense classes; default 1)"))
    clients: int = option(100, SIMULATE, metavar="N", kind=POSITIVE_INT, help="number of clients")
    clients_per_round: int | None = option(
        None, SIMULATE, metavar="K", kind=POSITIVE_INT, default_help="all N",
        help=("K distinct clients drawn uniformly each round, from (seed, round) alone, train in it; the others "
              "sit it out"))
    dropout: float = option(
        0.0, SIMULATE, metavar="P", kind=PROBABILITY,
        rule="is the probability that a participant fails during a round, from 0 up to (not including) 1",
        help=("each participant fails during a round with probability P, drawn from (seed, round): its updates are "
              "discarded and its smashed data never reaches the server"))
    rounds: int = option(
        10, SIMULATE, metavar="R", kind=POSITIVE_INT,
        help="rounds; a round is one local epoch of every client")
    batch_size: int = option(32, SIMULATE, metavar="B", kind=POSITIVE_INT, help="mini-batch per client")
    round_mode: str = option(
        "wrap", SIMULATE, choices=ROUND_MODES,
        help=("with clients of unequal size, a round is the largest client's epoch: 'wrap' makes smaller clients "
              "wrap around their data to keep up, 'epoch' lets each client do its own epoch and then sit out the "
              "round's remaining iterations"))
    partition: str = option(
        "iid", SIMULATE, metavar="SPEC", spec=parse_partition,
        help="iid, dirichlet:ALPHA (label skew) or shards:K (K label shards per client)")
    train_size: int | None = option(
        None, SIMULATE, metavar="K", kind=POSITIVE_INT, default_help="the whole training set",
        help="train on a class-stratified subset of K samples, for quick runs")
    samples_per_client: int | None = option(
        None, SIMULATE, metavar="K", kind=POSITIVE_INT, default_help="the training set split among the clients",
        help=("each client holds K samples (a class-stratified draw of N x K, then --partition over them), so the "
              "data grows with the clients"))
    seed: int = option(0, SIMULATE, kind=SEED, help="seed of partitions, batches, mixup and models")
    executor: str = option(
        "auto", SIMULATE, metavar="KIND", spec=parse_executor,
        help="how clients are run: vmap, chunked[:K] (lax.map over chunks of K), loop, or auto (by backend)")
    conv: str = option(
        "patches", SIMULATE, choices=CONV_IMPLS,
        help="every model's convolutions: im2col with a matrix product, or XLA's convolution")
    matmul_precision: str = option(
        "float32", SIMULATE, choices=PRECISIONS,
        help=("the operands of every matrix product and convolution: float32, or bfloat16 summed in float32, for "
              "GPUs and TPUs whose matrix units run bfloat16 many times faster (a CPU gains little and rounds more)"))
    # LocFedMix-SL's three components and their settings.
    mix: bool = option(True, COMPONENTS, help="switch off smashed-data mixup at the server")
    loc: bool = option(True, COMPONENTS, help="switch off the local reconstruction regulariser")
    fed: bool = option(True, COMPONENTS, help="switch off averaging of the client segments")
    mix_alpha: float = option(1.0, COMPONENTS, metavar="A", kind=POSITIVE, help="mixup lam ~ Beta(A, A)")
    mix_partners: int = option(
        1, COMPONENTS, metavar="K", kind=POSITIVE_INT,
        help="partner clients mixed with each client per iteration, fewer than --clients")
    avg_every: int | None = option(
        None, COMPONENTS, metavar="T", kind=POSITIVE_INT, default_help="once per round",
        help="iterations between averaging of client segments")
    loc_weight: float = option(
        1.0, COMPONENTS, metavar="BETA", kind=NON_NEGATIVE,
        help="weight of the local regulariser in the client's update")
    loc_loss: str = option("mse", COMPONENTS, choices=RECONSTRUCTION_LOSSES, help="reconstruction loss")
    average_decoders: bool = option(
        True, COMPONENTS,
        help="keep the decoders local instead of averaging them with the client segments")
    client_grad: str = option(
        "own", COMPONENTS, choices=CLIENT_GRADS,
        help="gradient sent to a client: of its own loss, or of the combined loss (about 1/N smaller)")
    gradmix_fraction: float = option(
        0.5, COMPONENTS, metavar="PHI", kind=FRACTION,
        help="mix2sfl: fraction of clients that receive the averaged gradient")
    # Optimisers: Adam by default, one per model part.
    optimizer: str = option("adam", OPTIMISATION, choices=OPTIMIZERS, help="optimiser of every model part")
    lr: float = option(1e-3, OPTIMISATION, kind=POSITIVE, help="learning rate of every part")
    client_lr: float | None = option(
        None, OPTIMISATION, kind=POSITIVE, default_help="--lr",
        help="client-side learning rate")
    server_lr: float | None = option(
        None, OPTIMISATION, kind=POSITIVE, default_help="--lr",
        help="server-side learning rate")
    # Evaluation.
    eval_clients: int = option(
        10, OPTIMISATION, metavar="K", kind=COUNT_OR_ALL,
        help="where clients keep their own models, score K evenly spread clients' models; 0: all")
    test_size: int | None = option(
        None, OPTIMISATION, metavar="K", kind=POSITIVE_INT, default_help="the whole test set",
        help="score on a class-stratified subset of K test samples, for quick runs")
    # Simulated latency (lfmsl.costs.latency): a named device/link profile, each value overridable.
    latency_profile: str = option(
        "default", LATENCY, metavar="NAME", choices=tuple(PROFILES),
        default_help="default: clients 10 GFLOP/s, server 1 TFLOP/s, 100 Mbit/s up and down",
        help="device speeds and link rates: {choices}")
    client_flops: float | None = _profile_override("FLOPS", "client speed in FLOP/s, e.g. 1e10")
    server_flops: float | None = _profile_override("FLOPS", "server speed in FLOP/s, e.g. 1e12")
    uplink_mbps: float | None = _profile_override("MBPS", "each client's uplink in Mbit/s")
    downlink_mbps: float | None = _profile_override("MBPS", "each client's downlink in Mbit/s")
    target_accuracy: float | None = option(
        None, LATENCY, metavar="A", kind=FRACTION, default_help="none",
        help=("report the first round, simulated latency and wall time reaching test accuracy A, a fraction such "
              "as 0.85"))
    overlap: bool = option(
        True, LATENCY,
        help=("time the client's local work serially: LocFedMix-SL's decoder pass after the server's answer "
              "instead of during the wait for it, LocSplitFed's client, uplink and server one after another instead "
              "of as a pipeline (default: overlapped)"))
    device_spread: float = option(
        0.0, LATENCY, metavar="S", kind=NON_NEGATIVE, default_help="0, every client alike",
        rule="is a log-standard-deviation: zero or a positive number",
        help=("slow devices: each client's compute speed, uplink and downlink rate are the profile's times a "
              "log-normal factor exp(S z), drawn once from the seed; synchronous rounds wait for the slowest "
              "participant"))
    round_deadline: float | None = option(
        None, LATENCY, metavar="SECONDS", kind=POSITIVE, default_help="none",
        help=("leave out the participants whose round would take longer than SECONDS of simulated time: their work "
              "is lost and the round lasts until the deadline"))
    # What the server can learn of the clients' inputs (lfmsl.privacy, docs/PRIVACY.md): off without privacy_every.
    privacy_every: int | None = option(
        None, PRIVACY, metavar="R", kind=POSITIVE_INT, default_help="off",
        help=("measure leakage after round 1, every R-th round and the last: distance correlation between each "
              "evaluated client's probe inputs and its smashed data, and the MSE, PSNR and SSIM of every attack's "
              "reconstruction of them; writes privacy.png"))
    privacy_probes: int = option(
        32, PRIVACY, metavar="P", kind=PROBES,
        help="each evaluated client's own training samples to rebuild")
    aux_size: int = option(
        1000, PRIVACY, metavar="K", kind=POSITIVE_INT,
        help=("the server's auxiliary set: K training samples that no client holds, so the clients must leave some "
              "out (--samples-per-client or --train-size)"))
    attacks: str = option(
        "auto", PRIVACY, metavar="LIST", spec=_attacks,
        help=("comma-separated of decoder (the averaged decoder), inverse (an inverse network of the client "
              "segment the server holds), shadow (a shadow client segment trained through the server's, then its "
              "inverse), or auto: every one the algorithm allows"))
    attack_steps: int = option(
        300, PRIVACY, metavar="S", kind=POSITIVE_INT,
        help="Adam steps of each network an attack trains, batches of 64")
    attack_lr: float = option(1e-3, PRIVACY, metavar="LR", kind=POSITIVE, help="the attacks' learning rate")
    # Defences; zero strength runs the very program without them.
    nopeek_weight: float = option(
        0.0, PRIVACY, metavar="ALPHA", kind=NON_NEGATIVE, default_help="0, off",
        help=("defence (NoPeek): add ALPHA x the distance correlation between a client's inputs and its smashed "
              "data to the client's loss"))
    smash_noise: float = option(
        0.0, PRIVACY, metavar="SIGMA", kind=NON_NEGATIVE, default_help="0, off",
        help=("defence: add Gaussian noise of standard deviation SIGMA to the smashed data before it leaves a "
              "client"))

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


def check_options(config: Config) -> Config:
    """Check each option against its declaration, then the options that bound each other, whatever the
    algorithm; raise UsageError saying what to do. What the chosen algorithm makes of them is checked
    by `lfmsl.algorithms.validate`."""
    if not isinstance(config.algorithm, str) or not config.algorithm:
        raise UsageError(f"--algorithm must name an algorithm, got {config.algorithm!r}")
    for field in dataclasses.fields(Config):
        option_of(Config, field.name).check(field.name, getattr(config, field.name), field.default)
    if config.clients_per_round is not None and config.clients_per_round > config.clients:
        raise UsageError(f"--clients-per-round {config.clients_per_round} is more than --clients {config.clients}; "
                         "draw at most every client each round")
    if config.samples_per_client is not None and config.train_size is not None:
        raise UsageError("give --train-size (a fixed training set split among the clients) or --samples-per-client "
                         "(K samples per client, so the data grows with the clients), not both")
    if config.cut is not None:
        model = config.model or default_model_for(config.dataset)
        low, high = cut_range(model)
        if not low <= config.cut <= high:
            raise UsageError(f"--cut {config.cut} is out of range for --model {model}: cut after block {low} to {high} "
                             "(see 'lfmsl run --help')")
    if config.privacy_every is not None and config.privacy_every > config.rounds:
        raise UsageError(f"--privacy-every {config.privacy_every} is past --rounds {config.rounds}: leakage would be "
                         f"measured after round 1 and the last only; use --privacy-every {config.rounds} or less")
    return config


def flag(name: str, value) -> str:
    """How the command line spells option `name` set to `value` (e.g. --no-mix, --mix-alpha 0.5)."""
    option = "--" + name.replace("_", "-")
    return (option if value else f"--no-{option[2:]}") if isinstance(value, bool) else f"{option} {value}"
