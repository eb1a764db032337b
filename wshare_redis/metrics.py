"""Prometheus metrics of pools: a collector that reads each pool's status when scraped, and
the HTTP exporter `wshare metrics` runs. Needs the ``metrics`` extra (prometheus-client),
imported only when metrics are collected or served, so the CLI can use ``pool_names``
without it.

Every scrape makes one SCAN for the pools (unless they are given) and one status call per
pool; nothing is cached between scrapes, so a pool created meanwhile shows up at the next.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

import redis
from redis.exceptions import RedisClusterException

from .errors import PoolNotFound, WshareError
from .keys import DEFAULT_PREFIX, pool_of_key, pools_pattern
from .pool import Pool
from .status import COUNTERS, PoolStatus

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger("wshare_redis.metrics")

INSTALL_HINT = "pip install 'wshare-redis[metrics]'"

#: Per pool, labelled ``pool``: (metric name, help, PoolStatus attribute).
POOL_GAUGES = (
    ("wshare_pool_capacity_units", "Units in the pool.", "capacity"),
    ("wshare_pool_held_units", "Units held by live leases.", "held"),
    ("wshare_pool_free_units", "Units not held (capacity - held, at least 0).", "free"),
    ("wshare_pool_waiting_units", "Units asked by queued requests.", "waiting"),
)
#: Per member, labelled ``pool`` and ``member``: (metric name, help, MemberStatus attribute).
MEMBER_GAUGES = (
    ("wshare_member_weight", "The member's share weight.", "weight"),
    ("wshare_member_held_units", "Units the member holds.", "held"),
    ("wshare_member_waiting_units", "Units asked by the member's queued requests.", "waiting"),
    ("wshare_member_fair_share_units",
     "The member's weighted max-min fair share of the capacity given every member's demand.", "fair_share"),
    ("wshare_member_parked_requests", "Queued requests of the member no client blocks on (parked RQ jobs).",
     "parked"),
)
#: Help of each counter, exported as ``wshare_member_<counter>_total``.
COUNTER_HELP = {
    "grants": "Leases granted to the member (at once or from the queue).",
    "releases": "Leases the member released.",
    "revocations": "Leases of the member revoked by an operator.",
    "expirations": "Leases of the member that expired unrenewed (lost leases).",
    "queued": "Requests of the member that had to wait in the queue.",
    "timeouts": "Queued requests of the member that gave up at their timeout.",
    "cancels": "Queued requests of the member cancelled by their client.",
    "failed": "Queued requests of the member failed (cap lowered, pool shrunk, member removed).",
    "purged": "Queued requests of the member purged because their waiter went silent (crashed).",
}


def pool_names(client: Any, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The pools under ``prefix``, sorted, found by SCAN of their state hashes (on Redis
    Cluster, of every primary)."""
    names = set()
    for key in client.scan_iter(match=pools_pattern(prefix), count=1000):
        if isinstance(key, bytes):
            key = key.decode("utf-8", "surrogateescape")
        name = pool_of_key(key, prefix)
        if name is not None:
            names.add(name)
    return sorted(names)


