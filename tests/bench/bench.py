"""The np6-sync benchmark (issue 5): request counts, push throughput, local work, start-up.

    .venv/bin/python tests/bench/bench.py [--rows 1000000,10000000] [--latency-ms 20] [--skip-10m]

Generates seeded data once into bench-data/ (reused when present), starts the NP6
emulator in this process, runs ``np6-sync`` and the baselines (tests/bench/baseline_*.py)
as subprocesses, and prints one table with a PASS/FAIL per target. Wall seconds are
whole subprocesses (process start and imports included); peak RSS is each subprocess's
own ru_maxrss (os.wait4 on its pid). Not a pytest module on purpose.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sync.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
BENCH = Path(__file__).resolve().parent
DATA = ROOT / "bench-data"
BIN = ROOT / ".venv" / "bin"
NP6 = str(BIN / "np6-sync")
PY = str(BIN / "python")
API_KEY = "bench-key"
SEED = 20260605
CHUNK_ROWS = 1_000_000  # generation chunk: row i is the same in every file that holds it
CHUNK_SIZE = 50  # targets per PUT (the jobs' sync.chunk_size)
PUSH_KEYS = 100_000
GIB = 1024**3

FIRST = [
    "Jean", "Marie", "Pierre", "Sophie", "Luc", "Camille", "Nicolas", "Julie", "Thomas",
    "Léa", "Hugo", "Chloé", "Louis", "Emma", "Gabriel", "Inès", "Arthur", "Manon", "Jules",
    "Sarah", "Paul", "Zoé", "Lucas", "Anaïs", "Théo", "Clara", "Maxime", "Alice", "Antoine",
    "Laura", "Raphaël", "Eva", "Adam", "Lina", "Noah", "Jade", "Ethan", "Louise", "Nathan",
    "Juliette",
]  # fmt: skip
LAST = [
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
    "Vincent", "Fournier", "Morel", "Girard", "André", "Lefèvre", "Mercier", "Dupont",
    "Lambert", "Bonnet", "François", "Martinez",
]  # fmt: skip
DOMAINS = [
    "gmail.com", "orange.fr", "free.fr", "hotmail.fr", "yahoo.fr", "sfr.fr", "laposte.net",
    "outlook.com", "wanadoo.fr", "example.org",
]  # fmt: skip
COUNTRIES = ["FRA", "FRA", "FRA", "FRA", "BEL", "ESP", "ITA", "CHE"]
SCHEMA = pa.schema(
    [("email", pa.string()), ("customer_id", pa.string()), ("phone", pa.string()),
     ("country", pa.string())]
)  # fmt: skip


# --- data ------------------------------------------------------------------------------------


def _pick(words: list[str], index: np.ndarray) -> pa.Array:
    return pa.array(words).take(pa.array(index % len(words)))


def generate_rows(start: int, stop: int) -> pa.Table:
    """Rows ``start..stop-1``: a pure function of the row range and SEED (vectorized).

    The key part of a row (names, number, domain, customer id) derives from a key index;
    0.1% of rows repeat the previous row's key with other case/spaces (duplicates after
    the transforms), 0.01% have an empty e-mail (rejected rows).
    """
    rng = np.random.default_rng([SEED, start])
    n = stop - start
    row = np.arange(start, stop, dtype=np.int64)
    key = np.where((rng.random(n) < 0.001) & (row > 0), row - 1, row)
    mixed = (key * 2654435761) % (1 << 32)
    first = _pick(FIRST, mixed >> 3)
    last = _pick(LAST, mixed >> 11)
    domain = _pick(DOMAINS, mixed >> 19)
    number = pc.cast(pa.array(key % 9973), pa.string())
    email = pc.binary_join_element_wise(first, ".", last, number, "@", domain, "")
    email = pc.utf8_lower(email)
    style = rng.random(n)
    email = pc.if_else(pa.array(style < 0.3), pc.utf8_capitalize(email), email)
    email = pc.if_else(pa.array(style > 0.95), pc.utf8_upper(email), email)
    pad = rng.random(n)
    email = pc.if_else(pa.array(pad < 0.03), pc.binary_join_element_wise(" ", email, ""), email)
    email = pc.if_else(pa.array(pad > 0.97), pc.binary_join_element_wise(email, "  ", ""), email)
    email = pc.if_else(pa.array(rng.random(n) < 0.0001), pa.scalar(""), email)
    customer_id = pc.utf8_lpad(pc.cast(pa.array(key + 1), pa.string()), width=10, padding="0")
    mobile = pc.cast(pa.array(rng.integers(6, 8, n)), pa.string())
    digits = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10**8, n)), pa.string()), 8, "0")
    phone = pc.binary_join_element_wise("+33", mobile, digits, "")
    country = _pick(COUNTRIES, rng.integers(0, len(COUNTRIES), n))
    return pa.Table.from_arrays([email, customer_id, phone, country], schema=SCHEMA)


def _removed(table: pa.Table, start: int) -> pa.Array:
    """The reload variant drops every 200th row (0.5%)."""
    return pa.array((np.arange(start, start + table.num_rows) % 200) != 7)


def data_files(rows: int) -> dict[str, Path]:
    tag = _tag(rows)
    return {
        f"{variant}.{fmt}": DATA / f"src-{tag}-{variant}.{fmt}"
        for variant in ("base", "inc", "reload")
        for fmt in ("csv", "parquet")
    }


def ensure_data(rows: int) -> dict[str, Path]:
    """base (rows), inc (base + 1% more rows at the end), reload (base minus 0.5%)."""
    files = data_files(rows)
    if all(p.exists() for p in files.values()):
        return files
    print(f"generating {rows:,} rows (+1%) into {DATA} ...", flush=True)
    started = time.perf_counter()
    temps = {name: p.with_name(p.name + ".tmp") for name, p in files.items()}
    writers: dict[str, Any] = {}
    for name, temp in temps.items():
        if name.endswith(".csv"):
            writers[name] = pacsv.CSVWriter(str(temp), SCHEMA)
        else:
            writers[name] = pq.ParquetWriter(str(temp), SCHEMA, compression="snappy")
    total = rows + rows // 100
    for start in range(0, total, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, total)
        chunk = generate_rows(start, stop)
        in_base = chunk.slice(0, max(0, min(stop, rows) - start))
        for fmt in ("csv", "parquet"):
            writers[f"inc.{fmt}"].write_table(chunk)
            if in_base.num_rows:
                writers[f"base.{fmt}"].write_table(in_base)
                writers[f"reload.{fmt}"].write_table(in_base.filter(_removed(in_base, start)))
    for writer in writers.values():
        writer.close()
    for name, temp in temps.items():
        temp.replace(files[name])
    print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
    return files


def ensure_shuffled(source: Path, tag: str, turn: int) -> Path:
    """The base CSV's rows in another order (one per ``turn``): a new file, the same keys."""
    path = DATA / f"src-{tag}-shuffled-{turn}.csv"
    if not path.exists():
        table = pacsv.read_csv(source, convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in SCHEMA.names}))  # fmt: skip
        order = np.random.default_rng(SEED + turn).permutation(table.num_rows)
        temp = path.with_name(path.name + ".tmp")
        pacsv.write_csv(table.take(pa.array(order)), str(temp))
        temp.replace(path)
    return path


