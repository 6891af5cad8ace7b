//! Micro-benchmark: what a viewer-request edge function adds to one request.
//!
//! Loads the `router` example function (`functions/router`) the way the node does
//! (`FunctionEngine::new` + `load`) and times, per iteration and single-threaded, exactly what
//! the node's flow does per request for a viewer-request function
//! (`flow::functions::start_request_event`):
//!
//! 1. build the request the function sees (`RequestView`: a browser-like `GET /css/site.css`
//!    with a dozen typical headers),
//! 2. `wasm::invoke::run` with the `Input` the flow builds, on the calling thread: `HostState`
//!    from the input, a fresh `Store`, instantiate
//!    from the pre-linked module, `_initialize` if exported, the `viewer-request` export with the
//!    inline deadline, drop. (The router never runs long enough to leave the thread.)
//! 3. read the changed request and the chosen origin back.
//!
//! A baseline loop does step 1 and drops the request; the difference of the two at p50 is what
//! the function adds per request (the bar: 15 µs). In the node the request already exists
//! (hyper parsed it), so step 1 is not a cost of the function; it is in both loops only so that
//! they differ by exactly the function's work. That loop runs the router with decision replay
//! off (`replay = false`: the guest runs every time); a second loop runs it as the node does by
//! default, where every request after the first is replayed from the recorded decision
//! (`wasm::replay`; the bar: ≤ 1 µs over the baseline at p50). A third pair of loops sends
//! requests whose inputs never repeat (a new query string each time, which the router reads),
//! with replay on and off, interleaved call by call: replay may cost at most 10 % more there
//! (the bar; the mean of the fastest 99 % of each, since on a shared machine the slowest calls
//! are preemptions by other processes).
//!
//! A breakdown then times the parts of a fresh run separately (`wasm::profile`: host state
//! alone, + `Store::new`, + instantiate, + `_initialize`, + the entry point), to show where the
//! time goes.
//!
//! Usage: `bench_function [ROUTER.wasm] [--iterations N] [--warmup N]`; the module defaults to
//! `target/wasm32-wasip1/wasm/router.wasm` (build it with
//! `cargo build --profile wasm --target wasm32-wasip1 -p router`). Run it pinned
//! (`taskset -c 0`) and with `RUST_BACKTRACE` unset; `bench/run.sh` runs it both with and
//! without `RUST_BACKTRACE=1`.

use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Parser;
use edge_runtime::wasm::invoke::{self, Decision, Input};
use edge_runtime::wasm::profile::{self, Reused, Stage};
use edge_runtime::wasm::replay::Replay;
use edge_runtime::wasm::{Function, FunctionEngine, RequestView};
use edge_runtime::Config;
use edge_sdk::abi::Event;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(about = "Per-request cost of the router viewer-request function, in process")]
struct Args {
    /// The router module.
    #[arg(default_value = "target/wasm32-wasip1/wasm/router.wasm")]
    module: PathBuf,
    /// Timed iterations per loop.
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
    /// Untimed iterations before each loop (fills the instance pool, warms caches).
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
}

/// The request path: a static asset, which the router sends to `bucket` unchanged.
const PATH: &str = "/css/site.css";

