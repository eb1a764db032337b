"""Quota-gated RQ jobs: in-process SimpleWorker tests on fakeredis and a real server, and
real `rq worker` processes on a real redis-server."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fakeredis
import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus

from history import max_concurrent
from rq_jobs import record
from wshare_redis import InvalidRequest, Pool
from wshare_redis.rq import Quota, QuotaSimpleWorker, _marker, enqueue, new_request_id, reconcile

HERE = Path(__file__).resolve().parent


@pytest.fixture(params=["fake", "real"])
def conn(request):
    if request.param == "fake":
        c = fakeredis.FakeRedis()
    else:
        c = redis.Redis.from_url(request.getfixturevalue("url"))
    yield c
    c.close()


def done(conn):
    return [json.loads(x) for x in conn.lrange("test:done", 0, -1)]


def failure_text(job):
    return (job.get_meta(refresh=True) or {}).get("wshare_error", "")


def burst(conn, queue):
    QuotaSimpleWorker([queue], connection=conn).work(burst=True)


def test_a_job_with_free_units_runs_and_releases(conn):
    pool = Pool(conn, "gpu")
    pool.configure(capacity=2)
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "a", quota=Quota("gpu", member="team-a", units=2))
    assert isinstance(job, Job) and job.meta["wshare"]["units"] == 2
    burst(conn, q)
    assert job.get_status(refresh=True) == JobStatus.FINISHED and [d["tag"] for d in done(conn)] == ["a"]
    assert pool.status().held == 0


def test_a_job_without_units_is_parked_then_runs_once_granted(conn):
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    holder = pool.try_acquire("other")
    q = Queue("default", connection=conn)
    gated = enqueue(q, record, "gated", quota=Quota("gpu", member="team-a"))
    free = q.enqueue(record, "no-quota")
    burst(conn, q)  # parks the gated job and runs the other at once: the worker never waits
    assert gated.get_status(refresh=True) == JobStatus.DEFERRED
    assert [d["tag"] for d in done(conn)] == ["no-quota"] and free.get_status(refresh=True) == JobStatus.FINISHED
    st = pool.status()
    assert (st.waiting, st.members["team-a"].parked, len(q)) == (1, 1, 0)
    holder.release()  # granted to the parked job; a worker's reconciler puts it back
    counts = reconcile(conn, [q])
    assert counts["handed_off"] + counts["unparked"] == 1 and counts["requeued_requests"] == 0
    assert len(q) == 1 and gated.get_status(refresh=True) == JobStatus.QUEUED
    assert pool.status().members["team-a"].held == 1  # it holds its lease while queued
    burst(conn, q)
    assert [d["tag"] for d in done(conn)] == ["no-quota", "gated"]
    assert gated.get_status(refresh=True) == JobStatus.FINISHED
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)
    assert reconcile(conn, [q]) == {"handed_off": 0, "requeued_requests": 0, "unparked": 0, "freed": 0}


def test_a_job_cancelled_while_parked_never_runs_and_leaks_nothing(conn):
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    holder = pool.try_acquire("other")
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "cancelled", quota=Quota("gpu", member="team-a"))
    burst(conn, q)
    job.cancel()
    holder.release()
    reconcile(conn, [q])
    burst(conn, q)
    assert done(conn) == [] and job.get_status(refresh=True) == JobStatus.CANCELED
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0) and pool.leases() == []


def test_a_crash_between_parking_and_queueing_is_repaired(conn):
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "orphan", quota=Quota("gpu", member="team-a"))
    # what a worker killed right after parking the job in RQ leaves behind
    conn.lpop(q.key)
    marker = _marker(Quota("gpu", member="team-a"), new_request_id(job.id))
    conn.hset(job.key, mapping={"status": "deferred", "wshare_quota": marker})
    conn.zadd(q.deferred_job_registry.key, {job.id: time.time()})
    counts = reconcile(conn, [q])
    assert counts["requeued_requests"] == 1 and len(q) == 1
    burst(conn, q)
    assert [d["tag"] for d in done(conn)] == ["orphan"] and pool.status().held == 0


def test_a_quota_that_can_never_be_met_fails_the_job(conn):
    Pool(conn, "gpu").configure(capacity=1)
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "too-big", quota=Quota("gpu", member="team-a", units=5))
    burst(conn, q)
    assert job.get_status(refresh=True) == JobStatus.FAILED and done(conn) == []
    assert job.id in q.failed_job_registry.get_job_ids()


def test_a_granted_job_no_worker_starts_within_the_ttl_is_parked_again(conn):
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    holder = pool.try_acquire("other")
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "late", quota=Quota("gpu", member="team-a", ttl=0.3))
    burst(conn, q)  # parked
    holder.release()
    reconcile(conn, [q])  # granted and put back on the queue, holding a 0.3 s lease ...
    assert len(q) == 1 and pool.status().members["team-a"].held == 1
    time.sleep(0.5)  # ... that runs out before any worker starts it
    holder = pool.try_acquire("other")
    assert holder is not None
    burst(conn, q)
    assert done(conn) == [] and job.get_status(refresh=True) == JobStatus.DEFERRED  # not run without quota
    holder.release()
    reconcile(conn, [q])
    burst(conn, q)
    assert [d["tag"] for d in done(conn)] == ["late"]


def test_bad_quotas_are_refused_at_enqueue():
    with pytest.raises(InvalidRequest):
        Quota("gpu{x}", member="a")
    with pytest.raises(InvalidRequest):
        Quota("gpu", member="a", units=0)
    with pytest.raises(InvalidRequest):
        enqueue(Queue("q", connection=fakeredis.FakeRedis()), record, "x", quota={"pool": "gpu"})


# -- real rq worker processes ------------------------------------------------------------------

def start_workers(url, n, queue="default", interval=2):
    env = dict(os.environ, PYTHONPATH=f"{HERE}:{HERE.parent}")
    return [subprocess.Popen([sys.executable, "-m", "rq.cli", "worker", "--url", url, "--worker-class",
                              "wshare_redis.rq.QuotaWorker", "--job-monitoring-interval", str(interval), queue],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(n)]


def stop_workers(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    errors = []
    for p in procs:
        try:
            _out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            _out, err = p.communicate()
        errors.append(err)
    return errors


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_weighted_quota_jobs_on_real_workers(url):
    conn = redis.Redis.from_url(url)
    pool = Pool(conn, "gpu")
    pool.configure(capacity=3)
    for member, w in (("m1", 1), ("m2", 2), ("m3", 3)):
        pool.set_weight(member, w)
    pool.set_weight("m3", 3, max_units=2)
    q = Queue("default", connection=conn)
    jobs = [enqueue(q, record, f"{m}-{i}", 0.15, quota=Quota("gpu", member=m))
            for i in range(24) for m in ("m1", "m2", "m3")]
    procs = start_workers(url, 6)
    try:
        wait_for(lambda: conn.llen("test:done") == len(jobs), 120, "all jobs to finish")
    finally:
        errs = stop_workers(procs)
    records = done(conn)
    assert sorted(r["id"] for r in records) == sorted(j.id for j in jobs)  # each exactly once
    assert conn.llen("test:started") == len(jobs)
    assert all(j.get_status(refresh=True) == JobStatus.FINISHED for j in jobs)
    assert max_concurrent(records)["all"] <= 3, errs
    assert max_concurrent(records, key=lambda r: r["member"])["m3"] <= 2
    start = min(r["t0"] for r in records)
    mean_end = {m: sum(r["t1"] - start for r in records if r["member"] == m) / 24 for m in ("m1", "m2", "m3")}
    peaks = max_concurrent(records, key=lambda r: r["member"])
    print(f"{len(records)} jobs on 6 workers: max units at once {max_concurrent(records)['all']} (capacity 3), "
          f"per member {peaks}; mean finish after start (s): "
          + ", ".join(f"{m} {t:.2f}" for m, t in mean_end.items()))
    assert mean_end["m3"] < mean_end["m2"] < mean_end["m1"]
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)


@pytest.mark.slow
def test_a_killed_work_horse_gives_its_units_to_the_next_parked_job(url):
    conn = redis.Redis.from_url(url)
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    q = Queue("default", connection=conn)
    victim = enqueue(q, record, "victim", 60, quota=Quota("gpu", member="a"))
    procs = start_workers(url, 2)
    try:
        wait_for(lambda: conn.llen("test:started") == 1, 30, "the victim to start")
        others = [enqueue(q, record, f"next-{i}", 0.1, quota=Quota("gpu", member="a")) for i in range(3)]
        wait_for(lambda: pool.status().members["a"].parked == 3, 30, "the others to park")
        killed = time.time()
        os.kill(json.loads(conn.lindex("test:started", 0))["pid"], signal.SIGKILL)
        wait_for(lambda: conn.llen("test:done") == 3, 30, "the parked jobs to run")
        print(f"the next parked job started {json.loads(conn.lindex('test:started', 1))['t0'] - killed:.2f}s "
              "after the work-horse was killed")
    finally:
        stop_workers(procs)
    assert sorted(d["tag"] for d in done(conn)) == ["next-0", "next-1", "next-2"]
    assert all(j.get_status(refresh=True) == JobStatus.FINISHED for j in others)
    assert victim.get_status(refresh=True) == JobStatus.FAILED
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)


@pytest.mark.slow
def test_parked_jobs_run_after_the_workers_restart(url):
    conn = redis.Redis.from_url(url)
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    holder = pool.try_acquire("someone-else")
    q = Queue("default", connection=conn)
    jobs = [enqueue(q, record, f"job-{i}", 0.05, quota=Quota("gpu", member="a")) for i in range(3)]
    procs = start_workers(url, 2)
    wait_for(lambda: pool.status().members.get("a") and pool.status().members["a"].parked == 3, 30,
             "the jobs to park")
    stop_workers(procs)
    holder.release()  # granted to a parked job while no worker runs
    procs = start_workers(url, 2)
    try:
        wait_for(lambda: conn.llen("test:done") == 3, 30, "the parked jobs to run")
    finally:
        stop_workers(procs)
    assert all(j.get_status(refresh=True) == JobStatus.FINISHED for j in jobs)
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)


@pytest.mark.slow
def test_a_killed_worker_s_units_come_back_within_the_lease_ttl(url):
    conn = redis.Redis.from_url(url)
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    q = Queue("default", connection=conn)
    enqueue(q, record, "victim", 60, quota=Quota("gpu", member="a", ttl=3))
    procs = start_workers(url, 2, interval=1)
    try:
        wait_for(lambda: conn.llen("test:started") == 1, 30, "the victim to start")
        nxt = enqueue(q, record, "next", 0.1, quota=Quota("gpu", member="a"))
        wait_for(lambda: pool.status().members["a"].parked == 1, 30, "the next job to park")
        started = json.loads(conn.lindex("test:started", 0))
        victim_worker = next(p for p in procs if p.pid == _parent(started["pid"]))
        killed = time.time()  # SIGKILL the worker running the victim, then its horse
        victim_worker.kill()
        os.kill(started["pid"], signal.SIGKILL)
        wait_for(lambda: conn.llen("test:done") == 1, 30, "the next job to run")
        waited = json.loads(conn.lindex("test:started", 1))["t0"] - killed
        print(f"the next job started {waited:.1f}s after its worker was killed (lease ttl 3 s)")
        assert waited <= 3 + 5 + 2  # ttl, plus the reconcilers' period, plus margin
    finally:
        stop_workers(procs)
    assert nxt.get_status(refresh=True) == JobStatus.FINISHED
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)


def _parent(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.slow
def test_parked_jobs_survive_a_redis_restart_with_aof():
    from wshare_redis.embedded import RedisServer
    with RedisServer(args=("--appendonly", "yes", "--appendfsync", "always")) as server:
        conn = redis.Redis.from_url(server.url)
        pool = Pool(conn, "gpu")
        pool.configure(capacity=1)
        holder = pool.try_acquire("other", ttl=300)
        q = Queue("default", connection=conn)
        jobs = [enqueue(q, record, f"job-{i}", quota=Quota("gpu", member="a")) for i in range(2)]
        QuotaSimpleWorker([q], connection=conn).work(burst=True)
        assert pool.status().members["a"].parked == 2
        conn.close()
        server.restart()
        conn = redis.Redis.from_url(server.url)
        pool = Pool(conn, "gpu")
        assert pool.status().members["a"].parked == 2
        pool.revoke(holder.id)
        q = Queue("default", connection=conn)
        for _ in range(3):
            reconcile(conn, [q])
            QuotaSimpleWorker([q], connection=conn).work(burst=True)
        assert sorted(d["tag"] for d in done(conn)) == ["job-0", "job-1"]
        assert all(Job.fetch(j.id, connection=conn).get_status() == JobStatus.FINISHED for j in jobs)
        conn.close()


def test_a_request_id_parked_twice_is_queued_once_and_a_granted_one_returns_its_lease(conn):
    pool = Pool(conn, "gpu")
    pool.configure(capacity=2)
    holder = pool.try_acquire("x", units=2)
    assert pool.park("a", "rq:j:1") is None and pool.park("a", "rq:j:1") is None
    assert pool.status().waiting == 1
    holder.release()
    first = pool.lease("rq:j:1")
    again = pool.park("a", "rq:j:1")
    assert first is not None and again is not None and again.token == first.token
    st = pool.status()
    assert (st.held, st.waiting) == (1, 0)


def test_only_the_worker_running_a_granted_job_adopts_its_lease(conn):
    from wshare_redis.rq import _RQSide
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    holder = pool.try_acquire("x")
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "j", quota=Quota("gpu", member="a"))
    burst(conn, q)  # parked under a fresh request id
    holder.release()
    reconcile(conn, [q])
    side = _RQSide(conn)
    rid = side.claim(job)  # the worker about to run it claims the granted lease ...
    assert rid.startswith(f"rq:{job.id}:") and pool.lease(rid) is not None
    assert side.claim(job) == ""  # ... a retried attempt could not adopt it too
    assert side.unpark(job.id, rid) == 2  # a late duplicate hand-off keeps the lease
    side.unclaim(job, rid)
    assert side.unpark(job.id, rid) == 0


def test_a_job_whose_park_fails_is_failed_and_not_requeued(conn, monkeypatch):
    from wshare_redis import PoolNotFound
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    pool.try_acquire("x")
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "j", quota=Quota("gpu", member="a"))

    def gone(self, *a, **kw):
        raise PoolNotFound("gpu")

    monkeypatch.setattr(Pool, "park", gone)
    burst(conn, q)
    assert job.get_status(refresh=True) == JobStatus.FAILED and len(q) == 0
    assert job.id not in q.deferred_job_registry.get_job_ids() and done(conn) == []


def test_the_reconciler_reaches_orphans_behind_many_deferred_jobs(conn):
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    q = Queue("default", connection=conn)
    blocker = q.enqueue(record, "never-run")
    for i in range(30):
        q.enqueue(record, f"dep-{i}", depends_on=blocker)
    conn.lrem(q.key, 0, blocker.id)
    job = enqueue(q, record, "orphan", quota=Quota("gpu", member="a"))
    conn.lrem(q.key, 0, job.id)
    conn.hset(job.key, mapping={"status": "deferred",
                                "wshare_quota": _marker(Quota("gpu", member="a"), new_request_id(job.id))})
    conn.zadd(q.deferred_job_registry.key, {job.id: time.time() + 1000})  # behind all the others
    total = 0
    for _ in range(4):
        total += reconcile(conn, [q], limit=10)["requeued_requests"]
    assert total == 1 and len(q) == 1


def test_parked_jobs_of_a_removed_member_fail_with_the_reason(conn):
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    pool.set_weight("a", 1)
    holder = pool.try_acquire("x")
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "j", quota=Quota("gpu", member="a"))
    burst(conn, q)
    assert pool.remove_member("a")
    reconcile(conn, [q])
    burst(conn, q)
    assert job.get_status(refresh=True) == JobStatus.FAILED and done(conn) == []
    assert job.id in q.failed_job_registry.get_job_ids()
    assert "member removed" in failure_text(Job.fetch(job.id, connection=conn))
    holder.release()
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)


def test_a_job_cancelled_after_its_hand_off_gives_its_units_back(conn):
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    holder = pool.try_acquire("x")
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "j", quota=Quota("gpu", member="a"))
    burst(conn, q)
    holder.release()
    reconcile(conn, [q])  # back on the queue, holding its lease
    assert pool.status().held == 1
    job.cancel()
    assert reconcile(conn, [q])["freed"] == 1
    assert pool.status().held == 0
    burst(conn, q)
    assert done(conn) == []


def _sigterm_at(monkeypatch, cls, name, worker, *, after=False):
    """Deliver RQ's warm-shutdown signal to ``worker`` just before (or after) ``cls.name`` runs
    once, as SIGTERM would if it arrived at that moment (the handler runs in the main thread)."""
    original = getattr(cls, name)
    fired = []

    def with_sigterm(self, *args, **kwargs):
        if not fired and not after:
            fired.append(True)
            worker.request_stop(signal.SIGTERM, None)
        result = original(self, *args, **kwargs)
        if not fired and after:
            fired.append(True)
            worker.request_stop(signal.SIGTERM, None)
        return result

    monkeypatch.setattr(cls, name, with_sigterm)
    return fired


@pytest.fixture
def signal_handlers():
    """RQ's work() and request_stop() install their own SIGINT/SIGTERM handlers: put ours back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("moment", ["right after the grant", "before the release"])
