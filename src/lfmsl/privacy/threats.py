"""Who can attack what: the honest-but-curious server's holdings under each algorithm, read off what the
algorithm exchanges (`Exchange`), and which attacks they allow. docs/PRIVACY.md explains the threat models."""

from __future__ import annotations

import dataclasses

from lfmsl.errors import UsageError

# Each attack and what the server needs for it (docs/PRIVACY.md cites the papers).
ATTACKS = {
    "decoder": "the averaged decoder (LocFedMix-SL with its decoders averaged), applied to the smashed data",
    "inverse": "an inverse network trained on the auxiliary set through the client segment the server averages "
               "(or relays)",
    "shadow": "He et al.'s query-free attack: a shadow client segment trained through the server's own segment on the "
              "auxiliary set, then an inverse network of the shadow",
}


@dataclasses.dataclass(frozen=True)
class Holdings:
    """What the server holds besides its own segment, the labels and the auxiliary set."""

    smashed: bool  # every participant's smashed data, every iteration
    client_segment: bool  # the client segment: averaged at the server, or relayed through it (sequential SL)
    decoder: bool  # LocFedMix-SL's averaged decoder
    aux_head: bool  # LocSplitFed's averaged auxiliary classifier (no attack of ours uses it)

    def reasons(self) -> dict[str, str | None]:
        """attack -> None where it applies, else why not."""
        return {
            "decoder": (None if self.decoder
                        else "the server holds no decoder here (only LocFedMix-SL's averaged decoders)"),
            "inverse": (None if self.client_segment
                        else "the server never holds the client segment here (nothing averages or relays it)"),
            "shadow": None,
        }


def holdings(exchange) -> Holdings:
    """The server's holdings under an algorithm that exchanges `exchange` (an `lfmsl.algorithms.Exchange`)."""
    smashed = exchange.schedule in ("parallel", "relay")
    return Holdings(smashed=smashed,
                    client_segment=smashed and ("client" in exchange.averaged or exchange.schedule == "relay"),
                    decoder=smashed and "decoder" in exchange.averaged, aux_head=smashed and "aux" in exchange.averaged)


def parse_attacks(spec: str) -> tuple[str, ...] | None:
    """`--attacks`: 'auto' (None: every attack that applies) or a comma-separated list of ATTACKS."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"--attacks must be auto or a comma-separated list of {', '.join(ATTACKS)}, got {spec!r}")
    if spec.strip() == "auto":
        return None
    names = tuple(name.strip() for name in spec.split(","))
    unknown = [name for name in names if name not in ATTACKS]
    if unknown or len(set(names)) != len(names):
        raise UsageError(f"--attacks takes auto or a comma-separated list of distinct {', '.join(ATTACKS)}, "
                         f"got {spec!r}")
    return names


def attacks_for(spec: str, held: Holdings) -> tuple[str, ...]:
    """The attacks to run: the named ones, each of which must apply, or with 'auto' every one that applies."""
    reasons = held.reasons()
    named = parse_attacks(spec)
    if named is None:
        return tuple(name for name, why in reasons.items() if why is None)
    for name in named:
        if reasons[name] is not None:
            raise UsageError(f"--attacks {name} does not apply: {reasons[name]}; leave it out or use --attacks auto")
    return named
