#!/usr/bin/env python3
"""PG + worker CPU per 1-step run in the real engine: python3 realcpu.py DB N WORKERS BIN"""
import os, subprocess, sys, time
db, n, workers, binary = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
url = f"postgres://postgres@127.0.0.1:5432/{db}"
TCK = os.sysconf("SC_CLK_TCK")
def psql(sql):
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-Atq", "-c", sql], check=True, capture_output=True, text=True).stdout.strip()
def stat(pid):
    s = open(f"/proc/{pid}/stat").read()
    f = s[s.rindex(")") + 2:].split()
    # fields after comm: state=0 ... utime=11 stime=12 cutime=13 cstime=14
    return f, s[s.index("(") + 1:s.rindex(")")]
def pg_cpu():
    total = 0
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            f, comm = stat(p)
        except Exception: continue
        if comm.startswith("postgres") or comm.startswith("postmaster"):
            total += int(f[11]) + int(f[12])
            if int(f[1]) == 1 or comm.startswith("postmaster") or os.path.exists(f"/proc/{p}/cmdline") and b"-D" in open(f"/proc/{p}/cmdline","rb").read():
                total += int(f[13]) + int(f[14])
    return total / TCK
psql("truncate engine_runs, engine_steps, engine_events cascade")
psql(f"""insert into engine_runs (id, namespace, kind, input, status, max_attempts)
select gen_random_uuid(), 'bench-' || (i % 8), 'diagnostics.steps', '{{"steps":1,"step_ms":0}}', 'queued', 3 from generate_series(1, {n}) i""")
psql("vacuum analyze engine_runs"); psql("checkpoint")
env = dict(os.environ, DATABASE_URL=url, WFO_LOG="warn", WFO_MASTER_KEY=subprocess.run([binary, "keygen"], capture_output=True, text=True).stdout.strip())
c0 = pg_cpu()
procs = [subprocess.Popen([binary, "worker", "--concurrency", "32", "--heartbeat", "1s"], env=env, stdout=subprocess.DEVNULL) for _ in range(workers)]
while True:
    time.sleep(0.2)
    if psql("select count(*) from engine_runs where status <> 'succeeded'") == "0": break
wcpu = sum(int(stat(p.pid)[0][11]) + int(stat(p.pid)[0][12]) for p in procs) / TCK
for p in procs: p.kill(); p.wait()
time.sleep(0.5)
c1 = pg_cpu()
secs = float(psql("select extract(epoch from max(finished_at) - min(started_at)) from engine_runs"))
print(f"{db} n={n} workers={workers}: {n/secs:.0f} runs/s  pg_cpu_us/run={(c1-c0)*1e6/n:.1f}  worker_cpu_us/run={wcpu*1e6/n:.1f}  events={psql('select count(*) from engine_events')}")
