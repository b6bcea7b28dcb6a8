#!/usr/bin/env python3
"""Unit tests of the Lambda Runtime/Extensions API emulator in cold-start.py (stdlib only).

    python3 scripts/bench/test_cold_start.py
"""

import http.client
import importlib.util
import json
import os
import stat
import sys
import tempfile
import threading
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("cold_start", HERE / "cold-start.py")
cold_start = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cold_start)

EVENT = (HERE.parents[1] / "events" / "recommend-for-you.json").read_bytes()
RESPONSE = json.dumps({"statusCode": 200, "headers": {"content-type": "application/json"},
                       "body": "{\"items\":[]}", "isBase64Encoded": False})


def call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    out = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    conn.close()
    return out


class PercentileTest(unittest.TestCase):
    def test_nearest_rank(self):
        values = list(range(1, 201))  # 1..200
        self.assertEqual(cold_start.pct(values, 50), 100.5)
        self.assertEqual(cold_start.pct(values, 99), 198)
        self.assertEqual(cold_start.pct(values, 100), 200)
        self.assertEqual(cold_start.pct([3.0], 99), 3.0)
        self.assertIsNone(cold_start.pct([None], 99))


class EmulatorTest(unittest.TestCase):
    def setUp(self):
        self.emu = cold_start.Emulator(EVENT, invocations=2).start()
        self.port = self.emu.port

    def tearDown(self):
        self.emu.stop()

    def register(self, events=("INVOKE",)):
        status, headers, body = call(
            self.port, "POST", "/2020-01-01/extension/register",
            body=json.dumps({"events": list(events)}),
            headers={"Lambda-Extension-Name": "recommend", "Content-Type": "application/json",
                     "Lambda-Extension-Accept-Feature": "accountId"})
        self.assertEqual(status, 200)
        reply = json.loads(body)
        # what lambda-extension 1.1 deserializes (RegisterResponseBody)
        self.assertEqual(reply["functionName"], "recommend")
        self.assertEqual(reply["functionVersion"], "$LATEST")
        self.assertEqual(reply["handler"], "bootstrap")
        self.assertEqual(reply["accountId"], "123456789012")
        return headers["lambda-extension-identifier"]

    def extension_next(self, ext_id, out):
        status, _, body = call(self.port, "GET", "/2020-01-01/extension/event/next",
                               headers={"Lambda-Extension-Identifier": ext_id})
        out.append((status, json.loads(body)))

    def test_extension_and_runtime_get_the_same_invocation(self):
        ext_id = self.register()
        got = []
        t = threading.Thread(target=self.extension_next, args=(ext_id, got))
        t.start()
        status, headers, body = call(self.port, "GET", "/2018-06-01/runtime/invocation/next")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["rawPath"], "/v1/recommend/for-you")
        rid = headers["lambda-runtime-aws-request-id"]
        for h in ("lambda-runtime-deadline-ms", "lambda-runtime-invoked-function-arn",
                  "lambda-runtime-trace-id"):
            self.assertIn(h, headers)
        t.join(5)
        self.assertFalse(t.is_alive(), "the extension did not get the INVOKE event")
        ext_status, event = got[0]
        self.assertEqual(ext_status, 200)
        self.assertEqual(event["eventType"], "INVOKE")
        self.assertEqual(event["requestId"], rid)
        self.assertEqual(event["deadlineMs"], int(headers["lambda-runtime-deadline-ms"]))
        self.assertEqual(event["invokedFunctionArn"], headers["lambda-runtime-invoked-function-arn"])
        self.assertEqual(event["tracing"], {"type": "X-Amzn-Trace-Id",
                                            "value": headers["lambda-runtime-trace-id"]})

        status, _, _ = call(self.port, "POST", f"/2018-06-01/runtime/invocation/{rid}/response",
                            body=RESPONSE)
        self.assertEqual(status, 202)
        self.assertEqual(self.emu.invocations[0].response, RESPONSE.encode())
        self.assertEqual(cold_start.parse_response(RESPONSE.encode()), (200, "{\"items\":[]}"))

        # the second invocation: again one request id for both, a new one
        got.clear()
        t = threading.Thread(target=self.extension_next, args=(ext_id, got))
        t.start()
        _, headers2, _ = call(self.port, "GET", "/2018-06-01/runtime/invocation/next")
        t.join(5)
        rid2 = headers2["lambda-runtime-aws-request-id"]
        self.assertNotEqual(rid2, rid)
        self.assertEqual(got[0][1]["requestId"], rid2)
        self.assertEqual(self.emu.warnings, [])

    def test_invocation_waits_for_registered_extension(self):
        ext_id = self.register()
        got = {}

        def runtime():
            got["runtime"] = call(self.port, "GET", "/2018-06-01/runtime/invocation/next")

        t = threading.Thread(target=runtime)
        t.start()
        t.join(0.3)
        self.assertTrue(t.is_alive(), "handed out before the extension waited in event/next")
        ext = []
        self.extension_next(ext_id, ext)
        t.join(5)
        self.assertEqual(ext[0][1]["requestId"],
                         got["runtime"][1]["lambda-runtime-aws-request-id"])

    def test_errors_are_recorded(self):
        ext_id = self.register(events=("INVOKE", "SHUTDOWN"))
        self.assertTrue(any("SHUTDOWN" in w for w in self.emu.warnings))
        status, _, _ = call(self.port, "POST", "/2020-01-01/extension/init/error",
                            body="{}", headers={"Lambda-Extension-Identifier": ext_id,
                                                "Lambda-Extension-Function-Error-Type": "Boom"})
        self.assertEqual(status, 202)
        status, _, _ = call(self.port, "POST", "/2020-01-01/extension/exit/error",
                            headers={"Lambda-Extension-Identifier": "nope"})
        self.assertEqual(status, 403)
        status, _, _ = call(self.port, "POST", "/2018-06-01/runtime/init/error",
                            body='{"errorType":"x","errorMessage":"y"}',
                            headers={"Lambda-Runtime-Function-Error-Type": "Runtime.InitError"})
        self.assertEqual(status, 202)
        self.assertEqual(self.emu.init_errors[0][0], "Runtime.InitError")
        self.assertEqual(next(iter(self.emu.extensions.values())).errors[0][:2], ("init", "Boom"))

    def test_shutdown_goes_only_to_extensions_registered_for_it(self):
        emu = cold_start.Emulator(EVENT, invocations=1, external_names=["served"]).start()
        try:
            def reg(name, events):
                _, headers, _ = call(emu.port, "POST", "/2020-01-01/extension/register",
                                     body=json.dumps({"events": events}),
                                     headers={"Lambda-Extension-Name": name})
                return headers["lambda-extension-identifier"]
            invoke_only = reg("internal", ["INVOKE"])
            both = reg("served", ["INVOKE", "SHUTDOWN"])
            # an external one may register for SHUTDOWN: no warning
            self.assertEqual(emu.warnings, [])
            got = {}

            def nxt(key, ext_id):
                got.setdefault(key, []).append(call(
                    emu.port, "GET", "/2020-01-01/extension/event/next",
                    headers={"Lambda-Extension-Identifier": ext_id}))
            threads = [threading.Thread(target=nxt, args=("i", invoke_only)),
                       threading.Thread(target=nxt, args=("b", both))]
            for t in threads:
                t.start()
            rt = call(emu.port, "GET", "/2018-06-01/runtime/invocation/next")
            rid = rt[1]["lambda-runtime-aws-request-id"]
            for t in threads:
                t.join(5)
            call(emu.port, "POST", f"/2018-06-01/runtime/invocation/{rid}/response", body=RESPONSE)
            # both back in next; then the environment shuts down
            threads = [threading.Thread(target=nxt, args=("i", invoke_only)),
                       threading.Thread(target=nxt, args=("b", both))]
            for t in threads:
                t.start()
            result = {}
            sd = threading.Thread(target=lambda: result.update(r=emu.shutdown(2.0)))
            sd.start()
            threads[1].join(5)
            self.assertEqual(json.loads(got["b"][1][2])["eventType"], "SHUTDOWN")
            self.assertEqual(json.loads(got["b"][1][2])["shutdownReason"], "spindown")
            # the INVOKE-only extension gets nothing
            self.assertTrue(threads[0].is_alive())
            # shutdown ends when the SHUTDOWN extension asks for its next event again
            t = threading.Thread(target=nxt, args=("b", both))
            t.start()
            sd.join(5)
            ms, complete = result["r"]
            self.assertTrue(complete)
            self.assertGreaterEqual(ms, 0)
        finally:
            emu.stop()

    def test_chunked_response_body(self):
        t = threading.Thread(target=call, args=(self.port, "GET", "/2018-06-01/runtime/invocation/next"))
        t.start()
        t.join(5)
        rid = self.emu.invocations[0].request_id
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response",
                     body=iter([RESPONSE[:10].encode(), RESPONSE[10:].encode()]),
                     encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        self.assertEqual(conn.getresponse().status, 202)
        conn.close()
        self.assertEqual(self.emu.invocations[0].response, RESPONSE.encode())


