"""The Lua scripts load from an installed wheel (not only from the source checkout), and the
README's Python example runs as written."""
from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.real


def test_built_wheel_carries_and_loads_the_lua_scripts(tmp_path, url):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist")], check=True)
    wheel = next((tmp_path / "dist").glob("wshare_redis-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    # Dependencies (redis-py) come from this environment, appended after the fresh venv's own
    # site-packages, whose wshare_redis is the wheel's (this environment's editable hook is not run).
    site = next((env_dir / "lib").glob("python*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    check = textwrap.dedent(f"""
        import redis, wshare_redis
        from wshare_redis import Pool
        from wshare_redis.scripts import lua_dir, OPERATIONS
        assert "{env_dir}" in wshare_redis.__file__, wshare_redis.__file__
        assert str(lua_dir()).startswith("{site}"), lua_dir()
        assert all((lua_dir() / (op + ".lua")).is_file() for op in OPERATIONS)
        pool = Pool(redis.Redis.from_url("{url}"), "wheel")
        pool.configure(capacity=1)
        lease = pool.try_acquire("a")
        assert lease is not None and lease.release()
        print("ok", lua_dir())
    """)
    out = subprocess.run([str(py), "-c", check], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_readme_quick_start_runs(url):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", readme, re.S).group(1)
    assert 'redis.Redis.from_url("redis://localhost:6379/0")' in block
    code = block.replace("redis://localhost:6379/0", url)
    exec(compile(code, "README.md", "exec"), {})
    client = redis.Redis.from_url(url)
    assert client.hget("wshare:{gpu}:pool", "capacity") == b"8"
    assert client.hget("wshare:{gpu}:pool", "held") == b"0"


def test_quickstart_example_runs(url):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "--seconds", "1.5"],
                         capture_output=True, text=True, timeout=60, env={"WSHARE_REDIS_URL": url,
                                                                          "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "team-b / team-a" in out.stdout and "fencing tokens" in out.stdout


def test_public_api_type_checks_strictly():
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(ROOT / "wshare_redis")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
