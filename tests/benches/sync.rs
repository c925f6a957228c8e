//! Sync benchmark (the n8n/sync issue's figures), compared with a baseline measured in the same
//! run: the raw time to fetch and parse the same pages from the same emulator.
//!
//! `cargo bench -p workflowops-tests --bench sync [-- WORKFLOWS NODES EXECUTIONS]`
//! (defaults 10000 20 100000). The emulator runs as its own process, so the resident memory
//! reported is WorkflowOps' (API + worker + client) alone.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;
use workflowops_tests::TestApp;
use workflowops_tests::engine_support::TestWorker;

/// CPU seconds (user + system) used so far by this process, the emulator and all PostgreSQL
/// server processes: where a phase's time went.
#[derive(Clone, Copy, Default)]
struct Cpu {
    ours: f64,
    emulator: f64,
    postgres: f64,
}

fn cpu_of(stat: &str) -> Option<(String, f64)> {
    // comm is in parentheses and may hold spaces; utime and stime are fields 14 and 15.
    let (head, tail) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1.to_owned();
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some((comm, ticks / 100.0))
}

fn cpu_now(emulator: u32) -> Cpu {
    let mut cpu = Cpu::default();
    let read = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    cpu.ours = read("self").and_then(|s| cpu_of(&s)).map_or(0.0, |c| c.1);
    cpu.emulator = read(&emulator.to_string())
        .and_then(|s| cpu_of(&s))
        .map_or(0.0, |c| c.1);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Some((comm, seconds)) = read(pid).and_then(|s| cpu_of(&s))
            && comm == "postgres"
        {
            cpu.postgres += seconds;
        }
    }
    cpu
}