def test_a_warm_shutdown_while_the_worker_holds_a_lease_unbusy_leaks_nothing(conn, monkeypatch, signal_handlers,
                                                                            moment):
    # RQ's warm-shutdown handler raises StopRequested at once unless the worker is BUSY, and it
    # is not while the quota gate runs before the fork nor after the horse ended. A SIGTERM
    # there cut execute_job short between the grant and the release: the lease stayed held
    # until its ttl with every job finished (seen once as held=1 by the real-workers test).
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "gated", quota=Quota("gpu", member="a"))
    later = q.enqueue(record, "after-the-stop")
    worker = QuotaSimpleWorker([q], connection=conn)
    if moment == "right after the grant":
        fired = _sigterm_at(monkeypatch, Pool, "_try_with_id", worker, after=True)
    else:
        fired = _sigterm_at(monkeypatch, Pool, "_release", worker)  # the job has ended
    worker.work(burst=True)
    assert fired and (pool.status().held, pool.leases()) == (0, [])
    assert job.get_status(refresh=True) == JobStatus.FINISHED and conn.hget(job.key, "wshare_granted") is None
    assert [d["tag"] for d in done(conn)] == ["gated"]  # a warm stop: the job it took runs, no later one
    assert later.get_status(refresh=True) == JobStatus.QUEUED


