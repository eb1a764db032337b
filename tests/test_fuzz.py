"""Fuzzing the public API and the command line with hypothesis: any unicode, bytes, huge and
negative numbers, NaN and infinities as names, units, TTLs, timeouts, weights, capacities
and caps. Every call either gives a correct result or a clear error (a WshareError; one line
and a non-zero exit from `wshare`, never a traceback), and the pool's invariants
(tests/invariants.py) hold after every call. The API runs on fakeredis and a real server.

WSHARE_FUZZ_RANDOM=1 WSHARE_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz.py   for a long run.
"""
from __future__ import annotations

import enum
import math
import os
import uuid
from decimal import Decimal
from fractions import Fraction
from numbers import Real
from urllib.parse import quote

import fakeredis
import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from invariants import check, snapshot
from wshare_redis import (AcquireTimeout, InvalidRequest, Lease, LeaseLost, Lock, MemberRemoved, Pool, PoolNotFound,
                          PoolStatus)
from wshare_redis._checks import MAX_TTL, MAX_UNITS, check_weight
from wshare_redis.cli import main
from wshare_redis.connect import connect, mask_url, redact
from wshare_redis.keys import check_pool_name
from wshare_redis.pool import UNCHANGED, _text

EXAMPLES = int(os.environ.get("WSHARE_FUZZ_EXAMPLES", "100"))
RANDOM = bool(os.environ.get("WSHARE_FUZZ_RANDOM"))  # explore new inputs (CI repeats the same ones)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


class Two(enum.IntEnum):
    TWO = 2


class Fl(float):
    pass


# -- values ------------------------------------------------------------------------------------

ODD = [None, True, False, "1", b"1", 10**400, -10**400, Fraction(1, 3), Fraction(10**400, 3), Decimal("1.5"),
       Decimal("NaN"), Fl(1.5), Two.TWO, math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e308, MAX_UNITS, MAX_UNITS + 1,
       2**53 + 1, 2**63, -1, 0, [], MAX_TTL, MAX_TTL * 2]
# 10**5000 is built, not listed: Python refuses to repr it (hypothesis reprs strategies).
wild = st.one_of(st.integers(), st.integers(-2**70, 2**70), st.floats(), st.sampled_from(ODD),
                 st.builds(pow, st.just(10), st.just(5000)))

VALID_NAMES = ["a", "b", "c", "é", "名前", "x y", "a:b", "*?[]\\", "%d%s", "w=1 max=2 held=3", "🙂", "-", "a" * 200,
               "\u2028", "\x85", "\u202e"]
ODD_NAMES = [None, 0, b"a", "", "\x00", "a\nb", "\ud800", "é" * 101, "a" * 201, "{", "}", "a{b}"]


def mostly(valid, bad):
    """Valid values about five times in six, so that grants and waits happen too."""
    return st.integers(0, 5).flatmap(lambda i: bad if i == 0 else valid)


names = mostly(st.sampled_from(VALID_NAMES), st.one_of(st.text(max_size=12), st.text(min_size=60, max_size=70),
                                                       st.binary(max_size=4), st.sampled_from(ODD_NAMES)))
str_ids = st.one_of(st.sampled_from(VALID_NAMES), st.text(max_size=40))

units_st = mostly(st.integers(1, 3), wild.filter(lambda v: not isinstance(v, enum.Enum)))
capacity_st = mostly(st.integers(0, 6), wild)
ttl_st = mostly(st.one_of(st.floats(0.001, 30), st.floats(0.05, MAX_TTL)), wild)
weight_st = mostly(st.one_of(st.floats(0.1, 10), st.sampled_from([1, 2, 3, 1e-9, 1e9])), wild)
cap_st = mostly(st.one_of(st.just(UNCHANGED), st.none(), st.integers(0, 4)), wild)


def number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, Real):
        return None
    try:
        return float(v)
    except (OverflowError, ValueError):
        return None


def short_or_invalid(v) -> bool:
    """A timeout that is invalid or at most 0.03 s: a valid long one (or None, for ever) would
    block the fuzzer."""
    if v is None:
        return False
    x = number(v)
    return x is None or not math.isfinite(x) or x < 0 or x <= 0.03 or x > MAX_TTL


timeout_st = mostly(st.one_of(st.floats(0, 0.03), st.sampled_from([0, 1e-300])),
                    st.one_of(st.floats(), st.integers(), st.sampled_from(ODD)).filter(short_or_invalid))

# -- the API -------------------------------------------------------------------------------------

