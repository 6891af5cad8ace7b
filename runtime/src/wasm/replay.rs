//! Decision replay: functions at cache-hit speed, with the fresh-instance promise kept exactly.
//!
//! Every input a function sees comes through a host call, and every invocation starts from the
//! same fresh instance, so an invocation is a deterministic function of the results its host
//! calls returned. So the node records, per function version and event, a decision tree: each
//! node is the next host call the guest made ([`Op`]: the call and its arguments, which the
//! results before it determine), with a branch per result ([`Outcome`]: status and value, what
//! the guest saw); a leaf is the entry point's return value. A later invocation walks the tree
//! instead of running the guest: it applies each node's call to its own request (reads read the
//! live request, the key-value store's current version; writes change it, in order, so a
//! later read sees them) and follows the branch for the result. A result the tree has not seen
//! ends the walk: the invocation starts over from its untouched input (`Tracked` keeps it) and
//! runs the guest fresh, recording its path into the tree. So a replay reaches the viewer, the
//! origin and the log exactly as the fresh run it stands for would have.
//!
//! Never recorded: invocations that read the clock or randomness (`wasm::wasi`), fail, trap or
//! hit a limit, give a host call memory outside the guest's, or carry a value over
//! `MAX_RECORDED_VALUE`. Memory is bounded per function (`replay_memory`): a tree that would
//! grow past its share starts over. A tree that keeps missing (inputs that never repeat, such as
//! the client IP or a session cookie) is dropped, and the event runs fresh without recording for
//! a while, doubling each time, so such a function stops paying for recording.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::RwLock;

use edge_sdk::abi::Event;

use super::op::{Got, Op, Outcome};
use super::state::HostState;

/// Invocations per judgement of a tree's hit ratio.
const WINDOW: u32 = 128;
/// A tree whose window has fewer replays than this share (in 1/16) is dropped: a quarter.
const MIN_HIT_SIXTEENTHS: u32 = 4;
/// Invocations that run fresh without recording after a tree is first dropped; it doubles at
/// every drop that follows, up to [`MAX_PAUSE`], and starts over once a tree does well.
const FIRST_PAUSE: u32 = 1024;
/// The longest pause.
const MAX_PAUSE: u32 = 128 * 1024;
/// Branches of a node looked up by a scan; more get a hash index.
const SCAN_BRANCHES: usize = 8;

/// How an invocation's entry point ended, in a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Returned 0.
    Continue,
    /// Returned 1, with a generated response.
    Respond,
}

/// Where a branch leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Another host call (an index into `Tree::nodes`).
    Call(u32),
    /// The end of the invocation.
    End(End),
}

/// One recorded host call and where each of its outcomes led.
#[derive(Debug)]
struct Node {
    op: Op,
    branches: Vec<(Outcome, Next)>,
    /// Index of `branches` by outcome, once there are more than [`SCAN_BRANCHES`].
    index: Option<HashMap<Outcome, usize>>,
}

impl Node {
    fn find(&self, outcome: &Outcome) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(outcome).copied(),
            None => self.branches.iter().position(|(o, _)| o == outcome),
        }
    }

    /// The branch for what a read gave.
    fn find_read(&self, got: Got<'_>) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&got.into_outcome()).copied(),
            None => self.branches.iter().position(|(o, _)| got.is(o)),
        }
    }

    fn add(&mut self, outcome: Outcome, next: Next) {
        let at = self.branches.len();
        if let Some(index) = &mut self.index {
            index.insert(outcome.clone(), at);
        }
        self.branches.push((outcome, next));
        if self.index.is_none() && self.branches.len() > SCAN_BRANCHES {
            self.index = Some(
                self.branches
                    .iter()
                    .enumerate()
                    .map(|(i, (o, _))| (o.clone(), i))
                    .collect(),
            );
        }
    }
}

/// The decision tree of one function version and event.
#[derive(Debug, Default)]
struct Tree {
    root: Option<Next>,
    nodes: Vec<Node>,
    /// Bytes the tree holds, roughly (ops, outcomes, nodes and branches).
    bytes: usize,
}

/// A path that contradicts the tree: the same results led somewhere else. It cannot happen to
/// a deterministic guest; if it does, replay is off for the function.
#[derive(Debug)]
struct Conflict;

/// Where a walk of the tree ended.
pub(super) enum Walk {
    /// At a leaf: the invocation is done, its effects applied to the state.
    End(End),
    /// At a result the tree has not seen (or no tree yet): run the guest.
    Miss,
}

