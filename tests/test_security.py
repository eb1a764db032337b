"""Passwords, ACL users and TLS against real redis-servers on loopback: the Python API and
`wshare` work through them, the least-privilege ACL in the README keeps prefixes apart and
fails fast (NOPERM, never a hang), and no message, output or log line shows a password."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from click.testing import CliRunner

from invariants import check, snapshot
from tls import SecuredServer, have_openssl, make_certs
from wshare_redis import Lock, Pool, WshareError
from wshare_redis.cli import _Redact, main
from wshare_redis.connect import connect

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parent.parent
WSHARE = [sys.executable, "-m", "wshare_redis.cli"]

ADMIN_PW = "Adm1n-kq7Vz"             # requirepass: the default user
WORKER_PW = "Wk9-zQx4Lm#Tr"          # wshare-worker: the secret most tests look for
ODD_PW = "Zq8@x/Kp:v9?Hj#Y%"         # a password that must be percent-encoded in a URL
README_PASSWORDS = {"ADMIN_PASSWORD": "adm-Rr5Nq", "WORKER_PASSWORD": WORKER_PW,
                    "MONITOR_PASSWORD": "mon-Xc3Jd"}


# -- the README's ACL ---------------------------------------------------------------------------

def readme_acl() -> dict[str, str]:
    """user name -> its `ACL SETUSER` line, from README's "Access control (ACL) and TLS"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Access control (ACL) and TLS", 1)[1].split("\n## ", 1)[0]
    return {line.split()[2]: line for line in section.splitlines() if line.startswith("ACL SETUSER ")}


def acl_args(line: str, *, prefix: str = "wshare", user: str | None = None) -> list[str]:
    """The README line as ACL SETUSER arguments, with test passwords, for ``prefix``."""
    for placeholder, pw in README_PASSWORDS.items():
        line = line.replace(f">{placeholder}", f">{pw}")
    line = line.replace("~wshare:{", f"~{prefix}:{{")
    args = line.split()[2:]
    if user:
        args[0] = user
    return args


def command_set(line: str) -> set[str]:
    return {a[1:] for a in line.split() if a.startswith("+") and not a.startswith("+@")}


def engine_commands() -> set[str]:
    """Every Redis command the engine's scripts call (Redis checks them against the caller's ACL)."""
    found = set()
    for f in (ROOT / "lua").glob("*.lua"):
        if not f.name.startswith("rq_"):
            found |= {c.lower() for c in re.findall(r"redis\.p?call\(\s*['\"](\w+)['\"]", f.read_text())}
    return found


def test_readme_acl_lists_every_command_the_engine_runs():
    acl = readme_acl()
    assert set(acl) == {"wshare-admin", "wshare-worker", "wshare-monitor"}
    engine = engine_commands()
    assert {"hset", "zadd", "time"} <= engine
    worker, admin, monitor = (command_set(acl[u]) for u in ("wshare-worker", "wshare-admin", "wshare-monitor"))
    # If this fails, lua/ calls a command the README's ACL does not grant: add it there.
    assert engine - {"exists", "unlink"} <= worker, engine - worker
    assert engine <= admin, engine - admin
    assert worker - engine == {"fcall", "blpop"}
    assert not worker & {"function|load", "scan", "unlink", "exists", "keys", "flushdb", "eval"}
    assert admin - worker == {"function|load", "scan", "unlink", "exists"}
    assert "%R~wshare:{*" in acl["wshare-monitor"].split() and not monitor & (engine - {"hget", "hgetall", "zrange",
                                                                                          "zscore"})
    for line in acl.values():
        assert "-@all" in line.split() and "resetkeys" in line.split() and "resetchannels" in line.split()


# -- servers ------------------------------------------------------------------------------------

def _ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


@pytest.fixture(scope="module")
def acl_server():
    """requirepass for the default user (the test's admin) and the README's three users for
    prefix `wshare`, the worker also for prefix `other`, and a worker confined to `team-a-*`."""
    server = SecuredServer(args=("--requirepass", ADMIN_PW),
                           ready=lambda port: _ping(f"redis://:{ADMIN_PW}@127.0.0.1:{port}/0"))
    with server:
        admin = redis.Redis.from_url(admin_url(server))
        acl = readme_acl()
        for user in acl:
            admin.execute_command("ACL", "SETUSER", *acl_args(acl[user]))
        admin.execute_command("ACL", "SETUSER", *acl_args(acl["wshare-worker"], prefix="other", user="other-worker"))
        odd = acl_args(acl["wshare-worker"], user="odd-worker")
        admin.execute_command("ACL", "SETUSER", *[">" + ODD_PW if a.startswith(">") else a for a in odd])
        team = acl_args(acl["wshare-worker"], user="team-a")
        admin.execute_command("ACL", "SETUSER", *["~wshare:{team-a-*}:*" if a == "~wshare:{*" else a for a in team])
        admin.close()
        yield server


