//! Isolation benchmark: how much a function that spins to its CPU limit slows the requests
//! that do not run it.
//!
//! Starts a node in process (its own tokio runtime with `--workers` worker threads, default 2)
//! with two behaviors: `/spin/*` runs a WAT function that loops until the CPU limit (5 ms)
//! stops it, and `*` serves a static file with no function. A probe client asks for the static
//! file, one request at a time over one keep-alive connection, first with the node otherwise
//! idle, then while `--flood` clients (default 8) ask for `/spin/x` as fast as they are
//! answered. It prints the probe's p50/p99 in both phases and their ratio, the probe's
//! failures, the flood's answers by status, and the process's RSS before and after the flood.
//! The bar (issue 9): under the flood the probe keeps p50 ≤ 2 ms, with zero failures; the flood
//! gets 503s; RSS stays flat.
//!
//! Usage: `bench_isolation [--seconds N] [--flood N] [--workers N]`; run it with
//! `RUST_BACKTRACE` unset and nothing else busy (`bench/run.sh` runs it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(about = "Latency of function-less requests while clients flood a spinning function")]
struct Args {
    /// Seconds per phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients asking for the spinning function in the second phase.
    #[arg(long, default_value_t = 8)]
    flood: usize,
    /// The node's tokio worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

/// Loops until the epoch deadline stops it.
const SPIN: &str = r#"(module (memory (export "memory") 1)
  (func (export "viewer-request") (result i32) (loop $l (br $l)) (i32.const 0)))"#;

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("ok.txt"), "ok")?;
    std::fs::write(dir.path().join("spin.wat"), SPIN)?;
    let config: edge_runtime::Config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[origins.bucket]
type = "static"
root = "{root}"

[[behaviors]]
path = "/spin/*"
origin = "bucket"
functions = {{ viewer_request = "spin" }}

[[behaviors]]
path = "*"
origin = "bucket"

[functions.spin]
module = "{root}/spin.wat"
cpu_limit = "5ms"
"#,
        root = dir.path().display()
    )
    .parse()
    .context("the benchmark's config is invalid")?;

    let node_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?;
    let node = node_rt.block_on(edge_runtime::start(config, std::future::pending()))?;
    let addr = node.addr();
    // The clients get a runtime of their own on one thread, so they do not borrow the node's.
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let phase = Duration::from_secs(args.seconds);
    let result = client_rt.block_on(async {
        // Warm up: the function's first (inline) run, and the file in the page cache.
        probe(addr, Duration::from_millis(300)).await?;
        let _ = get(&mut connect(addr).await?, "/spin/x").await;
        let quiet = probe(addr, phase).await?;
        let rss_before = rss_kib();
        let stop = Arc::new(AtomicBool::new(false));
        let flooders: Vec<_> = (0..args.flood)
            .map(|_| tokio::spawn(flood(addr, Arc::clone(&stop))))
            .collect();
        let busy = probe(addr, phase).await?;
        stop.store(true, Ordering::Relaxed);
        let mut statuses = BTreeMap::new();
        for f in flooders {
            for (status, n) in f.await?? {
                *statuses.entry(status).or_insert(0u64) += n;
            }
        }
        let rss_after = rss_kib();
        anyhow::Ok((quiet, busy, statuses, rss_before, rss_after))
    });
    drop(node);
    node_rt.shutdown_timeout(Duration::from_secs(1));
    let (quiet, busy, statuses, rss_before, rss_after) = result?;

    println!(
        "function-less GET while the node is idle:          {}",
        quiet.summary()
    );
    println!(
        "function-less GET while {} clients flood /spin/x:  {}",
        args.flood,
        busy.summary()
    );
    println!(
        "ratio under flood / idle: p50 {:.1}x, p99 {:.1}x",
        busy.percentile(50.0) / quiet.percentile(50.0),
        busy.percentile(99.0) / quiet.percentile(99.0)
    );
    let flood_total: u64 = statuses.values().sum();
    println!(
        "flood answers: {flood_total} in {}s ({})",
        args.seconds,
        statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("RSS: {rss_before} KiB before the flood, {rss_after} KiB after");
    let met = busy.percentile(50.0) <= 2.0 && busy.failures == 0 && quiet.failures == 0;
    println!(
        "bar: function-less p50 ≤ 2 ms under the flood, no failures: {}",
        if met { "MET" } else { "NOT MET" }
    );
    Ok(())
}

/// Latencies (ms) of one probe phase.
struct Probe {
    ms: Vec<f64>,
    failures: usize,
}

impl Probe {
    fn percentile(&self, p: f64) -> f64 {
        if self.ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.ms.len() as f64).ceil() as usize;
        self.ms[rank.clamp(1, self.ms.len()) - 1]
    }

    fn summary(&self) -> String {
        format!(
            "{} requests, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {} failed",
            self.ms.len(),
            self.percentile(50.0),
            self.percentile(99.0),
            self.ms.last().copied().unwrap_or(f64::NAN),
            self.failures
        )
    }
}

/// Asks for `/ok.txt` one request at a time for `phase`.
async fn probe(addr: SocketAddr, phase: Duration) -> Result<Probe> {
    let mut conn = connect(addr).await?;
    let mut ms = Vec::new();
    let mut failures = 0;
    let end = Instant::now() + phase;
    while Instant::now() < end {
        let started = Instant::now();
        match get(&mut conn, "/ok.txt").await {
            Ok((200, body)) if body == b"ok" => ms.push(started.elapsed().as_secs_f64() * 1000.0),
            _ => {
                failures += 1;
                conn = connect(addr).await?;
            }
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(Probe { ms, failures })
}

/// Asks for `/spin/x` until `stop`; counts the answers by status.
async fn flood(addr: SocketAddr, stop: Arc<AtomicBool>) -> Result<BTreeMap<u16, u64>> {
    let mut conn = connect(addr).await?;
    let mut statuses = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        match get(&mut conn, "/spin/x").await {
            Ok((status, _)) => *statuses.entry(status).or_insert(0) += 1,
            Err(_) => {
                *statuses.entry(0).or_insert(0) += 1;
                conn = connect(addr).await?;
            }
        }
    }
    Ok(statuses)
}

async fn connect(addr: SocketAddr) -> Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// One HTTP/1.1 keep-alive GET; the status and body (`Content-Length` framed).
async fn get(conn: &mut BufReader<TcpStream>, path: &str) -> Result<(u16, Vec<u8>)> {
    conn.get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n").as_bytes())
        .await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            bail!("connection closed in the head");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse()?;
            }
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok((status, body))
}

/// The process's resident set, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
