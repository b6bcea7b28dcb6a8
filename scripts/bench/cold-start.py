#!/usr/bin/env python3
"""Cold start of a Lambda binary (custom runtime, `bootstrap` style) through a local emulator of
the Lambda Runtime API and of the Extensions API (internal and external extensions, INVOKE and
SHUTDOWN events).

    scripts/bench/cold-start.py BINARY [--runs N] [--warm N] [--event FILE] [--env K=V ...]
                                       [--extension EXT_BINARY ...] [--count-lines TEXT]
                                       [--expect-status 200] [--json]

Each run starts a fresh process with `AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT` (random free port)
and the usual Lambda environment (a clean one, as on Lambda), hands out one invocation (the API
Gateway HTTP API v2 event FILE) and, with --warm N, N more, then ends the environment as Lambda
does: every extension registered for SHUTDOWN gets a `SHUTDOWN` event (reason `spindown`) and up
to --shutdown-timeout (2 s, Lambda's limit with external extensions) to call event/next again or
exit; then the processes are killed. Each --extension binary is an *external* extension (as if in
/opt/extensions/ of a layer): started first, with the same environment, and the runtime is started
once it has registered (Lambda's init order). Measured per run, from the first spawn (just before
fork/exec):

  ext_register   spawn -> last extension registered (internal extensions only; absent if none)
  init           spawn -> the runtime's first `GET .../invocation/next` (end of the init phase)
  cold_start     spawn -> first `POST .../invocation/{id}/response` (the number asked for)
  first_invoke   first invocation handed out -> its response
  cold_done      spawn -> first invocation done: answered, and every INVOKE extension back in
                 event/next (its post-invoke work, e.g. a flush, is billed and delays the
                 environment's next invocation; equals cold_start without extensions)
  warm_answer    each later invocation handed out -> its response (what the caller waits for)
  warm_billed    each later invocation handed out -> done (as cold_done): the time Lambda bills
                 and during which the environment cannot take the next event
  shutdown       SHUTDOWN handed out -> every SHUTDOWN extension back in event/next (or exited)
  peak_rss_mib   the process's VmHWM (/proc/PID/status) read just before the kill
  counted_lines  (--count-lines TEXT) lines of the processes' output containing TEXT, e.g. the
                 served events a function writes to its log stream

Prints a table (p50, p99 and max over the runs) and, with --json, a JSON document on stdout (the
table then goes to stderr). Exits 1 if a run fails: the process exits or times out before
answering, posts an init/invocation error, answers a status other than --expect-status, or an
extension does not finish its SHUTDOWN in time.


The emulator follows what lambda_runtime 1.5 / lambda-extension 1.1 send and expect: the
runtime reads `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn`,
`-Trace-Id` from `next`; an extension registers with `Lambda-Extension-Name` and a body
`{"events": [...]}`, needs `Lambda-Extension-Identifier` and a body with `functionName`,
`functionVersion`, `handler` back, then long-polls `event/next` with that id. An invocation is
handed out when the runtime waits in `next` and every extension registered for INVOKE waits in
`event/next` (as Lambda does: init ends, and an invoke starts, once all of them are waiting);
runtime and extensions get the same request id. Only extensions registered for INVOKE get
INVOKE events, only those registered for SHUTDOWN get SHUTDOWN (`{"eventType": "SHUTDOWN",
"shutdownReason": "spindown", "deadlineMs"}`); an internal extension (one whose name is not an
--extension file name) registering for SHUTDOWN is warned about, since Lambda refuses it.
Python 3 stdlib only.
"""

import argparse
import http.server
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EVENT = "events/recommend-for-you.json"
REGION = "us-east-1"
ACCOUNT = "123456789012"
RUNTIME = "/2018-06-01/runtime"
EXTENSION = "/2020-01-01/extension"


def now():
    return time.monotonic()


