//! WASI preview 1 as a function sees it: wasmtime-wasi's implementation, except for the calls
//! that would block the node, and stdout/stderr captured for the node's log.
//!
//! wasmtime-wasi 48's synchronous preview 1 runs 26 of its calls (every `fd_*` that does I/O,
//! every `path_*`, `poll_oneoff`) through `in_tokio`, which calls `Handle::block_on` when a
//! tokio runtime is current. Functions run on the node's tokio workers, where that panics
//! ("Cannot start a runtime from within a runtime"): the first `println!` of a function took
//! the worker down with it. Those 26 calls are replaced here. `fd_write` to stdout or stderr
//! appends to the invocation's [`Output`] and `fd_fdstat_get` describes the three standard
//! streams; everything else answers an errno (`BADF`: a function has no files, no preopened
//! directories and no stdin; `NOTSUP` for `poll_oneoff`), so a guest gets an error it can
//! handle and the node never blocks or panics. `clock_time_get` and `random_get` are replaced
//! too, to mark the invocation as one that decision replay (`wasm::replay`) must never record:
//! their results are not a function of the request. The calls that stay with wasmtime-wasi
//! (args and environment, which are empty, `clock_res_get`, `proc_exit`, `sched_yield`) are
//! plain synchronous code whose results depend on nothing but their arguments.

use edge_sdk::abi::limits::{MAX_LOG_LINE, MAX_LOG_LINES};
use wasmtime::{Caller, Engine, Extern, Linker, Store, Val};
use wasmtime_wasi::p1::WasiP1Ctx;

use super::op::Op;
use super::state::HostState;

/// The WASI module name.
const WASI: &str = "wasi_snapshot_preview1";

/// The calls wasmtime-wasi 48 runs through `in_tokio` (its `p1.rs`, `block_on[in_tokio]`).
const BLOCKING: [&str; 26] = [
    "fd_advise",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_read",
    "fd_pread",
    "fd_seek",
    "fd_sync",
    "fd_readdir",
    "fd_write",
    "fd_pwrite",
    "poll_oneoff",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "fd_renumber",
];

/// WASI errno values (`witx/p1/typenames.witx`).
mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const NOTSUP: i32 = 58;
}

/// Bytes of stdout and stderr kept per invocation, together: the same as one `log` line.
pub const MAX_OUTPUT_BYTES: usize = MAX_LOG_LINE;
/// Lines of stdout and stderr kept per invocation, together: the same as `log` lines.
pub const MAX_OUTPUT_LINES: usize = MAX_LOG_LINES;
/// Bytes of stderr kept apart from the cap, to find a panic message after a flood.
const STDERR_TAIL: usize = 2048;

/// Which standard stream a line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// What an invocation wrote to stdout and stderr, split into lines and capped at
/// [`MAX_OUTPUT_LINES`] lines and [`MAX_OUTPUT_BYTES`] bytes; the rest is counted, not kept.
#[derive(Debug, Default)]
pub struct Output {
    lines: Vec<(Stream, String)>,
    /// A line not yet ended by `\n`, per stream.
    pending: [Vec<u8>; 2],
    kept: usize,
    /// Bytes dropped because the cap was reached.
    dropped: usize,
    /// The last bytes written to stderr, whatever the cap: a panic message is written last.
    stderr_tail: Vec<u8>,
}

impl Output {
    /// Appends what the guest wrote to `stream`.
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        if stream == Stream::Stderr {
            self.stderr_tail.extend_from_slice(data);
            let excess = self.stderr_tail.len().saturating_sub(STDERR_TAIL);
            self.stderr_tail.drain(..excess);
        }
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            let room = MAX_OUTPUT_BYTES.saturating_sub(self.kept);
            if room == 0 || self.lines.len() >= MAX_OUTPUT_LINES {
                self.dropped += chunk.len();
                continue;
            }
            let (line, newline) = match chunk.strip_suffix(b"\n") {
                Some(line) => (line, true),
                None => (chunk, false),
            };
            let kept = line.len().min(room);
            self.dropped += line.len() - kept;
            self.kept += kept;
            self.pending[stream as usize].extend_from_slice(&line[..kept]);
            if newline {
                self.end_line(stream);
            }
        }
    }

    fn end_line(&mut self, stream: Stream) {
        let line = std::mem::take(&mut self.pending[stream as usize]);
        self.lines
            .push((stream, String::from_utf8_lossy(&line).into_owned()));
    }

    /// Ends the unfinished last lines; call once the guest has stopped.
    pub fn flush(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if !self.pending[stream as usize].is_empty() {
                self.end_line(stream);
            }
        }
    }

    /// The lines written (ended ones; see [`Output::flush`]).
    pub fn lines(&self) -> &[(Stream, String)] {
        &self.lines
    }

    /// Whether anything was dropped for the cap.
    pub fn truncated(&self) -> bool {
        self.dropped > 0
    }

    /// The message of a Rust panic written to stderr, on one line
    /// (`panicked at src/lib.rs:12:5: boom`), if there was one. Its lines are taken out of the
    /// output, so the panic is reported once, as the failure's reason.
    pub fn take_panic(&mut self) -> Option<String> {
        const MARK: &str = "panicked at ";
        let tail = String::from_utf8_lossy(&self.stderr_tail).into_owned();
        let start = tail.rfind(MARK)?;
        // The standard hook writes "thread 'NAME' panicked at FILE:LINE:COL:\nMESSAGE\nnote: ...".
        let message = tail[start..]
            .lines()
            .take_while(|l| !l.starts_with("note: "))
            .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c.is_control()))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        self.pending[Stream::Stderr as usize].clear();
        if let Some(first) = self
            .lines
            .iter()
            .position(|(s, l)| *s == Stream::Stderr && l.contains(MARK))
        {
            let mut index = 0;
            self.lines.retain(|(s, _)| {
                index += 1;
                index <= first || *s != Stream::Stderr
            });
        }
        Some(message)
    }
}

