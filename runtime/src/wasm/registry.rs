//! Loaded functions by name, and which function runs at which event of each behavior.
//!
//! Built once at start from the config; a behavior with no functions gets an empty
//! [`BehaviorFunctions`] and its requests never touch wasmtime.

use std::collections::HashMap;
use std::sync::Arc;

use edge_sdk::abi::Event;
use wasmtime::{InstancePre, Module};

use super::engine::FunctionEngine;
use super::state::HostState;
use super::Error;
use crate::config::{Config, FunctionConfig, FunctionLimits};

/// A validated, pre-linked function.
pub struct Function {
    /// Its config name.
    pub name: Arc<str>,
    /// Pre-linked module: instantiation skips import resolution.
    pub(crate) pre: InstancePre<HostState>,
    /// Events it exports an entry point for.
    pub events: Vec<Event>,
    /// Whether it exports `_initialize`.
    pub(crate) has_initialize: bool,
    /// Its limits.
    pub limits: FunctionLimits,
    /// SHA-256 of the module's binary form.
    pub hash: String,
    /// Size of the module as loaded, in bytes.
    pub size: usize,
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
            has_initialize: module.get_export("_initialize").is_some(),
            limits: config.limits.clone(),
            hash,
            size,
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

/// Every loaded function of a node.
pub struct Registry {
    /// The engine they run in.
    pub engine: FunctionEngine,
    functions: HashMap<String, Arc<Function>>,
    behaviors: Vec<BehaviorFunctions>,
}

impl Registry {
    /// Loads every `[functions.*]` module and resolves the behaviors' attachments. `None` when
    /// the config declares no functions: no engine is created at all.
    pub fn load(config: &Config) -> Result<Option<Self>, Error> {
        if config.functions.is_empty() {
            return Ok(None);
        }
        let max_memory = config
            .functions
            .iter()
            .map(|f| f.limits.memory)
            .max()
            .unwrap_or(0);
        let engine = FunctionEngine::new(max_memory, config.server.compile_cache.clone())?;
        let mut functions = HashMap::new();
        for f in &config.functions {
            let loaded = engine.load_file(f)?;
            tracing::info!(function = %f.name, module = %f.module.display(), size = loaded.size, events = ?loaded.events.iter().map(|e| e.export_name()).collect::<Vec<_>>(), "function loaded");
            functions.insert(f.name.clone(), Arc::new(loaded));
        }
        let mut behaviors = Vec::with_capacity(config.behaviors.len());
        for (i, b) in config.behaviors.iter().enumerate() {
            let mut attached = BehaviorFunctions::default();
            for (event, index) in &b.functions {
                let name = &config.functions[*index].name;
                let function = Arc::clone(&functions[name]);
                if !function.handles(*event) {
                    return Err(Error::Invalid {
                        function: name.clone(),
                        reason: format!("behaviors[{i}] attaches it to {} but the module exports no `{}` entry point", event.config_name(), event.export_name()),
                    });
                }
                attached.by_event[*event as usize] = Some(function);
            }
            behaviors.push(attached);
        }
        Ok(Some(Registry {
            engine,
            functions,
            behaviors,
        }))
    }

    /// The functions of behavior `index`.
    pub fn behavior(&self, index: usize) -> &BehaviorFunctions {
        &self.behaviors[index]
    }

    /// A function by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Function>> {
        self.functions.get(name)
    }
}
