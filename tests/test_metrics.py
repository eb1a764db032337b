"""`wshare metrics`, the Prometheus exporter, as a real process scraped over loopback HTTP;
`wshare status --counters`; and the library leaving logging alone."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import redis
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from wshare_redis import AcquireTimeout, Pool
from wshare_redis.cli import main
from wshare_redis.embedded import RedisServer, free_port
from wshare_redis.status import COUNTERS

ROOT = Path(__file__).resolve().parent.parent
WSHARE = [sys.executable, "-m", "wshare_redis.cli"]

pytestmark = pytest.mark.real


class Exporter:
    """A `wshare metrics` process on a free loopback port; its stderr goes to a file."""

    def __init__(self, url: str, *args: str, tmp_path: Path) -> None:
        self.port = free_port()
        self.stderr_path = tmp_path / f"exporter-{self.port}.err"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([*WSHARE, "--url", url, "metrics", "--port", str(self.port), *args],
                                         stdout=subprocess.DEVNULL, stderr=err)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_ready(self, limit: float = 20.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exporter exited: {self.stderr}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"exporter not listening after {limit}s: {self.stderr}")

    def scrape(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """{sample name: {sorted label pairs: value}}, checking every family's type on the way."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=20) as reply:
            assert reply.status == 200
            text = reply.read().decode()
        out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(text):
            assert family.name.startswith("wshare_")
            assert family.type == ("counter" if family.name.endswith(tuple(COUNTERS)) else "gauge"), family.name
            for sample in family.samples:
                out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def exporter(url: str, *args: str, tmp_path: Path) -> Iterator[Exporter]:
    ex = Exporter(url, *args, tmp_path=tmp_path)
    try:
        ex.wait_ready()
        yield ex
    finally:
        ex.stop()


def by_pool(samples: dict[tuple[tuple[str, str], ...], float]) -> dict[str, float]:
    return {dict(labels)["pool"]: v for labels, v in samples.items()}


def by_member(samples: dict[tuple[tuple[str, str], ...], float], pool: str) -> dict[str, float]:
    return {dict(labels)["member"]: v for labels, v in samples.items() if dict(labels)["pool"] == pool}


