"""Exact mean value analysis of the closed loop, and an open-loop estimate for Poisson arrivals.

**Closed loop** (``N`` workers, each taking the next request as soon as it is done; the
in-flight cap's admission delay is the think time ``Z``). Exact MVA (Reiser and Lavenberg,
1980) for a product-form network: delay stations (a worker's own host work), single-server
FIFO queues and multi-server queues (several PEs, or CPU cores), the latter through the
load-dependent recursion on marginal queue-length probabilities::

    delay:          R_k(n) = S_k
    1 server:       R_k(n) = S_k (1 + Q_k(n-1))
    c servers:      R_k(n) = sum_{j=1..n} j S_k / min(j, c) p_k(j-1 | n-1)
    X(n) = n / (Z + sum_k R_k(n));   Q_k(n) = X(n) R_k(n)
    p_k(j | n) = X(n) S_k / min(j, c) p_k(j-1 | n-1)  (j >= 1),  p_k(0 | n) = 1 - sum_{j>=1} p_k(j | n)

A queue's measured *lateness* (:mod:`lab.analysis.demand`: the simulator's engine woken late when
idle) is added to ``R_k`` weighted by the probability that an arriving job finds a server idle
(``1 - U_k(n-1)`` for one server, ``sum_{j<c} p_k(j | n-1)`` for ``c``), an approximation.

It is exact when service times are exponential (or the stations are processor-sharing); a
device whose stages take a constant time (the simulated NPU) queues less than that, so MVA is
a pessimistic estimate there and the virtual-time twin (:mod:`lab.analysis.twin`), which replays
the measured service times, is the closer one.

**Open loop** (Poisson arrivals at rate ``lambda``): each queue is an M/M/c station (Erlang C),
with the waiting time scaled by ``(ca^2 + cs^2) / 2`` (Allen-Cunneen) where ``cs^2`` is the
station's measured squared coefficient of variation and ``ca^2`` its arrivals' (1 at the first
queue, then propagated through the chain with Whitt's QNA linking equation). Exact for M/M/c,
an approximation otherwise. Workers are assumed plentiful; :func:`open_loop` says how many are
busy on average (Little's law) so a short pool shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lab.analysis.demand import PipelineModel
from lab.errors import ConfigError

__all__ = ["MvaResult", "OpenLoopResult", "erlang_c", "mva", "mva_network", "open_loop"]


@dataclass(frozen=True)
class MvaResult:
    """MVA for populations 1..N (row ``i`` is population ``i + 1``).

    Attributes:
        population: 1..N.
        throughput_rps: jobs per second at each population.
        latency_ns: mean time a job spends in the stations (the think time excluded).
        residence_ns: per station (columns in ``stations`` order), mean time a job spends there.
        queue: per station, mean jobs there (waiting or served).
        utilization: per station, busy fraction of one server (``X S / c``; 0 for delays).
        stations: station names.
        batch: samples per job.
    """

    population: np.ndarray
    throughput_rps: np.ndarray
    latency_ns: np.ndarray
    residence_ns: np.ndarray
    queue: np.ndarray
    utilization: np.ndarray
    stations: tuple[str, ...]
    batch: int = 1

    def at(self, n: int) -> dict[str, Any]:
        """Throughput (samples/s), latency (ms) and per-station utilisation at population ``n``."""
        if not 1 <= n <= len(self.population):
            raise ConfigError(f"population must be in 1..{len(self.population)}, got {n}")
        i = n - 1
        return {"population": n, "throughput_rps": float(self.throughput_rps[i] * self.batch),
                "latency_ms": float(self.latency_ns[i] / 1e6),
                "utilization": {s: float(self.utilization[i, k]) for k, s in enumerate(self.stations)}}

    def frame(self) -> Any:
        """A tidy table: population, throughput (samples/s), latency (ms), utilisation per station."""
        import pandas as pd  # lazy

        data: dict[str, Any] = {"population": self.population, "throughput_rps": self.throughput_rps * self.batch,
                                "latency_ms": self.latency_ns / 1e6}
        for k, s in enumerate(self.stations):
            data[f"util_{s}"] = self.utilization[:, k]
        return pd.DataFrame(data)


def mva_network(service_ns: np.ndarray | list[float], servers: list[int | None], n_max: int, *,
                think_ns: float = 0.0, late_ns: np.ndarray | list[float] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact MVA on raw numbers.

    Args:
        service_ns: mean service time per visit at each station (one visit per job).
        servers: per station, the number of servers, or None for a delay (infinite servers).
        n_max: largest population.
        think_ns: think time outside the stations.
        late_ns: per queue station, a delay added to a job that finds a server idle (the
            simulator's lateness): ``late x P(a server is idle | n - 1)`` by the arrival theorem
            (an approximation: the delay does not hold the server).

    Returns:
        ``(X, R, Q, U)``: throughput (jobs/ns) per population, shape ``(n_max,)``; residence
        time, mean queue and per-server utilisation per population and station, shape ``(n_max, K)``.

    Raises:
        ConfigError: bad sizes, negative times or server counts.
    """
    S = np.asarray(service_ns, dtype=np.float64)
    K = S.size
    if len(servers) != K:
        raise ConfigError(f"expected one server count per station ({K}), got {len(servers)}")
    if isinstance(n_max, bool) or not isinstance(n_max, (int, np.integer)) or n_max < 1:
        raise ConfigError(f"population must be an integer >= 1, got {n_max!r}")
    if np.any(~np.isfinite(S)) or np.any(S < 0) or think_ns < 0:
        raise ConfigError(f"service and think times must be finite and >= 0 ns, got {S.tolist()} and {think_ns}")
    for c in servers:
        if c is not None and (isinstance(c, bool) or int(c) != c or c < 1):
            raise ConfigError(f"servers must be integers >= 1 or None (delay), got {servers}")
    late = np.zeros(K) if late_ns is None else np.asarray(late_ns, dtype=np.float64)
    if late.size != K or np.any(~np.isfinite(late)) or np.any(late < 0):
        raise ConfigError(f"late_ns must give one finite value >= 0 per station ({K}), got {late_ns!r}")
    X = np.zeros(n_max)
    R = np.zeros((n_max, K))
    Q = np.zeros((n_max, K))
    U = np.zeros((n_max, K))
    q_prev = np.zeros(K)
    u_prev = np.zeros(K)
    # marginal probabilities p_k(j | n-1), j = 0..n_max, for multi-server stations
    multi = [k for k in range(K) if servers[k] is not None and servers[k] > 1]
    p_prev = {k: np.zeros(n_max + 1) for k in multi}
    for k in multi:
        p_prev[k][0] = 1.0
    for n in range(1, n_max + 1):
        r = np.zeros(K)
        for k in range(K):
            c = servers[k]
            if c is None:
                r[k] = S[k]
            elif c == 1:
                r[k] = S[k] * (1.0 + q_prev[k]) + late[k] * max(0.0, 1.0 - u_prev[k])
            else:
                j = np.arange(1, n + 1)
                r[k] = float(np.sum(j * S[k] / np.minimum(j, c) * p_prev[k][:n]))
                r[k] += late[k] * float(p_prev[k][:c].sum())  # P(fewer than c busy | n - 1)
        total = think_ns + r.sum()
        x = n / total if total > 0 else math.inf
        q = x * r
        for k in multi:
            c = servers[k]
            p = np.zeros(n_max + 1)
            j = np.arange(1, n + 1)
            p[1:n + 1] = x * S[k] / np.minimum(j, c) * p_prev[k][:n]
            p[0] = max(0.0, 1.0 - p[1:n + 1].sum())  # clamp round-off at saturation
            p_prev[k] = p
        X[n - 1] = x
        R[n - 1] = r
        Q[n - 1] = q
        U[n - 1] = [0.0 if servers[k] is None else x * S[k] / servers[k] for k in range(K)]
        q_prev = q
        u_prev = U[n - 1]
    return X, R, Q, U


