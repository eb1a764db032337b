"""Quota-gated RQ jobs: weighted per-member concurrency for RQ, without blocking workers.

    job = enqueue(queue, train_model, "resnet", quota=Quota("gpu", member="team-a", units=2))
    # rq worker --worker-class wshare_redis.rq.QuotaWorker default

A worker that picks a job with a quota takes its units before running it (in the worker
parent, before the fork). If the units are not free, the job is *parked*: status
"deferred", out of every RQ list, queued in the pool's fair queue; the worker moves on at
once. When the pool grants the units, the job goes back to the front of its queue holding
its lease (exactly once, guarded in Lua); the next worker that picks it adopts the lease.
Leases are renewed by the worker parent while the job runs and released when the work-horse
ends, however it ends (success, failure, timeout, stop, SIGKILL). A warm shutdown (SIGTERM)
waits for these steps around the job as RQ waits for the job itself. A reconciler run by every
worker (at start and every few seconds while idle) finishes hand-offs a crash interrupted.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Optional

from rq import Queue, SimpleWorker, Worker
from rq.job import Job, JobStatus

try:
    from rq.exceptions import StopRequested
except ImportError:  # older rq 2.x releases define it next to the worker
    from rq.worker import StopRequested  # type: ignore[attr-defined,no-redef]

from ._checks import check_seconds, check_units
from .errors import InvalidRequest, LeaseLost, WshareError
from .keys import DEFAULT_PREFIX, check_name, check_pool_name
from .lease import Lease
from .pool import Pool
from .scripts import standalone

log = logging.getLogger("wshare_redis.rq")

META_KEY = "wshare"            # job.meta["wshare"]: the Quota, as a dict
MARK_FIELD = "wshare_quota"    # plain field on rq:job:<id> while parked (readable from Lua)
RECONCILE_EVERY = 5.0          # seconds between a worker's reconciler runs
HANDOFF_ROUNDS = 4             # hand_off reads the hand-off list at most this many times per call
POOLS_KEY = "wshare:rq:pools"  # set of "<prefix>\0<pool>" that have parked RQ jobs (for reconcilers)


@dataclass(frozen=True)
class Quota:
    """Units of a pool a job holds while it runs. ``ttl``: lease seconds without renewal
    (the worker renews it every ``job_monitoring_interval``; keep it several times that)."""

    pool: str
    member: str
    units: int = 1
    ttl: float = 120.0
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_pool_name(self.pool)
        check_name(self.member, "member")
        check_units(self.units)
        check_seconds(self.ttl, "ttl")
        check_pool_name(self.prefix, "prefix")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Quota":
        return cls(pool=d["pool"], member=d["member"], units=int(d.get("units", 1)),
                   ttl=float(d.get("ttl", 120.0)), prefix=d.get("prefix", DEFAULT_PREFIX))


def enqueue(queue: Queue, f: Any, *args: Any, quota: Quota, **kwargs: Any) -> Job:
    """``queue.enqueue(f, *args, **kwargs)`` for a job that runs only under ``quota``."""
    if not isinstance(quota, Quota):
        raise InvalidRequest(f"quota must be a wshare_redis.rq.Quota, not {quota!r}")
    meta = dict(kwargs.pop("meta", None) or {})
    meta[META_KEY] = asdict(quota)
    return queue.enqueue(f, *args, meta=meta, **kwargs)


def quota_of(job: Job) -> Optional[Quota]:
    spec = (job.meta or {}).get(META_KEY)
    return Quota.from_dict(spec) if spec else None


def new_request_id(job_id: str) -> str:
    """A pool request (and lease) id for one attempt of a job: ``rq:<job id>:<nonce>``. Per
    attempt, so a retried job can never pick up the lease of an attempt still ending."""
    return f"rq:{job_id}:{secrets.token_hex(4)}"


def job_id_of(rid: str) -> str:
    return rid[3:].rsplit(":", 1)[0] if rid.startswith("rq:") else rid


def _decode(x: Any) -> Any:
    return x.decode() if isinstance(x, bytes) else x


def _marker(quota: Quota, rid: str) -> str:
    return json.dumps(dict(asdict(quota), rid=rid), sort_keys=True)


class _RQSide:
    """The RQ-side scripts (RQ keys only), bound to one connection."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.park_script = connection.register_script(standalone("rq_park"))
        self.unpark_script = connection.register_script(standalone("rq_unpark"))
        self.claim_script = connection.register_script(standalone("rq_claim"))

    def park(self, job: Job, queue: Queue, quota: Quota, rid: str) -> bool:
        keys = [job.key, f"{queue.key}:intermediate", queue.deferred_job_registry.key]
        return bool(self.park_script(keys=keys, args=[job.id, _marker(quota, rid)]))

    def unpark(self, job_id: str, rid: str) -> int:
        """1: put back on its queue now; 2: already put back for this request; 0: not ours."""
        job_key = Job.key_for(job_id)
        origin = _decode(self.connection.hget(job_key, "origin"))
        if origin is None:
            return 0  # deleted
        queue = Queue(origin, connection=self.connection)
        keys = [job_key, queue.key, queue.deferred_job_registry.key, Queue.redis_queues_keys]
        return int(self.unpark_script(keys=keys, args=[job_id, rid]))

    def unpark_or_release(self, job_id: str, rid: str, lease: Optional[Lease]) -> int:
        """Put a granted job back; if it is not ours any more (cancelled, deleted, another
        attempt), give its units back. Returns ``unpark``'s outcome: 1 put back now, 2 put
        back before (lease kept), 0 units given back (they may have gone to a parked job)."""
        outcome = self.unpark(job_id, rid)
        if outcome == 0 and lease is not None:
            lease.release()
        return outcome

    def parked_for(self, job_id: str, rid: str) -> bool:
        """True while the job is parked waiting for request ``rid`` (the test rq_unpark.lua makes)."""
        status, mark = self.connection.hmget(Job.key_for(job_id), ["status", MARK_FIELD])
        return _decode(status) == "deferred" and f'"rid": "{rid}"' in (_decode(mark) or "")

    def abandon(self, job: Job, queue: Queue) -> None:
        """Take a parked job out of the deferred registry (before failing it)."""
        pipe = self.connection.pipeline()
        pipe.zrem(queue.deferred_job_registry.key, job.id)
        pipe.hdel(job.key, MARK_FIELD)
        pipe.execute()

    def fail_parked(self, job_id: str, rid: str, message: str) -> None:
        """Fail a parked job whose request can never be granted (if it is still parked for it)."""
        if not self.parked_for(job_id, rid):
            return
        origin = _decode(self.connection.hget(Job.key_for(job_id), "origin"))
        try:
            job = Job.fetch(job_id, connection=self.connection)
        except Exception:  # deleted meanwhile
            return
        queue = Queue(origin, connection=self.connection)
        self.abandon(job, queue)
        fail_job(self.connection, job, queue, message)

    def claim(self, job: Job) -> str:
        return str(_decode(self.claim_script(keys=[job.key], args=["claim", ""])))

    def unclaim(self, job: Job, rid: str) -> None:
        self.claim_script(keys=[job.key], args=["release", rid])


