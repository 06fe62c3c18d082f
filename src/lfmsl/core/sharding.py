"""The clients axis spread over every device (and every host) through a `jax.sharding.Mesh`.

Everything with a leading clients axis (client parameters, their optimiser states, the clients'
index lists and weights) is split along a one-axis mesh named "clients"; the server, the data
set itself and the test set are replicated. Inside the round, `executors.map_clients` sees the
mesh (set with `jax.set_mesh` while the round is traced) and runs its executor on each device's
own clients under `shard_map`, so `loop` and `chunked` stay local too; the server's step and the
averaging are ordinary jitted code that XLA partitions (GSPMD), adding the collectives.
"""

from __future__ import annotations

import contextlib
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lfmsl.errors import UsageError

AXIS = "clients"
# The context manager that sets the mesh to trace under: `jax.set_mesh` from jax 0.7 on, `use_mesh` before it.
_set_mesh = getattr(jax, "set_mesh", None) or jax.sharding.use_mesh
PyTree = Any


def client_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh over all devices of all processes."""
    return Mesh(np.array(devices if devices is not None else jax.devices()), (AXIS,))


def check_divisible(num_clients: int, mesh: Mesh, flag: str = "--clients") -> None:
    """Every device must hold the same number of clients."""
    count = mesh.size
    if count > 1 and num_clients % count:
        lower, upper = num_clients // count * count, -(-num_clients // count) * count
        options = " or ".join(str(n) for n in (lower, upper) if n > 0)
        raise UsageError(f"{flag} {num_clients} cannot be split evenly over {count} devices; use a multiple of {count} "
                         f"(e.g. {options}), or hide devices (CUDA_VISIBLE_DEVICES / JAX_PLATFORMS=cpu)")


def leading_axis_shardings(tree: PyTree, mesh: Mesh, num_clients: int) -> PyTree:
    """Split leaves whose leading axis is the clients axis; replicate the rest."""
    def spec(leaf):
        shape = np.shape(leaf)
        split = mesh.size > 1 and len(shape) >= 1 and shape[0] == num_clients and num_clients % mesh.size == 0
        return NamedSharding(mesh, P(AXIS) if split else P())

    return jax.tree.map(spec, tree)


def state_shardings(state, mesh: Mesh, num_clients: int):
    """Shardings of an algorithm's `State`: the client fields split, the server replicated."""
    replicated = lambda tree: jax.tree.map(lambda _: NamedSharding(mesh, P()), tree)
    return type(state)(
        clients=leading_axis_shardings(state.clients, mesh, num_clients),
        client_opt=leading_axis_shardings(state.client_opt, mesh, num_clients),
        server=replicated(state.server),
        server_opt=replicated(state.server_opt),
        step=NamedSharding(mesh, P()),
    )


def data_shardings(data, mesh: Mesh, num_clients: int):
    """Shardings of `ClientData`: per-client fields split; the images and labels replicated,
    since any client may draw any sample."""
    replicated = NamedSharding(mesh, P())
    per_client = leading_axis_shardings(
        {"client_index": data.client_index, "sizes": data.sizes, "weights": data.weights}, mesh, num_clients)
    return type(data)(images=replicated, labels=replicated, **per_client)


def put(tree: PyTree, shardings: PyTree) -> PyTree:
    """Place host-identical arrays on the mesh; works across processes as every host holds them."""
    def one(leaf, sharding):
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, tree, shardings)


class Placement:
    """Where a simulation's arrays live: as before on one device, or on the clients mesh.

    With one device every method is the identity (or plain `jax.jit`), so single-device runs
    are unchanged. `split` is False for the algorithms without parallel clients (sl,
    centralized): they are replicated on every device.
    """

    def __init__(self, num_clients: int, split: bool = True, mesh: Mesh | None = None, participants: int | None = None):
        self.mesh = mesh if mesh is not None else client_mesh()
        self.active = self.mesh.size > 1
        self.num_clients = num_clients if split else -1  # -1 matches no leading axis
        self.split = split
        if self.active and split:
            check_divisible(num_clients, self.mesh)
            if participants is not None and participants != num_clients:  # a round runs on K participants
                check_divisible(participants, self.mesh, "--clients-per-round")
        self._state = None

    def init_state(self, init, key: jax.Array):
        """Run `init` with its outputs already placed on the mesh. On one device it runs op by op: its
        random draws are the model's one compiled initialiser (models.factory) and the rest is copies
        and zeros, so no run compiles an initialiser of its own (jitting it whole took about a second
        per run, bit for bit the same state)."""
        if not self.active:
            return init(key)
        self._state = state_shardings(jax.eval_shape(init, key), self.mesh, self.num_clients)
        return jax.jit(init, out_shardings=self._state)(key)

    def place_state(self, state):
        """A restored state laid out as `init_state` lays a fresh one out (a checkpoint's arrays come back
        uncommitted, or in the layout of the processes that wrote it), so the compiled round takes it as it is."""
        return jax.device_put(state, self._state) if self.active and self._state is not None else state

    def data(self, data):
        return put(data, data_shardings(data, self.mesh, self.num_clients)) if self.active else data

    def replicate(self, tree: PyTree) -> PyTree:
        return put(tree, jax.tree.map(lambda _: NamedSharding(self.mesh, P()), tree)) if self.active else tree

    def jit_round(self, fn):
        """The round, donating its state; on a mesh it keeps the state's layout and replicates the
        metrics, so every round runs the one compiled executable."""
        if not self.active:
            return jax.jit(fn, donate_argnums=0)
        return jax.jit(fn, donate_argnums=0, out_shardings=(self._state, NamedSharding(self.mesh, P())))

    def jit_replicated(self, fn):
        return jax.jit(fn, out_shardings=NamedSharding(self.mesh, P())) if self.active else jax.jit(fn)

    def tracing(self):
        """The context to trace in: the mesh that `executors.map_clients` looks for (not for the algorithms without
        parallel clients, whose one client at a time would be split over the devices)."""
        return _set_mesh(self.mesh) if self.active and self.split else contextlib.nullcontext()
