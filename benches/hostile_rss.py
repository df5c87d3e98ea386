#!/usr/bin/env python3
"""RSS of an eventd process while hostile clients send large bodies.

N clients at once each announce SIZE bytes to PATH and send them as fast
as the server reads; RSS is sampled every 20 ms (peak), then 5 s after the
last client finished (idle). Usage:

    benches/hostile_rss.py --pid PID --port PORT [--path /soap/paint]
        [--clients 50] [--size 33554432] [--key KEY] [--rounds 3]

With --key the requests carry `Authorization: Bearer KEY` (large bodies
from an authenticated client, e.g. to /v1/events).
"""
import argparse
import socket
import threading
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def client(port, path, size, key, results):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n"
    )
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    status = "?"
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall((head + "\r\n").encode())
        chunk = b"<" + b"a" * 65534 + b">"
        sent = 0
        try:
            while sent < size:
                n = min(len(chunk), size - sent)
                s.sendall(chunk[:n])
                sent += n
        except OSError:
            pass  # the server answered and closed without reading it all
        data = s.recv(200)
        status = data.split(b" ")[1].decode() if data else "closed"
        s.close()
    except OSError as e:
        status = type(e).__name__
    results.append(status)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/soap/paint")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--size", type=int, default=32 * 1024 * 1024)
    ap.add_argument("--key")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    print(f"start RSS {rss_kb(a.pid) / 1024:.0f} MB")
    for r in range(a.rounds):
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kb(a.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        results = []
        t0 = time.time()
        threads = [
            threading.Thread(target=client, args=(a.port, a.path, a.size, a.key, results))
            for _ in range(a.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.time() - t0
        done.set()
        sampler.join()
        time.sleep(5)
        statuses = {s: results.count(s) for s in set(results)}
        print(
            f"round {r + 1}: {a.clients} x {a.size} B to {a.path} in {took:.1f} s, "
            f"statuses {statuses}, peak RSS {peak[0] / 1024:.0f} MB, "
            f"idle 5 s after {rss_kb(a.pid) / 1024:.0f} MB"
        )


if __name__ == "__main__":
    main()
