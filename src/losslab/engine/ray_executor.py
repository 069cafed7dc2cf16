"""The Ray executor: the pending runs of a plan as Ray tasks, on an existing cluster or a local one.

Each run is one task (``num_cpus``/``num_gpus`` per run); each vectorized pack
(:mod:`losslab.engine.packing`) is one task that trains the stacked model
(:func:`losslab.engine.vmap.train_pack`). Only this process, the driver,
touches the store: it claims a run (with the same leases as the local
executor, :class:`losslab.engine.executor.Leases`) just before submitting it,
stores each result the moment its task returns, and hands students out only
after their teachers are stored. So concurrent ``losslab run`` processes, a
killed driver and a resumed grid behave exactly as with the local executor;
Ray ends a dead driver's tasks, and its leases then expire.

A task trains with ``torch.set_num_threads(max(1, int(cpus_per_run)))``, the
local executor's per-worker thread count when ``--workers`` splits the cores
into shares of that size, and so stores the local executor's numbers.

An address is checked before Ray is asked to connect (Ray itself retries an
unreachable one for minutes): the GCS must accept a TCP connection and answer
an HTTP/2 preface, as every gRPC server does, within :data:`PROBE_TIMEOUT_S`.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from losslab.engine.executor import Driver, ExecutionSummary, _labels, _work, lease_seconds
from losslab.engine.packing import Member, Pack
from losslab.engine.plan import RunSpec
from losslab.engine.store import RunResult, Store

__all__ = ["PROBE_TIMEOUT_S", "check_address", "check_resources", "execute_ray", "ray_session", "spread"]

PROBE_TIMEOUT_S = 3.0
RAY_CLIENT_PORT = 10001  # Ray Client's default port (``ray://HOST`` without one)
ADDRESS_FORMS = "auto, HOST:PORT or ray://HOST[:PORT]"
# HTTP/2 client preface and an empty SETTINGS frame; a gRPC server answers with its own SETTINGS frame (type 4).
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x04
# Ray resolves 127.0.0.1 to the machine's routed address unless this is 0 when it is imported; with it,
# a cluster started here (and a driver joining one on loopback) stays on loopback.
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as ``(host, port)``; ValueError naming ``--address``."""
    bad = ValueError(f"Expected `--address` to be {ADDRESS_FORMS}, but got {text!r}.")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else None)
    elif text.count(":") == 1 or (":" not in text and default_port is not None):
        host, _, port_text = text.partition(":")
    else:
        raise bad
    if not host or port_text is None or (not port_text and default_port is None):
        raise bad
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise bad from None
    if not 0 < port < 65536:
        raise bad
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why ``host:port`` is not a reachable gRPC server (one line), or None when it is."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except socket.timeout:
        return f"no answer within {timeout:g} s"
    except OSError as exc:  # refused, unreachable, unknown host
        return exc.strerror or str(exc) or type(exc).__name__
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        return "something answers there, but not a Ray cluster (no gRPC)"
    return None


def check_address(address: str | None) -> None:
    """Raise ``ValueError`` (one line naming ``--address``) unless ``address`` is usable, within seconds.

    ``None`` (start a local cluster) is always usable; ``"auto"`` is resolved as
    Ray does (``RAY_ADDRESS``, then the cluster the last ``ray start`` on this
    machine recorded); ``HOST:PORT`` and ``ray://HOST[:PORT]`` (Ray Client) must
    answer a gRPC handshake within :data:`PROBE_TIMEOUT_S`.
    """
    if address is None:
        return
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"Expected `--address` to be {ADDRESS_FORMS}, but got {address!r}.")
    target = _dial_target(address)
    if target is None:
        return
    host, port, shown = target
    why = _probe(host, port)
    if why is not None:
        via = "" if shown == address else f" (at {shown})"
        raise ValueError(f"cannot reach a Ray cluster at `--address` {address!r}{via}: {why}")