/// What a current desktop browser sends for a stylesheet (no `session` cookie, so the router
/// takes its static branch and reads the whole `Cookie` header to find that out).
const HEADERS: &[(&str, &str)] = &[
    ("host", "www.example.com"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"),
    ("accept", "text/css,*/*;q=0.1"),
    ("accept-language", "en-US,en;q=0.9,de;q=0.8"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("referer", "https://www.example.com/products/shoes?color=blue"),
    ("sec-ch-ua", "\"Not/A)Brand\";v=\"8\", \"Chromium\";v=\"126\", \"Google Chrome\";v=\"126\""),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Linux\""),
    ("sec-fetch-dest", "style"),
    ("sec-fetch-mode", "no-cors"),
    ("sec-fetch-site", "same-origin"),
    ("cookie", "_ga=GA1.1.1234567890.1718000000; _gid=GA1.1.987654321.1718000000; theme=dark; consent=analytics%3Dtrue"),
    ("if-none-match", "\"5f3c-1a2b3c4d\""),
];

/// The node's config as far as the function can see it: `origin_set` resolves `app` and
/// `bucket` against it.
fn node_config(module: &Path) -> Result<Config> {
    let module = module
        .to_str()
        .context("the module path is not UTF-8")?
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let text = format!(
        r#"
[origins.bucket]
type = "static"
root = "."

[origins.app]
type = "http"
targets = ["http://127.0.0.1:3000"]

[[behaviors]]
path = "*"
origin = "bucket"
functions = {{ viewer_request = "router" }}

[functions.router]
module = "{module}"
"#
    );
    text.parse()
        .context("the benchmark's node config is invalid")
}

/// Builds the request the function sees. In the node hyper has already parsed it; here it is
/// part of both loops (see the module docs).
fn request(headers: &[(HeaderName, HeaderValue)]) -> RequestView {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        map.append(name.clone(), value.clone());
    }
    RequestView {
        method: Method::GET,
        uri: Uri::from_static(PATH),
        headers: map,
    }
}

/// Nanosecond samples of one loop.
struct Samples {
    name: &'static str,
    ns: Vec<u64>,
}

