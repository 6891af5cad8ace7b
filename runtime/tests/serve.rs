//! The `edge serve` process: starts on a config, writes access-log lines, and exits cleanly on
//! SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serve_logs_requests_and_stops_on_sigterm() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("site"))?;
    std::fs::write(dir.path().join("site/index.html"), "<h1>hi</h1>")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[origins.bucket]\ntype = \"static\"\nroot = \"./site\"\n[[behaviors]]\npath = \"*\"\norigin = \"bucket\"\n"),
    )?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    // Wait for the listening line rather than sleeping; EOF means the process died.
    loop {
        match lines.next().transpose()? {
            Some(line) if line.contains("edge node listening") => break,
            Some(_) => {}
            None => anyhow::bail!("node exited before listening: {:?}", child.wait()?),
        }
    }

    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("<h1>hi</h1>"));

    let access = lines.next().transpose()?.unwrap_or_default();
    for field in [
        "method=GET",
        "path=/",
        "status=200",
        "x_cache=\"Miss\"",
        "origin=bucket",
        "bytes=11",
        "duration_us=",
    ] {
        assert!(
            access.contains(field),
            "access log line lacks {field}: {access}"
        );
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait()? {
            break exit;
        }
        assert!(Instant::now() < deadline, "node did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit}");
    Ok(())
}
