//! A loaded function: its pre-linked module, the events it handles, its limits, and what the
//! node learned about it while running it (whether it runs long, its decision trees).

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use edge_sdk::abi::Event;
use wasmtime::{InstancePre, Module, ModuleExport};

use super::replay::Trees;
use super::slow_lane::SlowRequests;
use super::state::HostState;
use crate::config::{FunctionConfig, FunctionLimits};

/// A validated, pre-linked function.
pub struct Function {
    /// Its name.
    pub name: Arc<str>,
    /// Pre-linked module: instantiation skips import resolution.
    pub(super) pre: InstancePre<HostState>,
    /// Events it exports an entry point for.
    pub events: Vec<Event>,
    /// `_initialize`, if exported, looked up once: a name lookup per call costs measurable time.
    pub(crate) initialize: Option<ModuleExport>,
    /// `memory`, looked up once.
    pub(crate) memory: Option<ModuleExport>,
    /// The entry point per event, looked up once.
    pub(crate) entries: [Option<ModuleExport>; 4],
    /// Its limits.
    pub limits: FunctionLimits,
    /// SHA-256 of the module's binary form.
    pub hash: String,
    /// Size of the module as loaded, in bytes.
    pub size: usize,
    /// Set when an invocation ran past the inline budget: from then on each invocation looks
    /// its request up in `slow_requests`, and known slow ones go straight to the slow lane
    /// (`wasm::slow_lane`) instead of first holding up an async worker each. Never cleared:
    /// the lookup costs tens of nanoseconds.
    pub(crate) slow: AtomicBool,
    /// Its requests that ran past the inline budget (`wasm::slow_lane`).
    pub(crate) slow_requests: SlowRequests,
    /// Places it holds in the slow lane.
    pub(crate) lane_seats: Arc<AtomicUsize>,
    /// Its decision trees (`wasm::replay`); `None` with `replay = false`.
    pub(super) trees: Option<Trees>,
}

impl Function {
    pub(super) fn new(
        config: &FunctionConfig,
        pre: InstancePre<HostState>,
        events: Vec<Event>,
        module: &Module,
        hash: String,
        size: usize,
    ) -> Self {
        Function {
            name: Arc::from(config.name.as_str()),
            pre,
            trees: config
                .limits
                .replay
                .then(|| Trees::new(config.limits.replay_memory, events.len())),
            events,
            initialize: module.get_export_index("_initialize"),
            memory: module.get_export_index("memory"),
            entries: Event::ALL.map(|e| module.get_export_index(e.export_name())),
            limits: config.limits.clone(),
            hash,
            size,
            slow: AtomicBool::new(false),
            slow_requests: SlowRequests::default(),
            lane_seats: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether it handles `event`.
    pub fn handles(&self, event: Event) -> bool {
        self.events.contains(&event)
    }
}
