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
//! invocation runs again here, where the CPU limit counts this thread's CPU time. The request
//! (method and target) is remembered in the function's [`SlowRequests`], and goes straight here
//! next time, until one of its runs here finishes within the inline budget; the function's
//! other requests are still tried inline first, so a flood of one slow path does not refuse
//! the fast ones (an earlier version marked the whole function slow: its fast requests then
//! got 503s whenever the flood filled the lane). At most [`SlowLane::capacity`] invocations are
//! here at once (a few per thread: enough that a normal function moved here by a preempted
//! first attempt is not refused, few enough that a flood does not wait long), and one function
//! at most [`SlowLane::share`] of them, so a flooded function leaves room for other slow ones;
//! beyond that the invocation fails at once with a limit error (503), so a flood neither queues
//! without bound nor grows memory.
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

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
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
    trying: AtomicBool,
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
            trying: AtomicBool::new(false),
        })
    }

    /// How many invocations may be here at once, running or waiting for a thread.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes a place for one invocation of the function whose places are counted in `seats`,
    /// or `None` when the lane is full or that function holds [`Self::share`] places already:
    /// one flooded function must not take the lane from every other slow function.
    pub fn reserve(&self, seats: &Arc<AtomicUsize>) -> Option<Slot<'_>> {
        if seats.fetch_add(1, Ordering::AcqRel) >= self.share() {
            seats.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            seats.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot {
            lane: self,
            seats: Arc::clone(seats),
            used: false,
        })
    }

    /// How many places one function may hold: half the lane, so that two functions that run
    /// long are each served while a third floods.
    pub fn share(&self) -> usize {
        self.capacity.div_ceil(2)
    }

    /// The node's one permission to try, inline, a request of a function marked slow that was
    /// not itself seen running long; `None` while another such try runs. One at a time bounds
    /// what a flood of never-repeating slow requests costs the async workers: one attempt of
    /// [`INLINE_TICKS`] plus [`INLINE_CPU`] on one worker, while the others serve.
    pub fn try_inline(&self) -> Option<InlineTry<'_>> {
        (!self.trying.swap(true, Ordering::AcqRel)).then_some(InlineTry(&self.trying))
    }
}

/// Permission to run one request of a slow function inline ([`SlowLane::try_inline`]).
pub struct InlineTry<'a>(&'a AtomicBool);

impl Drop for InlineTry<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Requests of one function that ran past the inline budget, by method and target: once a
/// function has some, these go straight to the lane and the others are tried inline first, so
/// that under a flood of its slow requests its fast ones are still served. A small
/// direct-mapped table of hashes: a collision forgets an entry, which costs that request one
/// more inline attempt.
pub struct SlowRequests {
    entries: [AtomicU64; SLOW_REQUESTS],
    /// Requests in a row that were not in the table and ran long.
    unknown_long: AtomicU32,
}

/// Entries in [`SlowRequests`].
const SLOW_REQUESTS: usize = 64;
/// Requests in a row, not in the table, that ran long before such requests are tried inline
/// only one at a time ([`SlowLane::try_inline`]): the function's slow requests do not repeat.
const UNKNOWN_LONG_IN_A_ROW: u32 = 4;

impl Default for SlowRequests {
    fn default() -> Self {
        SlowRequests {
            entries: std::array::from_fn(|_| AtomicU64::new(0)),
            unknown_long: AtomicU32::new(0),
        }
    }
}

impl SlowRequests {
    /// The key of a request: its method and target.
    pub fn key(method: &http::Method, uri: &http::Uri) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        method.hash(&mut hasher);
        uri.hash(&mut hasher);
        // 0 marks an empty entry.
        hasher.finish().max(1)
    }

    fn entry(&self, key: u64) -> &AtomicU64 {
        &self.entries[(key % SLOW_REQUESTS as u64) as usize]
    }

    /// Whether the request with `key` ran long when last tried.
    pub fn contains(&self, key: u64) -> bool {
        self.entry(key).load(Ordering::Relaxed) == key
    }

    /// Whether the last few requests not in the table all ran long.
    pub fn mostly_slow(&self) -> bool {
        self.unknown_long.load(Ordering::Relaxed) >= UNKNOWN_LONG_IN_A_ROW
    }

    /// The request with `key` ran past the inline budget. Concurrent runs of one request
    /// count once towards [`Self::mostly_slow`]: a burst of one slow request is not a sign that
    /// slow requests do not repeat.
    pub fn ran_long(&self, key: u64) {
        if self.entry(key).swap(key, Ordering::Relaxed) != key {
            self.unknown_long.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request not in the table ran within the inline budget.
    pub fn ran_inline(&self) {
        self.unknown_long.store(0, Ordering::Relaxed);
    }

    /// The request with `key` ran within the inline budget in the lane: it is tried inline
    /// next time.
    pub fn ran_fast(&self, key: u64) {
        let _ = self
            .entry(key)
            .compare_exchange(key, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// A place in the slow lane, released when its job ends (or when dropped unused).
pub struct Slot<'a> {
    lane: &'a SlowLane,
    seats: Arc<AtomicUsize>,
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
        let seats = Arc::clone(&self.seats);
        let job: Job = Box::new(move || {
            let value = job();
            // Released before replying, so the requester's next invocation finds it free.
            seats.fetch_sub(1, Ordering::AcqRel);
            in_flight.fetch_sub(1, Ordering::AcqRel);
            // The requester may be gone (the viewer hung up); the result is not needed then.
            let _ = reply.send(value);
        });
        // Admission keeps at most `capacity` jobs queued or running, the channel's size, so
        // this never blocks; it fails only if every thread has died.
        if self.lane.jobs.try_send(job).is_err() {
            self.seats.fetch_sub(1, Ordering::AcqRel);
            self.lane.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        result.await.ok()
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.seats.fetch_sub(1, Ordering::AcqRel);
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