impl Tree {
    fn walk(&self, state: &mut HostState) -> Walk {
        let mut next = match self.root {
            Some(next) => next,
            None => return Walk::Miss,
        };
        loop {
            match next {
                Next::End(end) => return Walk::End(end),
                Next::Call(index) => {
                    let node = &self.nodes[index as usize];
                    // A read is compared where it lies, without copying its value; anything
                    // else (a write, a refusal that logs) is applied.
                    let branch = match state.read(&node.op) {
                        Some(Ok(got)) => node.find_read(got),
                        Some(Err(refusal)) if refusal.message.is_none() => {
                            node.find(&Outcome::refused(refusal.status))
                        }
                        _ => node.find(&state.apply(&node.op)),
                    };
                    match branch {
                        Some(branch) => next = node.branches[branch].1,
                        None => return Walk::Miss,
                    }
                }
            }
        }
    }

    /// Adds a recorded path; whether the tree grew.
    fn insert(&mut self, steps: Vec<(Op, Outcome)>, end: End) -> Result<bool, Conflict> {
        // The branch the walk is at: the root, or an outcome of a node.
        let mut at: Option<(usize, Outcome)> = None;
        let mut grew = false;
        for (op, outcome) in steps {
            let target = self.target(&at);
            let index = match target {
                Some(Next::Call(index)) if self.nodes[index as usize].op == op => index as usize,
                Some(_) => return Err(Conflict),
                None => {
                    let index = self.nodes.len();
                    self.bytes += std::mem::size_of::<Node>() + op.weight();
                    self.nodes.push(Node {
                        op,
                        branches: Vec::new(),
                        index: None,
                    });
                    self.link(at, Next::Call(index as u32));
                    grew = true;
                    index
                }
            };
            at = Some((index, outcome));
        }
        match self.target(&at) {
            Some(Next::End(e)) if e == end => Ok(grew),
            Some(_) => Err(Conflict),
            None => {
                self.link(at, Next::End(end));
                Ok(true)
            }
        }
    }

    fn target(&self, at: &Option<(usize, Outcome)>) -> Option<Next> {
        match at {
            None => self.root,
            Some((node, outcome)) => {
                let node = &self.nodes[*node];
                node.find(outcome).map(|b| node.branches[b].1)
            }
        }
    }

    fn link(&mut self, at: Option<(usize, Outcome)>, next: Next) {
        match at {
            None => self.root = Some(next),
            Some((node, outcome)) => {
                self.bytes += outcome.weight() + std::mem::size_of::<Next>() * 2;
                self.nodes[node].add(outcome, next);
            }
        }
    }
}

/// One event's tree and how well it does.
#[derive(Debug, Default)]
struct Slot {
    tree: RwLock<Tree>,
    /// Invocations in the current window.
    seen: AtomicU32,
    /// Of those, the ones replayed.
    replayed: AtomicU32,
    /// Invocations left to run fresh without recording (after a drop).
    paused: AtomicU32,
    /// The pause the next drop starts.
    next_pause: AtomicU32,
    /// Set after a conflict: replay stays off for this event.
    broken: std::sync::atomic::AtomicBool,
}

/// What replay did with one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Replayed from the tree: the guest did not run.
    Replayed,
    /// The guest ran: replay is off, the tree had no path for these results, or the event is
    /// paused after its tree kept missing.
    Ran,
}

/// What happened to a tree after a fresh run: for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recorded {
    /// The run's path was added to the tree.
    pub added: bool,
    /// A tree was dropped (it kept missing, or outgrew its memory).
    pub dropped: bool,
}

/// The decision trees of one function version, one per event.
#[derive(Debug)]
pub struct Trees {
    slots: [Slot; 4],
    /// Bytes each event's tree may hold.
    budget: usize,
}

impl Trees {
    /// Trees for a function that may use `memory` bytes for all of them, shared evenly by
    /// the `events` it handles.
    pub fn new(memory: usize, events: usize) -> Self {
        Trees {
            slots: Default::default(),
            budget: memory / events.max(1),
        }
    }

