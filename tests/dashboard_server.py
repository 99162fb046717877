"""``helion-optuna dashboard`` as a process of its own, for the tests."""

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def get_json(url: str) -> dict:
    status, _, body = get(url)
    assert status == 200, (url, status, body[:500])
    return json.loads(body)


@contextlib.contextmanager
def dashboard(*options: str, timeout_s: float = 60.0):
    """Run ``helion-optuna dashboard OPTIONS --port <free port>``; yield its base URL once
    it answers, stop it after."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "helion_optuna", "dashboard", *options,
                                "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the dashboard exited ({process.returncode}): "
                                     f"{process.stdout.read()}")
            with contextlib.suppress(OSError):
                if get(f"{base}/api/meta")[0] == 200:
                    break
            assert time.monotonic() < deadline, "the dashboard did not answer in time"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
