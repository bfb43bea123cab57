"""The Python API against the command line on an unchanged file (issue O: within 1.5x).

    .venv/bin/python tests/bench/bench_api.py [--rows 1000000] [--turns 5]

Writes a CSV of ``--rows`` rows (tests/bench/bench.py's generator) into a scratch folder,
loads it once into the emulator with the CLI, then takes turns: `np6-sync run JOB` and a
fresh Python process calling `sync.run(JOB, settings=...)`, each under /usr/bin/time
(peak RSS); the API's time is taken around the call, the CLI's is the whole process.
Prints the medians and the ratios, with PASS/FAIL against 1.5x. Not a pytest module.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import generate_rows

from sync.emulator import Emulator

KEY = "bench-key"
SEGMENT = 1234
API = """
import json, sys, time
import sync
settings = json.loads(sys.argv[2])
started = time.monotonic()
report = sync.run(sys.argv[1], api_key=sys.argv[3], settings=settings)
took = time.monotonic() - started
print(json.dumps({"took": took, "route": report.jobs[0].route, "code": report.exit_code}))
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MiB, stdout."""
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "RSS %M", *cmd], env=env, capture_output=True, text=True
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed: {done.stderr[-2000:]}")
    rss = [line for line in done.stderr.splitlines() if line.startswith("RSS ")][-1]
    return took, int(rss.split()[1]) // 1024, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="np6-bench-api-"))
    pacsv.write_csv(generate_rows(0, args.rows), folder / "list.csv")
    job = folder / "job.yaml"
    job.write_text(
        "name: bench\nsegment_id: 1234\nsource: {path: list.csv}\n"
        "targets: {columns: [email, customer_id], transforms: {email: [strip, lower]}}\n"
        "sync: {max_rejected_ratio: 1.0}\n"
    )
    with Emulator(KEY, segments=[SEGMENT]) as emulator:
        settings = {"base_url": emulator.url, "concurrency": 16, "max_requests_per_second": 1e6}
        config = folder / "np6.yaml"
        config.write_text(json.dumps(settings))
        env = {**os.environ, "NP6_API_KEY": KEY}
        cli = [sys.executable, "-m", "sync", "run", str(job), "--config", str(config)]
        api = [sys.executable, "-c", API, str(job), json.dumps(settings), KEY]
        timed(cli, env)  # the first load, and the seal
        times: dict[str, list[float]] = {"cli": [], "api": []}
        rss: dict[str, list[int]] = {"cli": [], "api": []}
        for _ in range(args.turns):
            took, peak, _ = timed(cli, env)
            times["cli"].append(took)
            rss["cli"].append(peak)
            _, peak, out = timed(api, env)
            answer = json.loads(out.splitlines()[-1])
            assert answer["code"] == 0 and answer["route"] == "sealed", answer
            times["api"].append(answer["took"])
            rss["api"].append(peak)
    cli_s, api_s = statistics.median(times["cli"]), statistics.median(times["api"])
    cli_m, api_m = statistics.median(rss["cli"]), statistics.median(rss["api"])
    print(f"{args.rows:,} rows, unchanged, {args.turns} turns (medians)")
    print(f"  CLI process : {cli_s:.3f} s, peak RSS {cli_m} MiB")
    print(f"  API call    : {api_s:.3f} s, peak RSS {api_m} MiB (the whole process)")
    ok_t, ok_m = api_s <= 1.5 * cli_s, api_m <= 1.5 * cli_m
    print(f"  time   {api_s / cli_s:.2f}x  {'PASS' if ok_t else 'FAIL'} (target <= 1.5x)")
    print(f"  memory {api_m / cli_m:.2f}x  {'PASS' if ok_m else 'FAIL'} (target <= 1.5x)")
    return 0 if ok_t and ok_m else 1


if __name__ == "__main__":
    raise SystemExit(main())
