"""Randomized invariant checker: drives the Lua scripts directly with random operations and
checks the whole pool state after each one. The test suite runs a few seeds; for a long run:

    python tests/invariants.py --url redis://127.0.0.1:6379/0 --seeds 200 --steps 400
    python tests/invariants.py --fake --decode 0 --seeds 50

Checks after every operation:
  pool.held == sum(member.held) == sum(units of leases hash); leases keys == expiry keys
  pool.waiting == sum(member.wait) == sum(queue entry units); waiters/alive/sizes == queue ids
  member head == first queue entry; ready == members with waiters whose head fits cap (score vs)
  active == members holding or waiting (score vs); no removed record left idle
  every grant: held <= capacity and member held <= max at grant time; tokens strictly increase
  work conservation: after an op, the ready top's head does not fit the free units
  wake lists: every granted waiter has an "ok:<token>:<exp>" message matching its lease
  no unit leaks: every lease in Redis is known to the model (owned by a client) or was
  handed to a waiter whose message is still pending.
"""
from __future__ import annotations

import argparse
import random
import sys
import time

import redis

from wshare_redis import InvalidRequest, Pool
from wshare_redis.pool import _text, new_id

MEMBERS = ["a", "b", "c", "d"]


class Violation(AssertionError):
    pass


def parse_member(s):
    d = {}
    for part in s.split(" "):
        k, v = part.split("=", 1)
        d[k] = v
    hs, hu = d["head"].split(":")
    return dict(w=float(d["w"]), max=None if d["max"] == "-" else int(d["max"]), held=int(d["held"]),
                wait=int(d["wait"]), vs=float(d["vs"]), hseq=int(hs), hu=int(hu), removed=d["kind"] == "removed")


def snapshot(r, keys):
    def t(x):
        return _text(x)
    k = keys
    pool = {t(a): t(b) for a, b in r.hgetall(k.key("pool")).items()}
    members = {t(a): parse_member(t(b)) for a, b in r.hgetall(k.key("members")).items()}
    leases = {t(a): t(b) for a, b in r.hgetall(k.key("leases")).items()}
    expiry = {t(a): s for a, s in r.zrange(k.key("expiry"), 0, -1, withscores=True)}
    ready = {t(a): s for a, s in r.zrange(k.key("ready"), 0, -1, withscores=True)}
    active = {t(a): s for a, s in r.zrange(k.key("active"), 0, -1, withscores=True)}
    queue = [t(a) for a in r.zrange(k.key("queue"), 0, -1)]
    waiters = {t(a): t(b) for a, b in r.hgetall(k.key("waiters")).items()}
    alive = {t(a): s for a, s in r.zrange(k.key("alive"), 0, -1, withscores=True)}
    sizes = {t(a): s for a, s in r.zrange(k.key("sizes"), 0, -1, withscores=True)}
    return dict(pool=pool, members=members, leases=leases, expiry=expiry, ready=ready, active=active,
                queue=queue, waiters=waiters, alive=alive, sizes=sizes)


def dump(s):
    import pprint
    s = dict(s)
    s["queue"] = [e.replace("\0", "|") for e in s["queue"]]
    s["ready"] = {k.replace("\0", "|"): v for k, v in s["ready"].items()}
    s["waiters"] = len(s["waiters"])
    return pprint.pformat(s, width=140)


