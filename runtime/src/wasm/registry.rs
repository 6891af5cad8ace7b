//! Which function runs at which event of each behavior, for one version of the node.
//!
//! A registry is immutable: publishing a function or reloading the config builds a new one
//! and swaps it in, while in-flight requests finish with the one they started with. A behavior
//! with no functions gets an empty [`BehaviorFunctions`] and its requests never touch wasmtime.

use std::collections::BTreeMap;
use std::sync::Arc;

use edge_sdk::abi::Event;

use super::engine::FunctionEngine;
use super::function::Function;
use super::Error;
use crate::config::Config;

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
