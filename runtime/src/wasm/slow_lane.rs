//! The slow lane: a few threads of lowered priority where invocations that ran past their first
//! milliseconds on an async worker run again, so that a busy function never holds up the
//! requests that do not run it.
//!
//! Functions run inline on the node's async workers: a handoff to another thread for every
//! invocation would cost microseconds, and nearly every function finishes in a few. But one that
//! spins to its CPU limit blocks every connection of its worker meanwhile (measured: function-less
//! requests went from a 0.15 ms to a 39 ms p50 while 8 clients asked for a spinning function).
//! So `invoke::run` gives the inline attempt a deadline of [`INLINE_TICKS`] epoch ticks, after
//! which it may use [`INLINE_CPU`] more of its thread's CPU time; past that, the attempt is
//! thrown away whole (every invocation starts from a fresh instance and
//! its `HostState` is rebuilt from the same input, so the rerun is the same invocation) and the
//! invocation runs again here, where the CPU limit counts this thread's CPU time. The function is
//! then marked slow and goes straight here, until one of its runs here finishes within the
//! inline budget. At most [`SlowLane::capacity`] invocations are here at once (a few per thread:
//! enough that a normal function moved here by a preempted first attempt is not refused, few
//! enough that a flood does not wait long); beyond that the invocation fails at once with a
//! limit error (503), so a flood neither queues without bound nor grows memory.
//!
//! The threads run at nice [`SLOW_LANE_NICE`]: the kernel gives the async workers the CPU first,
//! so a flood of slow invocations costs the other requests little latency.
//!
//! Measured (2026-12-01, 2 vCPU, one run of each, `runtime/examples/bench_isolation.rs`: 8
//! clients flood a function that spins to its 5 ms limit while one client asks for a static
//! file): function-less requests kept a p50 of 0.032 ms and a p99 of 0.13 ms (1.2x and 1.4x the
//! idle node), against a p50 of 55 ms and a p99 of 141 ms with every invocation inline; no
//! failures; every flood request got its 503; RSS grew by 1.7 MB once, when the lane started.
//! The common case pays no handoff: the router's p50 in `bench_function` went from 7.4–7.7 µs
//! to 7.8–8.0 µs (quiet runs of a noisy machine, interleaved). Rejected: wasmtime's async
//! support with epoch yields, which keeps the function on the worker (a yielding spinner still
//! takes its slices there, one per tick) and adds a fiber per call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Epoch ticks an invocation runs inline on an async worker before its CPU time is counted:
/// between one and two milliseconds of wall time, as the first tick comes at any point of the
/// first millisecond.
pub const INLINE_TICKS: u64 = 2;
/// CPU time an invocation may use inline after [`INLINE_TICKS`] before it moves to the slow
/// lane: a preempted invocation (wall time passing, no CPU used) stays where it is.
pub const INLINE_CPU: std::time::Duration = std::time::Duration::from_millis(1);
/// Nice value of the slow lane's threads (0 is the workers'; 19 the lowest): the workers win
/// the CPU by about ten to one, and a slow invocation still progresses on a busy node.
pub const SLOW_LANE_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A bounded pool of low-priority threads.
pub struct SlowLane {
    jobs: SyncSender<Job>,
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

impl SlowLane {
    /// Starts `threads` threads, which take up to `capacity` invocations at once (running or
    /// waiting for a thread).
    pub fn start(threads: usize, capacity: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let capacity = capacity.max(threads);
        let (jobs, queue) = mpsc::sync_channel::<Job>(capacity);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("edge-slow-{i}"))
                .spawn(move || worker(&queue))?;
        }
        Ok(SlowLane {
            jobs,
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity,
        })
    }

    /// How many invocations may be here at once, running or waiting for a thread.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes a place for one invocation, or `None` when every thread is taken.
    pub fn reserve(&self) -> Option<Slot<'_>> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot {
            lane: self,
            used: false,
        })
    }
}

/// A place in the slow lane, released when its job ends (or when dropped unused).
pub struct Slot<'a> {
    lane: &'a SlowLane,
    used: bool,
}

impl Slot<'_> {
    /// Runs `job` on a slow-lane thread and returns its result; `None` if the thread went away
    /// without an answer (it cannot, short of a bug: jobs do not panic).
    pub async fn run<T: Send + 'static>(
        mut self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        self.used = true;
        let (reply, result) = tokio::sync::oneshot::channel();
        let in_flight = Arc::clone(&self.lane.in_flight);
        let job: Job = Box::new(move || {
            let value = job();
            // Released before replying, so the requester's next invocation finds it free.
            in_flight.fetch_sub(1, Ordering::AcqRel);
            // The requester may be gone (the viewer hung up); the result is not needed then.
            let _ = reply.send(value);
        });
        // Admission keeps at most `capacity` jobs queued or running, the channel's size, so
        // this never blocks; it fails only if every thread has died.
        if self.lane.jobs.try_send(job).is_err() {
            self.lane.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        result.await.ok()
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.lane.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn worker(queue: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Lowers the calling thread's priority to [`SLOW_LANE_NICE`]. On Linux the nice value belongs
/// to the thread, not the process (setpriority(2), BUGS), so the workers keep theirs.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        #[allow(unsafe_code)]
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, SLOW_LANE_NICE)
        };
        if rc != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the slow lane's priority");
        }
    }
}
