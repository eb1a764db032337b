"""The `wshare` command line: steer and inspect pools, run commands under a quota, demo.

Expected failures (Redis unreachable, unknown pool, bad arguments) print one line to
stderr and exit non-zero; logging is configured here, never by the library.
"""
from __future__ import annotations

import json
import logging
import math
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, NoReturn, Optional

import click
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import __version__
from ._checks import check_seconds, check_units
from .connect import DEFAULT_URL, connect, mask_url, redact
from .errors import AcquireTimeout, InvalidRequest, PoolNotFound, WshareError
from .keys import DEFAULT_PREFIX, check_name, check_pool_name
from .metrics import INSTALL_HINT, pool_names
from .pool import UNCHANGED, Pool
from .status import COUNTERS, PoolStatus, build_status
from .view import bars, one_line, status_dict, status_table


@dataclass
class Settings:
    url: str
    prefix: str
    url_given: bool
    _client: Optional[redis.Redis] = None
    read_only_noted: bool = False

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = connect(self.url)
        return self._client

    def pool(self, name: str) -> Pool:
        return Pool(self.client, name, prefix=self.prefix)


# Characters that would break a line or steer the terminal (C0/C1 controls, line and paragraph
# separators, bidi overrides), as names read from Redis or typed may hold them.
_UNPRINTABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _printable(text: str) -> str:
    """``text`` with every such character escaped (\\u2028); newlines stay."""
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _echo(text: str, err: bool = False) -> None:
    click.echo(_printable(text), err=err)


def _fail(message: str, code: int = 1) -> NoReturn:
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        message = redact(message, _url(ctx))
    _echo(f"wshare: {message}".replace("\n", " "), err=True)
    sys.exit(code)


class _Redact(logging.Filter):
    """Keeps the URL's password out of log lines (a library message might quote it), and
    tracebacks out of them unless -vv: a warning is one line."""

    def __init__(self, url: str, tracebacks: bool = False) -> None:
        super().__init__()
        self.url, self.tracebacks = url, tracebacks

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = redact(text, self.url)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info and self.tracebacks:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.url)
        elif record.exc_info or record.exc_text:
            reason = _reason(record.exc_info[1]) if record.exc_info and record.exc_info[1] else ""
            record.msg, record.args = redact(f"{record.getMessage()}: {reason}", self.url), None
            record.exc_info, record.exc_text = None, None
        return True