def ensure_small(name: str, start: int, rows: int) -> Path:
    path = DATA / f"src-{name}.csv"
    if not path.exists():
        temp = path.with_name(path.name + ".tmp")
        pacsv.write_csv(generate_rows(start, start + rows), str(temp))
        temp.replace(path)
    return path


def _tag(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}m"
    return f"{rows // 1000}k" if rows % 1000 == 0 else str(rows)


# --- jobs and settings -----------------------------------------------------------------------


def write_job(name: str, variant: str, segment: int, source: Path, state_dir: str) -> Path:
    path = DATA / f"job-{name}-{variant}.yaml"
    path.write_text(
        f"""name: {name}
segment_id: {segment}
source:
  path: {source}
targets:
  identify_by: unicity
  columns: [email, customer_id]
  separator: "|"
  transforms:
    email: [strip, lower]
state:
  path: {DATA / state_dir / (name + ".parquet")}
sync:
  mode: auto
  chunk_size: {CHUNK_SIZE}
  max_removed_ratio: 0.1
"""
        # The reload variant is a reload: 0.5% of a segment leaving one by one would be
        # cheaper in unicity mode now (look-ups), and a reload is what target 1 measures.
        + ("  removals: reload\n" if variant == "reload" else "")
    )
    return path


def state_file(name: str, state_dir: str) -> Path:
    return DATA / state_dir / f"{name}.parquet"


def write_config(name: str, concurrency: int, rate: float) -> tuple[Path, str]:
    path = DATA / f"cfg-{name}.yaml"
    text = f"{{concurrency: {concurrency}, max_requests_per_second: {rate:g}}}"
    path.write_text(text + "\n")
    return path, text


# --- running and measuring -------------------------------------------------------------------


@dataclass
class Proc:
    wall: float
    rss_mib: float
    code: int
    stdout: str
    stderr: str