def fail_job(connection: Any, job: Job, queue: Queue, message: str) -> None:
    """Mark a job that can never get its units FAILED, in RQ's failed registry, with the
    reason in ``job.meta["wshare_error"]`` (RQ 2 and 3 keep failure texts differently)."""
    log.error("wshare: job %s cannot run: %s", job.id, message)
    job.meta["wshare_error"] = message
    job.save_meta()  # type: ignore[no-untyped-call]
    job.set_status(JobStatus.FAILED)
    queue.failed_job_registry.add(job, exc_string=message)


def hand_off(connection: Any, pool: Pool, rq_side: Optional[_RQSide] = None, limit: int = 100) -> int:
    """Put parked jobs whose units were granted back on their queues (exactly once); give
    back the units of jobs cancelled or deleted while parked. Returns jobs put back."""
    rq_side = rq_side or _RQSide(connection)
    moved = 0
    # Giving units back grants them to the next parked jobs, whose ids join the list behind
    # the ones read: read it again so they go back now, not at the next reconciler tick.
    # Bounded (at most HANDOFF_ROUNDS * limit ids), however fast others append to it.
    for _ in range(HANDOFF_ROUNDS):
        rids = pool.handoffs(limit)
        if not rids:
            break
        for rid in rids:
            lease = pool.lease(rid)
            if lease is None:  # the request failed (a resize made it impossible, member removed)
                rq_side.fail_parked(job_id_of(rid), rid, f"wshare: pool {pool.name!r} can no longer grant "
                                    "this job's units (member removed, or more units than the pool has)")
            elif rq_side.unpark_or_release(job_id_of(rid), rid, lease) == 1:
                moved += 1
            pool.ack_handoff(rid)
    return moved