def invariant_errors(client, keys) -> list[str]:
    """tests/invariants.py's check, told about parked requests: they are never purged, so
    they are queued without an entry in the `alive` index."""
    state = snapshot(client, keys)
    parked = {_text(k) for k in client.hkeys(keys.key("parked"))}
    if parked:
        state = dict(state, alive={**state["alive"], **{i: 0.0 for i in parked}})
    return check(state, None)


EXPECTED = (InvalidRequest, PoolNotFound, AcquireTimeout, LeaseLost, MemberRemoved)


class Run:
    """One example: a fresh pool, the leases it holds, the highest token seen."""

    def __init__(self, client, data):
        self.client, self.data = client, data
        self.pool = Pool(client, "fz-" + uuid.uuid4().hex[:8])
        self.pool.configure(capacity=data.draw(st.integers(0, 5), label="capacity"))
        self.leases: list[Lease] = []
        self.token = 0
        self.extra: list[Pool] = []

    def draw(self, strategy, label):
        return self.data.draw(strategy, label=label)

    def granted(self, lease, member, units):
        if lease is None:
            return
        assert isinstance(lease, Lease)
        if any(x.id == lease.id and x.token == lease.token for x in self.leases):
            return  # park() again with the id of a live lease returns it (see the xfail below)
        assert (lease.member, lease.units) == (member, units)
        assert lease.token > self.token, "fencing tokens must increase"
        self.token = lease.token
        self.leases.append(lease)

    def pick(self):
        return self.draw(st.sampled_from(self.leases), "lease") if self.leases else None

    # operations: each returns nothing; asserts on its own result

    def configure(self):
        cap, dw = self.draw(capacity_st, "capacity"), self.draw(st.one_of(st.none(), weight_st), "default_weight")
        self.pool.configure(capacity=cap, default_weight=dw)
        st_ = self.pool.status()
        assert st_.capacity == int(cap)
        if dw is not None:
            assert st_.default_weight == float(check_weight(dw))

    def set_weight(self):
        m, w, mx = self.draw(names, "member"), self.draw(weight_st, "weight"), self.draw(cap_st, "max_units")
        self.pool.set_weight(m, w, max_units=mx)
        got = self.pool.status().members[m]
        assert got.weight == float(check_weight(w)) and not got.removed
        if mx is not UNCHANGED:
            assert got.max_units == (None if mx is None else int(mx))

    def remove_member(self):
        assert self.pool.remove_member(self.draw(names, "member")) in (True, False)

    def try_acquire(self):
        m, u, ttl = self.draw(names, "member"), self.draw(units_st, "units"), self.draw(ttl_st, "ttl")
        self.granted(self.pool.try_acquire(m, units=u, ttl=ttl), m, u)

    def acquire(self):
        m, u = self.draw(names, "member"), self.draw(units_st, "units")
        ttl, timeout = self.draw(ttl_st, "ttl"), self.draw(timeout_st, "timeout")
        self.granted(self.pool.acquire(m, units=u, ttl=ttl, timeout=timeout), m, u)

    def park(self):
        m, rid, u = self.draw(names, "member"), self.draw(names, "request id"), self.draw(units_st, "units")
        self.granted(self.pool.park(m, rid, units=u, ttl=self.draw(ttl_st, "ttl")), m, u)

    def release(self):
        lease = self.pick()
        if lease is not None:
            assert lease.release() in (True, False)

    def renew(self):
        lease = self.pick()
        if lease is not None:
            before = lease.token
            lease.renew(self.draw(st.one_of(st.none(), ttl_st), "ttl"))
            assert lease.token == before

    def revoke(self):
        lease = self.pick()
        target = lease.id if lease is not None and self.draw(st.booleans(), "own") else self.draw(names, "id")
        assert self.pool.revoke(target) in (True, False)

    def adapter(self):
        rid = self.draw(str_ids, "id")
        assert self.pool.lease(rid) is None or isinstance(self.pool.lease(rid), Lease)
        assert self.pool.cancel(rid) in (True, False)
        self.pool.ack_handoff(rid)
        assert all(isinstance(x, str) for x in self.pool.handoffs())

    def inspect(self):
        st_ = self.pool.status()
        assert isinstance(st_, PoolStatus) and st_.held == sum(m.held for m in st_.members.values())
        assert st_.free == max(st_.capacity - st_.held, 0)
        assert sum(x.units for x in self.pool.leases()) <= st_.held  # expired ones still count until reclaimed

    def lock(self):
        name, ttl, timeout = self.draw(names, "lock"), self.draw(ttl_st, "ttl"), self.draw(timeout_st, "timeout")
        lk = Lock(self.client, name, ttl=ttl)
        self.extra.append(lk.pool)
        with lk.acquire(timeout=timeout) as lease:
            assert lease.token > 0 and lk.token == lease.token

    def other_pool(self):
        name, prefix = self.draw(names, "pool"), self.draw(st.one_of(st.just("wshare"), names), "prefix")
        p = Pool(self.client, name, prefix=prefix)
        self.extra.append(p)
        p.configure(capacity=self.draw(capacity_st, "capacity"))
        lease = p.try_acquire(self.draw(names, "member"), units=self.draw(units_st, "units"))
        assert invariant_errors(self.client, p.keys) == []
        if lease is not None:
            assert lease.release()
        assert p.delete() and snapshot(self.client, p.keys)["pool"] == {}

    OPS = ["configure", "set_weight", "remove_member", "try_acquire", "try_acquire", "acquire", "park", "release",
           "release", "renew", "revoke", "adapter", "inspect", "lock", "other_pool"]