def _dial_target(address: str) -> tuple[str, int, str] | None:
    """``(host, port, shown)`` that Ray will connect to for ``address``."""
    if address.startswith("ray://"):
        if importlib.util.find_spec("grpc") is None:
            raise ValueError(f"`--address` {address!r} uses the Ray Client, which needs grpcio: "
                             "pip install 'ray[client]' (or give the cluster's HOST:PORT from one of its nodes)")
        host, port = _split_host_port(address[len("ray://"):], RAY_CLIENT_PORT)
        return host, port, f"{host}:{port}"
    if address == "auto":
        env = os.environ.get("RAY_ADDRESS", "")
        if env and env != "auto":
            return _dial_target(env)
        ray = _import_ray(loopback=False)
        try:  # Ray's own resolution of "auto": the address `ray start` recorded on this machine
            resolved = ray._private.services.canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, ValueError) as exc:
            raise ValueError(f"`--address` auto found no Ray cluster on this machine "
                             f"({' '.join(str(exc).split())}); start one with `ray start --head` or give "
                             "HOST:PORT") from None
        except AttributeError:  # a Ray without this helper: ray.init resolves it (unprobed)
            return None
        host, port = _split_host_port(resolved, None)
        return host, port, resolved
    host, port = _split_host_port(address, None)
    if _is_loopback(host):
        _import_ray(loopback=True)
    ray = sys.modules.get("ray")
    if ray is not None and _is_loopback(host):
        # Ray dials what it resolves 127.0.0.1 to; probe that, so a mismatch is an error, not a hang
        try:
            host = ray._private.services.resolve_ip_for_localhost(host)
        except Exception:  # keep the given host
            pass
    return host, port, f"{host}:{port}"


def _import_ray(*, loopback: bool) -> Any:
    """Import Ray (``loopback``: first tell it to keep 127.0.0.1 as this node's address); ValueError if missing."""
    if loopback and "ray" not in sys.modules:
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as exc:
        raise ValueError(f"`--executor ray` needs Ray, which cannot be imported ({exc}); "
                         "install it with: pip install 'losslab[ray]'") from None
    return ray


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """A connection to Ray for the duration of the block; yields the ``ray`` module.

    ``None`` starts a local cluster (loopback, no dashboard, worker logs kept
    off the terminal) and stops it afterwards; an address connects to that
    cluster and disconnects afterwards. A session this process already holds
    (``ray.is_initialized()``) is used as it is and left open.

    Raises:
        ValueError: ``address`` is malformed or unreachable (within seconds), or Ray is not installed.
    """
    check_address(address)
    ray = _import_ray(loopback=address is None)
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                              "configure_logging": True}
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address="local" if address is None else address, **kwargs)
    except Exception as exc:  # version mismatch, authentication, a node that never came up: one line
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__).strip()
        where = "start a local Ray cluster" if address is None else f"connect to Ray at `--address` {address!r}"
        if address is not None and isinstance(exc, ConnectionError) and "RAY_AUTH_MODE" not in os.environ:
            # Ray sends its token only where told to; a cluster with token authentication looks unreachable
            first += " (if the cluster uses token authentication, set RAY_AUTH_MODE=token)"
        raise ValueError(f"cannot {where}: {first}") from None
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)  # ray.init installs its own; the caller's (Ctrl-C path) wins
    try:
        yield ray
    finally:
        ray.shutdown()


