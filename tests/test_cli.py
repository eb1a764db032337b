"""The `wshare` command line: CliRunner tests of every command and error path, and real
processes for `run`, `demo`, the workers and the docker-compose sketch."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml
from click.testing import CliRunner

from wshare_redis import Pool
from wshare_redis.cli import main
from wshare_redis.connect import DEFAULT_URL, mask_url, reachable

ROOT = Path(__file__).resolve().parent.parent
WSHARE = [sys.executable, "-m", "wshare_redis.cli"]

pytestmark = pytest.mark.real


@pytest.fixture
def cli(url):
    runner = CliRunner()

    def invoke(*args, **kw):
        return runner.invoke(main, ["--url", url, *args], catch_exceptions=False, **kw)
    return invoke


def lines(text):
    return [x for x in text.splitlines() if x.strip()]


def test_help_lists_every_command_with_examples():
    out = CliRunner().invoke(main, ["--help"]).output
    for cmd in ("pool", "member", "status", "watch", "leases", "revoke", "run", "demo", "worker", "metrics"):
        assert cmd in out
    for args in (["pool", "configure"], ["pool", "list"], ["pool", "delete"], ["member", "set"],
                 ["member", "remove"], ["status"], ["watch"], ["leases"], ["revoke"], ["run"],
                 ["demo"], ["worker"], ["metrics"]):
        res = CliRunner().invoke(main, [*args, "--help"])
        assert res.exit_code == 0 and "Example" in res.output, args


def test_pool_and_member_commands(cli, url, name):
    assert cli("pool", "configure", name, "--capacity", "4", "--default-weight", "2").exit_code == 0
    assert cli("member", "set", name, "a", "--weight", "3", "--max-units", "2").exit_code == 0
    pool = Pool(redis.Redis.from_url(url), name)
    st = pool.status()
    assert (st.capacity, st.default_weight, st.members["a"].weight, st.members["a"].max_units) == (4, 2.0, 3.0, 2)
    assert cli("member", "set", name, "a", "--weight", "5").exit_code == 0  # the cap stays
    assert pool.status().members["a"].max_units == 2
    assert cli("member", "set", name, "a", "--weight", "5", "--no-max-units").exit_code == 0
    assert pool.status().members["a"].max_units is None
    listed = json.loads(cli("pool", "list", "--json").output)
    assert [p["name"] for p in listed] == [name] and listed[0]["capacity"] == 4
    assert name in cli("pool", "list").output
    assert cli("member", "remove", name, "a").exit_code == 0
    res = cli("member", "remove", name, "a")
    assert res.exit_code == 1 and "no member 'a'" in res.output


def test_status_table_and_json(cli, url, name):
    cli("pool", "configure", name, "--capacity", "10")
    cli("member", "set", name, "team-a", "--weight", "1")
    cli("member", "set", name, "team-b", "--weight", "3")
    pool = Pool(redis.Redis.from_url(url), name)
    held = [pool.try_acquire("team-a", units=5), pool.try_acquire("team-b", units=5)]
    table = cli("status", name).output
    assert "capacity 10, held 10, free 0" in table
    row = next(x for x in lines(table) if x.startswith("team-b"))
    assert row.split()[1:7] == ["3", "-", "5.00", "5", "0", "0"]
    assert all(len(x) <= 80 for x in table.splitlines())
    data = json.loads(cli("status", name, "--json").output)
    assert data["capacity"] == 10 and data["members"]["team-a"]["held"] == 5
    for lease in held:
        lease.release()


def test_leases_and_revoke(cli, url, name):
    cli("pool", "configure", name, "--capacity", "2")
    pool = Pool(redis.Redis.from_url(url), name)
    lease = pool.try_acquire("a", units=2, ttl=60)
    rows = json.loads(cli("leases", name, "--json").output)
    assert [(x["id"], x["member"], x["units"], x["token"]) for x in rows] == [(lease.id, "a", 2, lease.token)]
    assert 55 < rows[0]["expires_in"] <= 60
    assert lease.id in cli("leases", name).output
    assert cli("revoke", name, lease.id).exit_code == 0
    res = cli("revoke", name, lease.id)
    assert res.exit_code == 1 and "no live lease" in res.output
    assert pool.status().held == 0


def test_pool_delete_refuses_while_leases_are_live(cli, url, name):
    cli("pool", "configure", name, "--capacity", "2")
    pool = Pool(redis.Redis.from_url(url), name)
    pool.try_acquire("a")
    res = cli("pool", "delete", name)
    assert res.exit_code == 1 and "live lease" in res.output and "--force" in res.output
    assert pool.status().held == 1
    assert cli("pool", "delete", name, "--force").exit_code == 0
    assert redis.Redis.from_url(url).keys("*") == []


def test_watch_prints_plain_lines_when_not_a_terminal(cli, url, name):
    cli("pool", "configure", name, "--capacity", "3")
    Pool(redis.Redis.from_url(url), name).try_acquire("a", units=2)
    out = lines(cli("watch", name, "--interval", "0.05", "--count", "3").output)
    assert len(out) == 3 and all(f"{name} held 2/3" in x and "a=2/" in x for x in out)


@pytest.mark.parametrize("args,code,text", [
    (["member", "set", "P", "b", "--weight", "-2"], 2, "weight must be a finite number > 0"),
    (["member", "set", "P", "b", "--weight", "nan"], 2, "weight"),
    (["member", "set", "P", "b", "--weight", "x"], 2, "not a valid float"),
    (["member", "set", "P", "b", "--weight", "1", "--max-units", "2", "--no-max-units"], 2, "exclude"),
    (["pool", "configure", "P", "--capacity", "-1"], 2, "capacity must be between"),
    (["pool", "configure", "bad{name}", "--capacity", "1"], 2, "must not contain"),
    (["status", "nosuchpool"], 1, "does not exist"),
    (["leases", "nosuchpool"], 1, "does not exist"),
    (["run", "nosuchpool", "--member", "a", "--", "true"], 1, "does not exist"),
    (["watch", "P", "--interval", "0"], 2, "must be > 0"),
])
def test_expected_failures_are_one_clean_line(cli, url, args, code, text):
    Pool(redis.Redis.from_url(url), "P").configure(capacity=1)
    res = CliRunner().invoke(main, ["--url", url, *args])
    assert res.exit_code == code, res.output
    assert text in res.output and "Traceback" not in res.output


def test_unreachable_redis_is_one_line_with_the_password_masked():
    res = CliRunner().invoke(main, ["--url", "redis://user:sekret@127.0.0.1:1/0", "status", "x"])
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "sekret" not in res.output
    assert "cannot reach Redis at redis://user:***@127.0.0.1:1/0" in res.output
    assert mask_url("rediss://:pw@h:6380/1") == "rediss://:***@h:6380/1"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


def test_environment_variables_configure_url_and_prefix(url, name):
    res = CliRunner().invoke(main, ["pool", "configure", name, "--capacity", "1"],
                             env={"WSHARE_REDIS_URL": url, "WSHARE_PREFIX": "other"})
    assert res.exit_code == 0
    assert redis.Redis.from_url(url).hget(f"other:{{{name}}}:pool", "capacity") == b"1"


# -- wshare run (real processes) --------------------------------------------------------------

def wshare(url, *args, **kw):
    return subprocess.run([*WSHARE, "--url", url, *args], capture_output=True, text=True, timeout=60, **kw)


def test_run_passes_the_lease_to_the_command_and_propagates_its_status(url, name):
    Pool(redis.Redis.from_url(url), name).configure(capacity=2)
    p = wshare(url, "run", name, "--member", "a", "-n", "2", "--", "sh", "-c",
               'echo "$WSHARE_LEASE_ID $WSHARE_FENCING_TOKEN $WSHARE_POOL $WSHARE_MEMBER $WSHARE_UNITS"; exit 7')
    assert p.returncode == 7, p.stderr
    lease_id, token, pool, member, units = p.stdout.split()
    assert len(lease_id) == 32 and int(token) > 0 and (pool, member, units) == (name, "a", "2")
    assert Pool(redis.Redis.from_url(url), name).status().held == 0
    assert wshare(url, "run", name, "-m", "a", "--", "definitely-not-a-command").returncode == 127


def test_run_times_out_with_exit_75(url, name):
    pool = Pool(redis.Redis.from_url(url), name)
    pool.configure(capacity=1)
    pool.try_acquire("other")
    p = wshare(url, "run", name, "--member", "a", "--timeout", "0.3", "--", "true")
    assert p.returncode == 75 and len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr
    assert pool.status().waiting == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_forwards_signals_and_releases_the_lease(url, name, tmp_path, sig):
    pool = Pool(redis.Redis.from_url(url), name)
    pool.configure(capacity=1)
    marker = tmp_path / "got-signal"
    child = f"trap 'echo $$ > {marker}; exit 3' TERM INT; touch {tmp_path}/started; while true; do sleep 0.05; done"
    p = subprocess.Popen([*WSHARE, "--url", url, "run", name, "--member", "a", "--", "sh", "-c", child],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not (tmp_path / "started").exists() and time.time() < deadline:
        time.sleep(0.02)
    assert pool.status().held == 1
    p.send_signal(sig)
    _out, err = p.communicate(timeout=20)
    assert p.returncode == 3, err  # the child's own status after handling the forwarded signal
    assert marker.exists()
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)


def test_run_interrupted_while_waiting_leaves_the_queue(url, name):
    pool = Pool(redis.Redis.from_url(url), name)
    pool.configure(capacity=1)
    holder = pool.try_acquire("other")
    p = subprocess.Popen([*WSHARE, "--url", url, "run", name, "--member", "a", "--", "true"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while pool.status().waiting == 0 and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    _out, err = p.communicate(timeout=20)
    assert p.returncode == 128 + signal.SIGTERM, err
    holder.release()
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)


def test_run_reports_a_lost_lease_and_stops_the_command(url, name):
    pool = Pool(redis.Redis.from_url(url), name)
    pool.configure(capacity=1)
    p = subprocess.Popen([*WSHARE, "--url", url, "run", name, "--member", "a", "--ttl", "0.6", "--",
                          "sh", "-c", "exec sleep 30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not pool.leases() and time.time() < deadline:
        time.sleep(0.02)
    pool.revoke(pool.leases()[0].id)
    _out, err = p.communicate(timeout=20)
    assert p.returncode == 128 + signal.SIGTERM
    assert "was lost while the command ran" in err and "sending SIGKILL" not in err  # SIGTERM was enough


def test_run_kills_a_command_that_ignores_sigterm_after_a_lost_lease(url, name):
    pool = Pool(redis.Redis.from_url(url), name)
    pool.configure(capacity=1)
    ignoring = "trap '' TERM; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done"
    p = subprocess.Popen([*WSHARE, "--url", url, "run", name, "--member", "a", "--kill-after", "0.5", "--",
                          "sh", "-c", ignoring], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not pool.leases() and time.time() < deadline:
        time.sleep(0.02)
    pool.revoke(pool.leases()[0].id)
    _out, err = p.communicate(timeout=20)
    assert p.returncode == 128 + signal.SIGKILL, err
    assert "SIGKILL after 0.5s" in err and "did not end 0.5s after SIGTERM; sending SIGKILL" in err


def test_run_stops_a_command_that_outlives_max_hold(url, name):
    pool = Pool(redis.Redis.from_url(url), name)
    pool.configure(capacity=1)
    t0 = time.monotonic()
    p = subprocess.run([*WSHARE, "--url", url, "run", name, "--member", "a", "--ttl", "5", "--max-hold", "0.5", "--",
                        "sh", "-c", "exec sleep 30"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 128 + signal.SIGTERM, p.stderr
    assert time.monotonic() - t0 < 20  # stopped by max_hold, long before the command's 30 s
    assert "max_hold (0.5s)" in p.stderr and "was lost while the command ran" in p.stderr
    assert pool.status().held == 0  # released when the command ended


@pytest.mark.parametrize("option", ["--kill-after", "--max-hold"])
@pytest.mark.parametrize("bad", ["-1", "nan", "inf"])
def test_run_refuses_a_bad_kill_after_or_max_hold(url, name, bad, option):
    res = CliRunner().invoke(main, ["--url", url, "run", name, "--member", "a", option, bad, "--", "true"])
    assert res.exit_code == 2 and option in res.output and len(res.output.strip().splitlines()) == 1


# -- workers and the demo --------------------------------------------------------------------

def test_quota_worker_releases_and_exits_cleanly_on_sigterm(url, name):
    pool = Pool(redis.Redis.from_url(url), name)
    pool.configure(capacity=2)
    env = dict(os.environ, WSHARE_REDIS_URL=url)
    p = subprocess.Popen([sys.executable, str(ROOT / "workers" / "quota_worker.py"), "--pool", name,
                          "--member", "w", "--weight", "2", "--work", "30", "--concurrency", "3"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        st = pool.status()
        if st.held == 2 and st.waiting == 1:
            break
        time.sleep(0.05)
    assert pool.status().members["w"].weight == 2
    p.send_signal(signal.SIGTERM)
    _out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "got 1 unit(s)" in err and "stopped after" in err
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)


def _demo_report(stdout):
    assert "Phase 3" in stdout and "largest deviation" in stdout
    rows = [x.split() for x in stdout.splitlines() if x.strip().startswith(("alpha", "beta", "gamma"))]
    assert len(rows) == 9
    return rows


@pytest.mark.slow
def test_demo_runs_on_a_given_url(url):
    p = subprocess.run([*WSHARE, "demo", "--duration", "4.5", "--url", url], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert f"Redis at {url}" in p.stdout
    _demo_report(p.stdout)
    assert all(len(x) <= 80 for x in p.stdout.splitlines())
    assert redis.Redis.from_url(url).keys("*") == []  # cleaned up


@pytest.mark.slow
@pytest.mark.parametrize("server", ["redis-server", "fakeredis"])
def test_demo_starts_an_embedded_redis_when_none_answers(server, tmp_path):
    if reachable(DEFAULT_URL):
        pytest.skip(f"something answers at {DEFAULT_URL}: the demo would use it")
    path = os.environ["PATH"]
    if server == "fakeredis":  # hide redis-server
        bindir = tmp_path / "bin"
        bindir.mkdir()
        for tool in ("sh", "sleep"):
            os.symlink(shutil.which(tool), bindir / tool)
        path = str(bindir)
    env = {k: v for k, v in os.environ.items() if k != "WSHARE_REDIS_URL"} | {"PATH": path}
    p = subprocess.run([*WSHARE, "demo", "--duration", "4.5"], capture_output=True, text=True, timeout=180,
                       env=env)
    assert p.returncode == 0, p.stderr
    assert ("private redis-server" if server == "redis-server" else "in-process fakeredis") in p.stdout
    _demo_report(p.stdout)


def test_docker_compose_services_run_commands_that_exist():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "redis" in services and "appendonly" in " ".join(services["redis"]["command"])
    commands = set(main.commands)
    workers = {s for s in services if s.startswith("worker")}
    assert len(workers) >= 3 and any(services[s].get("deploy", {}).get("replicas", 1) > 1 for s in workers)
    exporter = services["metrics"]  # reachable from outside its container, with its extra installed
    assert exporter["command"][:2] == ["wshare", "metrics"] and "0.0.0.0" in exporter["command"]
    assert "9108:9108" in exporter["ports"] and "[metrics]" in compose["x-wshare"]["build"]["dockerfile_inline"]
    for svc_name, svc in services.items():
        if svc_name == "redis":
            continue
        cmd = svc["command"]
        env = svc.get("environment") or compose["x-wshare"]["environment"]
        assert env["WSHARE_REDIS_URL"].startswith("redis://redis:")
        if svc.get("entrypoint") == ["sh", "-c"]:
            steps = [s.strip().split() for s in cmd[0].split("&&")]
        else:
            steps = [cmd]
        for step in steps:
            if step[0] == "wshare":
                assert step[1] in commands, step
                if step[1] in ("pool", "member"):
                    assert step[2] in main.commands[step[1]].commands, step
                res = CliRunner().invoke(main, [*step[1:], "--help"])
                assert res.exit_code == 0, (step, res.output)
            elif step[0] == "rq":
                assert step[1] == "worker" and "wshare_redis.rq.QuotaWorker" in step
                import importlib
                module, _, cls = step[step.index("--worker-class") + 1].rpartition(".")
                assert hasattr(importlib.import_module(module), cls)
            else:
                assert step[:2] == ["python", "workers/quota_worker.py"], step
                assert (ROOT / step[1]).is_file()
                res = CliRunner().invoke(main, ["worker", *step[2:], "--help"])
                assert res.exit_code == 0, (step, res.output)
