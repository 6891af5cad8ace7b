//! Which function runs at which event of each behavior, for one version of the node.
//!
//! A registry is immutable: publishing a function or reloading the config builds a new one
//! and swaps it in, while in-flight requests finish with the one they started with. A behavior
//! with no functions gets an empty [`BehaviorFunctions`] and its requests never touch wasmtime.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use edge_sdk::abi::Event;
use wasmtime::{InstancePre, Module, ModuleExport};

use super::engine::FunctionEngine;
use super::state::HostState;
use super::Error;
use crate::config::{Config, FunctionConfig, FunctionLimits};

/// A validated, pre-linked function.
pub struct Function {
    /// Its name.
    pub name: Arc<str>,
    /// Pre-linked module: instantiation skips import resolution.
    pub(crate) pre: InstancePre<HostState>,
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
    /// Set when an invocation ran past the inline budget, cleared when one in the slow lane
    /// ends within it: while set, invocations go straight to the slow lane
    /// (`wasm::slow_lane`), instead of first holding up an async worker each.
    pub(crate) slow: AtomicBool,
}

impl Function {
    pub(crate) fn new(
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
            events,
            initialize: module.get_export_index("_initialize"),
            memory: module.get_export_index("memory"),
            entries: Event::ALL.map(|e| module.get_export_index(e.export_name())),
            limits: config.limits.clone(),
            hash,
            size,
            slow: AtomicBool::new(false),
        }
    }

    /// Whether it handles `event`.
    pub fn handles(&self, event: Event) -> bool {
        self.events.contains(&event)
    }
}

/// The functions attached to one behavior, per event.
#[derive(Default, Clone)]
pub struct BehaviorFunctions {
    by_event: [Option<Arc<Function>>; 4],
}

impl BehaviorFunctions {
    /// The function for `event`, if any.
    pub fn get(&self, event: Event) -> Option<&Arc<Function>> {
        self.by_event[event as usize].as_ref()
    }

    /// Whether any function is attached.
    pub fn is_empty(&self) -> bool {
        self.by_event.iter().all(Option::is_none)
    }
}

/// The functions of one node version.
pub struct Registry {
    /// The engine they run in (shared by every version).
    pub engine: Arc<FunctionEngine>,
    behaviors: Vec<BehaviorFunctions>,
}

impl Registry {
    /// Attaches `live` functions (by name) to the behaviors of `config`.
    pub fn build(
        config: &Config,
        engine: Arc<FunctionEngine>,
        live: &BTreeMap<String, Arc<Function>>,
    ) -> Result<Self, Error> {
        let mut behaviors = Vec::with_capacity(config.behaviors.len());
        for (i, b) in config.behaviors.iter().enumerate() {
            let mut attached = BehaviorFunctions::default();
            for (event, index) in &b.functions {
                let name = &config.functions[*index].name;
                let function = live.get(name).ok_or_else(|| Error::Invalid {
                    function: name.clone(),
                    reason: format!("behaviors[{i}] uses it but it has no LIVE version"),
                })?;
                if !function.handles(*event) {
                    return Err(Error::Invalid {
                        function: name.clone(),
                        reason: format!(
                            "behaviors[{i}] attaches it to {} but the module exports no `{}` entry point",
                            event.config_name(),
                            event.export_name()
                        ),
                    });
                }
                attached.by_event[*event as usize] = Some(Arc::clone(function));
            }
            behaviors.push(attached);
        }
        Ok(Registry { engine, behaviors })
    }

    /// The functions of behavior `index`.
    pub fn behavior(&self, index: usize) -> &BehaviorFunctions {
        &self.behaviors[index]
    }
}