def check_resources(cpus_per_run: float, gpus_per_run: float, runs: Sequence[RunSpec] = ()) -> None:
    """Raise ``ValueError`` (naming the option) for a resource request that cannot train ``runs``.

    ``cpus_per_run`` must be positive and ``gpus_per_run`` non-negative (Ray takes
    fractions of either); runs on CUDA (``train.device``) need a GPU each, since a
    task without one sees no GPU at all.
    """
    for name, value, positive in (("cpus-per-run", cpus_per_run, True), ("gpus-per-run", gpus_per_run, False)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < float("inf")
        if not number or (value <= 0 if positive else value < 0):
            kind = "a positive" if positive else "a non-negative"
            raise ValueError(f"Expected `--{name}` to be {kind} number, but got {value!r}.")
    if gpus_per_run == 0 and any(str(r.config["train"].get("device", "cpu")).startswith("cuda") for r in runs):
        raise ValueError("runs train on cuda (train.device), but `--gpus-per-run` is 0: "
                         "give each run a GPU, e.g. --gpus-per-run 1")


def _threads(cpus_per_run: float) -> int:
    return max(1, int(cpus_per_run))


def _tag(results: list[RunResult], extra: dict[str, Any]) -> list[RunResult]:
    """Record where the task ran next to the environment the training code recorded."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    for r in results:
        r.environment = {**r.environment, **extra, "ray_node": node}
    return results


def _run_task(run: RunSpec, states: dict[str, bytes], threads: int, extra: dict[str, Any]) -> list[RunResult]:
    """One run on a Ray worker, exactly as a local worker trains it (``_init_worker`` then ``_work``)."""
    torch.set_num_threads(threads)
    return _tag([_work(run, states)], extra)


def _pack_task(runs: list[RunSpec], threads: int, extra: dict[str, Any]) -> tuple[list[RunResult], str | None]:
    """A pack on a Ray worker: its members as one stacked model, or one by one if the pack cannot train.

    Returns the results and, when the pack fell back to sequential training, why
    (the driver warns, as the local executor does).
    """
    from losslab.engine.train import build_data
    from losslab.engine.vmap import train_pack

    torch.set_num_threads(threads)
    try:  # the members' data is rebuilt here (shipping it would cost more than the per-process cache does)
        results, why = train_pack(Pack([Member(r, build_data(r.config)) for r in runs])), None
    except Exception as exc:
        results, why = [_work(r, {}) for r in runs], f"{type(exc).__name__}: {exc}"
    return _tag(results, {**extra, "executor": "ray+vmap"}), why


def _lost(runs: list[RunSpec], exc: BaseException) -> list[RunResult]:
    """Failed results for runs whose task never returned (its worker or node died, it ran out of memory)."""
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    error = f"{type(exc).__name__}: {first.strip()}"[:500]
    now = time.time()
    return [RunResult(r.run_id, "failed", r.config, _labels(r), error=error, started_at=now, finished_at=now)
            for r in runs]


def execute_ray(
    runs: list[RunSpec],
    store: Store,
    *,
    address: str | None = None,
    on_result: Callable[[RunResult, bool], None] | None = None,
    packs: Sequence[Pack] | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float = 0,
    lease_s: float | None = None,
) -> ExecutionSummary:
    """Train ``runs`` as Ray tasks and store each result from this process, as :func:`execute` does.

    Args:
        runs: the pending runs (``pending_runs(plan, store)``), teachers and students alike.
        store: where results go; only this process writes to it.
        address: ``None`` starts a local cluster for the call; ``"auto"``, ``HOST:PORT``
            or ``ray://HOST[:PORT]`` joins an existing one (see :func:`ray_session`).
        on_result: called with each result and whether it was stored by this process.
        packs: vectorized packs (:func:`losslab.engine.packing.plan_packs`) of runs in
            ``runs``; each trains as one task.
        cpus_per_run, gpus_per_run: the Ray resources each task requests; a task
            trains with ``max(1, int(cpus_per_run))`` torch threads.
        lease_s: claim lease, default :func:`losslab.engine.executor.lease_seconds`.

    Raises:
        ValueError: a bad resource request, runs on CUDA with ``gpus_per_run=0``, a
            request no node of the cluster can meet, or a bad/unreachable address.
    """
    check_resources(cpus_per_run, gpus_per_run, runs)
    packs = list(packs or ())
    lease = lease_s if lease_s is not None else lease_seconds()
    with ray_session(address) as ray:
        total = ray.cluster_resources()
        if total.get("CPU", 0) < cpus_per_run or total.get("GPU", 0) < gpus_per_run:
            raise ValueError(f"no Ray node can meet `--cpus-per-run` {cpus_per_run:g} and `--gpus-per-run` "
                             f"{gpus_per_run:g}: the cluster has {total.get('CPU', 0):g} CPUs and "
                             f"{total.get('GPU', 0):g} GPUs")
        return _drive(ray, runs, store, packs, on_result, lease, cpus_per_run, gpus_per_run)


def _slots(ray: Any, cpus: float, gpus: float) -> int:
    """How many tasks the cluster runs at once now (it may grow: asked again each round)."""
    total = ray.cluster_resources()
    n = int(total.get("CPU", 0) // cpus)
    if gpus:
        n = min(n, int(total.get("GPU", 0) // gpus))
    return max(1, n)


def spread(packs: Sequence[Pack], slots: int) -> list[Pack]:
    """``packs`` with the largest halved until there are ``slots`` of them (or none has 4+ members).

    A pack is one task: a 64-run pack would keep one CPU busy while the rest of
    the cluster idles. Halves of a pack are packs (members share everything a
    pack requires), and a member's result does not depend on its pack's other
    members, so splitting changes the parallelism, not the numbers.
    """
    out = list(packs)
    while len(out) < slots:
        big = max(range(len(out)), key=lambda i: len(out[i].members), default=None)
        if big is None or len(out[big].members) < 4:
            break
        members = out.pop(big).members
        half = len(members) // 2
        out += [Pack(members[:half]), Pack(members[half:])]
    return out


def _drive(ray: Any, runs: list[RunSpec], store: Store, packs: list[Pack],
           on_result: Callable[[RunResult, bool], None] | None, lease_s: float,
           cpus: float, gpus: float) -> ExecutionSummary:
    """The driver loop: claim, submit, store; the same bookkeeping as :func:`losslab.engine.executor.execute`."""
    driver = Driver(runs, store, on_result, lease_s)
    schedule, summary = driver.schedule, driver.summary
    record, take, claim, settle_elsewhere = driver.record, driver.take, driver.claim, driver.settle_elsewhere
    extra = {"executor": "ray", "ray_cpus": cpus, "ray_gpus": gpus}
    threads = _threads(cpus)
    options = {"num_cpus": cpus, "num_gpus": gpus}
    run_remote = ray.remote(_run_task).options(**options)
    pack_remote = ray.remote(_pack_task).options(**options)
    inflight: dict[Any, tuple[str, list[RunSpec]]] = {}

    def submit_pack(pack: Pack) -> None:
        mine = [m.run for m in pack.members if claim(m.run)]  # the others wait with the runs others hold
        if len(mine) >= 2:
            inflight[pack_remote.remote(mine, threads, extra)] = ("pack", mine)
        for run in mine if len(mine) < 2 else ():
            inflight[run_remote.remote(run, {}, threads, extra)] = ("run", [run])

    packs = spread(packs, _slots(ray, cpus, gpus))
    for pack in packs:
        schedule.reserve(pack.runs)
    try:
        queue = take()
        while True:
            # Keep about two tasks per slot queued: other drivers can still claim the rest, and an
            # interrupt cancels little.
            limit = 2 * _slots(ray, cpus, gpus)
            while (packs or queue) and len(inflight) < limit:
                if packs:
                    submit_pack(packs.pop(0))
                    continue
                run, states = queue.pop(0)
                if claim(run):
                    inflight[run_remote.remote(run, states, threads, extra)] = ("run", [run])
            if not inflight:
                if packs or queue:
                    continue
                queue = settle_elsewhere()
                if not queue:
                    break
                continue
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                kind, members = inflight.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task died (node lost, OOM): its runs fail, retried later
                    out = (_lost(members, exc), None) if kind == "pack" else _lost(members, exc)
                results, why = out if kind == "pack" else (out, None)
                if why is not None:
                    warnings.warn(f"a vectorized pack of {len(members)} runs failed ({why}); "
                                  "trained them sequentially", RuntimeWarning, stacklevel=2)
                for result in results:
                    record(result)
            queue += take()
        return summary
    except BaseException:
        # Interrupted: stored runs stay; the tasks still queued or running are stopped, not left to finish.
        for ref in inflight:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished or gone
                pass
        raise
    finally:
        driver.close()