FAKE_BOOTSTRAP = r'''#!PYTHON
"""A fake Lambda binary: an internal extension (INVOKE) plus the runtime loop."""
import http.client, json, os, threading
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
for k in ("AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
          "AWS_LAMBDA_FUNCTION_VERSION", "AWS_REGION", "_HANDLER", "LAMBDA_TASK_ROOT", "EXTRA"):
    assert os.environ.get(k), k
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, int(port))
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r, r.read()
if os.environ.get("WITH_EXTENSION"):
    r, _ = call("POST", "/2020-01-01/extension/register", json.dumps({"events": ["INVOKE"]}),
                {"Lambda-Extension-Name": "fake"})
    ext_id = r.getheader("Lambda-Extension-Identifier")
    def ext_loop():
        while True:
            call("GET", "/2020-01-01/extension/event/next", headers={"Lambda-Extension-Identifier": ext_id})
    threading.Thread(target=ext_loop, daemon=True).start()
while True:
    r, body = call("GET", "/2018-06-01/runtime/invocation/next")
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    status = int(os.environ.get("STATUS", "200"))
    print(json.dumps({"nectar_served": True, "id": rid}), flush=True)
    call("POST", f"/2018-06-01/runtime/invocation/{rid}/response",
         json.dumps({"statusCode": status, "body": json.loads(body)["rawPath"]}))
'''

