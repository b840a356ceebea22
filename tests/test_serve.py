"""`perfrl-trl serve`: a real server, started here on 127.0.0.1 and a free port, judging in the real sandbox.

One server (two workers, three trials, a 1.5 s deadline per request, a queue of 8 candidates) serves every test
of the module; the restart test stops it and starts it again on the same port. Programs are trivial, or sleep
(not burning CPU) where a test needs a judgement to take a while.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_integrations import no_sandbox  # tests/ is on sys.path under pytest's default import mode

from perfrl_trl.cli import main as cli_main
from perfrl_trl.serve import ServeConfig

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789abcdef"
MAX_PENDING = 8
DEADLINE_S = 1.5


def _skip_reason() -> str | None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return "the serve extra is not installed (pip install 'perfrl_trl[serve]')"
    return no_sandbox()


_SKIP = _skip_reason()
pytestmark = pytest.mark.skipif(_SKIP is not None, reason=str(_SKIP))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `perfrl-trl serve` process of this test module, on one port for its whole life (restarts included)."""

    def __init__(self, log_dir: Path):
        self.port = _free_port()
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"serve-{self.starts}.log", "w")  # noqa: SIM115 (the process owns it)
        argv = [
            *("serve", "--port", str(self.port), "--token", TOKEN, "--workers", "2", "--trials", "3"),
            *("--timeout", "3", "--max-pending", str(MAX_PENDING), "--max-queries", str(MAX_PENDING)),
            *("--max-body-mb", "1", "--max-program-chars", "2000", "--request-timeout", str(DEADLINE_S)),
        ]
        env = {**os.environ, "HF_MODULES_CACHE": str(self.log_dir / "modules"), "PERFRL_TRL_TOKEN": ""}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "perfrl_trl.cli", *argv], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.log_dir / f"serve-{self.starts}.log").read_text()
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the server did not answer /health within 90 s")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def request(self, method: str, path: str, body=None, token: str | None = TOKEN, headers=None):
        """(status, decoded JSON or None, response headers)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            hdrs = {"Content-Type": "application/json", **(headers or {})}
            if token is not None:
                hdrs["Authorization"] = f"Bearer {token}"
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = raw
            return resp.status, payload, dict(resp.getheaders())
        finally:
            conn.close()

    def health(self) -> dict:
        status, info, _ = self.request("GET", "/health")
        assert status == 200
        return info

    def wait_idle(self, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            info = self.health()
            if info["pending"] == 0 or time.monotonic() > deadline:
                return info
            time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve"))
    srv.start()
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def label(tests: list[tuple[str, str]], input_code: str | None = None) -> str:
    return json.dumps({"tests": [{"input": i, "output": o} for i, o in tests], "input_code": input_code})


DOUBLE = label([("2\n", "4\n"), ("5\n", "10\n")])
ONE_TEST = label([("", "0\n")])  # for the sleeping programs: each test is a run, and runs sleep


def reward_body(*programs: str, lab: str = DOUBLE, prompt: str = "Double it:\n") -> dict:
    return {
        "query": [prompt + p for p in programs],
        "prompts": [prompt] * len(programs),
        "labels": [lab] * len(programs),
    }


def test_judges_a_batch_in_query_order(server):
    slow = "n = int(input())\ns = 0\nfor _ in range(2):\n    s += n\nprint(s)\n"
    body = {
        "query": [
            "Double it:\nprint(2 * int(input()))<|im_end|>",  # the end-of-sequence token OpenRLHF leaves in
            "Double it:\nprint(int(input()) + 1)",  # wrong answer
            "Double it:\nprint(2 *",  # does not compile
            "Double it:\nHere:\n```python\n" + slow + "```\nDone.</s>",  # fenced; the baseline itself
        ],
        "prompts": ["Double it:\n"] * 4,
        "labels": [DOUBLE, DOUBLE, DOUBLE, label([("2\n", "4\n")], input_code=slow)],
    }
    status, out, _ = server.request("POST", "/get_reward", body)
    assert status == 200, out
    assert out["rewards"] == [1.3, 1.0, 0.0, 1.3]
    assert out["scores"] == [0.65, 0.5, 0.0, 0.65]
    assert out["extra_logs"]["tier"] == [3.0, 2.0, 1.0, 3.0]
    assert out["extra_logs"]["timed_out"] == [0.0] * 4
    # A label of tests only is judged for correctness only; an empty batch is answered at once.
    status, out, _ = server.request("POST", "/get_reward", {"query": [], "prompts": [], "labels": []})
    assert (status, out["rewards"]) == (200, [])


def test_token_is_required_and_checked(server):
    body = reward_body("print(2 * int(input()))")
    assert server.request("POST", "/get_reward", body, token=None)[0] == 401
    status, out, headers = server.request("POST", "/get_reward", body, token="wrong-token-0123456789")
    assert (status, out["field"], headers.get("www-authenticate")) == (401, "authorization", "Bearer")
    # OpenRLHF's client sends no headers: the token may ride in the URL instead.
    status, out, _ = server.request("POST", f"/get_reward?token={TOKEN}", body, token=None)
    assert (status, out["rewards"]) == (200, [1.3])
    # Health answers anyone, but only says more to a caller with the token.
    assert server.request("GET", "/health", token=None)[1] == {"status": "ok"}
    assert server.health()["isolation"] in ("bwrap", "rlimits")


BAD = [
    (b"{not json", 400, "body"),
    (b"[1, 2]", 400, "body"),
    ({"prompts": [], "labels": []}, 400, "query"),
    ({"query": "print(1)", "labels": []}, 400, "query"),
    ({"query": ["a", 3], "labels": [DOUBLE, DOUBLE]}, 400, "query[1]"),
    ({"query": ["a"], "prompts": ["a", "b"], "labels": [DOUBLE]}, 400, "prompts"),
    ({"query": ["a"], "prompts": [7], "labels": [DOUBLE]}, 400, "prompts[0]"),
    ({"query": ["a"]}, 400, "labels"),
    ({"query": ["a", "b"], "labels": [DOUBLE, "{oops"]}, 400, "labels[1]"),
    ({"query": ["a"], "labels": ['{"input_code": "print(1)"}']}, 400, "labels[0].tests"),
    ({"query": ["a"], "labels": ['{"tests": []}']}, 400, "labels[0].tests"),
    ({"query": ["a"], "labels": ['{"tests": [{"input": "1"}]}']}, 400, "labels[0].tests[0]"),
    ({"query": ["a"], "labels": ['{"tests": [{"input": 1, "output": "1"}]}']}, 400, "labels[0].tests[0]['input']"),
    ({"query": ["a"], "labels": ['{"tests": [{"input": "", "output": ""}], "input_code": 5}']}, 400,
     "labels[0].input_code"),
    ({"query": ["a"], "labels": ['{"tests": [{"input": "", "output": ""}], "test": []}']}, 400, "labels[0]"),
    ({"query": ["a"] * (MAX_PENDING + 1), "labels": [DOUBLE] * (MAX_PENDING + 1)}, 413, "query"),
    (b"x" * ((1 << 20) + 1), 413, "body"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "field"), BAD, ids=[f"{s}-{f}" for _, s, f in BAD])
def test_a_bad_request_gets_an_error_naming_the_field(server, body, status, field):
    got, out, _ = server.request("POST", "/get_reward", body)
    assert (got, out["field"]) == (status, field), out
    assert out["error"].startswith(f"{field}: ") and "Traceback" not in out["error"]


def test_an_overlong_program_is_not_run(server):
    runs = server.health()["executor"]["runs"]
    status, out, _ = server.request(
        "POST", "/get_reward", reward_body("print(2 * int(input()))#" + "x" * 3000)
    )
    assert (status, out["rewards"], out["extra_logs"]["too_long"]) == (200, [0.0], [1.0])
    assert server.health()["executor"]["runs"] == runs


def test_hostile_programs_leave_the_server_serving(server):
    hostile = [
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "import os\nwhile True:\n    os.fork()\n",
        "import os\nos._exit(3)\n",
        "print('x' * (4 << 20))\n",
    ]
    status, out, _ = server.request("POST", "/get_reward", reward_body(*hostile))
    assert (status, out["rewards"]) == (200, [1.0] * 4), out
    status, out, _ = server.request("POST", "/get_reward", reward_body("print(2 * int(input()))"))
    assert (status, out["rewards"]) == (200, [1.3])


def _client(server, i: int, results: dict) -> None:
    """One of the concurrent clients: its own right and wrong programs, retried while the queue is full."""
    lab = label([("", f"{i}\n")])
    body = reward_body(f"print({i})", f"print({i} + 1)", lab=lab, prompt=f"client {i}\n")
    busy = 0
    for _ in range(400):
        status, out, headers = server.request("POST", "/get_reward", body)
        if status != 503:
            break
        assert headers.get("retry-after") == "1"
        busy += 1
        time.sleep(0.02)  # the server says 1 s; a test need not wait that long
    results[i] = (status, out, busy)


def test_sixteen_concurrent_clients_each_get_their_own_verdicts(server):
    results: dict = {}
    threads = [threading.Thread(target=_client, args=(server, i, results)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == list(range(16))
    for i, (status, out, _) in results.items():
        # A verdict given to the wrong client would turn a right program's 1.3 into 1.0 or the other way.
        assert (status, out["rewards"], out["extra_logs"]["timed_out"]) == (200, [1.3, 1.0], [0.0, 0.0]), i
    info = server.wait_idle()
    assert info["pending"] == 0 and info["peak_pending"] <= MAX_PENDING


def _sleepers(n: int, seconds: float, tag: str) -> list[str]:
    # Wrong on purpose (prints nothing the test expects): R2 after one run, no timing trials.
    return [f"import time\ntime.sleep({seconds})\nprint('{tag}', {k})\n" for k in range(n)]


def test_a_full_queue_answers_503_with_retry_after(server):
    first: dict = {}
    body = reward_body(*_sleepers(MAX_PENDING, 0.2, "queue"), lab=ONE_TEST)
    t = threading.Thread(target=lambda: first.update(r=server.request("POST", "/get_reward", body)))
    t.start()
    deadline = time.monotonic() + 10
    while server.health()["pending"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Any candidate still pending leaves less room than a full request needs.
    probe = reward_body(*(f"print({k})" for k in range(MAX_PENDING)))
    status, out, headers = server.request("POST", "/get_reward", probe)
    assert (status, out["field"], headers.get("retry-after")) == (503, "query", "1")
    t.join(timeout=30)
    status, out, _ = first["r"]
    assert (status, out["rewards"], out["extra_logs"]["timed_out"]) == (
        200,
        [1.0] * MAX_PENDING,
        [0.0] * MAX_PENDING,
    )
    info = server.wait_idle()
    assert info["requests"]["busy"] >= 1 and info["peak_pending"] <= MAX_PENDING


def test_a_client_that_disconnects_loses_no_verdict(server):
    body = json.dumps(reward_body(*_sleepers(2, 0.2, "gone"), lab=ONE_TEST)).encode()
    before = server.wait_idle()["executor"]
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(
            b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.1)  # admitted and submitted, then the client goes away mid-judgement
    idle = server.wait_idle()
    assert idle["pending"] == 0
    assert idle["executor"]["runs"] - before["runs"] == 2  # both judged to the end, once each
    # The same request again: both verdicts come from the cache, nothing is run twice.
    status, out, _ = server.request("POST", "/get_reward", json.loads(body))
    assert (status, out["rewards"]) == (200, [1.0, 1.0])
    stats = server.health()["executor"]
    assert (stats["cache_hits"] - idle["executor"]["cache_hits"], stats["runs"]) == (
        2,
        idle["executor"]["runs"],
    )


def test_past_the_deadline_a_sample_is_flagged_and_its_verdict_kept(server):
    body = reward_body(*_sleepers(1, DEADLINE_S + 0.5, "late"), lab=ONE_TEST)
    t0 = time.monotonic()
    status, out, _ = server.request("POST", "/get_reward", body)
    assert time.monotonic() - t0 < DEADLINE_S + 1.0
    assert (status, out["rewards"], out["extra_logs"]["timed_out"]) == (200, [1.0], [1.0])
    server.wait_idle()
    status, out, _ = server.request("POST", "/get_reward", body)
    assert (status, out["rewards"], out["extra_logs"]["timed_out"]) == (200, [1.0], [0.0])
    assert server.health()["requests"]["timed_out"] == 1


def test_openrlhf_client_code_against_the_server(server):
    """OpenRLHF's own HTTP client (``SingleTurnAgentExecutor``), when OpenRLHF is importable here."""
    agent = pytest.importorskip(
        "openrlhf.utils.agent",
        reason="OpenRLHF is not installed (pip install --no-deps openrlhf, + pylatexenc)",
    )
    import asyncio

    executor = agent.SingleTurnAgentExecutor(f"http://127.0.0.1:{server.port}/get_reward?token={TOKEN}")
    prompt = "Double it:\n"
    out = asyncio.run(
        executor._fetch_rewards_via_http([prompt + "print(2 * int(input()))"], [prompt], [DOUBLE])
    )
    assert out[0]["rewards"] == [1.3] and out[0]["extra_logs"]["tier"] == [3.0]