/// Defines WASI preview 1 in `linker`: wasmtime-wasi's synchronous implementation with the
/// calls in [`BLOCKING`] replaced (see the module docs).
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, HostState::wasi)?;
    // The replacements take their types from wasmtime-wasi's own definitions, so a guest that
    // links against them links against these.
    let types = blocking_call_types(linker.engine())?;
    linker.allow_shadowing(true);
    for (name, ty) in types {
        match name {
            "fd_write" => {
                linker.func_wrap(WASI, name, fd_write)?;
            }
            "fd_fdstat_get" => {
                linker.func_wrap(WASI, name, fd_fdstat_get)?;
            }
            _ => {
                let errno = if name == "poll_oneoff" {
                    errno::NOTSUP
                } else {
                    errno::BADF
                };
                linker.func_new(WASI, name, ty, move |_, _, results| {
                    results[0] = Val::I32(errno);
                    Ok(())
                })?;
            }
        }
    }
    linker.func_wrap(WASI, "clock_time_get", clock_time_get)?;
    linker.func_wrap(WASI, "random_get", random_get)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// `clock_time_get(id, precision, out) -> errno`, as wasmtime-wasi answers it (realtime and
/// monotonic; the CPU-time clocks are `BADF`), marking the invocation as not replayable.
fn clock_time_get(mut caller: Caller<'_, HostState>, id: i32, _precision: i64, out: i32) -> i32 {
    caller
        .data_mut()
        .not_replayable("it read the clock (clock_time_get)");
    let now = match id {
        0 => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        1 => {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START
                .get_or_init(std::time::Instant::now)
                .elapsed()
                .as_nanos() as u64
        }
        2 | 3 => return errno::BADF,
        _ => return errno::INVAL,
    };
    let Some((memory, _)) = memory(&mut caller) else {
        return errno::FAULT;
    };
    let at = out as u32 as usize;
    match memory.get_mut(at..at.saturating_add(8)) {
        Some(slot) => {
            slot.copy_from_slice(&now.to_le_bytes());
            errno::SUCCESS
        }
        None => errno::FAULT,
    }
}

/// `random_get(buf, len) -> errno`: bytes from the kernel's random source, marking the
/// invocation as not replayable.
fn random_get(mut caller: Caller<'_, HostState>, buf: i32, len: i32) -> i32 {
    caller
        .data_mut()
        .not_replayable("it read randomness (random_get)");
    let Some((memory, _)) = memory(&mut caller) else {
        return errno::FAULT;
    };
    let at = buf as u32 as usize;
    let Some(slot) = memory.get_mut(at..at.saturating_add(len as u32 as usize)) else {
        return errno::FAULT;
    };
    let mut filled = 0;
    while filled < slot.len() {
        let rest = &mut slot[filled..];
        #[allow(unsafe_code)]
        // SAFETY: `rest` is valid, writable memory of `rest.len()` bytes for the whole call.
        let got = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if got < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return errno::FAULT;
        }
        filled += got as usize;
    }
    errno::SUCCESS
}

/// The types wasmtime-wasi gives the calls in [`BLOCKING`].
fn blocking_call_types(
    engine: &Engine,
) -> wasmtime::Result<Vec<(&'static str, wasmtime::FuncType)>> {
    struct Probe(WasiP1Ctx);
    let mut probe = Linker::<Probe>::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut probe, |p: &mut Probe| &mut p.0)?;
    let mut store = Store::new(
        engine,
        Probe(wasmtime_wasi::WasiCtxBuilder::new().build_p1()),
    );
    BLOCKING
        .iter()
        .map(|name| match probe.get(&mut store, WASI, name) {
            Ok(Extern::Func(f)) => Ok((*name, f.ty(&store))),
            _ => Err(wasmtime::Error::msg(format!(
                "wasmtime-wasi defines no `{WASI}::{name}`"
            ))),
        })
        .collect()
}

