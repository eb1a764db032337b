"""Job functions for the RQ tests: each records when and where it ran in a Redis list."""
from __future__ import annotations

import json
import os
import time

from rq import get_current_job


def record(tag: str, seconds: float = 0.0) -> str:
    job = get_current_job()
    t0 = time.time()
    job.connection.rpush("test:started", json.dumps({"id": job.id, "tag": tag, "pid": os.getpid(), "t0": t0}))
    time.sleep(seconds)
    quota = (job.meta or {}).get("wshare") or {}
    job.connection.rpush("test:done", json.dumps({"id": job.id, "tag": tag, "t0": t0, "t1": time.time(),
                                                  "member": quota.get("member"), "units": quota.get("units", 0)}))
    return tag
