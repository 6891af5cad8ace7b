//! Running `edge`: one-shot commands with a deadline, and long-running nodes (`serve`, `dev`)
//! whose addresses are read from their `edge node listening` log line, whose log can be
//! waited on, and which are killed on drop. Plus a minimal HTTP/1.1 GET and WAT fixtures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// A one-shot command must exit by then; a node must be listening by then.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// How long a change may take to show (the dev watcher polls every 300 ms).
pub const CHANGE_DEADLINE: Duration = Duration::from_secs(30);

/// Runs `edge args` in `cwd` with `env` and waits (bounded) for it to exit.
pub fn edge(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("EDGE_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting edge")?;
    // Drain both pipes while waiting, so a large output cannot block the child.
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > DEADLINE {
            child.kill()?;
            child.wait()?;
            bail!("edge {args:?} still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// stdout of a command that must have succeeded, parsed as JSON.
pub fn json_of(output: &Output) -> anyhow::Result<serde_json::Value> {
    if !output.status.success() {
        bail!(
            "exit status {}; stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "stdout is not JSON: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A running `edge serve` or `edge dev`.
pub struct Node {
    child: Child,
    log: Receiver<String>,
    /// The viewer listener.
    pub addr: SocketAddr,
    /// The admin API, if the config enables it.
    pub admin: Option<SocketAddr>,
    /// Log lines that waits passed over, startup included.
    pub passed: Vec<String>,
}

impl Node {
    /// Starts `edge args` in `dir` and waits for its `edge node listening` line.
    pub fn start(dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(dir, args, &[], DEADLINE)
    }

    /// As [`Node::start`], with `env` set, waiting up to `within` for the node to listen (a
    /// command that builds functions first, like `demo`, needs longer on a cold target dir).
    pub fn start_with(
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        within: Duration,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge"))
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .env_remove("CARGO_TARGET_DIR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting edge")?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node {
            child,
            log,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: None,
            passed: Vec::new(),
        };
        let line = node.wait_for_log(within, |l| l.contains("edge node listening"))?;
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.parse::<SocketAddr>().ok())
        };
        node.addr = field("addr=").with_context(|| format!("no addr= in {line:?}"))?;
        node.admin = field("admin=");
        Ok(node)
    }

    /// Waits for the next log line matching `matches`; the lines before it are passed over.
    pub fn wait_for_log(
        &mut self,
        within: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if matches(&line) => return Ok(line),
                Ok(line) => {
                    self.passed.push(line.clone());
                    seen.push(line);
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "no such log line within {within:?}; saw:\n{}",
                        seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "edge exited ({:?}); its log:\n{}",
                    self.child.try_wait(),
                    seen.join("\n")
                ),
            }
        }
    }

    /// Sends `signal` (e.g. `HUP`) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} failed");
        Ok(())
    }

    /// Waits (bounded by [`DEADLINE`]) for the process to exit, e.g. after SIGTERM.
    pub fn wait_for_exit(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("edge still running {DEADLINE:?} after it was asked to stop");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `GET path` on the viewer listener.
    pub fn get(&self, path: &str) -> anyhow::Result<Response> {
        get(self.addr, path)
    }

    /// GETs `path` until `done` holds for the response, or fails after [`CHANGE_DEADLINE`].
    pub fn get_until(
        &self,
        path: &str,
        done: impl Fn(&Response) -> bool,
    ) -> anyhow::Result<Response> {
        let deadline = Instant::now() + CHANGE_DEADLINE;
        loop {
            let response = self.get(path)?;
            if done(&response) {
                return Ok(response);
            }
            if Instant::now() > deadline {
                bail!("after {CHANGE_DEADLINE:?}, GET {path} still gives {response:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, headers (names lowercase), body.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (lowercase), or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// `GET path` over a fresh connection, read to its close.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    get_with(addr, path, &[])
}

/// `GET path` with these extra request headers, over a fresh connection, read to its close.
pub fn get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n{extra}\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of headers in {raw:?}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {raw:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Writes `text` to a temp file next to `path` and renames it over `path`, as editors do, so
/// a watcher never reads half a file.
pub fn replace_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A viewer-response function that sets `x-version: VERSION`.
pub fn stamp_wat(version: &str) -> String {
    format!(
        r#"(module
  (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-version")
  (data (i32.const 16) "{version}")
  (func (export "viewer-response") (result i32)
    (drop (call $set (i32.const 0) (i32.const 9) (i32.const 16) (i32.const {len})))
    (i32.const 0)))
"#,
        len = version.len()
    )
}

/// A directory with `site/index.html` and `stamp.wat` (version `A`).
pub fn site_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("site"))?;
    std::fs::write(dir.path().join("site/index.html"), "<h1>hi</h1>")?;
    std::fs::write(dir.path().join("stamp.wat"), stamp_wat("A"))?;
    Ok(dir)
}

/// `[server]` for tests: port 0, compiled modules cached in the test's directory, not `~`.
pub const SERVER: &str = "[server]\nlisten = \"127.0.0.1:0\"\ncompile_cache = \"compiled\"\n";