def check(s, ctx):
    errs = []
    P = s["pool"]
    if not P:
        return errs
    cap = int(P["capacity"])
    held = int(P.get("held", 0))
    waiting = int(P.get("waiting", 0))
    M = s["members"]
    lease_units = {}
    for lid, rec in s["leases"].items():
        u, tok, ttl, g, m = rec.split(":", 4)
        lease_units.setdefault(m, 0)
        lease_units[m] += int(u)
        if m not in M:
            errs.append(f"lease {lid} of member {m} without record")
    if set(s["leases"]) != set(s["expiry"]):
        errs.append(f"leases/expiry mismatch {set(s['leases']) ^ set(s['expiry'])}")
    if held != sum(lease_units.values()):
        errs.append(f"pool held {held} != lease units {sum(lease_units.values())}")
    if held != sum(m["held"] for m in M.values()):
        errs.append(f"pool held {held} != sum member held {sum(m['held'] for m in M.values())}")
    for m, rec in M.items():
        if rec["held"] != lease_units.get(m, 0):
            errs.append(f"member {m} held {rec['held']} != its leases {lease_units.get(m, 0)}")
    # queue
    qunits = {}
    qfirst = {}
    ids = set()
    for e in s["queue"]:
        m, seq, units, ttl, wid = e.split("\0")
        qunits[m] = qunits.get(m, 0) + int(units)
        if m not in qfirst:
            qfirst[m] = (int(seq), int(units))
        ids.add(wid)
        if s["waiters"].get(wid) != e:
            errs.append(f"waiters[{wid}] != queue entry")
        if s["sizes"].get(wid) != int(units):
            errs.append(f"sizes[{wid}]={s['sizes'].get(wid)} != {units}")
        if m not in M:
            errs.append(f"queue entry of member {m} without record")
    if set(s["waiters"]) != ids:
        errs.append(f"waiters hash ids != queue ids: {set(s['waiters']) ^ ids}")
    if set(s["alive"]) != ids:
        errs.append(f"alive ids != queue ids: {set(s['alive']) ^ ids}")
    if set(s["sizes"]) != ids:
        errs.append(f"sizes ids != queue ids: {set(s['sizes']) ^ ids}")
    if waiting != sum(qunits.values()):
        errs.append(f"pool waiting {waiting} != queue units {sum(qunits.values())}")
    if waiting != sum(m["wait"] for m in M.values()):
        errs.append(f"pool waiting {waiting} != sum member wait")
    exp_ready = {}
    exp_active = {}
    for m, rec in M.items():
        if rec["wait"] != qunits.get(m, 0):
            errs.append(f"member {m} wait {rec['wait']} != queued {qunits.get(m, 0)}")
        hd = qfirst.get(m, (0, 0))
        if (rec["hseq"], rec["hu"]) != hd:
            errs.append(f"member {m} head {(rec['hseq'], rec['hu'])} != first entry {hd}")
        if rec["wait"] > 0 and (rec["max"] is None or rec["held"] + rec["hu"] <= rec["max"]):
            exp_ready["%016d\0%s" % (rec["hseq"], m)] = rec["vs"]
        if rec["held"] > 0 or rec["wait"] > 0:
            exp_active[m] = rec["vs"]
        elif rec["removed"]:
            errs.append(f"removed member {m} idle but record kept")
    if exp_ready != s["ready"]:
        errs.append(f"ready mismatch: expected {exp_ready!r} got {s['ready']!r}")
    if exp_active != s["active"]:
        errs.append(f"active mismatch: expected {exp_active!r} got {s['active']!r}")
    # next_exp / next_dead let reclaim skip its reads: they must never pass an expiry or deadline
    for field, zset in (("next_exp", "expiry"), ("next_dead", "alive")):
        if field in P and s[zset] and int(P[field]) > min(s[zset].values()):
            errs.append(f"{field} {P[field]} is past the earliest {zset} {min(s[zset].values())}")
    # work conservation: the ready top must not fit the free units
    if s["ready"]:
        top = min(s["ready"].items(), key=lambda kv: (kv[1], kv[0]))[0]
        m = top[17:]
        if m in M and M[m]["hu"] <= cap - held:
            errs.append(f"work conservation: ready top {m} head {M[m]['hu']} fits free {cap - held}")
    return errs


class Model:
    """What the clients know: leases they own, waiters they have queued."""

    def __init__(self):
        self.owned = {}      # lease id -> units
        self.waiting = {}    # waiter id -> (member, units)
        self.tokens_seen = set()
        self.step_tokens = []
        self.last_token = 0