def _request_units(pool: Pool, rq_side: _RQSide, job_id: str, quota: Quota, rid: str) -> int:
    """Queue the pool request of a job parked in RQ for ``rid`` (idempotent). If the units
    are granted at once, put the job back (``unpark_or_release``'s outcome); else -1.

    The attempt may have ended between the caller's look at the job and this request: granted,
    run and released, or cancelled. Then ``park`` has just queued a request for nobody, which
    would hold units when granted until a hand-off gave them back: take it out again."""
    granted = pool.park(quota.member, rid, units=quota.units, ttl=quota.ttl)
    if granted is None and not rq_side.parked_for(job_id, rid):
        try:  # not the job's to fail if this goes wrong: the attempt is over
            if pool.cancel(rid):
                return -1
            granted = pool.lease(rid)  # granted in between (or failed: its hand-off acks it)
        except WshareError as e:  # the pool was deleted meanwhile, and the request with it
            log.warning("wshare: could not take back request %s of an ended attempt: %s", rid, e)
            return -1
    if granted is None:
        return -1
    return rq_side.unpark_or_release(job_id, rid, granted)


def _free_stale_leases(connection: Any, pool: Pool) -> int:
    """Release leases of jobs that can no longer use them: cancelled, deleted or ended while
    their lease lived (e.g. cancelled after being put back on the queue). A pool has at most
    ``capacity`` leases, so this stays small."""
    freed = 0
    for lease in pool.leases():
        if not lease.id.startswith("rq:"):
            continue
        status = _decode(connection.hget(Job.key_for(job_id_of(lease.id)), "status"))
        if status not in ("queued", "started", "deferred", "scheduled"):
            if lease.release():
                freed += 1
                log.info("wshare: freed the units of job %s (%s)", job_id_of(lease.id), status or "deleted")
    return freed


def _scan_window(connection: Any, key: str, limit: int) -> list[Any]:
    """The next ``limit`` ids of a registry, in rounds: every call looks further along."""
    cursor_key = f"wshare:rq:scan:{key}"
    start = int(connection.incrby(cursor_key, limit)) - limit
    ids = connection.zrange(key, start, start + limit - 1)
    if len(ids) < limit:
        connection.set(cursor_key, 0)
        if start:
            ids += connection.zrange(key, 0, limit - len(ids) - 1)
    return list(ids)


def reconcile(connection: Any, queues: list[Queue], limit: int = 200) -> dict[str, int]:
    """Repair what a crash may have interrupted, in bounded batches: hand-offs not acted on,
    parked jobs granted but not put back, parked jobs missing from the pool's queue (crash
    between parking and queueing), expired leases. Safe to run anywhere, concurrently."""
    rq_side = _RQSide(connection)
    pools: dict[tuple[str, str], Pool] = {}
    for raw in connection.smembers(POOLS_KEY):
        prefix, _, name = _decode(raw).partition("\0")
        try:
            pools[(prefix, name)] = Pool(connection, name, prefix=prefix)
        except WshareError:
            connection.srem(POOLS_KEY, raw)
    counts = {"handed_off": 0, "requeued_requests": 0, "unparked": 0, "freed": 0}
    for (prefix, name), pool in list(pools.items()):
        if not connection.exists(pool.keys.key("pool")):  # deleted: forget it
            connection.srem(POOLS_KEY, f"{prefix}\0{name}")
            continue
        try:
            pool._drain()  # expired leases reclaimed, units handed on
            counts["freed"] += _free_stale_leases(connection, pool)
        except WshareError:
            continue
        counts["handed_off"] += hand_off(connection, pool, rq_side)
    for queue in queues:
        for raw in _scan_window(connection, queue.deferred_job_registry.key, limit):
            job_id = _decode(raw)
            mark = _decode(connection.hget(Job.key_for(job_id), MARK_FIELD))
            if not mark:
                continue  # deferred for other reasons (dependencies)
            try:
                spec = json.loads(mark)
                quota, rid = Quota.from_dict(spec), str(spec["rid"])
            except (ValueError, KeyError, TypeError, WshareError):
                continue
            pool = pools.setdefault((quota.prefix, quota.pool), Pool(connection, quota.pool, prefix=quota.prefix))
            lease = pool.lease(rid)
            if lease is not None:  # granted, not put back (its hand-off was lost)
                outcome, count = rq_side.unpark_or_release(job_id, rid, lease), "unparked"
            else:
                try:  # idempotent: a request still queued stays as it is
                    outcome, count = _request_units(pool, rq_side, job_id, quota, rid), "requeued_requests"
                except WshareError as e:
                    log.warning("wshare: parked job %s cannot get its units: %s", job_id, e)
                    continue
            if outcome == 1:
                counts[count] += 1
            elif outcome == 0:  # units given back: they may have gone to another parked job
                counts["handed_off"] += hand_off(connection, pool, rq_side)
    return counts