class PoolCollector:
    """A prometheus-client collector of pools' status, read at every scrape.

    ``pools``: the pools to export (None: every pool under ``prefix``, found at each scrape).
    ``read_status``: how to read one pool's status (default ``Pool(client, name).status()``);
    it may raise PoolNotFound for a pool deleted since it was listed (skipped).

    Redis unreachable (or refusing the listing) makes the scrape report ``wshare_up 0`` and
    no pool metrics; a pool that cannot be read (malformed state, an ACL denying its keys)
    is left out and counted in ``wshare_scrape_pool_errors``.

    Usable in any process: ``prometheus_client.REGISTRY.register(PoolCollector(client))``.
    """

    def __init__(self, client: Any, *, prefix: str = DEFAULT_PREFIX, pools: Optional[Sequence[str]] = None,
                 read_status: Optional[Callable[[str], PoolStatus]] = None) -> None:
        self.client, self.prefix = client, prefix
        self.pools = list(pools) if pools is not None else None
        self._read = read_status or (lambda name: Pool(client, name, prefix=prefix).status())
        self._lock = threading.Lock()
        self._was_up = True

    def statuses(self) -> tuple[list[PoolStatus], int]:
        """The status of every exported pool and how many could not be read. Raises
        redis.RedisError (or RedisClusterException) when Redis is unreachable or refuses the
        listing."""
        names = self.pools if self.pools is not None else pool_names(self.client, self.prefix)
        out, errors = [], 0
        for name in names:
            try:
                out.append(self._read(name))
            except PoolNotFound:  # deleted since it was listed (or never created, if named)
                continue
            except (WshareError, redis.ResponseError) as e:  # this pool's state or keys, not Redis
                errors += 1
                log.warning("wshare: metrics: cannot read pool %r: %s", name, e)
        return out, errors

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        started = time.perf_counter()
        try:
            statuses, errors = self.statuses()
            up = True
        except (redis.RedisError, RedisClusterException, OSError) as e:
            statuses, errors, up = [], 0, False
            self._note(up, e)
        else:
            self._note(up, None)
        pool_labels, member_labels = ["pool"], ["pool", "member"]
        gauges = {name: GaugeMetricFamily(name, doc, labels=pool_labels) for name, doc, _ in POOL_GAUGES}
        members = GaugeMetricFamily("wshare_pool_members", "Members the pool knows (set, or holding or waiting).",
                                    labels=pool_labels)
        member_gauges = {name: GaugeMetricFamily(name, doc, labels=member_labels) for name, doc, _ in MEMBER_GAUGES}
        max_units = GaugeMetricFamily("wshare_member_max_units",
                                      "The member's cap on units held at once (no sample: uncapped).",
                                      labels=member_labels)
        counters = {c: CounterMetricFamily(f"wshare_member_{c}", COUNTER_HELP.get(c, f"The member's {c}."),
                                           labels=member_labels)
                    for c in COUNTERS}
        for st in statuses:
            for name, _doc, attr in POOL_GAUGES:
                gauges[name].add_metric([st.name], float(getattr(st, attr)))
            members.add_metric([st.name], float(len(st.members)))
            for member, m in st.members.items():
                for name, _doc, attr in MEMBER_GAUGES:
                    member_gauges[name].add_metric([st.name, member], float(getattr(m, attr)))
                if m.max_units is not None:
                    max_units.add_metric([st.name, member], float(m.max_units))
            # Members forgotten since (auto members gone idle) keep their counters, so no
            # series goes backwards; a counter restarts only when the pool is deleted.
            counted = dict(st.member_counters)
            for member, m in st.members.items():
                counted.setdefault(member, m.counters)
            for member in sorted(counted):
                for c in COUNTERS:
                    counters[c].add_metric([st.name, member], float(counted[member].get(c, 0)))
        yield from gauges.values()
        yield members
        yield from member_gauges.values()
        yield max_units
        yield from counters.values()
        yield GaugeMetricFamily("wshare_scrape_pool_errors",
                                "Pools left out of this scrape because they could not be read.", value=errors)
        yield GaugeMetricFamily("wshare_up", "1 if Redis answered this scrape, else 0.", value=1.0 if up else 0.0)
        yield GaugeMetricFamily("wshare_scrape_duration_seconds", "Seconds this scrape took.",
                                value=time.perf_counter() - started)

    def _note(self, up: bool, error: Optional[BaseException]) -> None:
        """Log when Redis becomes unreachable and when it answers again, not at every scrape."""
        with self._lock:
            was, self._was_up = self._was_up, up
        if was and not up:
            log.warning("wshare: metrics: Redis unreachable, reporting wshare_up 0: %s", error)
        elif up and not was:
            log.warning("wshare: metrics: Redis reachable again")


def registry_for(collector: PoolCollector) -> CollectorRegistry:
    """A registry holding only ``collector`` (no process or platform metrics)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def serve(collector: PoolCollector, *, port: int, addr: str = "127.0.0.1") -> WSGIServer:
    """Serve ``collector``'s metrics over HTTP on ``addr:port`` (every path; port 0: any free
    port, see ``server.server_port``) from a daemon thread; stop with ``server.shutdown()``.
    Raises OSError when the address cannot be bound."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=registry_for(collector))
    return server
