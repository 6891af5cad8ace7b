//! `edge test-function MODULE --event E --request REQ.json`: runs a module against a sample
//! event with no node at all (an engine of its own, no listener, no origins contacted) and
//! prints what the function did, as the admin API's test call does on a node.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use edge_runtime::config::{Config, FunctionConfig};
use edge_runtime::kv::KvStores;
use edge_runtime::wasm::test_event::{self, TestResult};
use edge_runtime::wasm::FunctionEngine;

use super::sample_event::EventArgs;

/// Run a module against a sample event, with no node, and print what it did.
#[derive(clap::Args, Debug)]
pub struct TestFunction {
    /// The module (`.wasm` or `.wat`).
    pub module: PathBuf,
    #[command(flatten)]
    pub event: EventArgs,
    /// A config whose origins `origin_set` may name and whose key-value stores the function
    /// reads (and whose limits apply, if one of its `[functions.*]` uses this module); without
    /// it there are no origins, no stores, and default limits.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

impl TestFunction {
    /// Runs the module and prints the result as JSON; an error when the function failed.
    pub fn run(&self) -> anyhow::Result<()> {
        let event = self.event.read()?;
        let config = match &self.config {
            Some(path) => Config::load(path)?,
            None => config_without_origins()?,
        };
        let function_config = function_config(&config, &self.module);
        let engine = FunctionEngine::new(function_config.limits.memory, None)?;
        let function = engine.load_file(&function_config)?;
        let kv = Arc::new(KvStores::load(&config)?);
        let result = test_event::run(&engine, &function, Arc::new(config), kv, &event)
            .map_err(|e| anyhow!("invalid sample event: {e}"))?;
        print_result(&result)?;
        if let Some(error) = &result.error {
            bail!("{error}");
        }
        Ok(())
    }
}

/// Prints a test result as pretty JSON on stdout.
fn print_result(result: &TestResult) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(result).context("cannot encode the result")?
    );
    Ok(())
}

/// The config's entry for `module` if it has one (its name and limits), else the module with
/// default limits, named after its file.
fn function_config(config: &Config, module: &Path) -> FunctionConfig {
    let canonical = std::fs::canonicalize(module).ok();
    if let Some(entry) = config
        .functions
        .iter()
        .find(|f| canonical.is_some() && std::fs::canonicalize(&f.module).ok() == canonical)
    {
        return entry.clone();
    }
    FunctionConfig {
        name: module
            .file_stem()
            .map_or_else(|| "function".into(), |s| s.to_string_lossy().into_owned()),
        module: module.to_owned(),
        limits: Default::default(),
    }
}

/// A config with no origins, so `origin_set` answers `NOT_FOUND` for any name. A config needs
/// a behavior and so an origin to validate; both are dropped once it has.
fn config_without_origins() -> anyhow::Result<Config> {
    let mut config = Config::parse(
        "[origins.none]\ntype = \"static\"\nroot = \"/\"\n[[behaviors]]\npath = \"*\"\norigin = \"none\"\n",
        "<test-function>",
        Path::new("/"),
    )
    .context("building an empty config")?;
    config.behaviors.clear();
    config.origins.clear();
    Ok(config)
}