class QuotaMixin:
    """What QuotaWorker and QuotaSimpleWorker add to RQ's workers (RQ 2.x and 3.x)."""

    connection: Any
    _stop_requested: bool          # RQ's: its work loop stops before the next job
    _wshare_lease: Optional[Lease] = None
    _wshare_next_reconcile: float = 0.0
    _wshare_guards = 0             # > 0 while a step that must not be cut short runs
    _wshare_stop_waiting = False   # a warm shutdown arrived during one

    def request_stop(self, signum: int, frame: Any) -> None:
        # RQ's warm-shutdown handler raises StopRequested at once unless the worker is BUSY
        # (a horse runs). Our gate before the fork, the release after the horse ended and the
        # reconciler run while it is not: cut short between a grant and its release or
        # hand-off, they would leave a lease held until its ttl. There the stop waits for
        # the step to finish, as it waits for a running horse.
        try:
            super().request_stop(signum, frame)  # type: ignore[misc]
        except StopRequested:
            if not self._wshare_guards:
                raise
            self._stop_requested = True
            self._wshare_stop_waiting = True

    @contextmanager
    def _wshare_unstoppable(self, *, stop_after: bool) -> Iterator[None]:
        """Run the block to its end despite a warm shutdown; then, with ``stop_after``, stop as
        RQ would have (raise StopRequested); without, RQ's loop stops before the next job."""
        self._wshare_guards += 1
        try:
            yield
        finally:
            self._wshare_guards -= 1
        if self._wshare_stop_waiting and not self._wshare_guards:
            self._wshare_stop_waiting = False
            log.info("wshare: warm shutdown after the quota step it arrived in")
            if stop_after:
                raise StopRequested()

    @property
    def dequeue_timeout(self) -> int:
        # Wake up while idle to run the reconciler (RQ's default is worker_ttl - 15 s).
        return int(min(super().dequeue_timeout, RECONCILE_EVERY))  # type: ignore[misc]

    def heartbeat(self, timeout: Optional[int] = None, pipeline: Any = None) -> None:
        super().heartbeat(timeout, pipeline)  # type: ignore[misc]
        if pipeline is None and not self._stop_requested and time.monotonic() >= self._wshare_next_reconcile:
            self._wshare_next_reconcile = time.monotonic() + RECONCILE_EVERY
            # stop_after: RQ's dequeue loop, which calls this, does not look at _stop_requested
            with self._wshare_unstoppable(stop_after=True):
                try:
                    reconcile(self.connection, list(self.queues))  # type: ignore[attr-defined]
                except Exception:
                    log.exception("wshare: reconciler failed (will retry)")

    def _wshare_adopt(self, job: Job, pool: Pool, rq_side: _RQSide) -> Optional[Lease]:
        """The lease a hand-off granted this job, renewed at once, or None."""
        rid = rq_side.claim(job)
        if not rid:
            return None
        lease = pool.lease(rid)
        if lease is not None:
            try:
                lease.renew()  # it may have little time left after waiting in the queue
                return lease
            except LeaseLost:
                pass
            except Exception:  # the job fails: give its units back and leave no claim
                self._wshare_give_back(job, lease, rq_side)
                raise
        rq_side.unclaim(job, rid)
        return None

    def _wshare_give_back(self, job: Job, lease: Lease, rq_side: _RQSide) -> None:
        """Release the lease and drop the job's claim on it, best effort (Redis may be why we
        are here); what a failed step leaves, the lease's ttl or the reconciler (which frees
        the leases of failed jobs) ends."""
        for step in (lease.release, lambda: rq_side.unclaim(job, lease.id)):
            try:
                step()
            except Exception as e:
                log.warning("wshare: job %s: could not give back lease %s: %s", job.id, lease.id, e)

    def execute_job(self, job: Job, queue: Queue) -> Any:
        quota = quota_of(job)
        if quota is None:
            return super().execute_job(job, queue)  # type: ignore[misc]
        with self._wshare_unstoppable(stop_after=False):
            return self._wshare_execute_job(job, queue, quota)

    def _wshare_execute_job(self, job: Job, queue: Queue, quota: Quota) -> Any:
        pool = Pool(self.connection, quota.pool, prefix=quota.prefix)
        rq_side = _RQSide(self.connection)
        rid = new_request_id(job.id)
        try:
            lease = self._wshare_adopt(job, pool, rq_side)
            if lease is None:
                lease = pool._try_with_id(quota.member, rid, units=quota.units, ttl=quota.ttl)
        except WshareError as e:
            return self._wshare_fail(job, queue, f"wshare quota {quota}: {e}")
        if lease is None:
            self.connection.sadd(POOLS_KEY, f"{quota.prefix}\0{quota.pool}")
            # Park in RQ first, then queue in the pool: a grant can then always find the job.
            if not rq_side.park(job, queue, quota, rid):
                return None  # cancelled or deleted meanwhile
            try:  # granted at once if units were freed meanwhile: back to the front of the queue
                outcome = _request_units(pool, rq_side, job.id, quota, rid)
            except WshareError as e:
                rq_side.abandon(job, queue)
                return self._wshare_fail(job, queue, f"wshare quota {quota}: {e}")
            if outcome == 0:  # cancelled meanwhile: its units went back, maybe to a parked job
                hand_off(self.connection, pool, rq_side)
            log.info("wshare: job %s parked in pool %r for member %r", job.id, quota.pool, quota.member)
            return None
        self._wshare_lease = lease
        interval = getattr(self, "job_monitoring_interval", 0) or 0
        if quota.ttl < 3 * interval:
            log.warning("wshare: job %s quota ttl %.0fs is under 3 x the worker's job monitoring interval "
                        "(%ss): a renewal may come too late", job.id, quota.ttl, interval)
        if isinstance(self, SimpleWorker) or not isinstance(self, Worker):
            lease.start_auto_renew()  # no monitoring parent to renew it
        try:
            return super().execute_job(job, queue)  # type: ignore[misc]
        finally:
            self._wshare_lease = None
            lease.release()
            rq_side.unclaim(job, lease.id)
            hand_off(self.connection, pool, rq_side)

    def maintain_heartbeats(self, job: Job, *args: Any) -> None:
        super().maintain_heartbeats(job, *args)  # type: ignore[misc]
        lease = self._wshare_lease
        if lease is not None and not lease.lost:
            try:
                lease.renew()
            except LeaseLost:
                lease.lost = True
                log.warning("wshare: lease of job %s was lost while it ran (revoked or expired)", job.id)
            except Exception as e:  # Redis briefly unreachable: the next heartbeat retries
                log.warning("wshare: could not renew the lease of job %s: %s", job.id, e)

    def _wshare_fail(self, job: Job, queue: Queue, message: str) -> None:
        self.connection.lrem(f"{queue.key}:intermediate", 0, job.id)
        fail_job(self.connection, job, queue, message)


class QuotaWorker(QuotaMixin, Worker):
    """``rq worker --worker-class wshare_redis.rq.QuotaWorker``: RQ's forking worker, quota-gated."""


class QuotaSimpleWorker(QuotaMixin, SimpleWorker):
    """RQ's SimpleWorker (no fork; tests, Windows), quota-gated."""


__all__ = ["Quota", "QuotaWorker", "QuotaSimpleWorker", "enqueue", "reconcile", "hand_off", "quota_of",
           "new_request_id"]
