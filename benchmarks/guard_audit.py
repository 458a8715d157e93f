"""`audit` of a large account: GetPolicy from a bounded pool against one at a time.

moto's server (real HTTP, in this process's threads) holds N policies; a delay
proxy in front of it adds ``--delay`` (default 25 ms, a regional round trip) to
every request. ``guard.audit.list_policies`` + ``fetch_policies`` read every
policy through the proxy with the audit's own client settings (adaptive retry),
at several concurrencies, in one run. Printed: wall time per concurrency, and the
ratio of the default (``DEFAULT_CONCURRENCY``) to the 16-thread floor (target
<= 1.5) and to one at a time.

    python benchmarks/guard_audit.py                 # 5,000 policies
    python benchmarks/guard_audit.py --short         # 400 policies
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
for key, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}.items():
    os.environ[key] = value  # never a real account

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from iot_remote_access.guard.audit import (  # noqa: E402
    DEFAULT_CONCURRENCY,
    fetch_policies,
    list_policies,
)

POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
}


def delay_proxy(upstream_port: int, delay: float) -> ThreadingHTTPServer:
    """Forward every request to moto after ``delay`` seconds (one thread per request)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            time.sleep(delay)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
            upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
            answer = upstream.getresponse()
            payload = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            upstream.close()

        do_GET = do_POST = do_PUT = do_DELETE = _forward

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    Thread(target=server.serve_forever, daemon=True).start()
    return server


def client(port: int, concurrency: int) -> Any:
    config = Config(
        retries={"mode": "adaptive", "max_attempts": 10}, max_pool_connections=concurrency + 1
    )
    return boto3.client(
        "iot", region_name="eu-west-1", endpoint_url=f"http://127.0.0.1:{port}", config=config
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policies", type=int, default=5_000)
    parser.add_argument("--delay", type=float, default=0.025)
    parser.add_argument("--sequential", action="store_true", help="also time one at a time")
    parser.add_argument("--short", action="store_true", help="400 policies, with one at a time")
    args = parser.parse_args()
    if args.short:
        args.policies, args.sequential = 400, True
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto server's request log
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    moto_port = moto._server.server_port  # type: ignore[union-attr]
    proxy = delay_proxy(moto_port, args.delay)
    setup = client(moto_port, 16)
    document = json.dumps(POLICY)
    for index in range(args.policies):
        setup.create_policy(policyName=f"policy-{index:05d}", policyDocument=document)
    timings: dict[int, float] = {}
    levels = sorted({4, 8, DEFAULT_CONCURRENCY, 16, 32} | ({1} if args.sequential else set()))
    reference: list[str] | None = None
    for concurrency in levels:
        iot = client(proxy.server_address[1], concurrency)
        started = time.perf_counter()
        summaries = list_policies(iot)
        sources = fetch_policies(iot, summaries, concurrency=concurrency)
        timings[concurrency] = time.perf_counter() - started
        names = [s.name for s in sources]
        reference = reference or names
        assert names == reference and len(names) == args.policies  # same order every time
        print(
            f"  concurrency {concurrency:3}: {timings[concurrency]:7.2f} s  "
            f"({args.policies / timings[concurrency]:7.0f} policies/s)"
        )
    floor = timings[16]
    print(
        f"{args.policies:,} policies, {1000 * args.delay:.0f} ms per request: default "
        f"({DEFAULT_CONCURRENCY}) / 16-thread floor = {timings[DEFAULT_CONCURRENCY] / floor:.2f} "
        "(target <= 1.5)"
        + (
            f"; one at a time / default = {timings[1] / timings[DEFAULT_CONCURRENCY]:.1f}x"
            if 1 in timings
            else ""
        )
    )
    proxy.shutdown()
    moto.stop()


if __name__ == "__main__":
    main()
