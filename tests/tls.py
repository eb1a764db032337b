"""Test helpers for secured servers: a throwaway CA with server and client certificates made
with the openssl command line, and a redis-server on loopback with extra options
(requirepass, TLS) that is ready once a given check passes, and always stopped."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from wshare_redis.embedded import RedisServer, free_port


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d: Path) -> Certs:
    """A CA, a server certificate for IP 127.0.0.1 only (so a client naming the server
    "localhost" fails the host name check) and a client certificate, on P-256 keys (fast)."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=wshare test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, usage, san in (("server", "serverAuth", "subjectAltName=IP:127.0.0.1\n"),
                             ("client", "clientAuth", "")):
        (d / f"{name}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n{san}")
        _openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=wshare test {name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    for key in d.glob("*.key"):
        os.chmod(key, 0o600)
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


class SecuredServer(RedisServer):
    """A redis-server whose readiness is ``ready(port)`` returning True (a redis-py PING with
    the right password or certificates) rather than a plain-text PING; with ``tls`` the only
    listener is a TLS port. ``stop()`` ends it, also when starting failed."""

    def __init__(self, *, args: tuple[str, ...], ready: Callable[[int], bool], tls: bool = False) -> None:
        super().__init__(args=args)
        self.ready = ready
        self.tls = tls

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "SecuredServer":
        ports = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, *self.args], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"redis-server exited at start: {tail}")
            try:
                if self.ready(self.port):
                    return self
            except Exception:  # not listening yet
                pass
            time.sleep(0.02)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"redis-server did not become ready on port {self.port}: {tail}")


__all__ = ["Certs", "SecuredServer", "free_port", "have_openssl", "make_certs"]