def test_exporter_reports_pools_members_and_counters(url, name, tmp_path):
    pool = Pool(redis.Redis.from_url(url), name)
    pool.configure(capacity=10)
    pool.set_weight("a", 1)
    pool.set_weight("b", 3, max_units=6)
    first = pool.try_acquire("a", units=2)
    assert first is not None and first.release()            # a: grant, release
    a = pool.try_acquire("a", units=2, ttl=60)               # a: grant
    b = pool.try_acquire("b", units=5, ttl=60)               # b: grant
    c = pool.try_acquire("c", units=3, ttl=60)               # c (joins by acquiring): grant
    assert a and b and c
    with pytest.raises(AcquireTimeout):
        pool.acquire("a", timeout=0.05)                      # a: queued, timeout (the pool is full)
    assert pool.revoke(c.id)                                 # c: revocation
    d = pool.try_acquire("d", ttl=0.05)                      # d: grant, then expiration
    assert d is not None
    time.sleep(0.15)
    pool.set_weight("a", 2)                                  # reweight; reclaims d's lease
    assert pool.park("b", "job-b", units=2) is None          # b: queued (capped at 6: holds 5)
    assert pool.park("a", "job-a", units=4) is None          # a: queued (3 units free)

    st = pool.status()
    gone = {"c", "d"} - set(st.members)                      # auto members forgotten once idle
    with exporter(url, tmp_path=tmp_path) as ex:
        m = ex.scrape()
        assert m["wshare_up"] == {(): 1.0}
        assert m["wshare_scrape_pool_errors"] == {(): 0.0}
        assert m["wshare_scrape_duration_seconds"][()] >= 0
        assert by_pool(m["wshare_pool_capacity_units"]) == {name: 10}
        assert by_pool(m["wshare_pool_held_units"]) == {name: 7}
        assert by_pool(m["wshare_pool_free_units"]) == {name: 3}
        assert by_pool(m["wshare_pool_waiting_units"]) == {name: 6}
        assert by_pool(m["wshare_pool_members"]) == {name: len(st.members)}
        members = set(st.members)
        assert {"a", "b"} <= members
        assert by_member(m["wshare_member_weight"], name) == {"a": 2, "b": 3} | {x: 1 for x in members - {"a", "b"}}
        assert by_member(m["wshare_member_max_units"], name) == {"b": 6}  # uncapped: no sample
        assert by_member(m["wshare_member_held_units"], name) == {x: {"a": 2, "b": 5}.get(x, 0) for x in members}
        assert by_member(m["wshare_member_waiting_units"], name) == {x: {"a": 4, "b": 2}.get(x, 0) for x in members}
        assert by_member(m["wshare_member_parked_requests"], name) == {x: {"a": 1, "b": 1}.get(x, 0) for x in members}
        # demands a 2+4, b min(5+2, 6): weights 2:3 split 10 as 4 and 6, and b wants exactly 6
        assert by_member(m["wshare_member_fair_share_units"], name) == {x: {"a": 4, "b": 6}.get(x, 0)
                                                                         for x in members}
        expected = {
            "a": {"grants": 2, "releases": 1, "queued": 2, "timeouts": 1},
            "b": {"grants": 1, "queued": 1},
            "c": {"grants": 1, "revocations": 1},
            "d": {"grants": 1, "expirations": 1},
        }
        for counter in COUNTERS:
            got = by_member(m[f"wshare_member_{counter}_total"], name)
            assert got == {x: expected[x].get(counter, 0) for x in expected}, counter  # forgotten ones too
        assert st.member_counters == {x: dict.fromkeys(COUNTERS, 0) | expected[x] for x in expected}
        assert gone <= set(expected)

        # the next scrape reads the pool again: b's release hands the units to both parked jobs
        assert b.release()
        m = ex.scrape()
        assert by_pool(m["wshare_pool_waiting_units"]) == {name: 0}
        assert {x: v for x, v in by_member(m["wshare_member_held_units"], name).items() if v} == {"a": 6, "b": 2}
        assert by_member(m["wshare_member_grants_total"], name) == {"a": 3, "b": 2, "c": 1, "d": 1}
        assert by_member(m["wshare_member_releases_total"], name) == {"a": 1, "b": 1, "c": 0, "d": 0}
    assert ex.proc.returncode == 0 and "Traceback" not in ex.stderr  # SIGTERM: a clean exit


def test_pools_given_as_arguments_and_pools_created_later(url, tmp_path):
    client = redis.Redis.from_url(url)
    Pool(client, "p1").configure(capacity=1)
    Pool(client, "p2").configure(capacity=2)
    with exporter(url, "p1", "p3", tmp_path=tmp_path) as named, exporter(url, tmp_path=tmp_path) as every:
        assert by_pool(named.scrape()["wshare_pool_capacity_units"]) == {"p1": 1}  # p3 does not exist yet
        assert by_pool(every.scrape()["wshare_pool_capacity_units"]) == {"p1": 1, "p2": 2}
        Pool(client, "p3").configure(capacity=3)
        Pool(client, "p4").configure(capacity=4)
        Pool(client, "p2").delete()
        assert by_pool(named.scrape()["wshare_pool_capacity_units"]) == {"p1": 1, "p3": 3}
        m = every.scrape()
        assert by_pool(m["wshare_pool_capacity_units"]) == {"p1": 1, "p3": 3, "p4": 4}
        assert m["wshare_up"] == {(): 1.0} and m["wshare_scrape_pool_errors"] == {(): 0.0}
        # a pool whose state is not wshare's is left out and counted, the others still served
        client.hset("wshare:{p4}:pool", "capacity", "lots")
        m = every.scrape()
        assert by_pool(m["wshare_pool_capacity_units"]) == {"p1": 1, "p3": 3}
        assert m["wshare_up"] == {(): 1.0} and m["wshare_scrape_pool_errors"] == {(): 1.0}