def mva(model: PipelineModel, max_population: int) -> MvaResult:
    """Exact MVA of ``model``'s closed loop for populations 1..``max_population``.

    The population is the number of requests in flight: the worker count when there is no cap
    below it (``min(workers, max_inflight)`` otherwise). The model's admission time is the think time.
    """
    S = [s.service_ns for s in model.stations]
    servers = [s.servers if s.is_queue else None for s in model.stations]
    late = [s.late_ns if s.is_queue else 0.0 for s in model.stations]
    X, R, Q, U = mva_network(S, servers, max_population, think_ns=model.admission_ns, late_ns=late)
    return MvaResult(population=np.arange(1, max_population + 1), throughput_rps=X * 1e9, latency_ns=R.sum(axis=1),
                     residence_ns=R, queue=Q, utilization=U, stations=tuple(s.name for s in model.stations),
                     batch=model.batch)


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with ``offered = lambda * S`` erlangs.

    Raises:
        ConfigError: ``offered >= servers`` (unstable) or bad arguments.
    """
    if isinstance(servers, bool) or not isinstance(servers, int) or servers < 1:
        raise ConfigError(f"servers must be an integer >= 1, got {servers!r}")
    if not (offered >= 0 and offered < servers):
        raise ConfigError(f"an M/M/c queue needs 0 <= offered load < servers ({servers}), got {offered!r}")
    # sum_{k<c} a^k/k!  and  a^c/c! * c/(c-a), computed term by term
    term, total = 1.0, 1.0
    for k in range(1, servers):
        term *= offered / k
        total += term
    last = term * offered / servers * servers / (servers - offered)
    return last / (total + last)


@dataclass(frozen=True)
class OpenLoopResult:
    """The open-loop estimate at one arrival rate.

    Attributes:
        rate_rps: offered jobs per second.
        stable: every queue's utilisation below 1.
        latency_ns: mean latency (inf when unstable).
        utilization: per station, per-server utilisation (delays: 0).
        wait_ns: per station, mean waiting time before service.
        busy_workers: mean workers holding a request (Little's law: rate x latency).
        bottleneck: the station with the highest utilisation.
    """

    rate_rps: float
    stable: bool
    latency_ns: float
    utilization: dict[str, float] = field(default_factory=dict)
    wait_ns: dict[str, float] = field(default_factory=dict)
    busy_workers: float = math.nan
    bottleneck: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (ms)."""
        return {"rate_rps": self.rate_rps, "stable": self.stable, "latency_ms": self.latency_ns / 1e6,
                "utilization": dict(self.utilization), "wait_ms": {k: v / 1e6 for k, v in self.wait_ns.items()},
                "busy_workers": self.busy_workers, "bottleneck": self.bottleneck}


def open_loop(model: PipelineModel, rate_rps: float, *, arrival_cv2: float = 1.0) -> OpenLoopResult:
    """Mean latency and utilisations for Poisson arrivals (``arrival_cv2=1``) at ``rate_rps`` jobs/s.

    See the module docstring for the approximation. An unstable rate (some queue at or over
    100 %) returns ``stable=False`` and infinite latency, not an error.

    Raises:
        ConfigError: a rate that is not a positive number.
    """
    if isinstance(rate_rps, bool) or not isinstance(rate_rps, (int, float)) or not rate_rps > 0:
        raise ConfigError(f"rate_rps must be a number > 0, got {rate_rps!r}")
    lam = rate_rps / 1e9  # jobs per ns
    ca2 = float(arrival_cv2)
    latency = 0.0
    util: dict[str, float] = {}
    wait: dict[str, float] = {}
    stable = True
    for s in model.stations:
        if not s.is_queue:
            util[s.name] = 0.0
            wait[s.name] = 0.0
            latency += s.service_ns
            continue
        c, S = s.servers, s.service_ns
        rho = lam * S / c
        util[s.name] = rho
        if rho >= 1.0:
            stable = False
            wait[s.name] = math.inf
            continue
        cs2 = s.cv2
        wq_mm = erlang_c(c, lam * S) * S / (c * (1 - rho)) if S > 0 else 0.0
        wq = wq_mm * (ca2 + cs2) / 2
        idle = 1.0 - (erlang_c(c, lam * S) if S > 0 else 0.0)
        wait[s.name] = wq + s.late_ns * idle  # lateness only for arrivals that find a server idle
        latency += wait[s.name] + S
        # Whitt's QNA: variability of the departures, the next queue's arrivals
        ca2 = 1 + (1 - rho ** 2) * (ca2 - 1) + rho ** 2 / math.sqrt(c) * (cs2 - 1)
    bottleneck = max(util, key=util.get) if util else ""
    if not stable:
        return OpenLoopResult(rate_rps=float(rate_rps), stable=False, latency_ns=math.inf, utilization=util,
                              wait_ns=wait, busy_workers=math.inf, bottleneck=bottleneck)
    busy = lam * (latency - model.station("runner").service_ns if model.has("runner") else latency)
    return OpenLoopResult(rate_rps=float(rate_rps), stable=True, latency_ns=latency, utilization=util, wait_ns=wait,
                          busy_workers=busy, bottleneck=bottleneck)