class Invocation:
    def __init__(self, body: bytes, function_name: str, timeout_s: float):
        self.request_id = str(uuid.uuid4())
        self.body = body
        self.deadline_ms = int(time.time() * 1000 + timeout_s * 1000)
        self.arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.trace_id = (
            f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
            f"Parent={uuid.uuid4().hex[:16]};Sampled=0"
        )
        self.dispatched_at = None  # monotonic time it was handed to the runtime
        self.responded_at = None
        self.done_at = None  # answered and every INVOKE extension waits in event/next again
        self.response = None  # raw body of /response
        self.error = None  # (error type header, body) of /error

    def runtime_headers(self):
        return {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": self.request_id,
            "Lambda-Runtime-Deadline-Ms": str(self.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.arn,
            "Lambda-Runtime-Trace-Id": self.trace_id,
        }

    def extension_event(self):
        return {
            "eventType": "INVOKE",
            "deadlineMs": self.deadline_ms,
            "requestId": self.request_id,
            "invokedFunctionArn": self.arn,
            "tracing": {"type": "X-Amzn-Trace-Id", "value": self.trace_id},
        }


class Extension:
    def __init__(self, name: str, events):
        self.id = str(uuid.uuid4())
        self.name = name
        self.events = events
        self.registered_at = now()
        self.waiting = False  # in event/next, ready for the next invocation
        self.delivered = 0  # invocations handed to it
        self.first_next_at = None
        self.errors = []  # (kind, error type header, body)
        self.shutdown_sent_at = None
        self.shutdown_done_at = None  # back in event/next after its SHUTDOWN


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # the process is killed with connections open (a blocked `next`, keep-alive reads)
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class Emulator:
    """The Runtime API + Extensions API of one execution environment, on 127.0.0.1."""

    def __init__(self, event_body: bytes, invocations: int = 1, function_name: str = "recommend",
                 timeout_s: float = 30.0, extension_wait_s: float = 2.0, external_names=()):
        self.function_name = function_name
        self.external_names = set(external_names)
        self.shutdown_at = None  # when SHUTDOWN was issued
        self.invocations = [Invocation(event_body, function_name, timeout_s)
                            for _ in range(invocations)]
        self.extension_wait_s = extension_wait_s
        self.cond = threading.Condition()
        self.stopping = False
        self.dispatched = 0  # invocations handed out so far
        self.runtime_first_next_at = None
        self.runtime_waiting_since = None
        self.extensions = {}
        self.init_errors = []  # (error type header, body)
        self.warnings = []
        self.requests = []  # (method, path) in arrival order
        self.server = _Server(("127.0.0.1", 0), self._handler_class())
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # --- state, under self.cond ---------------------------------------------------------------

    def _invoke_extensions(self):
        return [e for e in self.extensions.values() if "INVOKE" in e.events]

    def _can_dispatch(self):
        if self.dispatched >= len(self.invocations) or self.runtime_waiting_since is None:
            return False
        if self.dispatched > 0 and self.invocations[self.dispatched - 1].responded_at is None:
            return False
        late = [e for e in self._invoke_extensions() if not e.waiting]
        if late and now() - self.runtime_waiting_since < self.extension_wait_s:
            return False
        if late:
            self.warnings.append(
                f"invocation {self.dispatched + 1} handed out after waiting "
                f"{self.extension_wait_s:.1f}s for extension(s) "
                f"{', '.join(e.name for e in late)} to call event/next")
        return True

    def _mark_done(self):
        """The current invocation is done once answered and no INVOKE extension works on it."""
        if self.dispatched == 0:
            return
        inv = self.invocations[self.dispatched - 1]
        if inv.done_at is None and inv.responded_at is not None \
                and all(e.waiting for e in self._invoke_extensions()):
            inv.done_at = now()

    def _shutdown_extensions(self):
        return [e for e in self.extensions.values() if "SHUTDOWN" in e.events]

    def shutdown(self, timeout_s: float = 2.0, alive=lambda: True):
        """Sends SHUTDOWN to every extension registered for it; waits until each is back in
        event/next (or `alive()` turns false: the processes exited). Returns (ms until the last
        one finished or None if none was registered, whether all finished in time)."""
        with self.cond:
            exts = self._shutdown_extensions()
            if not exts:
                return None, True
            self.shutdown_at = now()
            self.cond.notify_all()
            deadline = self.shutdown_at + timeout_s
            while (any(e.shutdown_done_at is None for e in exts)
                   and now() < deadline and alive()):
                self.cond.wait(0.01)
            ends = [e.shutdown_done_at for e in exts if e.shutdown_done_at is not None]
            complete = len(ends) == len(exts) or not alive()
            end = max(ends) if len(ends) == len(exts) else now()
            return round((end - self.shutdown_at) * 1000, 2), complete

    def _dispatch(self):
        inv = self.invocations[self.dispatched]
        inv.dispatched_at = now()
        self.dispatched += 1
        self.runtime_waiting_since = None
        for e in self._invoke_extensions():
            e.waiting = False
        self.cond.notify_all()
        return inv

    def wait_done(self, timeout_s: float, alive=lambda: True):
        """Waits until every invocation is answered (or errored); False on timeout/exit."""
        deadline = now() + timeout_s
        with self.cond:
            while True:
                if self.init_errors or any(i.error for i in self.invocations):
                    return True
                if all(i.responded_at or i.error for i in self.invocations):
                    # the extensions' post-invoke work: until they wait in event/next again
                    ext_deadline = now() + self.extension_wait_s
                    while (any(not e.waiting for e in self._invoke_extensions())
                           and now() < ext_deadline and alive()):
                        self.cond.wait(0.01)
                    return True
                if now() >= deadline or not alive():
                    return False
                self.cond.wait(0.01)

    # --- HTTP ---------------------------------------------------------------------------------

    def _handler_class(self):
        emu = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the runtime's hyper client expects
            # Headers and body go out as two writes: with Nagle on, the body waits for the ACK
            # of the headers, which the client delays up to 40 ms (every other event/next then
            # looked 40 ms slower). Lambda's API answers without that delay.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(self, status, body=b"", headers=None):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    if "Content-Type" not in (headers or {}):
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _hang_up(self):
                self.close_connection = True
                try:
                    self._send(500, {"errorMessage": "emulator stopped", "errorType": "Stopped"})
                except OSError:
                    pass

            def do_GET(self):
                emu.requests.append(("GET", self.path))
                if self.path == f"{RUNTIME}/invocation/next":
                    return self._runtime_next()
                if self.path == f"{EXTENSION}/event/next":
                    return self._extension_next()
                self._send(404, {"errorMessage": f"not emulated: GET {self.path}",
                                 "errorType": "NotFound"})

            def do_POST(self):
                emu.requests.append(("POST", self.path))
                body = self._body()
                parts = self.path.split("/")
                if self.path.startswith(f"{RUNTIME}/invocation/") and len(parts) == 6 \
                        and parts[5] in ("response", "error"):
                    return self._runtime_result(parts[4], parts[5], body)
                if self.path == f"{RUNTIME}/init/error":
                    with emu.cond:
                        emu.init_errors.append(
                            (self.headers.get("Lambda-Runtime-Function-Error-Type"),
                             body.decode(errors="replace")))
                        emu.cond.notify_all()
                    return self._send(202, {"status": "OK"})
                if self.path == f"{EXTENSION}/register":
                    return self._register(body)
                if self.path in (f"{EXTENSION}/init/error", f"{EXTENSION}/exit/error"):
                    return self._extension_error(self.path.split("/")[3], body)
                self._send(404, {"errorMessage": f"not emulated: POST {self.path}",
                                 "errorType": "NotFound"})

            def do_PUT(self):  # Logs/Telemetry API subscriptions: accepted, nothing is sent
                emu.requests.append(("PUT", self.path))
                self._body()
                self._send(200, {})

            # runtime

            def _runtime_next(self):
                with emu.cond:
                    if emu.runtime_first_next_at is None:
                        emu.runtime_first_next_at = now()
                    emu.runtime_waiting_since = now()
                    emu.cond.notify_all()
                    while not emu.stopping and not emu._can_dispatch():
                        emu.cond.wait(0.01)
                    if emu.stopping:
                        return self._hang_up()
                    inv = emu._dispatch()
                self._send(200, inv.body, inv.runtime_headers())

            def _runtime_result(self, request_id, kind, body):
                with emu.cond:
                    inv = next((i for i in emu.invocations if i.request_id == request_id), None)
                    if inv is None or inv.dispatched_at is None:
                        return self._send(400, {"errorMessage": f"unknown request id {request_id}",
                                                "errorType": "InvalidRequestID"})
                    if inv.responded_at or inv.error:
                        return self._send(400, {"errorMessage": "invocation already answered",
                                                "errorType": "InvalidStateTransition"})
                    inv.responded_at = now()
                    if kind == "response":
                        inv.response = body
                    else:
                        inv.error = (self.headers.get("Lambda-Runtime-Function-Error-Type"),
                                     body.decode(errors="replace"))
                    emu._mark_done()
                    emu.cond.notify_all()
                self._send(202, {"status": "OK"})

            # extensions

            def _register(self, body):
                name = self.headers.get("Lambda-Extension-Name")
                if not name:
                    return self._send(400, {"errorMessage": "missing Lambda-Extension-Name",
                                            "errorType": "Extension.InvalidRequest"})
                try:
                    events = json.loads(body or b"{}").get("events") or []
                except ValueError:
                    return self._send(400, {"errorMessage": "body is not JSON",
                                            "errorType": "Extension.InvalidRequest"})
                with emu.cond:
                    if "SHUTDOWN" in events and name not in emu.external_names:
                        emu.warnings.append(
                            f"extension {name} registered for SHUTDOWN: internal extensions "
                            "receive INVOKE only on AWS Lambda (use .with_events(&[\"INVOKE\"]))")
                    if emu.runtime_first_next_at is not None:
                        emu.warnings.append(
                            f"extension {name} registered after the runtime's first next "
                            "(Lambda accepts registrations during init only)")
                    ext = Extension(name, events)
                    ext.delivered = emu.dispatched  # a late one gets the next invocation
                    emu.extensions[ext.id] = ext
                    emu.cond.notify_all()
                reply = {"functionName": emu.function_name, "functionVersion": "$LATEST",
                         "handler": "bootstrap"}
                if "accountId" in (self.headers.get("Lambda-Extension-Accept-Feature") or ""):
                    reply["accountId"] = ACCOUNT
                self._send(200, reply, {"Lambda-Extension-Identifier": ext.id})

            def _ext(self):
                ext = emu.extensions.get(self.headers.get("Lambda-Extension-Identifier") or "")
                if ext is None:
                    self._send(403, {"errorMessage": "unknown Lambda-Extension-Identifier",
                                     "errorType": "Extension.UnknownExtensionIdentifier"})
                return ext

            def _extension_next(self):
                with emu.cond:
                    ext = self._ext()
                    if ext is None:
                        return None
                    if ext.first_next_at is None:
                        ext.first_next_at = now()
                    ext.waiting = True
                    if ext.shutdown_sent_at is not None and ext.shutdown_done_at is None:
                        ext.shutdown_done_at = now()
                    emu._mark_done()
                    emu.cond.notify_all()
                    # the next invocation handed out after this call, for the same request id,
                    # or the SHUTDOWN
                    event = None
                    while not emu.stopping and event is None:
                        if emu.shutdown_at is not None and "SHUTDOWN" in ext.events \
                                and ext.shutdown_sent_at is None:
                            ext.shutdown_sent_at = now()
                            ext.waiting = False
                            event = {"eventType": "SHUTDOWN", "shutdownReason": "spindown",
                                     "deadlineMs": int(time.time() * 1000 + 2000)}
                        elif "INVOKE" in ext.events and ext.delivered < emu.dispatched \
                                and emu.shutdown_at is None:
                            ext.delivered = emu.dispatched
                            event = emu.invocations[emu.dispatched - 1].extension_event()
                        else:
                            emu.cond.wait(0.01)
                    if emu.stopping:
                        return self._hang_up()
                self._send(200, event,
                           {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())})

            def _extension_error(self, kind, body):
                with emu.cond:
                    ext = self._ext()
                    if ext is None:
                        return None
                    ext.errors.append((kind, self.headers.get("Lambda-Extension-Function-Error-Type"),
                                       body.decode(errors="replace")))
                    emu.cond.notify_all()
                self._send(202, {"status": "OK"})

        return Handler