def test_redis_down_reports_up_0_and_the_exporter_keeps_serving(tmp_path):
    server = RedisServer().start()  # a private server: the session's one stays up
    try:
        Pool(redis.Redis.from_url(server.url), "gpu").configure(capacity=4)
        with exporter(server.url, tmp_path=tmp_path) as ex:
            m = ex.scrape()
            assert m["wshare_up"] == {(): 1.0} and by_pool(m["wshare_pool_capacity_units"]) == {"gpu": 4}
            server.kill()
            for _ in range(2):
                m = ex.scrape()
                assert m["wshare_up"] == {(): 0.0}
                assert m.get("wshare_pool_capacity_units", {}) == {}
            assert ex.proc.poll() is None
            server.start()  # back, empty (no persistence)
            Pool(redis.Redis.from_url(server.url), "gpu").configure(capacity=5)
            m = ex.scrape()
            assert m["wshare_up"] == {(): 1.0} and by_pool(m["wshare_pool_capacity_units"]) == {"gpu": 5}
        assert "Traceback" not in ex.stderr
    finally:
        server.stop()


def test_the_readme_monitor_user_can_run_the_exporter(tmp_path):
    """The read-only user of the README (no FCALL): the hashes as last written, counters too."""
    text = (ROOT / "README.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("ACL SETUSER wshare-monitor "))
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        admin.execute_command("ACL", "SETUSER", *line.replace(">MONITOR_PASSWORD", ">mon-pw-1234").split()[2:])
        pool = Pool(admin, "gpu")
        pool.configure(capacity=4)
        lease = pool.try_acquire("a", units=3, ttl=60)
        assert lease is not None
        with exporter(server.url.replace("redis://", "redis://wshare-monitor:mon-pw-1234@"),
                      tmp_path=tmp_path) as ex:
            m = ex.scrape()
            assert m["wshare_up"] == {(): 1.0} and m["wshare_scrape_pool_errors"] == {(): 0.0}
            assert by_pool(m["wshare_pool_held_units"]) == {"gpu": 3}
            assert by_member(m["wshare_member_grants_total"], "gpu") == {"a": 1}
        assert "read-only view" in ex.stderr and "mon-pw-1234" not in ex.stderr
        assert pool.status().members["a"].held == 3  # nothing changed


def test_bad_port_or_pool_name_is_one_line_and_a_non_zero_exit(url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, code, text in [(["--port", str(port)], 1, f"cannot listen on 127.0.0.1:{port}"),
                                 (["--port", "70000"], 2, "--port must be between 0 and 65535"),
                                 (["--port", "0", "bad{name}"], 2, "must not contain")]:
            p = subprocess.run([*WSHARE, "--url", url, "metrics", *args], capture_output=True, text=True, timeout=60)
            assert p.returncode == code, p.stderr
            assert p.stderr.count("\n") == 1 and text in p.stderr and "Traceback" not in p.stderr


def test_missing_prometheus_client_is_one_line_naming_the_extra(url, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails as if not installed
    res = CliRunner().invoke(main, ["--url", url, "metrics", "--port", "0"])
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "pip install 'wshare-redis[metrics]'" in res.output


# -- wshare status --counters ------------------------------------------------------------------

def test_status_shows_counters_per_member_and_in_json(url, name):
    pool = Pool(redis.Redis.from_url(url), name)
    pool.configure(capacity=1)
    pool.set_weight("team-a", 1)
    lease = pool.try_acquire("team-a", ttl=60)
    assert lease is not None
    with pytest.raises(AcquireTimeout):
        pool.acquire("adhoc", timeout=0.05)                  # queued, timed out; then forgotten
    assert lease.release()
    runner = CliRunner()
    plain = runner.invoke(main, ["--url", url, "status", name], catch_exceptions=False).output
    assert "events" not in plain
    out = runner.invoke(main, ["--url", url, "status", name, "--counters"], catch_exceptions=False).output
    assert all(len(x) <= 80 for x in out.splitlines())
    table = out.split("\n\n")[1].splitlines()
    assert table[0].split() == ["events", "grants", "releases", "revoked", "expired", "queued", "timeouts",
                                "cancels", "failed", "purged"]
    rows = {x.split()[0]: [int(v) for v in x.split()[1:]] for x in table[1:]}
    assert rows == {"adhoc": [0, 0, 0, 0, 1, 1, 0, 0, 0], "team-a": [1, 1, 0, 0, 0, 0, 0, 0, 0],
                    "total": [1, 1, 0, 0, 1, 1, 0, 0, 0]}
    data = json.loads(runner.invoke(main, ["--url", url, "status", name, "--json"], catch_exceptions=False).output)
    assert data["members"]["team-a"]["counters"]["grants"] == 1
    assert data["member_counters"]["adhoc"]["timeouts"] == 1 and data["counters"]["queued"] == 1


# -- logging: the library never configures it ----------------------------------------------------

def test_the_library_configures_no_logging(url, tmp_path):
    """In a fresh interpreter: import everything, use the API (a lost lease logs a warning,
    the metrics collector runs), and no logger of ours, nor the root logger, has changed."""
    script = textwrap.dedent(f"""
        import logging, threading, time
        root = logging.getLogger()
        before = (list(root.handlers), root.level)
        import redis, prometheus_client
        import wshare_redis, wshare_redis.rq, wshare_redis.metrics, wshare_redis.worker, wshare_redis.runner
        from wshare_redis import Lock, Pool
        r = redis.Redis.from_url({url!r})
        pool = Pool(r, "logging")
        pool.configure(capacity=1)
        lost = threading.Event()
        lease = pool.acquire("a", ttl=0.3, auto_renew=True, on_lost=lambda _l: lost.set())
        pool.revoke(lease.id)
        assert lost.wait(10)
        lease.release()
        with Lock(r, "logging-lock"):
            pass
        pool.status()
        text = prometheus_client.generate_latest(
            wshare_redis.metrics.registry_for(wshare_redis.metrics.PoolCollector(r))).decode()
        assert 'wshare_pool_capacity_units{{pool="logging"}} 1.0' in text, text
        assert (list(root.handlers), root.level) == before == ([], logging.WARNING), (root.handlers, root.level)
        ours = [logging.getLogger(n) for n in ["wshare_redis", *logging.root.manager.loggerDict]
                if n.startswith("wshare_redis")]
        assert {{"wshare_redis", "wshare_redis.metrics"}} <= {{x.name for x in ours}}
        for x in ours:
            assert x.handlers == [] and x.level == logging.NOTSET and x.propagate and not x.filters, x
        print("ok")
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr
    assert "is lost" in p.stderr  # Python's last-resort handler: the warning was logged, unconfigured


def test_no_library_module_configures_logging_or_prints():
    """Logging is configured in cli.py only; demo.py and runner.py print what `wshare demo`
    and `wshare run` show the user."""
    configuring = re.compile(r"basicConfig|addHandler|setLevel|logging\.root\b|getLogger\(\)|dictConfig|fileConfig")
    for path in sorted((ROOT / "wshare_redis").rglob("*.py")):
        if path.relative_to(ROOT / "wshare_redis").as_posix() == "cli.py":
            continue
        text = path.read_text()
        assert not configuring.search(text), path.name
        if path.relative_to(ROOT / "wshare_redis").as_posix() not in ("demo.py", "runner.py"):
            assert not re.search(r"(?<![\w.])print\(", text), path.name