impl Samples {
    /// Runs `warmup` untimed and `iterations` timed calls of `f`, one sample per call.
    fn measure(name: &'static str, warmup: usize, iterations: usize, mut f: impl FnMut()) -> Self {
        for _ in 0..warmup {
            f();
        }
        let mut ns = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            f();
            ns.push(start.elapsed().as_nanos() as u64);
        }
        ns.sort_unstable();
        Samples { name, ns }
    }

    /// Runs two loops interleaved, call by call (`f(0)`, `f(1)`, `f(0)`, ...), so that a
    /// disturbance on a busy machine hits both alike: one set of samples per loop.
    fn measure_interleaved(
        names: [&'static str; 2],
        warmup: usize,
        iterations: usize,
        mut f: impl FnMut(usize),
    ) -> [Self; 2] {
        for i in 0..warmup * 2 {
            f(i % 2);
        }
        let mut ns = [
            Vec::with_capacity(iterations),
            Vec::with_capacity(iterations),
        ];
        for i in 0..iterations * 2 {
            let start = Instant::now();
            f(i % 2);
            ns[i % 2].push(start.elapsed().as_nanos() as u64);
        }
        let [mut a, mut b] = ns;
        a.sort_unstable();
        b.sort_unstable();
        [
            Samples {
                name: names[0],
                ns: a,
            },
            Samples {
                name: names[1],
                ns: b,
            },
        ]
    }

    /// The mean in µs of the fastest 99 % of the samples: the slowest are preemptions by other
    /// processes, which on a shared machine would decide a plain mean.
    fn trimmed_mean(&self) -> f64 {
        let kept = &self.ns[..(self.ns.len() * 99).div_ceil(100)];
        kept.iter().sum::<u64>() as f64 / kept.len() as f64 / 1000.0
    }

    /// The `p`-th percentile in µs (nearest rank).
    fn percentile(&self, p: f64) -> f64 {
        let rank = ((p / 100.0) * self.ns.len() as f64).ceil() as usize;
        self.ns[rank.clamp(1, self.ns.len()) - 1] as f64 / 1000.0
    }

    fn mean(&self) -> f64 {
        self.ns.iter().sum::<u64>() as f64 / self.ns.len() as f64 / 1000.0
    }

    fn print(&self) {
        println!(
            "  {:<44} p50 {:>7.2} µs   p90 {:>7.2} µs   p99 {:>7.2} µs   mean {:>7.2} µs",
            self.name,
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.mean()
        );
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.iterations > 0, "--iterations must be at least 1");

    let config = Arc::new(node_config(&args.module)?);
    let function_config = config
        .functions
        .iter()
        .find(|f| f.name == "router")
        .expect("the config declares [functions.router]");
    let bytes = std::fs::read(&args.module).with_context(|| {
        format!(
            "cannot read {} (build it with `cargo build --profile wasm --target wasm32-wasip1 -p router`)",
            args.module.display()
        )
    })?;
    // No compile cache: the benchmark compiles once at start and never touches ~/.cache.
    let engine = Arc::new(
        FunctionEngine::new(function_config.limits.memory, None)
            .context("cannot create the function engine")?,
    );
    let load = |replay: bool| -> Result<Arc<Function>> {
        let mut function_config = function_config.clone();
        function_config.limits.replay = replay;
        Ok(Arc::new(
            engine
                .load(&function_config, &bytes)
                .context("cannot load the router module")?,
        ))
    };
    // Two versions of the same module: one never replays, one replays as the node does.
    let fresh = load(false)?;
    let replayed = load(true)?;
    ensure!(
        fresh.handles(Event::ViewerRequest),
        "{} has no viewer-request entry point",
        args.module.display()
    );
    let bucket = config
        .origins
        .iter()
        .position(|o| o.name == "bucket")
        .expect("the config declares origins.bucket");
    let headers: Vec<(HeaderName, HeaderValue)> = HEADERS
        .iter()
        .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect();
    let client_ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

    // One request the way the node runs it; also the correctness check of the setup.
    let input = |request| Input {
        config: Arc::clone(&config),
        request,
        client_ip,
        response: None,
        kv: None,
    };
    let run_once = |function: &Arc<Function>, id: u64| -> Result<(RequestView, Replay)> {
        let (invoked, _) = finish(invoke::run(
            &engine,
            function,
            Event::ViewerRequest,
            id,
            input(request(&headers)),
        ));
        match invoked.result {
            Ok(Decision::Continue) => {}
            Ok(other) => bail!("the router decided {other:?}, expected Continue"),
            Err(error) => bail!("the router failed: {error}"),
        }
        ensure!(
            invoked.origin == Some(bucket),
            "the router chose origin {:?}, expected bucket ({bucket}); logs: {:?}",
            invoked.origin,
            invoked.logs
        );
        Ok((invoked.request, invoked.replay))
    };
    let (changed, _) = run_once(&fresh, 0)?;
    ensure!(
        changed.uri == PATH,
        "the router rewrote {PATH} to {}",
        changed.uri
    );
    // The first run records the decision; the second must replay it, with the same result.
    run_once(&replayed, 0)?;
    let (again, how) = run_once(&replayed, 0)?;
    ensure!(
        how == Replay::Replayed && again.uri == PATH,
        "the second run was not replayed ({how:?}) or changed the request ({})",
        again.uri
    );

    println!(
        "router ({} bytes, {}) for GET {PATH} with {} headers; {} iterations after {} warm-up, single thread; RUST_BACKTRACE={}",
        fresh.size,
        args.module.display(),
        HEADERS.len(),
        args.iterations,
        args.warmup,
        std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "(unset)".into()),
    );

    let baseline = Samples::measure(
        "baseline: build RequestView, drop",
        args.warmup,
        args.iterations,
        || drop(black_box(request(&headers))),
    );
    let mut id = 0u64;
    let mut moved = 0usize;
    let mut replays = 0usize;
    // What `start_request_event` does: move the request in, invoke, take it back out.
    let mut through = |function: &Arc<Function>, view: RequestView| {
        id += 1;
        let (invoked, went_slow) = finish(invoke::run(
            &engine,
            function,
            Event::ViewerRequest,
            id,
            input(view),
        ));
        moved += usize::from(went_slow);
        replays += usize::from(invoked.replay == Replay::Replayed);
        let decision = black_box(invoked.result).expect("checked by the first run");
        let request = invoked.request;
        black_box((
            decision,
            request.method,
            request.uri,
            request.headers,
            invoked.origin,
        ));
    };
    let with_router = Samples::measure(
        "router, guest runs (replay = false)",
        args.warmup,
        args.iterations,
        || through(&fresh, request(&headers)),
    );
    let with_replay = Samples::measure(
        "router, replayed (the node's default)",
        args.warmup,
        args.iterations,
        || through(&replayed, request(&headers)),
    );
    // Inputs that never repeat: a query string the router reads, new for every request.
    let mut n = 0u64;
    let mut unique = || {
        n += 1;
        let mut view = request(&headers);
        view.uri = format!("{PATH}?v={n}").parse().expect("a valid URI");
        view
    };
    let [never_off, never_on] = Samples::measure_interleaved(
        [
            "never-repeating inputs, replay = false",
            "never-repeating inputs, replay on",
        ],
        args.warmup,
        args.iterations,
        |which| {
            let view = unique();
            through(if which == 0 { &fresh } else { &replayed }, view)
        },
    );
    baseline.print();
    with_router.print();
    with_replay.print();
    never_off.print();
    never_on.print();
    if moved > 0 {
        println!(
            "  ({moved} of the router's runs went past the inline deadline to the slow lane: the CPU was taken by another process)"
        );
    }
    let added = with_router.percentile(50.0) - baseline.percentile(50.0);
    println!(
        "router adds {added:.2} µs at p50 (mean {:.2} µs); bar ≤ 15 µs: {}",
        with_router.mean() - baseline.mean(),
        if added <= 15.0 { "MET" } else { "NOT MET" }
    );
    let replay_added = with_replay.percentile(50.0) - baseline.percentile(50.0);
    println!(
        "replayed router adds {replay_added:.2} µs at p50 (mean {:.2} µs; {replays} replays in all loops); bar ≤ 1 µs: {}",
        with_replay.mean() - baseline.mean(),
        if replay_added <= 1.0 { "MET" } else { "NOT MET" }
    );
    let never = never_on.trimmed_mean() / never_off.trimmed_mean();
    println!(
        "never-repeating inputs with replay on cost {never:.3}x replay off (mean of the fastest 99 %, interleaved; p50 {:.3}x); bar ≤ 1.10x: {}",
        never_on.percentile(50.0) / never_off.percentile(50.0),
        if never <= 1.10 { "MET" } else { "NOT MET" }
    );

    breakdown(&args, &engine, &fresh, &config, &headers, client_ip)
}
/// Runs `future` to its end on this thread: its output, and whether it was not ready at the
/// first poll (the invocation ran past the inline deadline, e.g. because another process took
/// the CPU, and went to the slow lane; there is no async runtime here, so wait for it).
fn finish<F: Future>(future: F) -> (F::Output, bool) {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut moved = false;
    loop {
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(output) => return (output, moved),
            std::task::Poll::Pending => {
                moved = true;
                // The slow lane runs at a lower priority on the same (pinned) CPU: let it run.
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
        }
    }
}

