"""The command line: `lfmsl run` (also `python -m lfmsl run`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from lfmsl.algorithms import names as algorithm_names
from lfmsl.config import Config
from lfmsl.datasets import DATASETS
from lfmsl.errors import UsageError
from lfmsl.stopping import exit_status

DEFAULTS = Config()
ALLOW_DIVERGENCE_HELP = ("go on when the training loss explodes while staying finite (above 1e3, or 100 times round 1's); "
                         "by default the run stops there with exit status 3, as on a NaN loss, which always stops")
_NOT_GIVEN = object()  # the default of every option when only the options given are wanted


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line saying what to do, not a usage dump, and no
    abbreviated flags: in a sweep a typo must not silently become another option."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _int_at_least(minimum: int):
    """An argparse type: an integer >= minimum, with a message naming what was expected."""
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _folder(text: str) -> Path:
    """An argparse type: a non-empty path (an empty --out would write into the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder name, got an empty one")
    return Path(text)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Every Config field as a flag, with its default in the help."""
    d = DEFAULTS
    g = parser.add_argument_group("what to simulate")
    g.add_argument("--algorithm", default=d.algorithm, choices=algorithm_names(), metavar="NAME",
                   help=f"one of {', '.join(algorithm_names())} (default: {d.algorithm})")
    g.add_argument("--dataset", default=d.dataset, choices=DATASETS, metavar="NAME",
                   help=f"one of {', '.join(DATASETS)} (default: {d.dataset})")
    from lfmsl.models import MODELS

    g.add_argument("--model", default=None, choices=MODELS,
                   help="split model (default: cnn for MNIST and Fashion-MNIST, resnet18 for CIFAR-10); allconv: "
                        "an all-convolutional network for 28x28 images whose cut can go deep")
    g.add_argument("--cut", type=_positive_int, default=None, metavar="K",
                   help="the client segment is the model's first K blocks, the server the rest: cnn 1-3 (conv 32 | conv 64 | "
                        "Dense 128 | Dense classes; default 2), allconv 1-5 (conv 16, pool | conv 16 | conv 32, pool | conv 32 | "
                        "conv 64 | pool, Dense classes; default 2), resnet18 1-3 (stem and stage 1 | stage 2 | stage 3 | "
                        "stage 4, Dense classes; default 1)")
    g.add_argument("--clients", type=_positive_int, default=d.clients, metavar="N", help=f"number of clients (default: {d.clients})")
    g.add_argument("--clients-per-round", type=_positive_int, default=None, metavar="K",
                   help="K distinct clients drawn uniformly each round, from (seed, round) alone, train in it; the others "
                        "sit it out (default: all N)")
    g.add_argument("--dropout", type=_number, default=d.dropout, metavar="P",
                   help="each participant fails during a round with probability P, drawn from (seed, round): its updates "
                        "are discarded and its smashed data never reaches the server (default: 0)")
    g.add_argument("--rounds", type=_positive_int, default=d.rounds, metavar="R",
                   help=f"rounds; a round is one local epoch of every client (default: {d.rounds})")
    g.add_argument("--batch-size", type=_positive_int, default=d.batch_size, metavar="B", help=f"mini-batch per client (default: {d.batch_size})")
    g.add_argument("--round-mode", default=d.round_mode, choices=("wrap", "epoch"),
                   help="with clients of unequal size, a round is the largest client's epoch: 'wrap' makes smaller clients "
                        "wrap around their data to keep up, 'epoch' lets each client do its own epoch and then sit out the "
                        "round's remaining iterations (default: wrap)")
    g.add_argument("--partition", default=d.partition, metavar="SPEC",
                   help="iid, dirichlet:ALPHA (label skew) or shards:K (K label shards per client) (default: iid)")
    g.add_argument("--train-size", type=_positive_int, default=None, metavar="K",
                   help="train on a class-stratified subset of K samples, for quick runs (default: the whole training set)")
    g.add_argument("--samples-per-client", type=_positive_int, default=None, metavar="K",
                   help="each client holds K samples (a class-stratified draw of N x K, then --partition over them), "
                        "so the data grows with the clients (default: the training set split among the clients)")
    g.add_argument("--seed", type=_non_negative_int, default=d.seed, help=f"seed of partitions, batches, mixup and models (default: {d.seed})")
    g.add_argument("--executor", default=d.executor, metavar="KIND",
                   help="how clients are run: vmap, chunked[:K] (lax.map over chunks of K), loop, or auto (by backend) (default: auto)")

    g.add_argument("--conv", default=d.conv, choices=("patches", "xla"),
                   help="every model's convolutions: im2col with a matrix product, or XLA's convolution (default: patches)")

    g = parser.add_argument_group("LocFedMix-SL parts (locfedmix only; --mix-* also for mix2sfl)")
    g.add_argument("--no-mix", dest="mix", action="store_false", help="switch off smashed-data mixup at the server")
    g.add_argument("--no-loc", dest="loc", action="store_false", help="switch off the local reconstruction regulariser")
    g.add_argument("--no-fed", dest="fed", action="store_false", help="switch off averaging of the client segments")
    g.add_argument("--mix-alpha", type=_number, default=d.mix_alpha, metavar="A", help=f"mixup lam ~ Beta(A, A) (default: {d.mix_alpha})")
    g.add_argument("--mix-partners", type=_positive_int, default=d.mix_partners, metavar="K",
                   help=f"partner clients mixed with each client per iteration, fewer than --clients (default: {d.mix_partners})")
    g.add_argument("--avg-every", type=_positive_int, default=None, metavar="T",
                   help="iterations between averaging of client segments (default: once per round)")
    g.add_argument("--loc-weight", type=_number, default=d.loc_weight, metavar="BETA",
                   help=f"weight of the local regulariser in the client's update (default: {d.loc_weight})")
    g.add_argument("--loc-loss", default=d.loc_loss, choices=("mse", "bce"), help=f"reconstruction loss (default: {d.loc_loss})")
    g.add_argument("--no-average-decoders", dest="average_decoders", action="store_false",
                   help="keep the decoders local instead of averaging them with the client segments")
    g.add_argument("--client-grad", default=d.client_grad, choices=("own", "global"),
                   help="gradient sent to a client: of its own loss, or of the combined loss (about 1/N smaller) (default: own)")
    g.add_argument("--gradmix-fraction", type=_number, default=d.gradmix_fraction, metavar="PHI",
                   help=f"mix2sfl: fraction of clients that receive the averaged gradient (default: {d.gradmix_fraction})")

    g = parser.add_argument_group("optimisation and evaluation")
    g.add_argument("--optimizer", default=d.optimizer, choices=("adam", "sgd"), help=f"optimiser of every model part (default: {d.optimizer})")
    g.add_argument("--lr", type=_number, default=d.lr, help=f"learning rate of every part (default: {d.lr})")
    g.add_argument("--client-lr", type=_number, default=None, help="client-side learning rate (default: --lr)")
    g.add_argument("--server-lr", type=_number, default=None, help="server-side learning rate (default: --lr)")
    g.add_argument("--test-size", type=_positive_int, default=None, metavar="K",
                   help="score on a class-stratified subset of K test samples, for quick runs (default: the whole test set)")
    g.add_argument("--eval-clients", type=_non_negative_int, default=d.eval_clients, metavar="K",
                   help=f"where clients keep their own models, score K evenly spread clients' models; 0: all (default: {d.eval_clients})")

    g = parser.add_argument_group("privacy: what the server can rebuild of the clients' inputs (docs/PRIVACY.md)")
    g.add_argument("--privacy-every", type=_positive_int, default=None, metavar="R",
                   help="measure leakage after round 1, every R-th round and the last: distance correlation between each "
                        "evaluated client's probe inputs and its smashed data, and the MSE, PSNR and SSIM of every attack's "
                        "reconstruction of them; writes privacy.png (default: off)")
    g.add_argument("--privacy-probes", type=_positive_int, default=d.privacy_probes, metavar="P",
                   help=f"each evaluated client's own training samples to rebuild (default: {d.privacy_probes})")
    g.add_argument("--aux-size", type=_positive_int, default=d.aux_size, metavar="K",
                   help="the server's auxiliary set: K training samples that no client holds, so the clients must leave some "
                        f"out (--samples-per-client or --train-size) (default: {d.aux_size})")
    g.add_argument("--attacks", default=d.attacks, metavar="LIST",
                   help="comma-separated of decoder (the averaged decoder), inverse (an inverse network of the client segment "
                        "the server holds), shadow (a shadow client segment trained through the server's, then its inverse), "
                        "or auto: every one the algorithm allows (default: auto)")
    g.add_argument("--attack-steps", type=_positive_int, default=d.attack_steps, metavar="S",
                   help=f"Adam steps of each network an attack trains, batches of 64 (default: {d.attack_steps})")
    g.add_argument("--attack-lr", type=_number, default=d.attack_lr, metavar="LR", help=f"the attacks' learning rate (default: {d.attack_lr})")
    g.add_argument("--nopeek-weight", type=_number, default=d.nopeek_weight, metavar="ALPHA",
                   help="defence (NoPeek): add ALPHA x the distance correlation between a client's inputs and its smashed data "
                        "to the client's loss (default: 0, off)")
    g.add_argument("--smash-noise", type=_number, default=d.smash_noise, metavar="SIGMA",
                   help="defence: add Gaussian noise of standard deviation SIGMA to the smashed data before it leaves a client "
                        "(default: 0, off)")

    g = parser.add_argument_group("simulated latency (see lfmsl.costs.latency)")
    from lfmsl.profiles import PROFILES

    g.add_argument("--latency-profile", default=d.latency_profile, choices=tuple(PROFILES), metavar="NAME",
                   help=f"device speeds and link rates: {', '.join(PROFILES)} (default: {d.latency_profile}: "
                        "clients 10 GFLOP/s, server 1 TFLOP/s, 100 Mbit/s up and down)")
    g.add_argument("--client-flops", type=_number, default=None, metavar="FLOPS", help="client speed in FLOP/s, e.g. 1e10 (default: the profile's)")
    g.add_argument("--server-flops", type=_number, default=None, metavar="FLOPS", help="server speed in FLOP/s, e.g. 1e12 (default: the profile's)")
    g.add_argument("--uplink-mbps", type=_number, default=None, metavar="MBPS", help="each client's uplink in Mbit/s (default: the profile's)")
    g.add_argument("--downlink-mbps", type=_number, default=None, metavar="MBPS", help="each client's downlink in Mbit/s (default: the profile's)")
    g.add_argument("--no-overlap", dest="overlap", action="store_false",
                   help="time the client's local work serially: LocFedMix-SL's decoder pass after the server's answer instead "
                        "of during the wait for it, LocSplitFed's client, uplink and server one after another instead of "
                        "as a pipeline (default: overlapped)")
    g.add_argument("--device-spread", type=_number, default=d.device_spread, metavar="S",
                   help="slow devices: each client's compute speed, uplink and downlink rate are the profile's times a "
                        "log-normal factor exp(S z), drawn once from the seed; synchronous rounds wait for the slowest "
                        "participant (default: 0, every client alike)")
    g.add_argument("--round-deadline", type=_number, default=None, metavar="SECONDS",
                   help="leave out the participants whose round would take longer than SECONDS of simulated time: their "
                        "work is lost and the round lasts until the deadline (default: none)")
    g.add_argument("--target-accuracy", type=_number, default=None, metavar="A",
                   help="report the first round, simulated latency and wall time reaching test accuracy A, a fraction such as 0.85")


def build_parser(explicit_only: bool = False) -> argparse.ArgumentParser:
    """The parser of every command; `explicit_only` leaves out the options not given."""
    from lfmsl.experiments.runner import DEFAULT_CHECKPOINT_EVERY

    parser = _Parser(prog="lfmsl", description="Simulate parallel split learning: LocFedMix-SL and its baselines.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = commands.add_parser("run", help="run one simulation", description="Run one simulation and write its metrics, summary and plot.")
    add_config_arguments(run)
    if explicit_only:
        run.set_defaults(**dict.fromkeys(Config.__dataclass_fields__, _NOT_GIVEN))
    g = run.add_argument_group("input and output")
    g.add_argument("--out", type=_folder, default=None, metavar="DIR", help="output folder (default: a new folder under runs/)")
    g.add_argument("--resume", type=_folder, default=None, metavar="DIR",
                   help="continue the stopped run in DIR with the configuration it was started with; options given as well "
                        "must match it, except a larger --rounds, which extends the run")
    g.add_argument("--checkpoint-every", type=_positive_int, default=DEFAULT_CHECKPOINT_EVERY, metavar="K",
                   help=f"save the whole state every K rounds, at the end, and on Ctrl-C or SIGTERM (default: {DEFAULT_CHECKPOINT_EVERY})")
    g.add_argument("--manual-dir", default=None, metavar="DIR",
                   help="folder with one subfolder per dataset of its original files, for tfds without internet (default: $LFMSL_MANUAL_DIR)")
    g.add_argument("--data-dir", default=None, metavar="DIR", help="tfds data folder (default: $LFMSL_DATA_DIR or ~/tensorflow_datasets)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (one line per round instead)")
    g.add_argument("--allow-divergence", action="store_true", help=ALLOW_DIVERGENCE_HELP)
    g.add_argument("--distributed", action="store_true",
                   help="join jax.distributed first (one process per host of a TPU pod slice or GPU cluster; see docs/SCALING.md)")
    sweep = commands.add_parser("sweep", help="run a grid of simulations and tabulate them",
                                description="Run every combination of the comma-separated option values (e.g. --algorithm psl,locfedmix "
                                            "--clients 10,50 --seed 0,1), one folder per run, skipping runs already finished, "
                                            "then write results.csv and results.md with the mean and std over seeds.")
    add_config_arguments(sweep)
    from lfmsl.experiments.sweep import listify

    listify(sweep)
    g = sweep.add_argument_group("input and output")
    g.add_argument("--out", type=_folder, required=True, metavar="DIR", help="folder of the sweep: one subfolder per run, and the tables")
    g.add_argument("--manual-dir", default=None, metavar="DIR", help="as for 'lfmsl run'")
    g.add_argument("--data-dir", default=None, metavar="DIR", help="as for 'lfmsl run'")
    g.add_argument("--progress", action="store_true", help="a progress bar per run (default: one line per run)")
    g.add_argument("--allow-divergence", action="store_true", help=ALLOW_DIVERGENCE_HELP)
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    fields = Config.__dataclass_fields__
    return Config(**{name: getattr(args, name) for name in fields if hasattr(args, name)})


def run_config(args: argparse.Namespace, argv: Sequence[str] | None) -> Config:
    """`lfmsl run`'s configuration: the flags, or with --resume the run's own with the flags given on top."""
    if args.resume is None:
        return config_from_args(args)
    from lfmsl.io.rundir import CONFIG_FILE, RunDir

    if args.out is not None and args.out.resolve() != args.resume.resolve():
        raise UsageError("--resume DIR continues the run in DIR and writes there; leave out --out")
    folder = RunDir(args.resume)
    stored = folder.config()
    if stored is None:
        found = folder.run_files()
        if found:  # another run's leftovers: --out there is refused too, so suggest neither
            raise folder.not_resumable(found)
        raise UsageError(f"{args.resume} holds no run to resume (no {CONFIG_FILE}); start one with --out {args.resume}")
    given = vars(build_parser(explicit_only=True).parse_args(sys.argv[1:] if argv is None else argv))
    return dataclasses.replace(stored, **{name: value for name, value in given.items() if value is not _NOT_GIVEN and name in Config.__dataclass_fields__})


def main(argv: Sequence[str] | None = None) -> int:
    return exit_status(lambda: _dispatch(argv), "lfmsl: ")


def _dispatch(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        raise UsageError("say what to do: 'lfmsl run' or 'lfmsl sweep' (see 'lfmsl --help')")
    if args.command == "sweep":
        from lfmsl.experiments.sweep import sweep_command

        return sweep_command(args)
    from lfmsl.experiments.runner import run_command

    return run_command(run_config(args, argv), out=args.out, resume=args.resume, distributed=args.distributed, progress=args.progress,
                       checkpoint_every=args.checkpoint_every, allow_divergence=args.allow_divergence, manual_dir=args.manual_dir,
                       data_dir=args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
