#!/usr/bin/env python3
"""Autobahn conformance: the Autobahn TestSuite's client-to-server cases ("fuzzingclient"
mode, run by kosoku from PyPI) against the tickwire binary's real frame reader,
control-frame and close path.

The cases need a server that echoes text and binary messages, which the protocol's `/ws`
forbids (binary closes with 1003, text must be a command), so the engine is started with
the test-only `--echo-endpoint` and the cases target `/echo`: the same session, reader,
limits, pongs and close handshake as `/ws`, with messages sent back instead of parsed.

Excluded: 9.* (performance: message sizes up to 16 MiB against a 64 KiB limit, and
timing), 12.* and 13.* (permessage-deflate, which the engine does not offer). Every other
case must end OK or NON-STRICT, or INFORMATIONAL where the case itself says so (Autobahn
sets that verdict only on cases whose outcome the RFC leaves open); anything else fails
this script with exit 1 and a line per failing case. Bounded in time; stops the server.

Usage: tests/autobahn.py PATH/TO/tickwire [REPORT_DIR]
"""
import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import kosoku

EXCLUDED = ["9.*", "12.*", "13.*"]
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}
# The whole run takes a few seconds; this bounds a hang.
RUN_TIMEOUT_S = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"autobahn: server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise SystemExit("autobahn: server did not become healthy")


def verdict(result) -> tuple[bool, str, str]:
    behavior = result.behavior.value
    close = result.behavior_close.value
    return behavior in PASSING and close in PASSING_CLOSE, behavior, close


async def run(url: str) -> tuple[list, bool]:
    """Every case's result, and whether kosoku called the run failed."""
    try:
        results = await asyncio.wait_for(
            kosoku.run_fuzzingclient(url, None, EXCLUDED, concurrency=4), RUN_TIMEOUT_S
        )
        return list(results), False
    except kosoku.FailureError as failure:
        print(f"autobahn: kosoku: {str(failure).splitlines()[0]}", file=sys.stderr)
        return list(failure.results), True


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = sys.argv[1]
    port = free_port()
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--workers", "1", "--no-pin",
         "--sim-rate", "10", "--echo-endpoint"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_healthy(port, proc)
        started = time.monotonic()
        results, kosoku_failed = asyncio.run(run(f"ws://127.0.0.1:{port}/echo"))
        took = time.monotonic() - started
        # Our rule (above) on every result; kosoku's own verdict must agree.
        bad = [r for r in results if not verdict(r)[0]]
        counts: dict[str, int] = {}
        for r in results:
            _, behavior, close = verdict(r)
            key = behavior if close in ("OK", behavior) else f"{behavior}/{close}"
            counts[key] = counts.get(key, 0) + 1
        for r in sorted(bad, key=lambda r: r.case_index):
            _, behavior, close = verdict(r)
            print(f"autobahn: FAILED {r.case_id}: behavior={behavior} close={close}: "
                  f"{r.description}", file=sys.stderr)
        if proc.poll() is not None:
            print(f"autobahn: the server died during the run (exit {proc.returncode})",
                  file=sys.stderr)
            return 1
        if kosoku_failed and not bad:
            print("autobahn: kosoku failed the run but every verdict passes our rule",
                  file=sys.stderr)
            return 1
        if bad or not results:
            print(f"autobahn: {len(bad)} case(s) failed (excluded {', '.join(EXCLUDED)}), "
                  f"{took:.1f} s")
            return 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        print(f"autobahn: all {len(results)} cases passed ({summary}; excluded "
              f"{', '.join(EXCLUDED)}) in {took:.1f} s")
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if "panicked" in (err or ""):
            print("autobahn: the server panicked:\n" + err, file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