@FUZZ
@given(data=st.data())
def test_api_fuzz_keeps_invariants_and_fails_cleanly(r, data):
    run = Run(r, data)
    try:
        for _ in range(data.draw(st.integers(1, 10), label="steps")):
            op = data.draw(st.sampled_from(Run.OPS), label="op")
            before = snapshot(r, run.pool.keys)
            try:
                getattr(run, op)()
                event(f"{op}: ok")
            except EXPECTED as e:
                event(f"{op}: {type(e).__name__}")
                assert str(e) and "\n" not in str(e)
                if isinstance(e, InvalidRequest) and op not in ("lock", "other_pool"):
                    assert snapshot(r, run.pool.keys) == before, f"{op} changed the pool, then failed: {e}"
            errors = invariant_errors(r, run.pool.keys)
            assert errors == [], f"after {op}: {errors}"
    finally:
        for p in [run.pool, *run.extra]:
            p.delete()


# -- known gaps (pool.py, keys.py; reproductions for their owners) ----------------------------------------
# Plain Python checks: fakeredis is enough.

@pytest.fixture
def fake():
    client = fakeredis.FakeRedis()
    yield client
    client.close()


def test_units_of_an_int_subclass_are_accepted(fake):
    pool = Pool(fake, "P")
    pool.configure(capacity=2)
    assert pool.try_acquire("a", units=Two.TWO).units == 2


@pytest.mark.parametrize("call", ["lease", "cancel", "ack_handoff"])
def test_adapter_calls_reject_a_non_str_id(fake, call):
    pool = Pool(fake, "P")
    pool.configure(capacity=1)
    with pytest.raises(InvalidRequest):
        getattr(pool, call)(None)


def test_parking_an_id_again_returns_the_lease_as_it_is(fake):
    pool = Pool(fake, "P")
    pool.configure(capacity=3)
    first = pool.park("m0", "job-1", units=1)
    again = pool.park("m1", "job-1", units=2)  # a caller bug, but the answer should not mislead
    assert again.token == first.token and pool.status().held == 1
    assert (again.member, again.units) == ("m0", 1)


def test_handoffs_limit_is_checked(fake):
    pool = Pool(fake, "P")
    pool.configure(capacity=1)
    holder = pool.try_acquire("a")
    assert pool.park("b", "job-1") is None
    holder.release()  # job-1 is granted and listed for its adapter
    assert pool.handoffs() == ["job-1"]
    assert pool.handoffs(0) == []
    for bad in ("x", 10**30, -1):
        with pytest.raises(InvalidRequest):
            pool.handoffs(bad)


# -- URLs: masking --------------------------------------------------------------------------------

secret_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=4, max_size=20)


@settings(max_examples=max(200, EXAMPLES), deadline=None, derandomize=not RANDOM, database=None)
@given(user=st.text(st.characters(codec="utf-8", exclude_characters=":@/?#"), max_size=8), password=secret_text,
       encode=st.booleans(), query=st.sampled_from(["", "?db=0", "?socket_timeout=1&db=2", "?password={pw}",
                                                     "?ssl_password={pw}&x=1"]))
