"""Serves its folder on 9000; MODE=oom eats memory until killed, MODE=crash exits 3."""

import http.server
import os
import sys

mode = os.environ.get("MODE", "serve")
print(f"mode {mode}, secret env {os.environ.get('API_TOKEN', '-')}", flush=True)
if mode == "oom":
    hog = []
    while True:
        hog.append(b"\x01" * (64 * 1024 * 1024))
if mode == "crash":
    sys.exit(3)
http.server.ThreadingHTTPServer(("0.0.0.0", 9000), http.server.SimpleHTTPRequestHandler).serve_forever()
