"""A generic quota worker (what the demo and docker-compose start): acquire units of a pool,
work, release, repeat; SIGTERM releases and exits 0. Configured by options or environment:

    WSHARE_REDIS_URL=redis://redis:6379/0 python workers/quota_worker.py \\
        --pool gpu --member team-a --weight 3 --units 1 --work 2 --ttl 30 --concurrency 2

The logic lives in wshare_redis.worker; this file only starts it.
"""
import sys

from wshare_redis.cli import main

if __name__ == "__main__":
    main(args=["-v", "worker", *sys.argv[1:]], prog_name="quota_worker.py")
