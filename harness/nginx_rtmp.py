"""A real RTMP ingest for tests: Debian's nginx with libnginx-mod-rtmp, unprivileged, in its own prefix on 127.0.0.1.

    with NginxRtmp(tmp_path) as ingest:
        sink = RtmpSink(ingest.url("key"))
        ...
        ingest.recordings("key")  # every publish is also recorded, whole, as an FLV (one file per publish)

    with NginxRtmp(tmp_path) as ingest, TlsFront(tmp_path / "tls", ingest.port) as tls:
        RtmpSink(tls.url("key"))  # rtmps://, through stunnel's TLS to the same nginx

.ci/run installs the packages (`nginx-light libnginx-mod-rtmp stunnel4 openssl`); `available()` and
`tls_available()` say whether they are here.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
START_TIMEOUT_S = 10.0


def available() -> str | None:
    """None when nginx and its RTMP module are installed, else what is missing."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        return "nginx is not installed (apt: nginx-light)"
    if not MODULE.exists():
        return f"{MODULE} is missing (apt: libnginx-mod-rtmp)"
    return None


def tls_available() -> str | None:
    """None when stunnel and openssl (a TLS front for rtmps://) are installed, else what is missing."""
    for exe, package in (("stunnel", "stunnel4"), ("openssl", "openssl")):
        if shutil.which(exe) is None:
            return f"{exe} is not installed (apt: {package})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NginxRtmp:
    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.recorded = self.root / "recorded"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, key: str, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.port}/{app}/{key}"

    def recordings(self, key: str) -> list[Path]:
        """One FLV per publish of this key, oldest first."""
        return sorted(self.recorded.glob(f"{key}-*.flv"), key=lambda p: p.stat().st_mtime_ns)

    def start(self) -> None:
        self.recorded.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        conf = self.root / "nginx.conf"
        conf.write_text(f"""load_module {MODULE};
daemon off;
master_process off;
pid {self.root}/nginx.pid;
error_log {self.root}/error.log info;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        application live {{
            live on;
            record all;
            record_path {self.recorded};
            record_unique on;
        }}
    }}
}}
""")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self._process = subprocess.Popen([nginx, "-p", str(self.root), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited ({self._process.returncode}): {self.error_log()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.port} within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def error_log(self) -> str:
        log = self.root / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def __enter__(self) -> NginxRtmp:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class TlsFront:
    """stunnel terminating TLS (a self-signed certificate made here) in front of a plain RTMP port: rtmps://."""

    def __init__(self, root: Path, rtmp_port: int) -> None:
        self.root = Path(root)
        self.rtmp_port = rtmp_port
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, key: str, app: str = "live") -> str:
        return f"rtmps://127.0.0.1:{self.port}/{app}/{key}"

    def __enter__(self) -> TlsFront:
        self.root.mkdir(parents=True, exist_ok=True)
        cert, key = self.root / "cert.pem", self.root / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
        conf = self.root / "stunnel.conf"
        conf.write_text(f"foreground = yes\npid =\n[rtmps]\naccept = 127.0.0.1:{self.port}\n"
                        f"connect = 127.0.0.1:{self.rtmp_port}\ncert = {cert}\nkey = {key}\n")
        self._process = subprocess.Popen(["stunnel", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"stunnel exited ({self._process.returncode})")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"stunnel did not listen on {self.port} within {START_TIMEOUT_S} s")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