def lambda_env(emu: Emulator, binary: Path, memory: int, extra: dict, inherit: bool):
    env = dict(os.environ) if inherit else {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC"}
    env.update({
        "AWS_LAMBDA_RUNTIME_API": emu.address,
        "AWS_LAMBDA_FUNCTION_NAME": emu.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{emu.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"2026/01/01/[$LATEST]{uuid.uuid4().hex}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "_HANDLER": "bootstrap",
        "LAMBDA_TASK_ROOT": str(binary.parent),
        "LAMBDA_RUNTIME_DIR": str(binary.parent),
    })
    env.update(extra)
    return env


def peak_rss_mib(pid: int):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def parse_response(raw: bytes):
    """(statusCode, body snippet) of an API Gateway v2 response (or of a plain payload)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None, raw[:200].decode(errors="replace")
    if isinstance(doc, dict) and "statusCode" in doc:
        body = doc.get("body") or ""
        return int(doc["statusCode"]), (body if isinstance(body, str) else json.dumps(body))[:200]
    # a bare JSON payload counts as a 200 (API Gateway's v2 format does the same)
    return 200, raw[:200].decode(errors="replace")


def run_once(binary: Path, event_body: bytes, args, extra_env: dict, log_path: Path):
    externals = [Path(e).resolve() for e in args.extension]
    emu = Emulator(event_body, invocations=1 + args.warm, timeout_s=args.timeout,
                   extension_wait_s=args.extension_wait,
                   external_names=[e.name for e in externals]).start()
    result = {"ok": False}
    proc = None
    ext_procs = []
    problems = []
    try:
        env = lambda_env(emu, binary, args.memory, extra_env, args.inherit_env)
        with open(log_path, "ab") as log:
            log.write(f"\n=== run on {emu.address}\n".encode())
            log.flush()
            log_start = log.tell()
            t0 = now()
            for ext in externals:
                ext_procs.append(subprocess.Popen(
                    [str(ext)], env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, cwd=str(ext.parent)))
            # Lambda starts the runtime once every external extension has registered.
            with emu.cond:
                deadline = now() + args.extension_wait
                while (len(emu.extensions) < len(externals) and now() < deadline
                       and all(p.poll() is None for p in ext_procs)):
                    emu.cond.wait(0.01)
                if len(emu.extensions) < len(externals):
                    emu.warnings.append("an external extension did not register within "
                                        f"{args.extension_wait:.1f}s")
            proc = subprocess.Popen([str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=str(binary.parent))
        finished = emu.wait_done(args.timeout, alive=lambda: proc.poll() is None)
        if finished:
            shutdown_ms, complete = emu.shutdown(
                args.shutdown_timeout,
                # done when each is back in event/next, or its process exited (the external
                # extensions' processes; the function's when all are internal)
                alive=((lambda: any(p.poll() is None for p in ext_procs)) if ext_procs
                       else (lambda: proc.poll() is None)))
            result["shutdown_ms"] = shutdown_ms
            if not complete:
                problems.append(f"an extension did not finish its SHUTDOWN within "
                                f"{args.shutdown_timeout}s")
        with emu.cond:
            first = emu.invocations[0]
            ms = lambda t: None if t is None else round((t - t0) * 1000, 2)  # noqa: E731
            exts = list(emu.extensions.values())
            result.update({
                "ext_register_ms": ms(max(e.registered_at for e in exts)) if exts else None,
                "init_ms": ms(emu.runtime_first_next_at),
                "cold_start_ms": ms(first.responded_at) if first.response is not None else None,
                "first_invoke_ms": (round((first.responded_at - first.dispatched_at) * 1000, 2)
                                    if first.response is not None else None),
                "cold_done_ms": ms(first.done_at) if first.response is not None else None,
                "warm_answer_ms": [round((i.responded_at - i.dispatched_at) * 1000, 2)
                                   for i in emu.invocations[1:] if i.response is not None],
                "warm_billed_ms": [round((i.done_at - i.dispatched_at) * 1000, 2)
                                   for i in emu.invocations[1:] if i.done_at is not None],
                "extensions": [{"name": e.name, "events": e.events,
                                "invocations_seen": e.delivered, "errors": e.errors}
                               for e in exts],
                "warnings": list(dict.fromkeys(emu.warnings)),
            })
            if proc.poll() is None:
                result["peak_rss_mib"] = peak_rss_mib(proc.pid)
            if emu.init_errors:
                problems.append(f"init error: {emu.init_errors[0]}")
            for e in exts:
                if e.errors:
                    problems.append(f"extension {e.name} error: {e.errors[0]}")
            for n, inv in enumerate(emu.invocations, 1):
                if inv.error:
                    problems.append(f"invocation {n} error: {inv.error}")
                elif inv.response is not None:
                    status, snippet = parse_response(inv.response)
                    if n == 1:
                        result["status"], result["body"] = status, snippet
                    if status != args.expect_status:
                        problems.append(f"invocation {n} answered {status} "
                                        f"(expected {args.expect_status}): {snippet}")
            if not finished:
                code = proc.poll()
                problems.append(f"process exited with {code} before answering" if code is not None
                                else f"no answer within {args.timeout}s")
            if first.response is None and not problems:
                problems.append("no response to the first invocation")
            result["problems"] = problems
            result["ok"] = not problems
    finally:
        for p in [proc, *ext_procs]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        emu.stop()
    if args.count_lines:
        with open(log_path, "rb") as log:
            log.seek(log_start)
            needle = args.count_lines.encode()
            result["counted_lines"] = sum(1 for line in log if needle in line)
    return result


def pct(values, q):
    """The median for q=50, else the nearest-rank q-th percentile (q=100: the maximum)."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    if q == 50:
        return round(statistics.median(values), 2)
    rank = max(1, math.ceil(q / 100 * len(values)))
    return round(values[rank - 1], 2)


def summarize(runs):
    phases = {
        "ext_register_ms": [r.get("ext_register_ms") for r in runs],
        "init_ms": [r.get("init_ms") for r in runs],
        "cold_start_ms": [r.get("cold_start_ms") for r in runs],
        "first_invoke_ms": [r.get("first_invoke_ms") for r in runs],
        "cold_done_ms": [r.get("cold_done_ms") for r in runs],
        "warm_answer_ms": [w for r in runs for w in r.get("warm_answer_ms", [])],
        "warm_billed_ms": [w for r in runs for w in r.get("warm_billed_ms", [])],
        "shutdown_ms": [r.get("shutdown_ms") for r in runs],
        "peak_rss_mib": [r.get("peak_rss_mib") for r in runs],
        "counted_lines": [r.get("counted_lines") for r in runs],
    }
    return {k: {"p50": pct(v, 50), "p99": pct(v, 99), "max": pct(v, 100),
                "n": sum(x is not None for x in v),
                "sum": round(sum(x for x in v if x is not None), 2)}
            for k, v in phases.items() if any(x is not None for x in v)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("binary", type=Path)
    p.add_argument("--event", type=Path, default=None,
                   help=f"API Gateway HTTP API v2 event (default {DEFAULT_EVENT})")
    p.add_argument("--runs", type=int, default=5, help="fresh processes (default 5)")
    p.add_argument("--warm", type=int, default=1,
                   help="invocations after the first, per process (default 1; 0: none)")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="extra environment for the binary (repeatable)")
    p.add_argument("--inherit-env", action="store_true",
                   help="start from this environment instead of a clean one")
    p.add_argument("--memory", type=int, default=1024, help="AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    p.add_argument("--expect-status", type=int, default=200)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per run")
    p.add_argument("--extension-wait", type=float, default=2.0,
                   help="seconds an invocation waits for registered extensions to call event/next")
    p.add_argument("--extension", action="append", default=[], metavar="EXT_BINARY",
                   help="an external extension binary, started before the runtime (repeatable)")
    p.add_argument("--shutdown-timeout", type=float, default=2.0,
                   help="seconds extensions get to finish their SHUTDOWN (Lambda: 2 s)")
    p.add_argument("--count-lines", default=None, metavar="TEXT",
                   help="count the output lines containing TEXT per run (counted_lines)")
    p.add_argument("--log", type=Path, default=None,
                   help="where the binary's output goes (default: a temp file, shown on failure)")
    p.add_argument("--json", action="store_true", help="JSON on stdout (the table on stderr)")
    args = p.parse_args(argv)

    binary = args.binary.resolve()
    if not os.access(binary, os.X_OK):
        p.error(f"{binary} is not an executable")
    event = args.event or (Path(DEFAULT_EVENT) if Path(DEFAULT_EVENT).exists()
                           else ROOT / DEFAULT_EVENT)
    event_body = event.read_bytes()
    json.loads(event_body)  # fail early on a broken fixture
    extra = {}
    for kv in args.env:
        k, sep, v = kv.partition("=")
        if not sep:
            p.error(f"--env {kv}: expected K=V")
        extra[k] = v
    log_path = args.log or Path(tempfile.mkstemp(prefix="cold-start-", suffix=".log")[1])

    runs = []
    for n in range(args.runs):
        r = run_once(binary, event_body, args, extra, log_path)
        runs.append(r)
        if not r["ok"]:
            break
    summary = summarize(runs)
    first_ok = next((r for r in runs if r.get("status") is not None), {})
    doc = {
        "binary": str(binary),
        "binary_bytes": binary.stat().st_size,
        "event": str(event),
        "runs": len(runs),
        "warm_per_run": args.warm,
        "ok": all(r["ok"] for r in runs) and len(runs) == args.runs,
        "status": first_ok.get("status"),
        "body": first_ok.get("body"),
        "summary": summary,
        "per_run": runs,
        "log": str(log_path),
    }

    if doc["ok"] and args.log is None:
        log_path.unlink(missing_ok=True)
        doc["log"] = None

    out = sys.stderr if args.json else sys.stdout
    print(f"{binary} ({doc['binary_bytes'] / 2**20:.1f} MiB), event {event}, "
          f"{len(runs)} run(s) x (1 cold + {args.warm} warm)", file=out)
    print(f"{'phase':<18}{'p50':>10}{'p99':>10}{'max':>10}{'n':>5}", file=out)
    for k, v in summary.items():
        fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        print(f"{k:<18}{fmt(v['p50']):>10}{fmt(v['p99']):>10}{fmt(v['max']):>10}{v['n']:>5}",
              file=out)
    print(f"answer: {doc['status']} {doc['body']!r}", file=out)
    seen = {}
    for r in runs:
        for e in r.get("extensions", []):
            seen.setdefault((e["name"], tuple(e["events"])), []).append(e["invocations_seen"])
    for (name, events), counts in seen.items():
        print(f"extension: {name} events={list(events)} in {len(counts)} run(s), "
              f"invocations seen per run: {min(counts)}..{max(counts)} of {1 + args.warm}",
              file=out)
    for w in dict.fromkeys(w for r in runs for w in r.get("warnings", [])):
        print(f"WARNING: {w}", file=out)
    if args.json:
        print(json.dumps(doc, indent=2))
    if not doc["ok"]:
        for r in runs:
            for prob in r.get("problems", []):
                print(f"FAILED: {prob}", file=sys.stderr)
        try:
            tail = log_path.read_text(errors="replace").splitlines()[-40:]
            print(f"--- last lines of {log_path}:", *tail, sep="\n", file=sys.stderr)
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
