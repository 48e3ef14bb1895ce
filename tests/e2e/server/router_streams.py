#!/usr/bin/env python3
"""Streaming chat requests through the router, some of whose clients hang up mid-stream.

usage: router_streams.py BASE_URL TOTAL DISCONNECTS
Opens TOTAL streams at once; the first DISCONNECTS close their socket after the first event, the
others must read to "data: [DONE]". Exits 1 naming what went wrong. Python stdlib only.
"""
import http.client
import json
import sys
import threading
from urllib.parse import urlparse

url = urlparse(sys.argv[1])
total, disconnects = int(sys.argv[2]), int(sys.argv[3])
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Tell me a story."}],
                   "stream": True, "max_tokens": 24, "ignore_eos": True, "temperature": 0})
errors, completed, left = [], [0], [0]
lock = threading.Lock()


def one(i):
    try:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
        events = 0
        while True:
            line = resp.readline()
            if not line:
                raise RuntimeError(f"stream ended after {events} events without [DONE]")
            if line.startswith(b"data: "):
                events += 1
                if line.strip() == b"data: [DONE]":
                    resp.read()  # to the end of the response (the last chunk): not a hang-up
                    with lock:
                        completed[0] += 1
                    break
                if b'"error"' in line:
                    raise RuntimeError(f"error event: {line[:200]!r}")
                if i < disconnects:  # hang up mid-stream
                    conn.sock.close()
                    with lock:
                        left[0] += 1
                    return
        conn.close()
    except Exception as e:  # noqa: BLE001 - report any failure of a client
        with lock:
            errors.append(f"client {i}: {e}")


threads = [threading.Thread(target=one, args=(i,)) for i in range(total)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    print(f"FAIL: {len(errors)} of {total} clients failed, e.g. {errors[:3]}")
    sys.exit(1)
if completed[0] != total - disconnects or left[0] != disconnects:
    print(f"FAIL: {completed[0]} completed, {left[0]} left; want {total - disconnects} and {disconnects}")
    sys.exit(1)
print(f"{completed[0]} streams completed, {left[0]} clients hung up mid-stream")