/// The guest's memory, as bytes, or `None` before it is known.
fn memory<'a>(caller: &'a mut Caller<'_, HostState>) -> Option<(&'a mut [u8], &'a mut HostState)> {
    let memory = caller.data().memory?;
    Some(memory.data_and_store_mut(caller))
}

/// A little-endian `u32` at `at`, if in bounds.
fn read_u32(memory: &[u8], at: u32) -> Option<u32> {
    let at = at as usize;
    let bytes = memory.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// `fd_write(fd, iovs, iovs_len, nwritten) -> errno`: stdout and stderr go to the invocation's
/// output; the guest is told everything was written even past the cap, so it does not retry.
fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> i32 {
    let stream = match fd {
        1 => Stream::Stdout,
        2 => Stream::Stderr,
        _ => return errno::BADF,
    };
    let Some((memory, state)) = memory(&mut caller) else {
        return errno::FAULT;
    };
    let fault = |state: &mut HostState| {
        state.not_replayable("a host call was given memory outside the guest's");
        errno::FAULT
    };
    let mut total: u32 = 0;
    for i in 0..iovs_len as u32 {
        let Some(at) = (iovs as u32).checked_add(i.saturating_mul(8)) else {
            return fault(state);
        };
        let (Some(ptr), Some(len)) = (read_u32(memory, at), read_u32(memory, at.wrapping_add(4)))
        else {
            return fault(state);
        };
        let Some(data) = memory.get(ptr as usize..(ptr as usize).saturating_add(len as usize))
        else {
            return fault(state);
        };
        // An op, so that a replay writes the same lines (`wasm::replay`).
        state.perform(Op::Output(stream, Box::from(data)));
        total = total.saturating_add(len);
    }
    let at = nwritten as u32 as usize;
    match memory.get_mut(at..at.saturating_add(4)) {
        Some(out) => {
            out.copy_from_slice(&total.to_le_bytes());
            errno::SUCCESS
        }
        None => fault(state),
    }
}

/// `fd_fdstat_get(fd, buf) -> errno`: the standard streams are character devices (stdin
/// readable, stdout and stderr writable); there is no other file.
fn fd_fdstat_get(mut caller: Caller<'_, HostState>, fd: i32, buf: i32) -> i32 {
    const CHARACTER_DEVICE: u8 = 2;
    const RIGHT_FD_READ: u64 = 1 << 1;
    const RIGHT_FD_WRITE: u64 = 1 << 6;
    let rights = match fd {
        0 => RIGHT_FD_READ,
        1 | 2 => RIGHT_FD_WRITE,
        _ => return errno::BADF,
    };
    let Some((memory, _)) = memory(&mut caller) else {
        return errno::FAULT;
    };
    // `fdstat`: filetype u8 at 0, flags u16 at 2, rights_base u64 at 8, rights_inheriting at 16.
    let at = buf as u32 as usize;
    let Some(out) = memory.get_mut(at..at.saturating_add(24)) else {
        return errno::FAULT;
    };
    out.fill(0);
    out[0] = CHARACTER_DEVICE;
    out[8..16].copy_from_slice(&rights.to_le_bytes());
    errno::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_and_capped() {
        let mut output = Output::default();
        output.write(Stream::Stdout, b"one\ntw");
        output.write(Stream::Stderr, b"err\n");
        output.write(Stream::Stdout, b"o\nthree");
        output.flush();
        let lines: Vec<_> = output
            .lines()
            .iter()
            .map(|(s, l)| (s.as_str(), l.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                ("stdout", "one"),
                ("stderr", "err"),
                ("stdout", "two"),
                ("stdout", "three")
            ]
        );
        assert!(!output.truncated());

        let mut flood = Output::default();
        for _ in 0..10_000 {
            flood.write(Stream::Stdout, b"spam spam spam\n");
        }
        flood.flush();
        assert!(flood.truncated());
        assert!(flood.lines().len() <= MAX_OUTPUT_LINES);
        assert!(flood.lines().iter().map(|(_, l)| l.len()).sum::<usize>() <= MAX_OUTPUT_BYTES);
    }

    #[test]
    fn a_panic_message_is_found_after_a_flood_and_taken_out() {
        let mut output = Output::default();
        output.write(Stream::Stderr, b"before\n");
        output.write(
            Stream::Stderr,
            b"thread 'main' panicked at src/lib.rs:12:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n",
        );
        assert_eq!(
            output.take_panic().as_deref(),
            Some("panicked at src/lib.rs:12:5: boom")
        );
        output.flush();
        assert_eq!(output.lines(), [(Stream::Stderr, "before".to_owned())]);

        let mut flood = Output::default();
        for _ in 0..10_000 {
            flood.write(Stream::Stdout, b"spam\n");
        }
        flood.write(
            Stream::Stderr,
            b"thread 'main' panicked at src/lib.rs:3:1:\nlate\n",
        );
        assert_eq!(
            flood.take_panic().as_deref(),
            Some("panicked at src/lib.rs:3:1: late")
        );
    }
}