FAKE_EXTERNAL = r'''#!PYTHON
"""A fake external extension: INVOKE and SHUTDOWN; at SHUTDOWN it "writes its queue" (the
invocations it saw) to OUT_FILE, taking 50 ms, then asks for the next event, as lambda-extension
does."""
import http.client, json, os, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, int(port))
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r, r.read()
r, _ = call("POST", "/2020-01-01/extension/register",
            json.dumps({"events": ["INVOKE", "SHUTDOWN"]}),
            {"Lambda-Extension-Name": os.path.basename(__file__)})
ext_id = r.getheader("Lambda-Extension-Identifier")
queued = 0
while True:
    r, body = call("GET", "/2020-01-01/extension/event/next",
                   headers={"Lambda-Extension-Identifier": ext_id})
    if r.status != 200:
        break
    event = json.loads(body)
    if event["eventType"] == "INVOKE":
        queued += 1
    else:
        time.sleep(0.05)
        with open(os.environ["OUT_FILE"], "a") as f:
            f.write(f"{event['shutdownReason']} {queued}\n")
        queued = 0
'''


class EndToEndTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.bin = Path(self.dir.name) / "bootstrap"
        self.bin.write_text(FAKE_BOOTSTRAP.replace("PYTHON", sys.executable))
        self.bin.chmod(self.bin.stat().st_mode | stat.S_IXUSR)

    def tearDown(self):
        self.dir.cleanup()

    def run_main(self, *extra):
        out = Path(self.dir.name) / "out.json"
        with open(out, "w") as f, open(os.devnull, "w") as null:
            old_out, old_err = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = f, null
            try:
                code = cold_start.main([str(self.bin), "--runs", "2", "--warm", "2", "--json",
                                        "--env", "EXTRA=1", *extra])
            finally:
                sys.stdout, sys.stderr = old_out, old_err
        return code, json.loads(out.read_text())

    def test_without_extension(self):
        code, doc = self.run_main()
        self.assertEqual(code, 0)
        self.assertTrue(doc["ok"])
        self.assertEqual(doc["status"], 200)
        self.assertEqual(doc["body"], "/v1/recommend/for-you")
        s = doc["summary"]
        self.assertNotIn("ext_register_ms", s)
        self.assertEqual(s["cold_start_ms"]["n"], 2)
        self.assertEqual(s["warm_answer_ms"]["n"], 4)
        self.assertEqual(s["warm_billed_ms"]["n"], 4)
        self.assertIsNotNone(s["warm_billed_ms"]["p99"])
        self.assertNotIn("shutdown_ms", s)
        self.assertLessEqual(s["init_ms"]["p50"], s["cold_start_ms"]["p50"])
        self.assertGreater(s["peak_rss_mib"]["p50"], 0)

    def test_with_extension(self):
        code, doc = self.run_main("--env", "WITH_EXTENSION=1")
        self.assertEqual(code, 0, doc)
        self.assertEqual(doc["summary"]["ext_register_ms"]["n"], 2)
        ext = doc["per_run"][0]["extensions"][0]
        self.assertEqual(ext["name"], "fake")
        self.assertEqual(ext["invocations_seen"], 3)
        self.assertEqual(doc["per_run"][0]["warnings"], [])
        for r in doc["per_run"]:
            self.assertGreaterEqual(r["cold_done_ms"], r["cold_start_ms"])
            self.assertEqual(len(r["warm_billed_ms"]), 2)

    def test_external_extension_gets_shutdown_and_lines_are_counted(self):
        ext = Path(self.dir.name) / "served-ext"
        ext.write_text(FAKE_EXTERNAL.replace("PYTHON", sys.executable))
        ext.chmod(ext.stat().st_mode | stat.S_IXUSR)
        out_file = Path(self.dir.name) / "flushed.txt"
        code, doc = self.run_main("--extension", str(ext), "--env", f"OUT_FILE={out_file}",
                                  "--count-lines", '"nectar_served": true')
        self.assertEqual(code, 0, doc)
        for r in doc["per_run"]:
            self.assertEqual(r["warnings"], [])
            self.assertEqual(r["extensions"][0]["name"], "served-ext")
            self.assertEqual(r["extensions"][0]["invocations_seen"], 3)
            # billed waits for the external INVOKE extension too; SHUTDOWN took its 50 ms
            self.assertEqual(len(r["warm_billed_ms"]), 2)
            self.assertGreaterEqual(r["shutdown_ms"], 50)
            self.assertEqual(r["counted_lines"], 3)
        # each environment's SHUTDOWN reached the extension after all 3 invocations
        self.assertEqual(out_file.read_text().splitlines(), ["spindown 3", "spindown 3"])
        self.assertEqual(doc["summary"]["counted_lines"]["sum"], 6)

    def test_unexpected_status_fails(self):
        code, doc = self.run_main("--env", "STATUS=503")
        self.assertEqual(code, 1)
        self.assertFalse(doc["ok"])
        self.assertIn("answered 503", doc["per_run"][0]["problems"][0])


if __name__ == "__main__":
    unittest.main()