    /// Whether to walk the event's tree for the next invocation: `false` while the event is
    /// paused (after a drop) or broken, when the guest runs and is not recorded.
    pub(super) fn begin(&self, event: Event) -> bool {
        let slot = &self.slots[event as usize];
        if slot.broken.load(Ordering::Relaxed) {
            return false;
        }
        // A relaxed read first: the common case (not paused) writes nothing here.
        if slot.paused.load(Ordering::Relaxed) > 0 {
            let _ = slot
                .paused
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| p.checked_sub(1));
            return false;
        }
        true
    }

    /// Walks the event's tree on `state`, applying the recorded calls to it.
    pub(super) fn walk(&self, event: Event, state: &mut HostState) -> Walk {
        let slot = &self.slots[event as usize];
        let walk = match slot.tree.read() {
            Ok(tree) => tree.walk(state),
            Err(_) => Walk::Miss,
        };
        if matches!(walk, Walk::End(_)) {
            slot.replayed.fetch_add(1, Ordering::Relaxed);
        }
        walk
    }

    /// Counts an invocation in its event's window and judges the window when it is full:
    /// whether a tree was dropped.
    pub(super) fn judge(&self, event: Event) -> bool {
        let slot = &self.slots[event as usize];
        if slot.seen.fetch_add(1, Ordering::Relaxed) + 1 < WINDOW {
            return false;
        }
        slot.seen.store(0, Ordering::Relaxed);
        let replayed = slot.replayed.swap(0, Ordering::Relaxed);
        if replayed * 16 >= WINDOW * MIN_HIT_SIXTEENTHS {
            slot.next_pause.store(FIRST_PAUSE, Ordering::Relaxed);
            return false;
        }
        let pause = slot.next_pause.load(Ordering::Relaxed).max(FIRST_PAUSE);
        slot.next_pause
            .store((pause * 2).min(MAX_PAUSE), Ordering::Relaxed);
        slot.paused.store(pause, Ordering::Relaxed);
        if let Ok(mut tree) = slot.tree.write() {
            *tree = Tree::default();
        }
        true
    }

    /// Adds a fresh run's path to the event's tree.
    pub(super) fn record(
        &self,
        event: Event,
        function: &str,
        steps: Vec<(Op, Outcome)>,
        end: End,
    ) -> Recorded {
        let slot = &self.slots[event as usize];
        let Ok(mut tree) = slot.tree.write() else {
            return Recorded::default();
        };
        match tree.insert(steps, end) {
            Ok(added) if tree.bytes > self.budget => {
                // Starting over keeps what is used now, which an old tree may not.
                *tree = Tree::default();
                Recorded {
                    added,
                    dropped: true,
                }
            }
            Ok(added) => Recorded {
                added,
                dropped: false,
            },
            Err(Conflict) => {
                tracing::warn!(target: "edge::function", function, event = event.export_name(),
                    "the same host call results led to different calls; decision replay is off for this function and event");
                slot.broken.store(true, Ordering::Relaxed);
                *tree = Tree::default();
                Recorded {
                    added: false,
                    dropped: true,
                }
            }
        }
    }

    /// Bytes the event's tree holds, roughly.
    pub fn bytes(&self, event: Event) -> usize {
        self.slots[event as usize]
            .tree
            .read()
            .map_or(0, |t| t.bytes)
    }
}

#[cfg(test)]
mod tests {
    //! Targeted tests with hand-written WAT guests, run through `invoke::run` as the node does.

    use std::sync::Arc;

    use edge_sdk::abi::Event;
    use http::{HeaderMap, HeaderValue, Method};

    use super::Replay;
    use crate::config::{Config, FunctionConfig, FunctionLimits};
    use crate::kv::{KvStores, Patch};
    use crate::wasm::invoke::{self, Decision, Input, Invoked};
    use crate::wasm::{Function, FunctionEngine, RequestView};

