"""The command line: `lfmsl run` (also `python -m lfmsl run`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from lfmsl.config import ALGORITHMS, DATASETS, Config
from lfmsl.errors import UsageError

DEFAULTS = Config()


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line saying what to do, not a usage dump."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Every Config field as a flag, with its default in the help."""
    d = DEFAULTS
    g = parser.add_argument_group("what to simulate")
    g.add_argument("--algorithm", default=d.algorithm, choices=ALGORITHMS, metavar="NAME",
                   help=f"one of {', '.join(ALGORITHMS)} (default: {d.algorithm})")
    g.add_argument("--dataset", default=d.dataset, choices=DATASETS, metavar="NAME",
                   help=f"one of {', '.join(DATASETS)} (default: {d.dataset})")
    g.add_argument("--model", default=None, choices=("cnn", "resnet18"),
                   help="split model (default: cnn for MNIST and Fashion-MNIST, resnet18 for CIFAR-10)")
    g.add_argument("--clients", type=_positive_int, default=d.clients, metavar="N", help=f"number of clients (default: {d.clients})")
    g.add_argument("--rounds", type=_positive_int, default=d.rounds, metavar="R",
                   help=f"rounds; a round is one local epoch of every client (default: {d.rounds})")
    g.add_argument("--batch-size", type=_positive_int, default=d.batch_size, metavar="B", help=f"mini-batch per client (default: {d.batch_size})")
    g.add_argument("--partition", default=d.partition, metavar="SPEC",
                   help="iid, dirichlet:ALPHA (label skew) or shards:K (K label shards per client) (default: iid)")
    g.add_argument("--train-size", type=_positive_int, default=None, metavar="K",
                   help="train on a class-stratified subset of K samples, for quick runs (default: the whole training set)")
    g.add_argument("--seed", type=_non_negative_int, default=d.seed, help=f"seed of partitions, batches, mixup and models (default: {d.seed})")
    g.add_argument("--executor", default=d.executor, metavar="KIND",
                   help="how clients are run: vmap, chunked[:K] (lax.map over chunks of K), loop, or auto (by backend) (default: auto)")

    g.add_argument("--conv", default=d.conv, choices=("patches", "xla"),
                   help="cnn client convolutions: im2col with a matrix product, or XLA's convolution (default: patches)")

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
    g.add_argument("--lr", type=_number, default=d.lr, help=f"Adam learning rate of every part (default: {d.lr})")
    g.add_argument("--client-lr", type=_number, default=None, help="client-side learning rate (default: --lr)")
    g.add_argument("--server-lr", type=_number, default=None, help="server-side learning rate (default: --lr)")
    g.add_argument("--eval-clients", type=_non_negative_int, default=d.eval_clients, metavar="K",
                   help=f"where clients keep their own models, score K evenly spread clients' models; 0: all (default: {d.eval_clients})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lfmsl", description="Simulate parallel split learning: LocFedMix-SL and its baselines.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = commands.add_parser("run", help="run one simulation", description="Run one simulation and write its metrics, summary and plot.")
    add_config_arguments(run)
    g = run.add_argument_group("input and output")
    g.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default: a new folder under runs/)")
    g.add_argument("--manual-dir", default=None, metavar="DIR",
                   help="folder with one subfolder per dataset of its original files, for tfds without internet (default: $LFMSL_MANUAL_DIR)")
    g.add_argument("--data-dir", default=None, metavar="DIR", help="tfds data folder (default: $LFMSL_DATA_DIR or ~/tensorflow_datasets)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (one line per round instead)")
    g.add_argument("--distributed", action="store_true",
                   help="join jax.distributed first (one process per host of a TPU pod slice or GPU cluster; see docs/SCALING.md)")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    fields = Config.__dataclass_fields__
    return Config(**{name: getattr(args, name) for name in fields if hasattr(args, name)})


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError("say what to do: 'lfmsl run' (see 'lfmsl --help')")
        from lfmsl.runner import run_command

        return run_command(args, config_from_args(args))
    except UsageError as error:
        print(f"lfmsl: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lfmsl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