fn cpu_line(what: &str, wall: f64, before: Cpu, after: Cpu) -> String {
    let (o, e, p) = (
        after.ours - before.ours,
        after.emulator - before.emulator,
        after.postgres - before.postgres,
    );
    format!(
        "cpu       {what}: {wall:.2} s wall; CPU s: WorkflowOps {o:.2}, emulator {e:.2}, PostgreSQL {p:.2} (cores busy {:.2} of {})",
        (o + e + p) / wall,
        std::thread::available_parallelism().map_or(1, usize::from)
    )
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn raw_walk(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    extra: &str,
) -> (usize, f64) {
    let started = Instant::now();
    let mut cursor: Option<String> = None;
    let mut items = 0;
    loop {
        let mut url = format!("{base}/api/v1/{path}?limit=250{extra}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http
            .get(&url)
            .header("X-N8N-API-KEY", key)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        items += page["data"].as_array().map_or(0, Vec::len);
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    (items, started.elapsed().as_secs_f64())
}

async fn run_seconds(app: &TestApp, run: Uuid) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let (status, seconds): (String, Option<f64>) = sqlx::query_as(
            "select status, extract(epoch from finished_at - started_at)::float8 from engine_runs where id = $1",
        )
        .bind(run)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        match status.as_str() {
            "succeeded" => return seconds.unwrap_or(0.0),
            "failed" | "cancelled" => panic!("the sync {status}"),
            _ if Instant::now() > deadline => panic!("the sync did not finish"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    workflowops_tests::bench::check_build();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let workflows = args.first().copied().unwrap_or(10_000);
    let nodes = args.get(1).copied().unwrap_or(20);
    let executions = args.get(2).copied().unwrap_or(100_000);
    println!("sync bench: {workflows} workflows x {nodes} nodes, {executions} executions");
    let _ = rustls::crypto::ring::default_provider().install_default();

    let mut emulator = tokio::process::Command::new(env!("CARGO_BIN_EXE_n8n-emulator"))
        .args([
            "--workflows",
            &workflows.to_string(),
            "--nodes",
            &nodes.to_string(),
            "--executions",
            &executions.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting the emulator: {e}"));
    let mut lines = BufReader::new(
        emulator
            .stdout
            .take()
            .unwrap_or_else(|| panic!("no stdout")),
    )
    .lines();
    let line = lines
        .next_line()
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the emulator said nothing"));
    let mut words = line.split_whitespace().skip(2);
    let (base, key) = (
        words.next().unwrap_or_default().to_owned(),
        words.nth(1).unwrap_or_default().to_owned(),
    );

    let emulator_pid = emulator.id().unwrap_or_default();
    let http = reqwest::Client::new();
    let mut cpu = vec![cpu_now(emulator_pid)];
    let (n, raw_wf) = raw_walk(&http, &base, &key, "workflows", "").await;
    assert_eq!(n, workflows);
    cpu.push(cpu_now(emulator_pid));
    let (m, raw_ex) = raw_walk(&http, &base, &key, "executions", "&includeData=true").await;
    assert_eq!(m, executions);
    cpu.push(cpu_now(emulator_pid));
    println!(
        "baseline  raw page fetch + JSON parse: workflows {raw_wf:.2} s, executions {raw_ex:.2} s"
    );

    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let tenant = app.tenant("bench").await;
    let env = app
        .post(
            "/api/v1/environments",
            &tenant.admin,
            &json!({"name": "bench", "provider": "n8n", "base_url": base, "api_key": key, "class": "production", "rate_limit": 10000.0}),
        )
        .await;
    assert_eq!(env.status, 201, "{}", env.body);
    let env_id = env.body["id"].as_str().unwrap_or_default().to_owned();
    let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);

    let before = rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let sampling = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut seconds = Vec::new();
    let mut sync_cpu = Vec::new();
    for scope in ["workflows", "executions"] {
        let before = cpu_now(emulator_pid);
        let res = app
            .post(
                &format!("/api/v1/environments/{env_id}/sync"),
                &tenant.admin,
                &json!({"scope": scope}),
            )
            .await;
        let run: Uuid = res.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}", res.body));
        seconds.push(run_seconds(&app, run).await);
        sync_cpu.push((before, cpu_now(emulator_pid)));
        let (inside, between): (Option<f64>, Option<f64>) = sqlx::query_as(
            "select avg(extract(epoch from completed_at - started_at))::float8 * 1000, \
                    avg(extract(epoch from started_at - prev))::float8 * 1000 \
             from (select started_at, completed_at, lag(started_at) over (order by started_at) as prev \
                   from engine_steps where run_id = $1 and name like '%:page:%') s",
        )
        .bind(run)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        println!(
            "          {scope}: per page {:.1} ms from a step's start to its checkpoint (wait for the prefetched page, store, commit), a page every {:.1} ms (steps overlap their predecessor's commit)",
            inside.unwrap_or(0.0),
            between.unwrap_or(0.0)
        );
    }
    sampling.abort();
    let peak = peak.load(Ordering::Relaxed);
    for (i, what) in ["workflows", "executions"].into_iter().enumerate() {
        let raw = [raw_wf, raw_ex][i];
        println!(
            "{}",
            cpu_line(&format!("raw {what}"), raw, cpu[i], cpu[i + 1])
        );
        println!(
            "{}",
            cpu_line(
                &format!("sync {what}"),
                seconds[i],
                sync_cpu[i].0,
                sync_cpu[i].1
            )
        );
    }
    println!(
        "sync      workflows {:.2} s (target <= 15 s), ratio to raw fetch {:.2} (target <= 2.0)",
        seconds[0],
        seconds[0] / raw_wf
    );
    println!(
        "sync      executions {:.2} s, ratio to raw fetch {:.2} (target <= 2.0)",
        seconds[1],
        seconds[1] / raw_ex
    );
    println!(
        "memory    WorkflowOps process (API + worker + bench client) RSS before {} MiB, peak during the syncs {} MiB (target <= 200 MiB)",
        before / 1024,
        peak / 1024
    );

    // Catalog search over what was synced.
    let mut latencies = Vec::new();
    for i in 0..300 {
        let term = match i % 3 {
            0 => format!("{:05}", (i * 37) % workflows.max(1)),
            1 => format!("workflow {}", (i * 7) % 100),
            _ => "seeded".to_owned(),
        };
        let started = Instant::now();
        let res = app
            .get(
                &format!(
                    "/api/v1/workflows?search={}&limit=50",
                    term.replace(' ', "%20")
                ),
                &tenant.admin,
            )
            .await;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(res.status, 200);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "search    {} workflows, 300 searches over HTTP: p50 {:.1} ms, p95 {:.1} ms (target p95 <= 50 ms)",
        workflows,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95)
    );
    // The web UI's workflow list page over the same catalog (server time: request to last byte).
    let mut page_ms = Vec::new();
    let ui = reqwest::Client::new();
    for i in 0..300 {
        let query = match i % 3 {
            0 => String::new(),
            1 => format!("?search={:05}", (i * 37) % workflows.max(1)),
            _ => "?search=seeded".to_owned(),
        };
        let started = Instant::now();
        let res = ui
            .get(app.url(&format!("/workflows{query}")))
            .header("cookie", format!("wfo_session={}", tenant.admin.token))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status(), 200);
        let _ = res.bytes().await;
        page_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    page_ms.sort_by(f64::total_cmp);
    println!(
        "ui        workflow list page, {} workflows, 300 loads: p50 {:.1} ms, p95 {:.1} ms (target p95 <= 100 ms)",
        workflows,
        percentile(&page_ms, 0.5),
        percentile(&page_ms, 0.95)
    );

    // Backups of what was synced, to a fresh local bare repository; `git clone` of the result
    // is the baseline.
    let repo = std::env::temp_dir().join(format!("wfo-bench-repo-{}", Uuid::now_v7().simple()));
    git2::Repository::init_bare(&repo).unwrap_or_else(|e| panic!("{e}"));
    let put = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{env_id}/git"),
            Some(&tenant.admin.token),
            Some(&json!({"url": repo.display().to_string(), "auth": "none"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let backup = |label: &'static str| {
        let (app, tenant, env_id) = (&app, &tenant, env_id.clone());
        async move {
            let res = app
                .request(
                    reqwest::Method::POST,
                    &format!("/api/v1/environments/{env_id}/backup"),
                    Some(&tenant.admin.token),
                    None,
                )
                .await;
            let run: Uuid = res.body["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{}", res.body));
            let seconds = run_seconds(app, run).await;
            let out = app
                .get(&format!("/api/v1/runs/{run}"), &tenant.admin)
                .await
                .body["output"]
                .clone();
            println!(
                "backup    {label}: {seconds:.2} s ({} added, {} changed)",
                out["added"], out["changed"]
            );
            seconds
        }
    };
    let full = backup("full, fresh repository").await;
    let clone_dir =
        std::env::temp_dir().join(format!("wfo-bench-clone-{}", Uuid::now_v7().simple()));
    let started = Instant::now();
    let cloned = std::process::Command::new("git")
        .args([
            "clone",
            "-q",
            "--branch",
            "main",
            &repo.display().to_string(),
            &clone_dir.display().to_string(),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let clone_seconds = started.elapsed().as_secs_f64();
    assert!(cloned, "git clone failed");
    println!(
        "baseline  git clone of the backup: {clone_seconds:.2} s; backup / clone {:.1} (target: backup <= 20 s)",
        full / clone_seconds
    );
    // Ten changed workflows: edit them through the emulator's own API, sync, back up.
    let page: Value = http
        .get(format!("{base}/api/v1/workflows?limit=10"))
        .header("X-N8N-API-KEY", &key)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for wf in page["data"].as_array().cloned().unwrap_or_default() {
        let id = wf["id"].as_str().unwrap_or_default();
        let mut body = json!({"name": wf["name"], "nodes": wf["nodes"], "connections": wf["connections"], "settings": {}});
        body["nodes"][1]["parameters"] = json!({"changed": true});
        let res = http
            .put(format!("{base}/api/v1/workflows/{id}"))
            .header("X-N8N-API-KEY", &key)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            res.status().is_success(),
            "{}",
            res.text().await.unwrap_or_default()
        );
    }
    let res = app
        .post(
            &format!("/api/v1/environments/{env_id}/sync"),
            &tenant.admin,
            &json!({"scope": "workflows"}),
        )
        .await;
    let run: Uuid = res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", res.body));
    run_seconds(&app, run).await;
    backup("incremental, 10 changed (target <= 1 s)").await;
    let _ = std::fs::remove_dir_all(&repo);
    let _ = std::fs::remove_dir_all(&clone_dir);

    worker.stop().await;
    drop(emulator.stdin.take());
    let _ = emulator.wait().await;
}