def test_a_warm_shutdown_during_the_reconciler_waits_for_it_and_is_not_lost(conn, monkeypatch, signal_handlers):
    # The reconciler runs in the idle worker's heartbeat: a SIGTERM there raised StopRequested
    # in the middle of a hand-off, which the heartbeat's error logging then swallowed, so the
    # worker did not stop and the granted job stayed parked holding its lease.
    from wshare_redis.rq import _RQSide
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    holder = pool.try_acquire("x")
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "gated", quota=Quota("gpu", member="a"))
    burst(conn, q)  # parked
    holder.release()  # granted; its hand-off waits for a reconciler
    later = q.enqueue(record, "after-the-stop")
    worker = QuotaSimpleWorker([q], connection=conn)
    fired = _sigterm_at(monkeypatch, _RQSide, "unpark", worker)
    worker.work(burst=True)
    assert fired and done(conn) == [] and later.get_status(refresh=True) == JobStatus.QUEUED  # it stopped
    assert job.get_status(refresh=True) == JobStatus.QUEUED and pool.status().members["a"].held == 1
    monkeypatch.undo()
    burst(conn, q)
    assert sorted(d["tag"] for d in done(conn)) == ["after-the-stop", "gated"]
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)


def test_units_a_hand_off_gives_back_are_handed_on_in_the_same_call(conn):
    # hand_off worked on one read of the hand-off list: when it gave back the units of a job
    # cancelled while parked, the next parked job was granted them but stayed parked, holding
    # them, until the next hand-off or reconciler tick (up to 5 s with the workers idle).
    from wshare_redis.rq import hand_off
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    holder = pool.try_acquire("x")
    q = Queue("default", connection=conn)
    first = enqueue(q, record, "first", quota=Quota("gpu", member="a"))
    second = enqueue(q, record, "second", quota=Quota("gpu", member="a"))
    burst(conn, q)  # both parked, first in line
    holder.release()  # granted to the first ...
    first.cancel()  # ... which is cancelled before its hand-off
    assert hand_off(conn, pool) == 1
    assert second.get_status(refresh=True) == JobStatus.QUEUED and len(q) == 1
    assert pool.handoffs() == [] and pool.status().members["a"].held == 1
    burst(conn, q)
    assert [d["tag"] for d in done(conn)] == ["second"] and first.get_status(refresh=True) == JobStatus.CANCELED
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)



