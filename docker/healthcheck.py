"""Container health check: exit 0 when the service answers 200 on a path (default /ready), else 1.

    python /opt/vae/healthcheck.py [/ready|/health]

Standard library only (the image has no curl). Asks the loopback address on VAE_PORT, where the server
listens when VAE_HOST is 0.0.0.0 (the image's default).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/ready"
    url = f"http://127.0.0.1:{os.environ.get('VAE_PORT', '8000')}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 (a fixed http URL)
            print(f"{url}: {response.status}")
            return 0
    except urllib.error.HTTPError as e:  # 503 while models load or while stopping
        print(f"{url}: {e.code} {e.reason}")
    except OSError as e:  # not listening yet, or gone
        print(f"{url}: {e}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