def admin_url(server) -> str:
    return f"redis://:{ADMIN_PW}@127.0.0.1:{server.port}/0"


def user_url(server, user: str, pw: str | None = None) -> str:
    pw = pw if pw is not None else README_PASSWORDS.get(f"{user.split('-')[-1].upper()}_PASSWORD", WORKER_PW)
    return f"redis://{user}:{quote(pw, safe='')}@127.0.0.1:{server.port}/0"


@pytest.fixture
def admin(acl_server):
    client = redis.Redis.from_url(admin_url(acl_server))
    client.flushdb()
    client.acl_log_reset()
    yield client
    client.close()


@pytest.fixture
def clients():
    made = []

    def make(url, **kw):
        c = redis.Redis.from_url(url, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def cli(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env)


def assert_one_clean_line(res, code=1):
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1, res.output


def assert_no_secret(text: str, *secrets: str):
    for secret in secrets:
        for form in {secret, quote(secret, safe="")}:
            chunks = {form[i:i + 5] for i in range(max(len(form) - 4, 1))}
            leaked = [c for c in chunks if c in text]
            assert not leaked, f"{leaked} of a password in: {text!r}"


def timed(fn, limit=3.0):
    """Run fn in a thread; fail if it does not return or raise within ``limit`` seconds."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # recorded for the test
            out["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"{fn} still blocked after {limit}s"
    return out


# -- passwords --------------------------------------------------------------------------------

def test_password_urls_for_the_python_api(acl_server, admin, clients):
    port = acl_server.port
    for url in (admin_url(acl_server), f"redis://127.0.0.1:{port}/0?password={ADMIN_PW}",
                user_url(acl_server, "odd-worker", ODD_PW)):
        for client in (clients(url), connect(url)):
            pool = Pool(client, "gpu")
            if "odd" not in url:
                pool.configure(capacity=2)
            lease = pool.try_acquire("a", units=2)
            assert lease is not None and pool.status().held == 2
            assert lease.release()
            client.close()
    for bad in (f"redis://127.0.0.1:{port}/0", f"redis://:wrong-pw@127.0.0.1:{port}/0",
                user_url(acl_server, "wshare-worker", "wrong-pw"), user_url(acl_server, "nobody", WORKER_PW)):
        with pytest.raises(redis.AuthenticationError):
            Pool(clients(bad), "gpu").status()


def test_cli_with_password_urls_and_the_environment(acl_server, admin):
    url = admin_url(acl_server)
    assert cli("--url", url, "pool", "configure", "gpu", "--capacity", "3").exit_code == 0
    res = cli("status", "gpu", "--json", env={"WSHARE_REDIS_URL": user_url(acl_server, "wshare-worker")})
    assert res.exit_code == 0 and json.loads(res.stdout)["capacity"] == 3
    res = cli("--url", user_url(acl_server, "odd-worker", ODD_PW), "member", "set", "gpu", "a", "--weight", "2")
    assert res.exit_code == 0, res.output
    assert Pool(admin, "gpu").status().members["a"].weight == 2
    for bad in (user_url(acl_server, "wshare-worker", "Wrong-" + WORKER_PW), f"redis://127.0.0.1:{acl_server.port}/0"):
        res = cli("--url", bad, "status", "gpu")
        assert_one_clean_line(res)
        assert "refused the credentials" in res.stderr or "Authentication required" in res.stderr
        assert_no_secret(res.output, WORKER_PW)


# -- ACL users ----------------------------------------------------------------------------------

def test_worker_acquires_waits_and_releases_with_the_readme_acl(acl_server, admin, clients):
    Pool(admin, "gpu").configure(capacity=1)  # the admin's first call loads the engine
    url = user_url(acl_server, "wshare-worker")
    pool, other = Pool(clients(url), "gpu"), Pool(clients(url), "gpu")
    pool.set_weight("a", 2, max_units=1)
    held = pool.try_acquire("a", ttl=5)
    assert held is not None and pool.try_acquire("b") is None
    got: dict = {}
    t = threading.Thread(target=lambda: got.update(lease=other.acquire("b", timeout=5)))
    t.start()
    deadline = time.monotonic() + 5
    while pool.status().waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    held.renew()
    assert held.release()
    t.join(5)
    lease = got["lease"]
    assert lease.member == "b" and lease.token > held.token
    assert [x.id for x in pool.leases()] == [lease.id]
    lease.release()
    with Lock(clients(url), "nightly") as lk:
        assert lk.token > 0
    assert pool.remove_member("a") and not pool.remove_member("a")
    assert admin.acl_log() == []  # nothing the worker did was denied
    res = subprocess.run([*WSHARE, "-vv", "--url", url, "run", "gpu", "-m", "c", "--", "sh", "-c",
                          "echo units=$WSHARE_UNITS"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "units=1" in res.stdout, res.stderr
    assert_no_secret(res.stdout + res.stderr, WORKER_PW)
    assert admin.acl_log() == []


def test_worker_cannot_read_or_change_another_prefix(acl_server, admin, clients):
    theirs = Pool(admin, "gpu", prefix="other")
    theirs.configure(capacity=2)
    theirs.try_acquire("x", ttl=60)
    before = snapshot(admin, theirs.keys)
    worker = clients(user_url(acl_server, "wshare-worker"), socket_timeout=5)
    pool = Pool(worker, "gpu", prefix="other")
    calls = {
        "configure": lambda: pool.configure(capacity=10), "set_weight": lambda: pool.set_weight("x", 5),
        "status": pool.status, "leases": pool.leases, "try_acquire": lambda: pool.try_acquire("y"),
        "acquire for ever": lambda: pool.acquire("y", units=2, timeout=None), "delete": pool.delete,
        "remove_member": lambda: pool.remove_member("x"), "revoke": lambda: pool.revoke("a" * 32),
        "lock": lambda: Lock(worker, "gpu", prefix="other").acquire(),
        "hgetall": lambda: worker.hgetall(theirs.keys.key("pool")),
        "hset": lambda: worker.hset(theirs.keys.key("pool"), "capacity", 99),
        "blpop": lambda: worker.blpop([theirs.keys.wake("x")], timeout=1),
        "zrange": lambda: worker.zrange(theirs.keys.key("expiry"), 0, -1),
    }
    for what, call in calls.items():
        out = timed(call)
        assert isinstance(out.get("error"), redis.exceptions.NoPermissionError), (what, out)
    assert snapshot(admin, theirs.keys) == before
    assert {e["username"] for e in admin.acl_log()} == {"wshare-worker"}
    # ... and the other way round, and a user confined to pools named team-a-*
    mine = Pool(admin, "gpu")
    mine.configure(capacity=1)
    assert isinstance(timed(Pool(clients(user_url(acl_server, "other-worker")), "gpu").status)["error"],
                      redis.exceptions.NoPermissionError)
    team = clients(user_url(acl_server, "team-a"))
    Pool(admin, "team-a-gpu").configure(capacity=1)
    Pool(team, "team-a-gpu").try_acquire("a").release()
    assert isinstance(timed(Pool(team, "gpu").status)["error"], redis.exceptions.NoPermissionError)
    res = cli("--url", user_url(acl_server, "wshare-worker"), "--prefix", "other", "member", "set", "gpu", "x",
              "--weight", "3")
    assert_one_clean_line(res)
    assert "denied a command (ACL)" in res.stderr and "no permissions" in res.stderr
    assert_no_secret(res.output, WORKER_PW)


def test_workers_cannot_delete_nor_load_the_engine_admin_can(acl_server, admin, clients):
    Pool(admin, "gpu").configure(capacity=2)
    worker = clients(user_url(acl_server, "wshare-worker"))
    pool = Pool(worker, "gpu")
    lease = pool.try_acquire("a")
    before = snapshot(admin, pool.keys)
    out = timed(pool.delete)
    assert isinstance(out.get("error"), (WshareError, redis.exceptions.NoPermissionError)), out
    assert "permission" in str(out["error"]).lower() or "can't run" in str(out["error"])
    after = snapshot(admin, pool.keys)
    assert after == before and check(after, None) == []
    lease.release()
    # Without the engine loaded (a new wshare version, a restart that lost the data), a worker
    # fails at once, and the admin user's next wshare command loads it.
    admin.function_flush()
    out = timed(lambda: pool.acquire("a", timeout=None))
    assert isinstance(out.get("error"), redis.exceptions.NoPermissionError) and "function|load" in str(out["error"])
    res = cli("--url", user_url(acl_server, "wshare-worker"), "status", "gpu")
    assert_one_clean_line(res)
    assert "not loaded" in res.stderr and "FUNCTION LOAD" in res.stderr
    admin_user = user_url(acl_server, "wshare-admin")
    assert cli("--url", admin_user, "pool", "configure", "gpu", "--capacity", "2").exit_code == 0
    assert pool.try_acquire("a").release()
    Pool(admin, "spare").configure(capacity=1)
    Pool(admin, "spare").try_acquire("a")
    res = cli("--url", admin_user, "pool", "delete", "spare", "--force")
    assert res.exit_code == 0, res.output
    assert admin.keys("wshare:{spare}*") == []
    assert [e["username"] for e in admin.acl_log()] == ["wshare-worker", "wshare-worker"]  # delete, load


def test_monitor_reads_but_changes_nothing(acl_server, admin, clients):
    pool = Pool(admin, "gpu")
    pool.configure(capacity=4)
    pool.set_weight("a", 3, max_units=3)
    pool.try_acquire("a", units=2, ttl=60)
    monitor_url = user_url(acl_server, "wshare-monitor")
    monitor = clients(monitor_url)
    assert monitor.hget(pool.keys.key("pool"), "capacity") == b"4"
    assert monitor.zrange(pool.keys.key("expiry"), 0, -1)
    for call in (Pool(monitor, "gpu").status, lambda: Pool(monitor, "gpu").try_acquire("b"),
                 lambda: monitor.hset(pool.keys.key("pool"), "capacity", 99),
                 lambda: monitor.delete(pool.keys.key("pool"))):
        assert isinstance(timed(call).get("error"), redis.exceptions.NoPermissionError)
    res = cli("--url", monitor_url, "status", "gpu", "--json")
    assert res.exit_code == 0 and "read-only view" in res.stderr, res.output
    seen, truth = json.loads(res.stdout), json.loads(cli("--url", admin_url(acl_server), "status", "gpu",
                                                          "--json").stdout)
    assert seen == truth
    res = cli("--url", monitor_url, "pool", "list", "--json")
    assert res.exit_code == 0 and [p["name"] for p in json.loads(res.stdout)] == ["gpu"]
    res = cli("--url", monitor_url, "watch", "gpu", "--count", "1")
    assert res.exit_code == 0 and "gpu held 2/4" in res.stdout
    for args in (["member", "set", "gpu", "b", "--weight", "1"], ["--prefix", "other", "status", "gpu"]):
        res = cli("--url", monitor_url, *args)
        assert_one_clean_line(res)
        assert "denied a command (ACL)" in res.stderr
        assert_no_secret(res.output, README_PASSWORDS["MONITOR_PASSWORD"])
    assert pool.status().members["a"].weight == 3


# -- no password in any output --------------------------------------------------------------------

SCENARIOS = {
    "ok": lambda s: user_url(s, "wshare-worker"),
    "refused": lambda s: f"redis://wshare-worker:{quote(WORKER_PW, safe='')}@127.0.0.1:1/0",
    "wrong password": lambda s: user_url(s, "wshare-worker", WORKER_PW + "-old"),
    "nopermission": lambda s: user_url(s, "wshare-worker"),  # with --prefix other
    "query password": lambda s: f"redis://127.0.0.1:{s.port}/0?password={quote(WORKER_PW, safe='')}",
    "encoded odd password": lambda s: user_url(s, "odd-worker", ODD_PW),
    "raw odd password": lambda s: f"redis://odd-worker:{ODD_PW}@127.0.0.1:{s.port}/0",
    "unknown option": lambda s: user_url(s, "wshare-worker") + "?sockettimeout=1",
}
COMMANDS = [["status", "gpu"], ["status", "gpu", "--json"], ["pool", "list"], ["leases", "gpu"],
            ["watch", "gpu", "--count", "1"], ["member", "set", "gpu", "m", "--weight", "2"],
            ["pool", "configure", "gpu", "--capacity", "2"], ["-vv", "run", "gpu", "-m", "a", "--timeout", "1", "--",
                                                              "true"]]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_cli_never_prints_a_password(acl_server, admin, scenario):
    Pool(admin, "gpu").configure(capacity=2)
    Pool(admin, "gpu", prefix="other").configure(capacity=2)
    url = SCENARIOS[scenario](acl_server)
    prefix = ["--prefix", "other"] if scenario == "nopermission" else []
    for args in COMMANDS:
        res = cli("--url", url, *prefix, *args)
        assert res.exception is None or isinstance(res.exception, SystemExit), (args, res.exception)
        assert_no_secret(res.output, WORKER_PW, ODD_PW)
        if scenario in ("ok", "encoded odd password") and args == ["pool", "list"]:
            assert_one_clean_line(res)  # workers may not SCAN
            assert "denied a command (ACL)" in res.stderr
        elif scenario in ("ok", "encoded odd password"):
            assert res.exit_code == 0, (args, res.output)
        else:  # with "query password", WORKER_PW is the wrong password for the default user
            assert_one_clean_line(res, code=2 if scenario in ("unknown option", "raw odd password") else 1)


def test_real_processes_never_print_a_password(acl_server, admin):
    Pool(admin, "gpu").configure(capacity=1)
    url = user_url(acl_server, "wshare-worker")
    runs = [
        [*WSHARE, "-vv", "--url", url, "worker", "--pool", "gpu", "--member", "a", "--tasks", "1", "--work", "0"],
        [*WSHARE, "-vv", "--url", url.replace(str(acl_server.port), "1"), "status", "gpu"],
        [*WSHARE, "-vv", "--url", url, "--prefix", "other", "run", "gpu", "-m", "a", "--", "true"],
    ]
    for argv in runs:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert "Traceback" not in p.stderr, p.stderr
        assert_no_secret(p.stdout + p.stderr, WORKER_PW)
    assert p.returncode == 1 and "denied a command (ACL)" in p.stderr


def test_log_lines_are_redacted():
    import logging
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "connecting to %s failed", (f"redis://u:{WORKER_PW}@h",),
                               None)
    assert _Redact(f"redis://u:{WORKER_PW}@h").filter(record)
    assert record.getMessage() == "connecting to redis://u:***@h failed"


# -- TLS ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A redis-server with only a TLS port that requires client certificates, requirepass and
    the README's worker user; yields (server, certs, the worker's URL with all TLS options)."""
    if not have_openssl():
        pytest.skip("the openssl command is needed to make test certificates")
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    query = f"ssl_ca_certs={certs.ca}&ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}"
    server = SecuredServer(
        args=("--requirepass", ADMIN_PW, "--tls-cert-file", str(certs.server_cert), "--tls-key-file",
              str(certs.server_key), "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "yes"),
        ready=lambda port: _ping(f"rediss://:{ADMIN_PW}@127.0.0.1:{port}/0?{query}"), tls=True)
    with server:
        admin = redis.Redis.from_url(f"rediss://:{ADMIN_PW}@127.0.0.1:{server.port}/0?{query}")
        admin.execute_command("ACL", "SETUSER", *acl_args(readme_acl()["wshare-worker"]))
        Pool(admin, "gpu").configure(capacity=1)
        admin.close()
        yield server, certs, f"rediss://wshare-worker:{quote(WORKER_PW)}@127.0.0.1:{server.port}/0?{query}"


def test_tls_with_a_verified_server_and_a_client_certificate(tls, clients):
    server, certs, url = tls
    pool, other = Pool(clients(url), "gpu"), Pool(connect(url), "gpu")
    held = pool.try_acquire("a")
    got: dict = {}
    t = threading.Thread(target=lambda: got.update(lease=other.acquire("b", timeout=5)))
    t.start()
    deadline = time.monotonic() + 5
    while pool.status().waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    held.release()
    t.join(5)
    assert got["lease"].member == "b" and got["lease"].release()
    other.client.close()
    res = cli("--url", url, "status", "gpu", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["capacity"] == 1, res.output
    res = cli("run", "gpu", "-m", "a", "--timeout", "5", "--", "true", env={"WSHARE_REDIS_URL": url})
    assert res.exit_code == 0, res.output
    assert_no_secret(res.output, WORKER_PW)


def test_tls_failures_are_one_clean_line(tls, clients):
    server, certs, url = tls
    no_ca = re.sub(r"ssl_ca_certs=[^&]*&", "", url)
    bad = {
        "the server's CA is not trusted": (no_ca, "certificate verify failed"),
        "the host name does not match": (url.replace("127.0.0.1", "localhost"), "certificate verify failed"),
        "no client certificate": (url.split("&ssl_certfile")[0], ""),
        "plain text to the TLS port": ("redis" + url[len("rediss"):].split("?")[0], ""),
    }
    for what, (bad_url, text) in bad.items():
        out = timed(lambda: Pool(clients(bad_url, socket_timeout=3), "gpu").status(), limit=8)
        assert isinstance(out.get("error"), redis.ConnectionError), (what, out)
        res = cli("--url", bad_url, "status", "gpu")
        assert_one_clean_line(res)
        assert "cannot reach Redis" in res.stderr and text in res.stderr, (what, res.stderr)
        assert_no_secret(res.output, WORKER_PW)


def test_openssl_certs_are_throwaway(tls):
    server, certs, _ = tls
    assert oct(os.stat(certs.server_key).st_mode & 0o777) == "0o600"
    assert "127.0.0.1" in subprocess.run(["openssl", "x509", "-in", str(certs.server_cert), "-noout", "-text"],
                                         capture_output=True, text=True, check=True).stdout