def test_units_a_job_cancelled_while_it_parks_was_granted_are_handed_on_at_once(conn, monkeypatch):
    # execute_job's park path: the job is cancelled between parking in RQ and asking the pool,
    # which grants it the units at once; they are given back and go to a job parked behind.
    # That job must be handed off by this worker, not wait for the next reconciler tick.
    import wshare_redis.rq as wrq
    from wshare_redis.rq import _RQSide
    monkeypatch.setattr(wrq, "RECONCILE_EVERY", 3600.0)  # only the worker's first reconciler run
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    holder = pool.try_acquire("x")
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "cancelled", quota=Quota("gpu", member="b"))
    waiting = enqueue(q, record, "waiting", quota=Quota("gpu", member="a"))
    conn.lrem(q.key, 0, waiting.id)  # parked below, once the units are taken
    waiting_rid = new_request_id(waiting.id)
    original = Pool.park
    fired = []

    def cancelled_while_parking(self, member, rid, **kw):
        if fired or not rid.startswith(f"rq:{job.id}:"):
            return original(self, member, rid, **kw)
        fired.append(rid)
        holder.release()  # the units are free again ...
        job.cancel()  # ... and the job is cancelled while it parks
        granted = original(self, member, rid, **kw)  # granted at once, to a cancelled job
        assert granted is not None
        _RQSide(conn).park(waiting, q, Quota("gpu", member="a"), waiting_rid)  # another job parks
        assert original(self, "a", waiting_rid) is None  # behind it
        return granted

    monkeypatch.setattr(Pool, "park", cancelled_while_parking)
    burst(conn, q)
    assert fired and job.get_status(refresh=True) == JobStatus.CANCELED
    assert [d["tag"] for d in done(conn)] == ["waiting"] and waiting.get_status(refresh=True) == JobStatus.FINISHED
    st = pool.status()
    assert (st.held, st.waiting, pool.handoffs()) == (0, 0, [])