def run(seed, steps, client, fake=False, verbose=False):
    rnd = random.Random(seed)
    pname = f"inv{seed}"
    pool = Pool(client, pname)
    pool.delete()
    keys = pool.keys
    cap = rnd.choice([1, 2, 3, 5, 8])
    pool.configure(capacity=cap)
    for m in MEMBERS:
        if rnd.random() < 0.6:
            pool.set_weight(m, rnd.choice([1, 2, 3, 0.5]), max_units=rnd.choice([None, None, 1, 2, 4]))
    model = Model()
    log = []

    def note(x):
        log.append(x)
        if verbose:
            print(x)

    def grant_seen(lid, units, token, who):
        token = int(token)
        # tokens of one step may arrive in any order; all must exceed every earlier step's
        if token <= model.last_token or token in model.tokens_seen:
            raise Violation(f"token not increasing/unique {token} <= {model.last_token} ({who})")
        model.tokens_seen.add(token)
        model.step_tokens.append(token)
        model.owned[lid] = units

    def drain_wakes():
        # waiters read their wake lists (as BLPOP would)
        for wid in list(model.waiting):
            msg = client.lpop(keys.wake(wid))
            if msg is None:
                continue
            msg = _text(msg)
            m, units = model.waiting.pop(wid)
            if msg.startswith("ok:"):
                tok = msg.split(":")[1]
                grant_seen(wid, units, tok, "wake")
            note(f"  wake {wid[:6]} {msg[:40]}")

    for step in range(steps):
        before = snapshot(client, keys)
        op = rnd.choices(["try", "wait", "release", "cancel", "waitchk", "renew", "setw", "remove",
                          "configure", "sleep", "status", "revoke"],
                         [10, 14, 12, 5, 5, 3, 3, 1, 2, 3, 2, 1])[0]
        m = rnd.choice(MEMBERS)
        units = rnd.choice([1, 1, 1, 2, 3])
        ttl = rnd.choice([50, 150, 400, 2000])
        note(f"step {step} {op} m={m} u={units}")
        try:
            if op in ("try", "wait"):
                wid = new_id()
                alive = rnd.choice([100, 300, 5000])
                reply = pool._run("acquire", m, units, ttl, wid, op, alive, "")
                note(f"  -> {reply}")
                if reply[0] == "ok":
                    grant_seen(wid, units, reply[1], "acquire")
                elif reply[0] == "queued":
                    model.waiting[wid] = (m, units)
            elif op == "release" and model.owned:
                lid = rnd.choice(list(model.owned))
                pool._release(lid)
                model.owned.pop(lid)
            elif op == "revoke" and model.owned:
                lid = rnd.choice(list(model.owned))
                pool.revoke(lid)
                model.owned.pop(lid)
            elif op == "cancel" and model.waiting:
                wid = rnd.choice(list(model.waiting))
                reply = pool._run("cancel", wid)
                note(f"  -> {reply}")
                mm, u = model.waiting.pop(wid)
                if reply[0] == "wake" and str(reply[1]).startswith("ok:"):
                    grant_seen(wid, u, reply[1].split(":")[1], "cancel")
            elif op == "waitchk" and model.waiting:
                wid = rnd.choice(list(model.waiting))
                reply = pool._run("wait", wid, rnd.choice([100, 5000]))
                note(f"  -> {reply}")
                if reply[0] == "wake":
                    mm, u = model.waiting.pop(wid)
                    if str(reply[1]).startswith("ok:"):
                        grant_seen(wid, u, reply[1].split(":")[1], "wait")
                elif reply[0] == "gone":
                    model.waiting.pop(wid)
            elif op == "renew" and model.owned:
                lid = rnd.choice(list(model.owned))
                pool._renew(lid, ttl)
            elif op == "setw":
                pool.set_weight(m, rnd.choice([1, 2, 3, 0.5]), max_units=rnd.choice([None, 1, 2, 3, 0]))
            elif op == "remove":
                pool.remove_member(m)
            elif op == "configure":
                cap = rnd.choice([0, 1, 2, 3, 5, 8])
                pool.configure(capacity=cap)
                note(f"  cap={cap}")
            elif op == "sleep":
                time.sleep(rnd.choice([0.02, 0.1, 0.3]))
            elif op == "status":
                pool.status()
        except Exception as e:  # noqa: BLE001
            if isinstance(e, InvalidRequest):
                note(f"  invalid: {e}")
            else:
                raise Violation(f"seed {seed} step {step} op {op}: {type(e).__name__}: {e}\n" + "\n".join(log[-30:]))
        drain_wakes()
        if model.step_tokens:
            model.last_token = max(model.last_token, max(model.step_tokens))
            model.step_tokens = []
        after = snapshot(client, keys)
        errs = check(after, None)
        # safety at grant time: new leases must fit
        new = set(after["leases"]) - set(before["leases"])
        if new and after["pool"]:
            c = int(after["pool"]["capacity"])
            if int(after["pool"]["held"]) > c:
                errs.append(f"grant made held {after['pool']['held']} > capacity {c}")
            for lid in new:
                mm = after["leases"][lid].split(":", 4)[4]
                rec = after["members"].get(mm)
                if op == "setw":  # the grant ran (in housekeeping) under the old cap
                    # grants run under the old cap (first housekeeping) or the new one (last)
                    b4 = before["members"].get(mm)
                    if b4 is None or b4["max"] is None or after["members"][mm]["max"] is None:
                        rec = None
                    else:
                        rec = dict(after["members"][mm], max=max(b4["max"], after["members"][mm]["max"]))
                if rec and rec["max"] is not None and rec["held"] > rec["max"]:
                    errs.append(f"grant made {mm} held {rec['held']} > max {rec['max']}")
        # leaks: every live lease is owned by some client
        for lid in after["leases"]:
            if lid not in model.owned:
                errs.append(f"leaked lease {lid[:6]} {after['leases'][lid]} (no client knows it)")
        if errs:
            raise Violation(f"seed {seed} step {step} op {op}:\n  " + "\n  ".join(errs) + "\n--- log tail\n" +
                            "\n".join(log[-40:]) + "\n--- before\n" + dump(before) + "\n--- after\n" + dump(after))
        # forget leases that expired/revoked server side
        for lid in list(model.owned):
            if lid not in after["leases"]:
                model.owned.pop(lid)
    pool.delete()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--fake", action="store_true")
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--decode", type=int, default=1)
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    if a.fake:
        import fakeredis
        client = fakeredis.FakeRedis(decode_responses=bool(a.decode))
    else:
        client = redis.Redis.from_url(a.url, decode_responses=bool(a.decode))
    bad = 0
    for seed in range(a.first, a.first + a.seeds):
        try:
            run(seed, a.steps, client, a.fake, a.v)
        except Violation as e:
            bad += 1
            print("VIOLATION", e)
            print("=" * 60)
    print(f"{a.seeds - bad}/{a.seeds} seeds clean")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