TIME = "/usr/bin/time"
# A child's ru_maxrss counts the memory of the process it was forked from (Linux records
# the old address space's high-water mark at exec), and this process holds the emulator's
# segments: so the peak RSS is taken by a small middle process, GNU time when present.
LAUNCHER = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def run_process(cmd: list[str], env: dict[str, str] | None = None) -> Proc:
    """Run to completion: wall time of the whole process and its own peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:  # fmt: skip
        if os.access(TIME, os.X_OK):
            wrapped = [TIME, "-f", "%M", "-o", rss.name, *cmd]
        else:
            wrapped = ["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else PY,
                       "-S", "-c", LAUNCHER, rss.name, *cmd]  # fmt: skip
        started = time.perf_counter()
        process = subprocess.Popen(wrapped, stdout=out, stderr=err, env=env, cwd=ROOT)
        code = process.wait()
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        text = rss.read().strip().splitlines()
        # GNU time writes "Command exited with non-zero status N" before the figure.
        kib = float(text[-1]) if text and text[-1].strip().isdigit() else float("nan")
        return Proc(wall, kib / 1024, code, out.read().decode(), err.read().decode())


@dataclass
class Row:
    scenario: str
    rows: int
    wall: float
    rss_mib: float
    phases: dict[str, float] = field(default_factory=dict)
    put: int | None = None
    delete: int | None = None
    other: int = 0
    retries: int = 0
    report: dict[str, Any] = field(default_factory=dict)
    ratio: str = ""
    target: str = ""
    verdict: str = ""
    runs: list[float] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.fails = 0

    def env(self, emulator: Emulator, pandas: bool = False) -> dict[str, str]:
        """Every process as users install np6-sync: `pip install .` brings no pandas, but
        the dev venv has it (test extra), and pyarrow imports it (~150 ms) on its first
        conversion of Python objects when it can. The bare pyarrow scripts are measured so
        too: hidden from both, pandas would otherwise weigh on the ratios' both sides."""
        env = {**os.environ, "NP6_API_KEY": API_KEY, "NP6_BASE_URL": emulator.url}
        if pandas:
            return env
        shim = DATA / "no-pandas" / "pandas"
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "__init__.py").write_text('raise ImportError("pandas hidden by the benchmark")\n')
        return {**env, "PYTHONPATH": str(shim.parent)}

    def np6(
        self,
        emulator: Emulator,
        job: Path,
        config: Path,
        label: str,
        rows: int,
        *,
        command: str = "run",
        expect: tuple[int, ...] = (0,),
        old: bool = False,
        unseal: bool = False,
    ) -> Row:
        report_path = DATA / "reports" / f"{label.replace(' ', '_')}.json"
        report_path.parent.mkdir(exist_ok=True)
        report_path.unlink(missing_ok=True)
        emulator.reset_calls()
        cmd = [NP6, command, str(job), "--config", str(config), "--report-json", str(report_path)]
        env = self.env(emulator)
        if old:  # the starting commit's package, from its worktree, in the same venv
            for state in DATA.glob("state-*/*.parquet"):  # it reads format 1 only
                if b'"version": 1' not in pq.read_schema(state).metadata.get(b"np6sync", b""):
                    state.write_bytes(_version_1(state))
            first = f"import sys; sys.path.insert(0, {str(self.args.old)!r}); "
            cmd = [PY, "-c", first + "from sync.cli import main; sys.exit(main())", *cmd[1:]]
        if unseal:  # a full read: no seal may vouch for the file
            for seal in DATA.glob("state-*/*.seal.json"):
                seal.unlink()
        proc = run_process(cmd, env)
        calls = emulator.calls
        emulator.reset_calls()
        if proc.code not in expect:
            raise SystemExit(
                f"{label}: np6-sync exited {proc.code}\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        report = json.loads(report_path.read_text())["jobs"][0]
        methods = [c.method for c in calls]
        row = Row(
            scenario=label,
            rows=report["rows_read"],
            wall=proc.wall,
            rss_mib=proc.rss_mib,
            phases=report.get("phase_s", {}),
            put=methods.count("PUT"),
            delete=methods.count("DELETE"),
            other=len(methods) - methods.count("PUT") - methods.count("DELETE"),
            retries=report["requests"]["retries"],
            report=report,
            runs=[proc.wall],
        )
        print(
            f"  {label}: {proc.wall:.2f} s, {proc.rss_mib:.0f} MiB, {report['status']}, "
            f"added {report['added']:,} removed {report['removed']:,}, "
            f"PUT {row.put:,} DELETE {row.delete}, phases {row.phases}",
            flush=True,
        )
        return row

    def add(self, row: Row, ok: bool | None = None, target: str = "", ratio: str = "") -> Row:
        row.target, row.ratio = target, ratio
        if ok is not None:
            row.verdict = "PASS" if ok else "FAIL"
            self.fails += not ok
        self.rows.append(row)
        return row

    # --- target 1 helpers

    def check_increment(self, row: Row) -> None:
        want = math.ceil(row.report["added"] / CHUNK_SIZE)
        ok = (
            row.put == want
            and row.delete == 0
            and row.other <= 1  # the preflight's one look at the segment, before the first PUT
            and row.retries == 0
            and row.report["action"] == "append"
        )
        self.add(row, ok, f"T1 PUT=={want}, the preflight's GET, nothing else")

    def check_no_change(self, row: Row, extra: str = "", ok_extra: bool = True) -> None:
        calls = (row.put or 0) + (row.delete or 0) + row.other
        ok = calls == 0 and row.report["status"] == "no_changes" and ok_extra
        self.add(row, ok, "T1 0 requests" + extra)

    def check_rss(self, row: Row, ok: bool | None = None, target: str = "") -> None:
        under = row.rss_mib * 1024**2 < 2 * GIB
        if row.rows >= 9_000_000:  # the 10M sources (the reload variant has 9.95M rows)
            target = (target + "; " if target else "") + "T3 RSS<2GiB"
            ok = under if ok is None else (ok and under)
        self.add(row, ok, target)

    # --- scenarios

    def startup(self, emulator: Emulator) -> None:
        small = ensure_small("small", 90_000_000, 1000)
        job = write_job("bench-small", "validate", 9100, small, "state-small")
        for label, cmd, env in (
            ("np6-sync --help", [NP6, "--help"], self.env(emulator)),
            ("np6-sync validate (1k rows)", [NP6, "validate", str(job)], self.env(emulator)),
            (
                "  same, with the test extra's pandas",
                [NP6, "validate", str(job)],
                self.env(emulator, pandas=True),
            ),
        ):
            runs = []
            for _ in range(5):
                proc = run_process(cmd, env)
                if proc.code != 0:
                    raise SystemExit(f"{label} exited {proc.code}: {proc.stderr}")
                runs.append(proc.wall)
            row = Row(label, 1000 if "validate" in label else 0, statistics.median(runs),
                      proc.rss_mib, runs=runs)  # fmt: skip
            print(f"  {label}: median {row.wall:.3f} s of {[round(r, 3) for r in runs]}")
            if "pandas" in label:
                self.add(row, None, "(dev venv: pyarrow imports pandas)")
            else:  # as users install it: `pip install .` brings no pandas
                self.add(row, row.wall < 0.5, "T4 median of 5 < 0.5 s")

    def push_throughput(self, latency_s: float) -> None:
        args = self.args
        source = ensure_small("push100k", 50_000_000, PUSH_KEYS)
        config, text = write_config("push", args.push_concurrency, args.push_rate)
        self.notes.append(f"push settings: {text}, emulator latency {latency_s * 1000:g} ms")
        with Emulator(API_KEY, latency_s=latency_s) as emulator:
            print(f"push throughput: {PUSH_KEYS:,} keys at {latency_s * 1000:g} ms, {text}")
            rows = []
            for attempt in range(args.repeat):
                shutil.rmtree(DATA / "state-push", ignore_errors=True)
                emulator.set_members(9001, [])
                job = write_job("bench-push", "first", 9001, source, "state-push")
                rows.append(self.np6(emulator, job, config, f"push100k #{attempt + 1}", PUSH_KEYS))
            row = min(rows, key=lambda r: abs(r.wall - statistics.median(r.wall for r in rows)))
            row.runs = [r.wall for r in rows]
            row.wall = statistics.median(row.runs)
            row.scenario = f"push 100k new keys ({args.latency_ms:g} ms)"
            members = len(emulator.members(9001))
            emulator.set_members(9002, [])
            emulator.reset_calls()
            base = run_process(
                [PY, str(BENCH / "baseline_push.py"), emulator.url, "9002", str(source)],
                self.env(emulator),
            )
            calls = emulator.calls
            emulator.reset_calls()
            if base.code != 0:
                raise SystemExit(f"baseline_push failed: {base.stderr}")
            print(f"  baseline sequential push: {base.wall:.2f} s, {base.stdout.strip()}")
        puts = sum(c.method == "PUT" for c in calls)
        ratio = base.wall / row.wall
        ok = ratio >= 7 and members == row.report["keys"]
        self.add(row, ok, "T2 <= 1/7 of sequential", f"1/{ratio:.1f}")
        self.add(Row("  baseline: sequential push", PUSH_KEYS, base.wall, base.rss_mib,
                     put=puts, delete=0))  # fmt: skip

    def parallel_jobs(self) -> None:
        """Target 3: 20 small jobs at 100 ms a call, one after another, then 4 at a time,
        in one process each; the emulator's arrival times checked against the one limit."""
        config, text = write_config("parallel", 8, 50)
        self.notes.append(f"parallel: 20 jobs x 500 rows, emulator latency 100 ms, {text}")
        paths = [write_job(f"bench-par{n}", "par", 9200 + n,
                           ensure_small(f"par{n}", 60_000_000 + n * 10_000, 500), "state-par")
                 for n in range(20)]  # fmt: skip
        walls: dict[str, Row] = {}
        with Emulator(API_KEY, latency_s=0.1) as emulator:
            print("20 small jobs at 100 ms:")
            for label, extra in (("one after another", []), ("--parallel 4", ["--parallel", "4"])):
                runs = []
                for _ in range(self.args.repeat):
                    shutil.rmtree(DATA / "state-par", ignore_errors=True)
                    for n in range(20):
                        emulator.set_members(9200 + n, [])
                    emulator.reset_calls()
                    cmd = [NP6, "run", *map(str, paths), "--config", str(config), *extra]
                    proc = run_process(cmd, self.env(emulator))
                    starts = sorted(c.at for c in emulator.calls)
                    busiest = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
                    full = all(len(emulator.members(9200 + n)) > 490 for n in range(20))
                    if proc.code != 0 or not full:
                        raise SystemExit(f"parallel bench: exit {proc.code}\n{proc.stderr[-2000:]}")
                    print(f"  {label}: {proc.wall:.2f} s, {len(starts)} PUTs, busiest second "
                          f"{busiest} requests", flush=True)  # fmt: skip
                    runs.append(Row(f"20 jobs, {label}", 10_000, proc.wall, proc.rss_mib,
                                    put=len(starts), delete=0, retries=busiest))  # fmt: skip
                walls[label] = _median_row(runs)
        seq, par = walls["one after another"], walls["--parallel 4"]
        ratio = seq.wall / par.wall
        busiest = max(r.retries for r in (seq, par))
        self.add(par, ratio > 1 and busiest <= 50, f"T3 faster; busiest second {busiest} <= 50",
                 f"1/{ratio:.1f}")  # fmt: skip
        self.add(seq)

    def size(self, rows: int, emulator: Emulator, config: Path) -> None:
        args = self.args
        files = ensure_data(rows)
        tag = _tag(rows)
        segment = 10_000 + rows // 1000
        big = rows >= 10_000_000
        name = {fmt: f"bench-{tag}-{fmt}" for fmt in ("csv", "parquet")}
        sdir = {fmt: f"state-{tag}-{fmt}" for fmt in ("csv", "parquet")}
        jobs = {
            (fmt, variant): write_job(
                name[fmt], variant, segment, files[f"{variant}.{fmt}"], sdir[fmt]
            )
            for fmt in ("csv", "parquet")
            for variant in ("base", "inc", "reload")
        }
        for fmt in ("csv", "parquet"):
            shutil.rmtree(DATA / sdir[fmt], ignore_errors=True)
        emulator.set_members(segment, [])
        print(f"{rows:,} rows (segment {segment}):", flush=True)

        if big and args.seed_10m == "direct":
            self.seed_direct(jobs["csv", "base"], emulator, segment, tag)
        else:
            self.first_load(emulator, jobs, config, tag, rows, segment, big)
        self.after_first_load(emulator, jobs, config, tag, rows, segment, big, files, name, sdir)

    def against_baseline(
        self, emulator: Emulator, job: Path, config: Path, label: str, rows: int, source: Path,
        state: Path, repeat: int, exports: list[Path] | None = None,
    ) -> tuple[list[Row], list[Proc]]:  # fmt: skip
        """A no-change run and the bare pyarrow script, in turns, ``repeat`` times. Without
        ``exports``, the run reads the file in full (its seal deleted); with them, each turn
        copies the next export onto ``source`` first: a new file at the job's path, as a
        daily export is, which its seal does not vouch for."""
        runs, base_runs = [], []
        for turn in range(repeat):
            if exports:
                shutil.copyfile(exports[turn % len(exports)], source)
            runs.append(self.np6(emulator, job, config, label, rows, unseal=not exports))
            script = [PY, str(BENCH / "baseline_pyarrow.py"), str(source), str(state)]
            proc = run_process(script, self.env(emulator))
            if proc.code != 0:
                raise SystemExit(f"baseline_pyarrow failed: {proc.stderr}")
            print(f"  baseline pyarrow no-change: {proc.wall:.2f} s, {proc.rss_mib:.0f} MiB, "
                  f"{proc.stdout.strip()}")  # fmt: skip
            base_runs.append(proc)
        return runs, base_runs

    def sealed(
        self, emulator: Emulator, job: Path, config: Path, tag: str, rows: int, baseline: float,
        repeat: int,
    ) -> None:  # fmt: skip
        """Target 2: the very file of the last run, answered from the state's seal."""
        self.np6(emulator, job, config, f"{tag} seal written", rows)  # the full read before sealed
        runs = [self.np6(emulator, job, config, f"{tag} csv no change, same file (seal)", rows)
                for _ in range(repeat)]  # fmt: skip
        row = _median_row(runs)
        ratio = row.wall / baseline
        quick = all("check" in r.phases and "read" not in r.phases for r in runs)
        ok = quick and (ratio <= 0.3 or rows != 1_000_000)
        self.check_no_change(row, "; T2 <= 0.3x pyarrow, file not read", ok)
        row.ratio = f"{ratio:.2f}x"

    def seed_direct(self, job: Path, emulator: Emulator, segment: int, tag: str) -> None:
        """The state a first load would leave, written in-process (no push)."""
        from sync.config import load_job
        from sync.job.source import load_keys
        from sync.state.local import StateStore

        started = time.perf_counter()
        loaded = load_job(job)
        keys = load_keys(loaded).keys
        StateStore(loaded.state_path, loaded.segment_id, loaded.targets.definition()).save(keys)
        emulator.set_members(segment, keys.to_pylist())
        self.notes.append(
            f"{tag}: state seeded in-process (sync.job.source.load_keys + StateStore.save, "
            f"{time.perf_counter() - started:.1f} s), no first-load push"
        )

    def first_load(
        self, emulator: Emulator, jobs: dict[tuple[str, str], Path], config: Path, tag: str,
        rows: int, segment: int, big: bool,
    ) -> None:  # fmt: skip
        """CSV, a real push: it also seeds the state the other scenarios start from."""
        first = self.np6(emulator, jobs["csv", "base"], config, f"{tag} csv first load", rows)
        members = len(emulator.members(segment))
        want = math.ceil(first.report["keys"] / CHUNK_SIZE)
        ok = first.put == want and first.delete == 0 and members == first.report["keys"]
        first.scenario = f"{tag} csv first load"
        self.check_rss(first, ok, f"PUT=={want}, segment=={first.report['keys']:,} keys")
        if big:
            self.notes.append(
                f"{tag}: the state for the no-change runs was made by a real first load against "
                f"the 0 ms emulator: {first.wall:.1f} s for {first.put:,} PUTs"
            )

    def after_first_load(
        self, emulator: Emulator, jobs: dict[tuple[str, str], Path], config: Path, tag: str,
        rows: int, segment: int, big: bool, files: dict[str, Path], name: dict[str, str],
        sdir: dict[str, str],
    ) -> None:  # fmt: skip
        args = self.args
        repeat = args.repeat_10m if big else args.repeat
        if big:
            self.small_container(emulator, jobs, config, tag, rows, segment, name, sdir)
            emulator.set_members(segment, [])  # free the emulator's memory
            return

        # No change, CSV, against the pyarrow baseline (both medians of `repeat`, taken in
        # turns: a process runs slower right after a large one, whichever it is).
        state = state_file(name["csv"], sdir["csv"])
        runs, base_runs = self.against_baseline(
            emulator, jobs["csv", "base"], config, f"{tag} csv no change, full read", rows,
            files["base.csv"], state, repeat,
        )  # fmt: skip
        row = _median_row(runs)
        baseline = statistics.median(p.wall for p in base_runs)
        ratio = row.wall / baseline
        target, ok_extra = "", True
        if rows == 1_000_000:
            target, ok_extra = "; T3 <= 2x pyarrow", ratio <= 2
        if big:
            target, ok_extra = "; T3 < 20 s", row.wall < 20
        calls = sum((r.put or 0) + (r.delete or 0) + r.other for r in runs)
        row.put, row.delete, row.other = 0, 0, calls
        row.report["status"] = (
            "no_changes" if all(r.report["status"] == "no_changes" for r in runs) else "?"
        )
        if big:
            ok_extra = ok_extra and row.rss_mib * 1024**2 < 2 * GIB
            target += "; T3 RSS<2GiB"
        self.check_no_change(row, target, ok_extra)
        row.ratio = f"{ratio:.2f}x"
        base_rss = max(p.rss_mib for p in base_runs)
        self.add(Row("  baseline: pyarrow no-change", rows, baseline, base_rss,
                     runs=[p.wall for p in base_runs]))  # fmt: skip
        if args.old:
            old = [self.np6(emulator, jobs["csv", "base"], config, f"  old: {tag} csv no change",
                            rows, old=True) for _ in range(repeat)]  # fmt: skip
            self.add(_median_row(old), None, "today's code (T1: no slower)",
                     f"{_median_row(old).wall / baseline:.2f}x")  # fmt: skip
        self.sealed(emulator, jobs["csv", "base"], config, tag, rows, baseline, repeat)
        if rows <= 1_000_000:
            # Today's export of the same list, then tomorrow's: other orders, other bytes.
            exports = [ensure_shuffled(files["base.csv"], tag, turn) for turn in (1, 2)]
            shuffled = DATA / f"src-{tag}-export.csv"
            shutil.copyfile(exports[1], shuffled)
            job = write_job(name["csv"], "shuffled", segment, shuffled, sdir["csv"])
            self.np6(emulator, job, config, f"{tag} csv export of the job's own", rows)
            runs, base_runs = self.against_baseline(
                emulator, job, config, f"{tag} csv same keys, another order", rows, shuffled,
                state, repeat, exports,
            )  # fmt: skip
            printed = all("state_read" not in r.phases and "read" in r.phases for r in runs)
            row = _median_row(runs)
            baseline = statistics.median(p.wall for p in base_runs)
            ratio = row.wall / baseline
            target = "; T2 <= 1.0x pyarrow (its own turns), file read, state's keys not"
            self.check_no_change(row, target, ratio <= 1.0 and printed)
            row.ratio = f"{ratio:.2f}x"
            walls, rss = [p.wall for p in base_runs], max(p.rss_mib for p in base_runs)
            self.add(Row("  baseline: pyarrow, another order", rows, baseline, rss, runs=walls))

        # Parquet: the same keys, so the CSV job's state file is its state too.
        state = state_file(name["parquet"], sdir["parquet"])
        state.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(state_file(name["csv"], sdir["csv"]), state)
        runs = [self.np6(emulator, jobs["parquet", "base"], config, f"{tag} parquet no change",
                         rows, unseal=True) for _ in range(repeat)]  # fmt: skip
        row = _median_row(runs)
        calls = sum((r.put or 0) + (r.delete or 0) + r.other for r in runs)
        row.put, row.delete, row.other = 0, 0, calls
        target, ok_extra = "", True
        if big:
            target, ok_extra = (
                "; T3 < 20 s; T3 RSS<2GiB",
                (row.wall < 20 and row.rss_mib * 1024**2 < 2 * GIB),
            )
        self.check_no_change(row, target, ok_extra)

        # 1% increment, both formats.
        # Each increment starts from a segment without the 1%: NP6 (the emulator) must add
        # what it is sent, or the run stops at its first 1,000 keys (sync.min_accepted_ratio).
        members = emulator.members(segment)
        for fmt in ("csv", "parquet"):
            state = state_file(name[fmt], sdir[fmt])
            before = state.read_bytes() if args.old else b""
            emulator.set_members(segment, members)
            row = self.np6(emulator, jobs[fmt, "inc"], config, f"{tag} {fmt} +1% increment", rows)
            self.check_increment(row)
            if args.old:  # from the same state and segment
                after = state.read_bytes()
                state.write_bytes(before)
                emulator.set_members(segment, members)
                self.add(self.np6(emulator, jobs[fmt, "inc"], config,
                                  f"  old: {tag} {fmt} +1% increment", rows, old=True))  # fmt: skip
                state.write_bytes(after)
            if big:
                under = row.rss_mib * 1024**2 < 2 * GIB
                row.target += "; T3 RSS<2GiB"
                if not under and row.verdict == "PASS":
                    row.verdict, self.fails = "FAIL", self.fails + 1

        # Reload (0.5% of the base rows gone, after the increment: 1.5% of the segment leaves).
        if big and not args.real_reload_10m:
            row = self.np6(emulator, jobs["csv", "reload"], config, f"{tag} csv reload (plan)",
                           rows, command="plan")  # fmt: skip
            row.put = row.report["planned_requests"]["put"]
            row.delete = row.report["planned_requests"]["delete"]
            row.scenario += " *"
            self.notes.append(
                f"{tag} reload: `np6-sync plan` (dry run: local work only; PUT/DELETE are the "
                "planned requests). --real-reload-10m pushes it for real."
            )
            self.check_rss(row, row.report["action"] == "reload")
            if args.old:
                self.add(self.np6(emulator, jobs["csv", "reload"], config,
                                  f"  old: {tag} csv reload (plan)", rows, command="plan",
                                  old=True))  # fmt: skip
        else:
            row = self.np6(emulator, jobs["csv", "reload"], config, f"{tag} csv reload", rows)
            want = math.ceil(row.report["keys"] / CHUNK_SIZE)
            members = len(emulator.members(segment))
            ok = (
                row.report["action"] == "reload"
                and row.put == want
                and row.delete == 1
                and members == row.report["keys"]
            )
            self.check_rss(row, ok, f"DELETE 1 + PUT=={want}")
        emulator.set_members(segment, [])  # free the emulator's memory

    def small_container(
        self, emulator: Emulator, jobs: dict[tuple[str, str], Path], config: Path, tag: str,
        rows: int, segment: int, name: dict[str, str], sdir: dict[str, str],
    ) -> None:  # fmt: skip
        """Target 1 (issue 14): ten million rows under 1 GiB, no slower than the old code.

        Each scenario starts from the same state and segment; the new and the old code run
        in turn (so that a busy machine slows both alike), medians of --repeat-10m."""
        args = self.args
        members = emulator.members(segment)
        csv_state = state_file(name["csv"], sdir["csv"])
        seeded = csv_state.read_bytes()  # np6() turns it to format 1 before an old run
        scenarios = (("base", "run", "no change"), ("inc", "run", "+1% increment"),
                     ("reload", "plan", "reload (plan)"))  # fmt: skip
        for fmt in ("csv", "parquet"):
            state = state_file(name[fmt], sdir[fmt])
            state.parent.mkdir(parents=True, exist_ok=True)
            for variant, command, what in scenarios:
                new_runs, old_runs = [], []
                for _ in range(args.repeat_10m):
                    for old in (False, True) if args.old else (False,):
                        state.write_bytes(seeded)
                        if variant == "inc":
                            emulator.set_members(segment, members)
                        label = ("  old: " if old else "") + f"{tag} {fmt} {what}"
                        runs = old_runs if old else new_runs
                        runs.append(self.np6(emulator, jobs[fmt, variant], config, label, rows,
                                             command=command, old=old, unseal=True))  # fmt: skip
                self.memory_row(_median_row(new_runs), _median_row(old_runs) if old_runs else None)
        emulator.set_members(segment, members)

    def memory_row(self, new: Row, old: Row | None) -> None:
        report = new.report
        right = {
            "no change": report["status"] == "no_changes" and not (new.put or new.delete),
            "+1% increment": report["action"] == "append"
            and new.put == math.ceil(report["added"] / CHUNK_SIZE),
            "reload (plan)": report["action"] == "reload" and report["status"] == "planned",
        }
        ok = next(v for k, v in right.items() if k in new.scenario)
        ok = ok and new.rss_mib * 1024**2 < GIB
        target = "T1 RSS<1GiB"
        if old:
            ratio = new.wall / old.wall
            ok, target = ok and ratio <= 1.0, target + "; no slower than old"
            self.add(new, ok, target, f"{ratio:.2f}x")
            self.add(old, None, "the old code, same runs")
        else:
            self.add(new, ok, target)

    # --- output

    def print_table(self) -> None:
        phases = ("read", "keys", "state_read", "diff", "state_write", "push")
        heads = [
            "scenario",
            "rows",
            *phases,
            "wall s",
            "RSS MiB",
            "PUT",
            "DEL",
            "ratio",
            "",
            "target",
        ]
        lines = []
        for r in self.rows:
            ph = [f"{r.phases[p]:.2f}" if p in r.phases else "" for p in phases]
            req = lambda v: "" if v is None else f"{v:,}"  # noqa: E731
            lines.append([
                r.scenario, f"{r.rows:,}" if r.rows else "", *ph, f"{r.wall:.2f}",
                f"{r.rss_mib:.0f}", req(r.put), req(r.delete), r.ratio, r.verdict, r.target,
            ])  # fmt: skip
        left = {0, len(heads) - 3, len(heads) - 2, len(heads) - 1}
        print_table(heads, lines, left)
        for note in self.notes:
            print(f"* {note}")
        print(
            "wall = whole subprocess (start + imports); phases from the report's phase_s; "
            "ratio: no change = np6-sync / pyarrow baseline, push = np6-sync / sequential."
        )
        verdicts = [r.verdict for r in self.rows if r.verdict]
        print(f"{verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL")


def _version_1(state: Path) -> bytes:
    """The same state in format 1 (no learned contact ids), which the old code reads."""
    table = pq.read_table(state).drop_columns(["target_ids"])
    meta = json.loads(table.schema.metadata[b"np6sync"])
    table = table.replace_schema_metadata({b"np6sync": json.dumps({**meta, "version": 1})})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _median_row(runs: list[Row]) -> Row:
    walls = [r.wall for r in runs]
    middle = statistics.median(walls)
    row = min(runs, key=lambda r: abs(r.wall - middle))
    row.runs, row.wall = walls, middle
    row.rss_mib = max(r.rss_mib for r in runs)
    if len(runs) > 1:
        row.scenario += f" (median of {len(runs)})"
    return row


def print_table(heads: list[str], lines: list[list[str]], left: set[int]) -> None:
    """A blank line, the table (numbers right-aligned), and a blank line."""
    widths = [max(len(str(x)) for x in col) for col in zip(heads, *lines, strict=True)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print()
    print(fmt(heads))
    print(fmt(["-" * w for w in widths]))
    for line in lines:
        print(fmt(line))
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,10000000", help="source sizes, comma-separated")
    parser.add_argument(
        "--latency-ms", type=float, default=20.0, help="emulator latency, push test"
    )
    parser.add_argument("--skip-10m", action="store_true", help="leave out sizes of 10M and more")
    parser.add_argument("--skip-push", action="store_true", help="leave out the push throughput")
    parser.add_argument("--push-concurrency", type=int, default=16)
    parser.add_argument("--push-rate", type=float, default=1000, help="max_requests_per_second")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed comparison (median)")
    parser.add_argument("--repeat-10m", type=int, default=1, help="no-change runs at 10M")
    parser.add_argument("--real-reload-10m", action="store_true", help="push the 10M reload")
    parser.add_argument(
        "--old",
        type=Path,
        help="a worktree of the code to compare with (run from it, in this venv, side by side)",
    )
    parser.add_argument("--skip-parallel", action="store_true", help="leave out run --parallel")
    parser.add_argument(
        "--seed-10m",
        choices=("run", "direct"),
        default="run",
        help="10M state: a real first load against the 0 ms emulator (run, ~5 min on 2 cores), "
        "or written in-process without a push (direct)",
    )
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()]
    if args.skip_10m:
        sizes = [s for s in sizes if s < 10_000_000]
    DATA.mkdir(exist_ok=True)
    bench = Bench(args)
    started = time.perf_counter()
    print(f"np6-sync benchmark: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
          f"pyarrow {pa.__version__}")  # fmt: skip
    fast_config, fast_text = write_config("fast", 16, 100_000)
    with Emulator(API_KEY, latency_s=0.0) as emulator:
        print("start-up:")
        bench.startup(emulator)
        if sizes:
            bench.notes.append(f"size scenarios: emulator latency 0 ms, settings {fast_text}")
        for rows in sizes:
            bench.size(rows, emulator, fast_config)
    if not args.skip_push:
        bench.push_throughput(args.latency_ms / 1000)
    if not args.skip_parallel:
        bench.parallel_jobs()
    bench.print_table()
    print(f"benchmark took {time.perf_counter() - started:.0f} s")
    return 1 if bench.fails else 0


if __name__ == "__main__":
    raise SystemExit(main())