def test_restart_serves_again_on_the_same_port(server):
    # SIGTERM: uvicorn finishes what is in flight, then ends by the same signal, as process managers expect.
    assert server.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in (server.log_dir / "serve-1.log").read_text()
    with pytest.raises(OSError):
        server.request("GET", "/health")
    server.start()
    info = server.health()
    assert info["requests"]["requests"] == 0 and info["pending"] == 0
    status, out, _ = server.request("POST", "/get_reward", reward_body("print(2 * int(input()))"))
    assert (status, out["rewards"]) == (200, [1.3])


def test_off_loopback_without_a_token_it_refuses_to_start(monkeypatch):
    monkeypatch.delenv("PERFRL_TRL_TOKEN", raising=False)
    with pytest.raises(SystemExit, match=r"not a loopback address.*needs a token"):
        cli_main(["serve", "--host", "0.0.0.0", "--port", "5999"])
    monkeypatch.setenv("PERFRL_TRL_TOKEN", TOKEN)
    assert ServeConfig(host="0.0.0.0").token == TOKEN  # the token from the environment
    with pytest.raises(ValueError, match="at least 16"):
        ServeConfig(token="short")


def test_without_the_serve_extra_it_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    with pytest.raises(SystemExit, match=r"pip install 'perfrl_trl\[serve\]'"):
        cli_main(["serve", "--port", str(_free_port()), "--workers", "1"])
