"""Dashboard render times over real HTTP: each page of ``/ui`` against a running API on the generated shop.

Start the API on a deployment with a published generation (``./recomart demo``, then ``./recomart
serve``), then ``.venv/bin/python -m benchmarks.dashboard --requests 30``. The script logs in with the
deployment's generated password, requests each page ``--requests`` times one at a time (the customer
and product pages with a different random user or item each time, ``?random=1``; the search page with
one query, which it sends to the API's ``GET /v1/search``; the experiments page analysing the newest
experiment), and records the app's own time (``Server-Timing: render``, measured around the
dashboard's handler) and the client's wall time per request, and the server time of the first
(warming) request of each page: the Experiments page keeps its analysis per frame content, so only
that first request pays for the statistics. Floor of the same run: the API's ``/v1/_floor`` route (constant JSON).
Target (issue 17): each page under 300 ms server-side.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import httpx

from benchmarks.results_file import run_metadata, write_result
from recomart.config import load_settings
from recomart.dashboard.auth import USER, password

PAGES = {
    "overview": "/ui/overview",
    "customer": "/ui/customer?random=1",
    "product": "/ui/product?random=1",
    "models": "/ui/models",
    "monitoring": "/ui/monitoring",
    "experiments": "/ui/experiments",
    "search": "/ui/search?q=ceramic+mirror",
    "floor": "/v1/_floor",
}
TARGET_MS = 300.0


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def _server_ms(response: httpx.Response) -> float | None:
    """The app's own time of ``response`` (its ``Server-Timing: render;dur=``), None without one."""
    timing = response.headers.get("server-timing", "")
    return float(timing.removeprefix("render;dur=")) if timing.startswith("render;dur=") else None


def measure(base: str, requests: int, state_dir: Path) -> dict:
    """Per page: the server's render time and the client's wall time (p50, p95, max) over ``requests``."""
    results = {}
    with httpx.Client(base_url=base, timeout=10) as client:
        login = client.post("/ui/login", data={"user": USER, "password": password(state_dir)})
        if login.status_code != 303:
            raise RuntimeError(f"login refused ({login.status_code}): is {base} this deployment's API?")
        for name, path in PAGES.items():
            first = _server_ms(client.get(path))  # warm: templates compiled, pool connection open, analysis kept
            server, wall = [], []
            for _ in range(requests):
                began = time.perf_counter()
                response = client.get(path)
                wall.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:200]}"
                if (ms := _server_ms(response)) is not None:
                    server.append(ms)
            results[name] = {
                "server": _summary(server) if server else None,
                "wall": _summary(wall),
                "first_server_ms": first,
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dashboard.json"))
    args = parser.parse_args()
    s = load_settings()
    pages = measure(s.api_url, args.requests, s.state_dir)
    slowest = max(page["server"]["p95_ms"] for name, page in pages.items() if name != "floor")
    result = {
        "benchmark": "dashboard",
        "requests_per_page": args.requests,
        "pages": pages,
        "target_ms": TARGET_MS,
        "slowest_page_p95_server_ms": slowest,
        "target_met": slowest < TARGET_MS,
        **run_metadata(),
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