def test_the_reconciler_does_not_queue_again_the_request_of_an_attempt_that_ended(conn, monkeypatch):
    # The reconciler read a parked job's marker, saw no lease and re-queued its request
    # (pool.park). If meanwhile that request was granted, the job run and the lease released,
    # park queued a request for a finished attempt, holding units until a later hand-off.
    from wshare_redis.rq import hand_off
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    holder = pool.try_acquire("x")
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "j", quota=Quota("gpu", member="a"))
    burst(conn, q)  # parked
    original = Pool.park
    busy = []

    def attempt_ends_first(self, member, rid, **kw):
        if not busy:
            holder.release()  # granted ...
            hand_off(conn, self)  # ... put back on the queue ...
            burst(conn, q)  # ... run, and its units released
            busy.append(pool.try_acquire("y"))  # someone else holds them when park runs
        return original(self, member, rid, **kw)

    monkeypatch.setattr(Pool, "park", attempt_ends_first)
    reconcile(conn, [q])
    assert busy and busy[0] is not None
    assert [d["tag"] for d in done(conn)] == ["j"] and job.get_status(refresh=True) == JobStatus.FINISHED
    st = pool.status()
    assert (st.held, st.waiting) == (1, 0)
    busy[0].release()
    assert (pool.status().held, pool.leases()) == (0, [])


def test_an_adopted_lease_whose_renewal_fails_is_given_back_and_unclaimed(conn, monkeypatch):
    # A renewal error other than LeaseLost (here: not confirmed by the replicas) failed the job
    # but left its lease held until its ttl, and claimed on the job.
    from wshare_redis import NotReplicated
    from wshare_redis.lease import Lease
    pool = Pool(conn, "gpu")
    pool.configure(capacity=1)
    holder = pool.try_acquire("x")
    q = Queue("default", connection=conn)
    job = enqueue(q, record, "j", quota=Quota("gpu", member="a"))
    burst(conn, q)  # parked
    holder.release()
    reconcile(conn, [q])  # back on the queue with its lease
    assert pool.status().members["a"].held == 1

    def not_confirmed(self, ttl=None):
        raise NotReplicated("gpu", "renewal", 1, 0, 0.1)

    monkeypatch.setattr(Lease, "renew", not_confirmed)
    burst(conn, q)
    assert job.get_status(refresh=True) == JobStatus.FAILED and done(conn) == []
    assert (pool.status().held, pool.leases()) == (0, [])
    assert conn.hget(job.key, "wshare_granted") is None