    /// A guest whose viewer-request is `body`, with the usual imports and strings at fixed
    /// places: "x-a" at 0, "1" at 16, "x-in" at 32, "x-out" at 48, "flags" at 64, "mode" at 80,
    /// "added" at 96, "bad name" at 112; a 256-byte buffer at 1024 and its length slot at 1020.
    fn guest(body: &str) -> String {
        format!(
            r#"(module
  (import "edge_v1" "request_append_header" (func $append (param i32 i32 i32 i32) (result i32)))
  (import "edge_v1" "request_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "edge_v1" "request_get_header" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "edge_v1" "request_get_client_ip" (func $ip (param i32 i32 i32) (result i32)))
  (import "edge_v1" "kv_get" (func $kv (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-a") (data (i32.const 16) "1") (data (i32.const 32) "x-in")
  (data (i32.const 48) "x-out") (data (i32.const 64) "flags") (data (i32.const 80) "mode")
  (data (i32.const 96) "added") (data (i32.const 112) "bad name")
  (func (export "viewer-request") (result i32) {body}))"#
        )
    }

    /// Copies the value just read (length at 1020, bytes at 1024) into request header x-out.
    const COPY_TO_OUT: &str = "(drop (call $set (i32.const 48) (i32.const 5) (i32.const 1024) (i32.load (i32.const 1020))))";

    struct Fixture {
        engine: Arc<FunctionEngine>,
        config: Arc<Config>,
        kv: Arc<KvStores>,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            let flags = dir.path().join("flags.json");
            std::fs::write(&flags, r#"{"mode": "blue"}"#).expect("write");
            let config: Config = format!(
                "[origins.o]\ntype = \"http\"\ntargets = [\"http://127.0.0.1:1\"]\n[[behaviors]]\npath = \"*\"\norigin = \"o\"\n[kv.flags]\nfile = {:?}\n",
                flags.display().to_string()
            )
            .parse()
            .expect("valid config");
            let kv = Arc::new(KvStores::load(&config).expect("stores"));
            Fixture {
                engine: Arc::new(FunctionEngine::new(16 << 20, None).expect("engine")),
                config: Arc::new(config),
                kv,
                _dir: dir,
            }
        }

        fn load(&self, wat: &str) -> Arc<Function> {
            let config = FunctionConfig {
                name: "t".into(),
                module: "inline.wat".into(),
                limits: FunctionLimits::default(),
            };
            Arc::new(self.engine.load(&config, wat.as_bytes()).expect("loads"))
        }

        fn run(&self, function: &Arc<Function>, headers: &[(&str, &str)], ip: &str) -> Invoked {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(
                    http::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    HeaderValue::from_str(value).expect("value"),
                );
            }
            let input = Input {
                config: Arc::clone(&self.config),
                request: RequestView {
                    method: Method::GET,
                    uri: "/x".parse().expect("uri"),
                    headers: map,
                },
                client_ip: ip.parse().expect("ip"),
                response: None,
                kv: Some(Arc::clone(&self.kv)),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let invoked = runtime.block_on(invoke::run(
                &self.engine,
                function,
                Event::ViewerRequest,
                1,
                input,
            ));
            assert!(
                matches!(invoked.result, Ok(Decision::Continue)),
                "{:?}",
                invoked.result.as_ref().err()
            );
            invoked
        }
    }

    fn values(invoked: &Invoked, name: &str) -> Vec<String> {
        invoked
            .request
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("text").to_owned())
            .collect()
    }

    #[test]
    fn a_header_appended_twice_is_appended_twice_in_order_when_replayed() {
        let f = Fixture::new();
        let function = f.load(&guest(
            "(drop (call $append (i32.const 0) (i32.const 3) (i32.const 16) (i32.const 1)))
             (drop (call $append (i32.const 0) (i32.const 3) (i32.const 96) (i32.const 5)))
             (i32.const 0)",
        ));
        let fresh = f.run(&function, &[("x-a", "0")], "127.0.0.1");
        assert_eq!(fresh.replay, Replay::Ran);
        assert!(fresh.recorded.added, "the first run is recorded");
        let replayed = f.run(&function, &[("x-a", "0")], "127.0.0.1");
        assert_eq!(replayed.replay, Replay::Replayed);
        assert_eq!(values(&replayed, "x-a"), ["0", "1", "added"]);
        assert_eq!(values(&replayed, "x-a"), values(&fresh, "x-a"));
        // The writes read nothing, so another request takes the same path, applied to its own
        // headers.
        let other = f.run(&function, &[], "127.0.0.1");
        assert_eq!(other.replay, Replay::Replayed);
        assert_eq!(values(&other, "x-a"), ["1", "added"]);
    }

    #[test]
    fn a_read_of_its_own_write_sees_the_write_when_replayed() {
        let f = Fixture::new();
        // Appends to x-in, then reads x-in (both lines) and copies it to x-out.
        let function = f.load(&guest(&format!(
            "(drop (call $append (i32.const 32) (i32.const 4) (i32.const 96) (i32.const 5)))
             (drop (call $get (i32.const 32) (i32.const 4) (i32.const 1024) (i32.const 256) (i32.const 1020)))
             {COPY_TO_OUT}
             (i32.const 0)"
        )));
        let fresh = f.run(&function, &[("x-in", "one")], "127.0.0.1");
        assert_eq!(values(&fresh, "x-out"), ["one, added"]);
        let replayed = f.run(&function, &[("x-in", "one")], "127.0.0.1");
        assert_eq!(replayed.replay, Replay::Replayed);
        assert_eq!(values(&replayed, "x-out"), ["one, added"]);
        assert_eq!(values(&replayed, "x-in"), ["one", "added"]);
        // Another value of x-in is a result the tree has not seen: the guest runs, on the
        // request as it came (one `added`, not two).
        let other = f.run(&function, &[("x-in", "two")], "127.0.0.1");
        assert_eq!(other.replay, Replay::Ran);
        assert_eq!(values(&other, "x-in"), ["two", "added"]);
        assert_eq!(values(&other, "x-out"), ["two, added"]);
        assert_eq!(
            f.run(&function, &[("x-in", "two")], "127.0.0.1").replay,
            Replay::Replayed
        );
    }

    #[test]
    fn a_refused_header_call_is_logged_when_replayed_as_when_run() {
        let f = Fixture::new();
        // Reads, then appends, a header by an invalid name (each refused with a message), then
        // reads x-in.
        let function = f.load(&guest(&format!(
            "(drop (call $get (i32.const 112) (i32.const 8) (i32.const 1024) (i32.const 256) (i32.const 1020)))
             (drop (call $append (i32.const 112) (i32.const 8) (i32.const 16) (i32.const 1)))
             (drop (call $get (i32.const 32) (i32.const 4) (i32.const 1024) (i32.const 256) (i32.const 1020)))
             {COPY_TO_OUT}
             (i32.const 0)"
        )));
        let fresh = f.run(&function, &[("x-in", "one")], "127.0.0.1");
        assert_eq!(fresh.logs.len(), 2, "{:?}", fresh.logs);
        assert!(
            fresh
                .logs
                .iter()
                .all(|(_, line)| line.contains("not a valid header name")),
            "{:?}",
            fresh.logs
        );
        let replayed = f.run(&function, &[("x-in", "one")], "127.0.0.1");
        assert_eq!(replayed.replay, Replay::Replayed);
        assert_eq!(replayed.logs, fresh.logs);
        assert_eq!(values(&replayed, "x-out"), ["one"]);
    }

    #[test]
    fn a_function_that_reads_the_clock_is_never_replayed() {
        let f = Fixture::new();
        let function = f.load(&guest(
            "(drop (call $clock (i32.const 0) (i64.const 1) (i32.const 1024)))
             (drop (call $set (i32.const 0) (i32.const 3) (i32.const 16) (i32.const 1)))
             (i32.const 0)",
        ));
        for _ in 0..3 {
            let invoked = f.run(&function, &[], "127.0.0.1");
            assert_eq!(invoked.replay, Replay::Ran);
            assert!(!invoked.recorded.added);
            assert_eq!(
                invoked.not_replayable.as_deref(),
                Some("it read the clock (clock_time_get)")
            );
        }
        let plain = f.load(&guest("(i32.const 0)"));
        assert_eq!(f.run(&plain, &[], "127.0.0.1").not_replayable, None);
    }

    #[test]
    fn a_kv_change_is_seen_by_the_next_request() {
        let f = Fixture::new();
        let function = f.load(&guest(&format!(
            "(drop (call $kv (i32.const 64) (i32.const 5) (i32.const 80) (i32.const 4) (i32.const 1024) (i32.const 256) (i32.const 1020)))
             {COPY_TO_OUT}
             (i32.const 0)"
        )));
        assert_eq!(
            values(&f.run(&function, &[], "127.0.0.1"), "x-out"),
            ["blue"]
        );
        let replayed = f.run(&function, &[], "127.0.0.1");
        assert_eq!(
            (replayed.replay, values(&replayed, "x-out")),
            (Replay::Replayed, vec!["blue".to_owned()])
        );
        let mut patch = Patch::default();
        patch.set.insert("mode".into(), "green".into());
        f.kv.patch("flags", patch).expect("patched");
        let next = f.run(&function, &[], "127.0.0.1");
        assert_eq!(values(&next, "x-out"), ["green"]);
        let again = f.run(&function, &[], "127.0.0.1");
        assert_eq!(
            (again.replay, values(&again, "x-out")),
            (Replay::Replayed, vec!["green".to_owned()])
        );
    }

    /// Runs `function` with `inputs(i)` for `n` requests that never repeat; how many of the
    /// last `tail` were recorded.
    fn recorded_after(
        f: &Fixture,
        function: &Arc<Function>,
        n: usize,
        tail: usize,
        input: impl Fn(usize) -> (Vec<(String, String)>, String),
    ) -> (usize, bool) {
        let mut dropped = false;
        let mut recorded = 0;
        for i in 0..n {
            let (headers, ip) = input(i);
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let invoked = f.run(function, &headers, &ip);
            assert_eq!(invoked.replay, Replay::Ran, "request {i} never repeats");
            dropped |= invoked.recorded.dropped;
            if i >= n - tail && invoked.recorded.added {
                recorded += 1;
            }
        }
        (recorded, dropped)
    }

    #[test]
    fn a_function_that_reads_the_client_ip_stops_being_recorded() {
        let f = Fixture::new();
        let function = f.load(&guest(&format!(
            "(drop (call $ip (i32.const 1024) (i32.const 256) (i32.const 1020)))
             {COPY_TO_OUT}
             (i32.const 0)"
        )));
        let (recorded, dropped) = recorded_after(&f, &function, 600, 300, |i| {
            (Vec::new(), format!("10.0.{}.{}", i / 250, i % 250))
        });
        assert!(dropped, "the tree that kept missing was dropped");
        assert_eq!(recorded, 0, "and the function runs without recording");
        assert_eq!(
            function
                .trees
                .as_ref()
                .expect("replay on")
                .bytes(Event::ViewerRequest),
            0
        );
    }

    #[test]
    fn a_function_that_reads_a_session_cookie_stops_being_recorded() {
        let f = Fixture::new();
        let function = f.load(&guest(&format!(
            "(drop (call $get (i32.const 32) (i32.const 4) (i32.const 1024) (i32.const 256) (i32.const 1020)))
             {COPY_TO_OUT}
             (i32.const 0)"
        )));
        let (recorded, dropped) = recorded_after(&f, &function, 600, 300, |i| {
            (
                vec![("x-in".into(), format!("session={i}"))],
                "127.0.0.1".into(),
            )
        });
        assert!(dropped);
        assert_eq!(recorded, 0);
    }

    #[test]
    fn a_tree_never_holds_more_than_replay_memory() {
        let f = Fixture::new();
        let config = FunctionConfig {
            name: "t".into(),
            module: "inline.wat".into(),
            limits: FunctionLimits {
                replay_memory: 2048,
                ..FunctionLimits::default()
            },
        };
        let wat = guest(&format!(
            "(drop (call $get (i32.const 32) (i32.const 4) (i32.const 1024) (i32.const 256) (i32.const 1020)))
             {COPY_TO_OUT}
             (i32.const 0)"
        ));
        let function = Arc::new(f.engine.load(&config, wat.as_bytes()).expect("loads"));
        let trees = function.trees.as_ref().expect("replay on");
        let mut dropped = 0;
        // Ten values, each repeated: most requests replay (the tree is not judged a failure),
        // but the paths together need more than 2 KiB.
        for i in 0..100 {
            let value = format!("{:0>100}", i % 10);
            let invoked = f.run(&function, &[("x-in", &value)], "127.0.0.1");
            assert_eq!(values(&invoked, "x-out"), [value]);
            dropped += usize::from(invoked.recorded.dropped);
            assert!(trees.bytes(Event::ViewerRequest) <= 2048);
        }
        assert!(dropped > 0, "the tree outgrew its memory and started over");
    }

    #[test]
    fn replay_off_always_runs_the_guest() {
        let f = Fixture::new();
        let config = FunctionConfig {
            name: "t".into(),
            module: "inline.wat".into(),
            limits: FunctionLimits {
                replay: false,
                ..FunctionLimits::default()
            },
        };
        let function = Arc::new(
            f.engine
                .load(&config, guest("(i32.const 0)").as_bytes())
                .expect("loads"),
        );
        for _ in 0..3 {
            let invoked = f.run(&function, &[], "127.0.0.1");
            assert_eq!(invoked.replay, Replay::Ran);
            assert_eq!(
                invoked.not_replayable.as_deref(),
                Some("replay is off for this function (replay = false)")
            );
        }
    }
}
