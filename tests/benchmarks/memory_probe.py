"""The process measured by bench_memory: a Loom app (in-process, SQLite)
that publishes N metadata changes through its API, each followed by reads
that build the new version's tables and models, and prints its resident
memory as JSON. `python memory_probe.py FOLDER N`."""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(folder: str, publishes: int) -> dict:
    from fastapi.testclient import TestClient

    from loomcrm.platform import auth
    from loomcrm.platform.app import create_app, open_database
    from loomcrm.platform.settings import Settings
    from loomcrm.runtime.commands import pack_install

    url = f"sqlite:///{folder}/loom.db"
    settings = Settings(data_dir=folder, database_url=url)
    pack_install(url, HERE / "bundle")
    engine = open_database(settings)
    app = create_app(settings, engine)
    auth.create_user(engine, "bench", "admin", "bench-password-1")
    token = auth.create_token(engine, app.state.loom.secret_key, "bench", "memory")
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    definition = client.get("/api/v1/_meta/objects/opportunity").json()
    warm_at = max(5, publishes // 10)
    warm = peak = 0.0
    started = time.perf_counter()
    for i in range(1, publishes + 1):
        definition["fields"][0]["help"] = f"The deal's name (revision {i})"
        definition["fields"][1]["max"] = 1_000_000 + i
        client.put("/api/v1/_meta/objects/opportunity", json=definition).raise_for_status()
        client.post("/api/v1/_meta/publish").raise_for_status()
        app.state.loom.runtime.invalidate()
        client.post("/api/v1/opportunity", json={"name": f"Deal {i}", "amount": i, "stage": "proposal"}).raise_for_status()
        client.get("/api/v1/opportunity", params={"limit": 5, "sort": "-amount", "filter": "stage == 'proposal'"}).raise_for_status()
        client.get("/openapi.json").raise_for_status()
        if i == warm_at:
            gc.collect()
            warm = rss_mb()
        peak = max(peak, rss_mb())
    gc.collect()
    return {"warm_mb": warm, "after_mb": rss_mb(), "peak_mb": peak, "warm_at": warm_at, "publishes": publishes,
            "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
