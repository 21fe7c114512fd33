"""Container health check: GET http://127.0.0.1:<port>/healthz, exit 0 on 200 and 1 otherwise.

Used by compose.yaml as ``python /opt/bootyard/healthcheck.py <port>`` (the image has no curl).
"""

import sys
import urllib.request

port = int(sys.argv[1])
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as reply:
        sys.exit(0 if reply.status == 200 else 1)
except Exception as exc:  # any failure is "unhealthy"; say why in `docker inspect`
    print(f"healthz on port {port}: {exc}")
    sys.exit(1)