/// Times the parts of one fresh run separately (`wasm::profile`).
fn breakdown(
    args: &Args,
    engine: &FunctionEngine,
    function: &Function,
    config: &Arc<Config>,
    headers: &[(HeaderName, HeaderValue)],
    client_ip: IpAddr,
) -> Result<()> {
    let input = || Input {
        config: Arc::clone(config),
        request: request(headers),
        client_ip,
        response: None,
        kv: None,
    };
    let event = Event::ViewerRequest;
    let upto = |stage| {
        black_box(
            profile::run_until(engine, function, event, input(), stage).expect("the router runs"),
        );
    };
    let mut reused = Reused::new(engine, function, event, input())
        .map_err(|e| anyhow!("cannot instantiate: {e:#}"))?;
    let (w, n) = (args.warmup, args.iterations);
    let stages = [
        Samples::measure("host state (incl. RequestView), drop", w, n, || {
            upto(Stage::State)
        }),
        Samples::measure("  + Store::new, drop", w, n, || upto(Stage::Store)),
        Samples::measure("  + instantiate (InstancePre, pooling)", w, n, || {
            upto(Stage::Instantiate)
        }),
        Samples::measure("  + _initialize (if exported)", w, n, || {
            upto(Stage::Initialize)
        }),
        Samples::measure("  + viewer-request call (= a fresh run)", w, n, || {
            upto(Stage::Call)
        }),
        Samples::measure("viewer-request on one reused instance", w, n, || {
            black_box(
                reused
                    .call(engine, request(headers))
                    .expect("viewer-request runs"),
            );
        }),
    ];
    println!("breakdown of a fresh run (each stage includes the ones above it):");
    for stage in &stages {
        stage.print();
    }
    Ok(())
}