class WshareGroup(click.Group):
    """Maps expected failures to one line on stderr and an exit status, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            sys.exit(130)
        except InvalidRequest as e:
            _fail(str(e), 2)
        except WshareError as e:
            _fail(str(e), 1)
        except LookupError as e:  # remove_member of an unknown member, etc.
            _fail(str(e).strip("'\""), 1)
        except redis.AuthenticationError as e:
            _fail(f"Redis at {mask_url(_url(ctx))} refused the credentials: {e}", 1)
        except redis.exceptions.NoPermissionError as e:
            hint = ""
            if "function|load" in str(e):
                hint = ("; the wshare engine (a Redis Functions library) is not loaded on this server in "
                        "this version: run any wshare command once as a user allowed FUNCTION LOAD, e.g. "
                        "`wshare pool configure` (README: Access control)")
            _fail(f"Redis at {mask_url(_url(ctx))} denied a command (ACL): {e}{hint}", 1)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            _fail(f"cannot reach Redis at {mask_url(_url(ctx))}: {_reason(e)}", 1)
        except redis.RedisError as e:
            _fail(f"Redis error at {mask_url(_url(ctx))}: {e}", 1)
        except ValueError as e:  # malformed URL
            _fail(f"{e}", 2)


def _url(ctx: click.Context) -> str:
    obj = ctx.find_object(Settings)
    return obj.url if obj else DEFAULT_URL


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _status(s: Settings, pool_name: str) -> PoolStatus:
    """The pool's status. A read-only user (no FCALL: see README, Access control) gets the
    pool's hashes as last written, read in one MULTI: leases that expired since the last
    operation on the pool still count until the next one."""
    p = s.pool(pool_name)
    try:
        return p.status()
    except redis.exceptions.NoPermissionError as e:
        if "'fcall'" not in str(e):  # denied something else: keys, loading the engine
            raise
        denied = e
    pipe = s.client.pipeline(transaction=True)
    for suffix in ("pool", "members", "parked", "stats"):
        pipe.hgetall(p.keys.key(suffix))
    state, members, parked, stats = pipe.execute()
    if not state:
        raise PoolNotFound(pool_name)
    if not s.read_only_noted:
        s.read_only_noted = True
        _echo(f"wshare: read-only view ({_reason(denied)}): the state as last written", err=True)
    return build_status(pool_name, _texts(state), _texts(members), _texts(parked), _texts(stats))


def _texts(d: dict[Any, Any]) -> dict[str, str]:
    return {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in d.items()}


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group(cls=WshareGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="WSHARE_REDIS_URL", default=DEFAULT_URL, show_default=True,
              help="Redis URL (env WSHARE_REDIS_URL), e.g. redis://:password@host:6379/0; "
                   "redis+cluster://host:port for a Redis Cluster.")
@click.option("--prefix", envvar="WSHARE_PREFIX", default=DEFAULT_PREFIX, show_default=True,
              help="Key prefix of the pools (env WSHARE_PREFIX).")
@click.option("-v", "--verbose", count=True, help="Log what happens (-vv: debug).")
@click.version_option(__version__, prog_name="wshare")
@click.pass_context
def main(ctx: click.Context, url: str, prefix: str, verbose: int) -> None:
    """Weighted sharing of scarce resources between processes, over Redis.

    \b
    Examples:
      wshare pool configure gpu --capacity 8
      wshare member set gpu team-a --weight 3 --max-units 6
      wshare status gpu
      wshare run gpu --member team-a -n 2 -- python train.py
      wshare demo
    """
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, _Redact)]:
            handler.removeFilter(old)
        handler.addFilter(_Redact(url, tracebacks=verbose >= 2))
    source = ctx.get_parameter_source("url")
    given = source not in (click.core.ParameterSource.DEFAULT, None)
    ctx.obj = Settings(url=url, prefix=prefix, url_given=given)


# -- pools ---------------------------------------------------------------------------------

@main.group()
def pool() -> None:
    """Create, list and delete pools."""


@pool.command("configure")
@click.argument("pool_name", metavar="POOL")
@click.option("--capacity", type=int, required=True, help="Units in the pool (0 drains it).")
@click.option("--default-weight", type=float, default=None,
              help="Weight of members that acquire without being added (default 1).")
@click.pass_obj
def pool_configure(s: Settings, pool_name: str, capacity: int, default_weight: Optional[float]) -> None:
    """Create POOL or change its capacity; idempotent. Never revokes live leases.

    \b
    Example: wshare pool configure gpu --capacity 8 --default-weight 1
    """
    s.pool(pool_name).configure(capacity=capacity, default_weight=default_weight)
    _echo(f"pool {pool_name}: capacity {capacity}")


@pool.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def pool_list(s: Settings, as_json: bool) -> None:
    """List the pools under the prefix with their capacity and use.

    \b
    Example: wshare --prefix wshare pool list --json
    """
    statuses = []
    for name in pool_names(s.client, s.prefix):
        try:
            statuses.append(_status(s, name))
        except PoolNotFound:  # deleted meanwhile
            continue
    if as_json:
        _dump([{k: v for k, v in status_dict(st).items() if k != "members"} | {"members": len(st.members)}
               for st in statuses])
        return
    if not statuses:
        _echo(f"no pools under prefix {s.prefix!r}")
        return
    _echo(f"{'pool':<24} {'capacity':>8} {'held':>6} {'free':>6} {'waiting':>8} {'members':>8}")
    for st in statuses:
        _echo(f"{st.name:<24} {st.capacity:>8} {st.held:>6} {st.free:>6} {st.waiting:>8} {len(st.members):>8}")


@pool.command("delete")
@click.argument("pool_name", metavar="POOL")
@click.option("--force", is_flag=True, help="Delete even while leases are live (they end at once).")
@click.pass_obj
def pool_delete(s: Settings, pool_name: str, force: bool) -> None:
    """Delete POOL and every key it has. Refuses while leases are live unless --force.

    \b
    Example: wshare pool delete gpu --force
    """
    p = s.pool(pool_name)
    st = p.status()
    if st.held and not force:
        _fail(f"pool {pool_name!r} has {len(p.leases())} live lease(s) holding {st.held} unit(s); "
              "release them first or use --force", 1)
    p.delete()
    _echo(f"pool {pool_name}: deleted")


# -- members -------------------------------------------------------------------------------

@main.group()
def member() -> None:
    """Add, reweight and remove members."""


@member.command("set")
@click.argument("pool_name", metavar="POOL")
@click.argument("member_name", metavar="MEMBER")
@click.option("--weight", type=float, required=True, help="Share weight (> 0).")
@click.option("--max-units", type=int, default=None, help="Cap on units held at once.")
@click.option("--no-max-units", is_flag=True, help="Remove the cap.")
@click.pass_obj
def member_set(s: Settings, pool_name: str, member_name: str, weight: float, max_units: Optional[int],
               no_max_units: bool) -> None:
    """Add MEMBER to POOL or change its weight and cap (with neither cap option, the cap stays).

    \b
    Example: wshare member set gpu team-a --weight 3 --max-units 6
    """
    if max_units is not None and no_max_units:
        raise click.UsageError("--max-units and --no-max-units exclude each other")
    cap = None if no_max_units else (UNCHANGED if max_units is None else max_units)
    s.pool(pool_name).set_weight(member_name, weight, max_units=cap)
    _echo(f"pool {pool_name}: member {member_name} weight {weight:g}")


@member.command("remove")
@click.argument("pool_name", metavar="POOL")
@click.argument("member_name", metavar="MEMBER")
@click.pass_obj
def member_remove(s: Settings, pool_name: str, member_name: str) -> None:
    """Remove MEMBER: its queued requests fail, its live leases run on.

    \b
    Example: wshare member remove gpu team-a
    """
    if not s.pool(pool_name).remove_member(member_name):
        _fail(f"pool {pool_name!r} has no member {member_name!r}", 1)
    _echo(f"pool {pool_name}: member {member_name} removed")


# -- inspection ----------------------------------------------------------------------------

@main.command()
@click.argument("pool_name", metavar="POOL")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (always with the counters).")
@click.option("--counters", "-c", "with_counters", is_flag=True,
              help="Also list each member's event counters (members forgotten since included).")
@click.pass_obj
def status(s: Settings, pool_name: str, as_json: bool, with_counters: bool) -> None:
    """Members of POOL with weight, cap, fair share, held and waiting units, parked RQ jobs.

    With --counters, a second table counts each member's events since the pool was
    created: leases granted, released, expired (lost), revoked; requests queued, timed
    out, cancelled, failed, purged (their waiter went silent).

    \b
    Example: wshare status gpu --counters
    """
    st = _status(s, pool_name)
    if as_json:
        _dump(status_dict(st))
    else:
        _echo(status_table(st) + ("\n\n" + _counter_table(st) if with_counters else ""))


#: Column headers of `wshare status --counters`, short enough for 80 columns.
_COUNTER_HEADERS = {"expirations": "expired", "revocations": "revoked"}


def _counter_table(st: PoolStatus) -> str:
    """Events per member (PoolStatus.member_counters: also members forgotten since) and totals."""
    heads = [_COUNTER_HEADERS.get(c, c) for c in COUNTERS]
    rows = dict(st.member_counters)
    for name, m in st.members.items():
        rows.setdefault(name, m.counters)

    def row(label: str, cells: list[str]) -> str:
        clipped = label if len(label) <= 10 else label[:9] + "~"
        return " ".join([f"{clipped:<10}", *(f"{cell:>{max(len(h), 6)}}" for cell, h in zip(cells, heads))])

    def counts(of: dict[str, int]) -> list[str]:
        return [str(of.get(c, 0)) for c in COUNTERS]

    lines = [row("events", heads)]
    lines += [row(name, counts(rows[name])) for name in sorted(rows)]
    lines.append(row("total", counts(st.counters)))
    return "\n".join(lines)


@main.command()
@click.argument("pool_name", metavar="POOL")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--count", type=int, default=None, help="Stop after this many refreshes (default: until Ctrl-C).")
@click.pass_obj
def watch(s: Settings, pool_name: str, interval: float, count: Optional[int]) -> None:
    """Live view of POOL: held units against fair share per member, as bars.

    On a terminal the view redraws in place; otherwise one line per refresh.

    \b
    Example: wshare watch gpu --interval 0.5
    """
    if not 0 < interval < math.inf:
        raise click.BadParameter("must be > 0 and finite", param_hint="--interval")
    tty = sys.stdout.isatty()
    n = 0
    try:
        while count is None or n < count:
            st = _status(s, pool_name)
            stamp = time.strftime("%H:%M:%S")
            if tty:
                click.echo("\x1b[H\x1b[2J" + _printable(f"{stamp}  " + bars(st)))
            else:
                _echo(f"{stamp} {one_line(st)}")
            n += 1
            if count is None or n < count:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


@main.command()
@click.argument("pool_name", metavar="POOL")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def leases(s: Settings, pool_name: str, as_json: bool) -> None:
    """Live leases of POOL: id, member, units, fencing token, seconds until expiry.

    \b
    Example: wshare leases gpu
    """
    now = time.time()
    rows: list[dict[str, Any]] = [{"id": x.id, "member": x.member, "units": x.units, "token": x.token,
             "expires_at": x.expires_at, "expires_in": round(x.expires_at - now, 3)}
            for x in s.pool(pool_name).leases()]
    if as_json:
        _dump(rows)
        return
    _echo(f"{'id':<32} {'member':<16} {'units':>5} {'token':>17} {'expires in':>10}")
    for r in rows:
        _echo(f"{r['id']:<32} {r['member'][:16]:<16} {r['units']:>5} {r['token']:>17} {r['expires_in']:>9.1f}s")


@main.command()
@click.argument("pool_name", metavar="POOL")
@click.argument("lease_id")
@click.pass_obj
def revoke(s: Settings, pool_name: str, lease_id: str) -> None:
    """End lease LEASE_ID of POOL now; its holder's next renewal reports it lost.

    \b
    Example: wshare revoke gpu 3f2a...
    """
    if not s.pool(pool_name).revoke(lease_id):
        _fail(f"pool {pool_name!r} has no live lease {lease_id!r}", 1)
    _echo(f"pool {pool_name}: lease {lease_id} revoked")


# -- metrics ---------------------------------------------------------------------------------

#: Seconds the exporter waits for a Redis reply (once more after a reconnect) before a scrape
#: reports wshare_up 0: well within Prometheus's default 10 s scrape timeout.
SCRAPE_REDIS_TIMEOUT = 3.0


@main.command()
@click.argument("pools", metavar="[POOL]...", nargs=-1)
@click.option("--port", type=int, default=9108, show_default=True, help="TCP port to serve on (0: any free port).")
@click.option("--addr", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 or :: for every interface).")
@click.pass_obj
def metrics(s: Settings, pools: tuple[str, ...], port: int, addr: str) -> None:
    """Serve Prometheus metrics of the POOLs over HTTP until SIGTERM or Ctrl-C.

    With no POOL, every pool under the prefix, found again at each scrape. Each scrape
    reads each pool's status once; Redis unreachable gives wshare_up 0. Needs the
    `metrics` extra (pip install 'wshare-redis[metrics]').

    \b
    Example: wshare metrics --port 9108 --addr 0.0.0.0 gpu api-quota
    """
    try:
        import prometheus_client  # noqa: F401  (only to tell it is missing, in one line)
    except ImportError:
        _fail(f"the metrics exporter needs prometheus-client: {INSTALL_HINT}", 1)
    from .metrics import PoolCollector, serve
    if not 0 <= port <= 65535:
        _fail(f"--port must be between 0 and 65535, not {port}", 2)
    for name in pools:
        check_pool_name(name)
    # Fail fast on a Redis that stopped answering, so a scrape reports wshare_up 0 in time.
    s._client = connect(s.url, socket_timeout=SCRAPE_REDIS_TIMEOUT, socket_connect_timeout=SCRAPE_REDIS_TIMEOUT,
                        retry=Retry(NoBackoff(), 1))
    collector = PoolCollector(s.client, prefix=s.prefix, pools=pools or None,
                              read_status=lambda name: _status(s, name))
    try:
        server = serve(collector, port=port, addr=addr)
    except OSError as e:
        _fail(f"cannot listen on {addr}:{port}: {e.strerror or e}", 1)
    host = f"[{addr}]" if ":" in addr else addr
    what = ", ".join(pools) if pools else f"every pool under prefix {s.prefix!r}"
    _echo(f"wshare: serving Prometheus metrics of {what} from Redis at {mask_url(s.url)} on "
          f"http://{host}:{server.server_port}/metrics", err=True)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda _signum, _frame: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.shutdown()
        server.server_close()


# -- running under a quota -------------------------------------------------------------------

@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("pool_name", metavar="POOL")
@click.option("--member", "-m", "member_name", required=True, help="Member to acquire for.")
@click.option("-n", "--units", type=int, default=1, show_default=True, help="Units to hold.")
@click.option("--ttl", type=float, default=30.0, show_default=True,
              help="Lease TTL in seconds (renewed every ttl/3 while the command runs).")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for units (default: for ever).")
@click.option("--keep-on-lost", is_flag=True, help="If the lease is lost, let the command finish (default: SIGTERM it).")
@click.option("--kill-after", type=float, default=10.0, show_default=True,
              help="After a lost lease's SIGTERM, SIGKILL the command if it still runs this many seconds later.")
@click.option("--max-hold", type=float, default=None,
              help="Renew for at most this many seconds, then stop the command as on a lost lease (default: no limit).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run(s: Settings, pool_name: str, member_name: str, units: int, ttl: float, timeout: Optional[float],
        keep_on_lost: bool, kill_after: float, max_hold: Optional[float], command: tuple[str, ...]) -> None:
    """Run COMMAND while holding units of POOL, like flock(1) for weighted quotas.

    COMMAND sees WSHARE_LEASE_ID and WSHARE_FENCING_TOKEN. The lease is released when it
    ends, also on Ctrl-C or SIGTERM (forwarded to it). Exits with COMMAND's status; 75 if
    no units came within --timeout. If the lease is lost meanwhile, a line goes to stderr
    and COMMAND gets SIGTERM (then SIGKILL after --kill-after seconds) unless --keep-on-lost.

    \b
    Example: wshare run gpu --member team-a -n 2 --timeout 600 -- python train.py
    """
    from .runner import EX_TEMPFAIL, Interrupted, RunConfig, run_command
    if not kill_after >= 0 or kill_after == float("inf"):
        _fail(f"--kill-after must be a finite number of seconds >= 0, not {kill_after}", 2)
    if max_hold is not None and not 0 < max_hold < float("inf"):
        _fail(f"--max-hold must be a finite number of seconds > 0, not {max_hold}", 2)
    cfg = RunConfig(member=member_name, units=units, ttl=ttl, timeout=timeout, keep_on_lost=keep_on_lost,
                    kill_after=kill_after, max_hold=max_hold)
    pool = s.pool(pool_name)
    pool.status()  # an unreachable Redis, refused credentials or a missing pool: one line, before waiting
    try:
        rc = run_command(pool, cfg, command)
    except AcquireTimeout as e:
        _fail(f"{e}; not running {command[0]}", EX_TEMPFAIL)
    except Interrupted as e:
        sys.exit(128 + e.signum)
    sys.exit(rc)


@main.command()
@click.option("--pool", "pool_name", required=True, help="Pool to take units from.")
@click.option("--member", "member_name", required=True, help="Member the units are for.")
@click.option("--weight", type=float, default=None, help="Set the member's weight at start.")
@click.option("--units", type=int, default=1, show_default=True, help="Units per task.")
@click.option("--work", type=float, default=0.5, show_default=True, help="Mean seconds of work per task.")
@click.option("--ttl", type=float, default=10.0, show_default=True, help="Lease TTL in seconds.")
@click.option("--concurrency", type=int, default=1, show_default=True, help="Tasks held at once.")
@click.option("--tasks", type=int, default=None, help="Stop after this many tasks per slot.")
@click.pass_obj
def worker(s: Settings, pool_name: str, member_name: str, weight: Optional[float], units: int, work: float,
           ttl: float, concurrency: int, tasks: Optional[int]) -> None:
    """A generic quota worker: acquire, work, release, repeat; SIGTERM stops it cleanly.

    \b
    Example: wshare worker --pool gpu --member team-a --weight 3 --work 2
    """
    from .worker import WorkerConfig, run_worker
    if concurrency < 1:
        raise click.BadParameter("must be at least 1", param_hint="--concurrency")
    if not 0 <= work < math.inf:
        raise click.BadParameter("must be >= 0 and finite", param_hint="--work")
    # The work happens in threads: bad arguments and an unusable pool fail here, in one line.
    check_name(member_name, "member")
    check_units(units)
    check_seconds(ttl, "ttl")
    s.pool(pool_name).status()
    cfg = WorkerConfig(pool=pool_name, member=member_name, units=units, work=work, ttl=ttl,
                       concurrency=concurrency, weight=weight, tasks=tasks)
    logging.getLogger("wshare_redis").setLevel(min(logging.getLogger().level, logging.INFO))
    run_worker(s.client, cfg)


@main.command()
@click.option("--duration", type=float, default=30.0, show_default=True, help="Seconds the demo runs.")
@click.option("--url", "demo_url", default=None,
              help="Redis to use (default: the global --url if given, else localhost if it answers, "
                   "else an embedded server).")
@click.pass_obj
def demo(s: Settings, duration: float, demo_url: Optional[str]) -> None:
    """Weighted sharing live: worker processes of three members compete for a pool, one is
    reweighted and the pool resized mid-run, then achieved shares are set against ideal ones.

    \b
    Example: wshare demo --duration 30
    """
    from .demo import run_demo
    if not 0 < duration < math.inf:
        raise click.BadParameter("must be > 0 and finite", param_hint="--duration")
    url = demo_url or (s.url if s.url_given else None)
    sys.exit(run_demo(url=url, duration=duration, prefix=s.prefix))


if __name__ == "__main__":  # pragma: no cover
    main()