def test_masked_urls_never_show_the_password(user, password, encode, query):
    pw = quote(password, safe="") if encode else password
    url = f"redis://{user}:{pw}@127.0.0.1:6379/0" + query.format(pw=pw)
    rest = f"redis://{user}:@127.0.0.1:6379/0" + query.format(pw="")
    if password in rest or pw in rest:
        return  # the "password" is also the user name or part of the host: nothing to hide
    masked = mask_url(url)
    assert password not in masked and pw not in masked, masked
    text = redact(f"failed at {url}: {password} / {pw}", url)
    assert password not in text and pw not in text
    try:
        connect(url).close()  # no I/O: parses only
    except ValueError as e:
        assert password not in str(e) and pw not in str(e)


# -- the command line ---------------------------------------------------------------------------------

NUM_TEXTS = ["nan", "inf", "-inf", "-1", "0", "1", "2", "3", "1e400", "1e-300", "99999999999999999999999", "0x10", "",
             " 1", "١", "1_000", "+3", "1e9", "-0", "0.5", "1e308", "5e-324", str(MAX_UNITS + 1)]
num_text = st.one_of(st.sampled_from(NUM_TEXTS), st.sampled_from(NUM_TEXTS), st.integers(-10**25, 10**25).map(str),
                     st.floats().map(repr), st.text(max_size=5))
name_text = st.one_of(st.sampled_from(["P", "P", "P", "a", "b", "é", "--", "-x", "bad{name}", "x y", "a" * 201,
                                       "\u2028"]), st.text(st.characters(exclude_characters="\x00"), max_size=12))
timeout_text = st.sampled_from(["0", "0.01", "1e-9", "nan", "inf", "-1", "1e400", "x", "", "1e300"])


@st.composite
def cli_args(draw):
    n, m = draw(name_text), draw(name_text)
    cmd = draw(st.sampled_from(["configure", "set", "remove", "status", "leases", "list", "revoke", "watch", "run",
                                "delete"]))
    if cmd == "configure":
        args = ["pool", "configure", n, "--capacity", draw(num_text)]
        if draw(st.booleans()):
            args += ["--default-weight", draw(num_text)]
    elif cmd == "set":
        args = ["member", "set", n, m, "--weight", draw(num_text)]
        args += draw(st.sampled_from([[], ["--no-max-units"], ["--max-units", draw(num_text)]]))
    elif cmd == "remove":
        args = ["member", "remove", n, m]
    elif cmd in ("status", "leases"):
        args = [cmd, n] + draw(st.sampled_from([[], ["--json"]]))
    elif cmd == "list":
        args = ["pool", "list"] + draw(st.sampled_from([[], ["--json"]]))
    elif cmd == "revoke":
        args = ["revoke", n, m]
    elif cmd == "watch":  # never more than one refresh: a valid long interval would sleep
        args = ["watch", n, "--count", draw(st.sampled_from(["0", "1", "-2", "x", ""])), "--interval", draw(num_text)]
    elif cmd == "run":
        args = ["run", n, "-m", m, "-n", draw(num_text), "--ttl", draw(num_text), "--timeout", draw(timeout_text),
                "--", "true"]
    else:
        args = ["pool", "delete", n] + draw(st.sampled_from([[], ["--force"]]))
    if draw(st.integers(0, 4)) == 0:
        args = ["--prefix", draw(name_text), *args]
    return args


def assert_clean(res, args):
    assert res.exception is None or isinstance(res.exception, SystemExit), (args, repr(res.exception))
    assert "Traceback" not in res.output, (args, res.output)
    assert res.exit_code in (0, 1, 2, 75), (args, res.exit_code, res.output)
    if res.exit_code == 0:
        assert res.stderr == "", (args, res.stderr)
    elif "Error: " in res.stderr:  # click's usage error: Usage, Try, Error
        assert res.exit_code == 2, (args, res.output)
    else:
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("wshare: "), (args, res.output)


@FUZZ
@given(args=cli_args())
def test_cli_fuzz_fails_in_one_line_and_keeps_invariants(url, args):
    client = redis.Redis.from_url(url)
    Pool(client, "P").configure(capacity=3)
    res = CliRunner().invoke(main, ["--url", url, *args])
    assert_clean(res, args)
    prefix = args[1] if args[0] == "--prefix" else "wshare"
    for pool_name in {"P", *[a for a in args if isinstance(a, str)]}:
        try:
            keys = Pool(client, pool_name, prefix=prefix).keys
            check_pool_name(pool_name)
        except InvalidRequest:
            continue
        errors = invariant_errors(client, keys)
        assert errors == [], (args, errors)
    client.close()


QUERY_KEYS = ["db", "socket_timeout", "socket_connect_timeout", "password", "username", "client_name", "protocol",
              "max_connections", "health_check_interval", "retry_on_timeout", "decode_responses", "ssl_cert_reqs",
              "ssl_ca_certs", "ssl_check_hostname", "foo", "encoding", "socket_keepalive", "timeout"]


