//! Benchmark origin and "plain hyper" baseline for `bench/run.sh`.
//!
//! A minimal hyper 1.x HTTP/1.1 server that serves fixed objects from memory: two cacheable ones,
//! `GET /1k` (1024 bytes) and `GET /100k` (102400 bytes); `GET /pass/1k`, the same 1024 bytes
//! with `Cache-Control: no-store` (an API answer: every request goes through to the origin); and
//! `GET /obj/N` for any `N`, distinct cacheable URLs with the 1 KiB body (many small objects).
//! Anything else is a 404. It has two roles in the benchmark:
//!
//! - pinned to one core, it is the ceiling: the fastest a hyper-based server on this machine can
//!   answer with a fixed `Full<Bytes>` body, which the edge node's cache hit is compared to;
//! - it is the origin behind the edge node and nginx.
//!
//! It runs a tokio `current_thread` runtime (the script pins it to one core, so more threads would
//! only add contention), sets `TCP_NODELAY` on every accepted socket (without it a response split
//! into a header and a body segment can stall on the peer's delayed ACK) and keeps connections
//! alive. The bodies are `Bytes` clones, i.e. reference-count bumps, never copies.
//!
//! Usage: `bench_origin [--listen 127.0.0.1:PORT]`. The first stdout line is
//! `listening on ADDR`, so a script can start it on port 0 and read the real port.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(about = "Fixed-object HTTP/1.1 origin and hyper baseline for the edge benchmark")]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on the first stdout line).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// The objects, built once at startup and shared by every connection.
#[derive(Clone)]
struct Objects {
    small: Bytes,
    large: Bytes,
}

impl Objects {
    fn new() -> Self {
        // Non-uniform content so that nothing along the way can get away with a trivial body.
        let make = |len: usize| -> Bytes {
            (0..len)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>()
                .into()
        };
        Objects {
            small: make(1024),
            large: make(102_400),
        }
    }
}

fn object_response(body: &Bytes, etag: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.clone()));
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    headers.insert(ETAG, HeaderValue::from_static(etag));
    resp
}

/// What an API answers: not to be stored by any cache, so a proxy passes every request through.
fn uncacheable_response(body: &Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.clone()));
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn not_found() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"not found\n")));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn handle(objects: &Objects, req: &Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // HEAD is answered like GET; hyper leaves the body out on the wire.
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(not_found());
    }
    Ok(match req.uri().path() {
        "/1k" => object_response(&objects.small, "\"bench-1k-v1\""),
        "/100k" => object_response(&objects.large, "\"bench-100k-v1\""),
        "/pass/1k" => uncacheable_response(&objects.small),
        path if path.starts_with("/obj/") => object_response(&objects.small, "\"bench-obj-v1\""),
        _ => not_found(),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(serve(args.listen))
}

async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    {
        // The script reads this line to learn the port, so it must not sit in a buffer.
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {local}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }

    let objects = Objects::new();
    let mut http = http1::Builder::new();
    http.keep_alive(true);

    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Typically EMFILE/ENFILE: back off briefly instead of spinning on the error.
                eprintln!("bench_origin: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Without TCP_NODELAY, a header segment followed by a body segment can wait for the
        // client's delayed ACK (40 ms on Linux loopback). Failure here only costs speed.
        if let Err(err) = stream.set_nodelay(true) {
            eprintln!("bench_origin: set_nodelay failed: {err}");
        }
        let objects = objects.clone();
        let http = http.clone();
        tokio::spawn(async move {
            // The answer is computed synchronously, so the future is a ready one: no per-request
            // clone of `objects` and no boxed state machine.
            let service = service_fn(move |req: Request<Incoming>| {
                std::future::ready(handle(&objects, &req))
            });
            // Errors here are clients going away mid-request (e.g. wrk stopping); the
            // benchmark has nothing to do about them, so they are dropped quietly.
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
