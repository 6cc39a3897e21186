"""The load generator of the API benchmark, run in its own process so that
it never shares a CPU-bound interpreter with the server it measures.

    python loadgen.py SPEC.json   ->   prints {"rps", "p50", "p95", "errors", "ids"}

SPEC: {"url", "op": create|get|list|update, "token", "count", "concurrency",
"ids", "style": loom|baseline}. Requests go over `concurrency` keep-alive
connections; every answer must have the expected status.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import time

import httpx

STAGES = ("qualification", "needs_analysis", "proposal", "negotiation", "won", "lost")


def request_for(spec: dict, i: int, rng: random.Random) -> tuple[str, str, dict | None, int]:
    base = "/api/v1/opportunity" if spec["style"] == "loom" else "/opportunity"
    op = spec["op"]
    if op == "create":
        body = {"name": f"Deal {i} {rng.random():.6f}", "amount": round(rng.uniform(0, 100000), 2),
                "stage": rng.choice(STAGES), "close_date": f"2030-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}
        return "POST", base, body, 201
    if op == "get":
        return "GET", f"{base}/{spec['ids'][i % len(spec['ids'])]}", None, 200
    if op == "list":
        if spec["style"] == "loom":
            return "GET", f"{base}?limit=50&sort=-amount&filter=stage == 'proposal'", None, 200
        return "GET", f"{base}?limit=50&stage=proposal", None, 200
    if op == "update":
        return "PATCH", f"{base}/{spec['ids'][i % len(spec['ids'])]}", {"amount": round(rng.uniform(0, 100000), 2)}, 200
    raise ValueError(op)


async def main(spec: dict) -> dict:
    headers = {"Authorization": f"Bearer {spec['token']}"} if spec.get("token") else {}
    limits = httpx.Limits(max_connections=spec["concurrency"], max_keepalive_connections=spec["concurrency"])
    latencies: list[float] = []
    ids: list[str] = []
    errors: list[str] = []
    counter = iter(range(spec["count"]))
    async with httpx.AsyncClient(base_url=spec["url"], headers=headers, limits=limits, timeout=60) as client:
        async def worker(seed: int):
            rng = random.Random(seed)
            for i in counter:
                method, path, body, expected = request_for(spec, i, rng)
                start = time.perf_counter()
                response = await client.request(method, path, json=body)
                latencies.append(time.perf_counter() - start)
                if response.status_code != expected:
                    errors.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
                elif spec["op"] == "create":
                    ids.append(response.json()["id"])

        started = time.perf_counter()
        await asyncio.gather(*[worker(n) for n in range(spec["concurrency"])])
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": statistics.median(latencies),
            "p95": latencies[max(0, int(len(latencies) * 0.95) - 1)], "errors": errors[:5], "error_count": len(errors),
            "ids": ids}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    print(json.dumps(asyncio.run(main(spec))))