@st.composite
def urls(draw, port):
    scheme = draw(st.sampled_from(["redis", "redis", "rediss", "unix", "http", "REDIS", ""]))
    user = draw(st.one_of(st.just(""), st.text(max_size=6).map(lambda t: quote(t, safe="") + "@"),
                          st.text(max_size=6).map(lambda t: ":" + quote(t, safe="") + "@")))
    host = draw(st.sampled_from(["127.0.0.1", "[::1]", "127.0.0.1:1", f"127.0.0.1:{port}", f"127.0.0.1:{port}",
                                 "127.0.0.1:99999", "127.0.0.1:x"]))
    path = draw(st.sampled_from(["", "/0", "/1", "/x", "/-1", "/99999"]))
    query = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS), st.one_of(st.sampled_from(NUM_TEXTS), st.text(
        max_size=4))), max_size=2))
    q = "&".join(f"{k}={quote(v, safe='')}" for k, v in query)
    if scheme == "rediss":  # a TLS handshake with the plain server waits for the connect timeout (5 s)
        host = host.replace(str(port), "1")
    return f"{scheme}://{user}{host}{path}" + (f"?{q}" if q else "")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cli_fuzz_urls_fail_in_one_line(url, data):
    port = url.rsplit(":", 1)[1].split("/")[0]
    bad_url = data.draw(urls(port), label="url")
    res = CliRunner().invoke(main, ["--url", bad_url, "status", "P"])
    assert_clean(res, bad_url)


@pytest.mark.parametrize("args", [
    ["worker", "--pool", "P", "--member", "a", "--units", "0"],
    ["worker", "--pool", "P", "--member", "a", "--ttl", "nan"],
    ["worker", "--pool", "P", "--member", "a", "--ttl", "1e400"],
    ["worker", "--pool", "P", "--member", "bad\x7fname"],
    ["worker", "--pool", "P", "--member", "a", "--work", "nan"],
    ["worker", "--pool", "P", "--member", "a", "--work", "inf"],
    ["worker", "--pool", "P", "--member", "a", "--concurrency", "0"],
    ["worker", "--pool", "nosuchpool", "--member", "a"],
    ["worker", "--pool", "bad{pool}", "--member", "a"],
    ["watch", "P", "--interval", "inf", "--count", "2"],
    ["watch", "P", "--interval", "nan", "--count", "2"],
    ["demo", "--duration", "nan"],
    ["demo", "--duration", "inf"],
    ["demo", "--duration", "-1"],
])
def test_cli_arguments_that_run_in_threads_or_loops_are_checked_first(url, args):
    """`worker` works in threads (an error there was a traceback and exit 0), `watch` and `demo`
    loop: their arguments fail at once, in one line."""
    Pool(redis.Redis.from_url(url), "P").configure(capacity=1)
    res = CliRunner().invoke(main, ["--url", url, *args])
    assert res.exit_code in (1, 2)
    assert_clean(res, args)


@pytest.mark.parametrize("bad", ["a\u2028b", "a\u2029b", "a\x85b", "a\x9bb", "user\u202etxt.exe"])
def test_names_with_line_breaking_or_bidi_characters_are_refused(fake, bad):
    Pool(fake, "P").configure(capacity=1)
    with pytest.raises(InvalidRequest):
        Pool(fake, "P").set_weight(bad, 1)


def test_cli_escapes_such_names_when_printing(url):
    client = redis.Redis.from_url(url)
    pool = Pool(client, "P")
    pool.configure(capacity=2)
    # The API refuses such names now; state written by hand (or by an older version) may
    # still hold one, and the CLI must not let it break or reorder its output.
    name = "a\u2028b\x85\u202e"
    client.hset(pool.keys.key("members"), name, "w=1 max=- held=0 wait=0 vs=0 vt=0 head=0:0 kind=set")
    record = f"1:{2**60}:60000:0:{name}"
    client.hset(pool.keys.key("leases"), "lease-1", record)
    client.zadd(pool.keys.key("expiry"), {"lease-1": 2**50})
    for args in (["status", "P"], ["leases", "P"], ["watch", "P", "--count", "1"], ["member", "remove", "P", "x\u2028"]):
        res = CliRunner().invoke(main, ["--url", url, *args])
        assert "\u2028" not in res.output and "\x85" not in res.output and "\u202e" not in res.output, args
        assert "\\u2028" in res.output, (args, res.output)
