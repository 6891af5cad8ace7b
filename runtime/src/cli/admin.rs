//! The commands that drive a running node through its admin API: `upload`, `test`, `publish`,
//! `rollback`, `list`, `describe`, `delete`, `kv` and `invalidate`. Each prints the API's JSON
//! answer on stdout; an answer that is not 2xx is an error (its message on stderr, exit
//! status 1).
//!
//! Which node: `--admin URL`, else `--data-dir DIR` (the `addresses.json` a running node writes
//! there), else `--config FILE` (its `[admin]`: the address file in its `data_dir`, or its
//! `listen`; and its token), else `$EDGE_ADMIN`, else `./edge.toml` if it names an admin API,
//! else `http://127.0.0.1:9901`. `edge invalidate` also talks to several nodes at once:
//! `--admin` repeated and/or `--fleet FILE`, printing one line per node.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use edge_runtime::config::Config;
use edge_runtime::{NodeAddresses, ADDRESS_FILE};

use super::admin_client::{function_path, kv_path, AdminClient, DEFAULT_ADMIN_URL};
use super::sample_event::EventArgs;

/// Where the admin API is and how to authenticate; every admin command takes these.
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// The node's admin API [default: found from --data-dir, --config, $EDGE_ADMIN or
    /// ./edge.toml, else http://127.0.0.1:9901]; `edge invalidate` takes it more than once.
    #[arg(long, value_name = "URL")]
    pub admin: Vec<String>,
    /// A local node's data directory: its admin address is read from the addresses.json the
    /// running node keeps there.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A local node's config file: its admin address (through its data_dir, or its listen
    /// address) and its token.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The admin API's bearer token (`[admin] token` of the node's config).
    #[arg(long, env = "EDGE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl AdminArgs {
    fn client(&self) -> anyhow::Result<AdminClient> {
        let (url, token) = self.resolve()?;
        AdminClient::new(&url, self.token.as_deref().or(token.as_deref()))
    }

    /// The admin URL, and the config's token when the address came from a config.
    fn resolve(&self) -> anyhow::Result<(String, Option<String>)> {
        match self.admin.as_slice() {
            [] => {}
            [url] => return Ok((url.clone(), None)),
            several => bail!(
                "--admin given {} times: only `edge invalidate` talks to several nodes",
                several.len()
            ),
        }
        if let Some(dir) = &self.data_dir {
            return Ok((from_address_file(dir)?, None));
        }
        if let Some(path) = &self.config {
            let config = Config::load(path)?;
            return from_config(path, &config);
        }
        if let Some(url) = std::env::var("EDGE_ADMIN").ok().filter(|u| !u.is_empty()) {
            return Ok((url, None));
        }
        // The file `edge serve` reads by default; anything wrong with it just means no node.
        let implicit = Path::new("edge.toml");
        if let Ok(config) = Config::load(implicit) {
            if let Ok(found) = from_config(implicit, &config) {
                return Ok(found);
            }
        }
        Ok((DEFAULT_ADMIN_URL.to_owned(), None))
    }
}

impl AdminArgs {
    /// The token for nodes named by address: `--token` (or `$EDGE_ADMIN_TOKEN`), else the
    /// `--config` file's, since a fleet shares one admin token.
    fn fleet_token(&self) -> anyhow::Result<Option<String>> {
        if let Some(token) = &self.token {
            return Ok(Some(token.clone()));
        }
        match &self.config {
            Some(path) => Ok(Config::load(path)?.admin.and_then(|a| a.token)),
            None => Ok(None),
        }
    }
}

/// The admin URL in `<dir>/addresses.json`.
fn from_address_file(dir: &Path) -> anyhow::Result<String> {
    let file = dir.join(ADDRESS_FILE);
    let addresses = NodeAddresses::read(dir).with_context(|| {
        format!(
            "cannot read {}: is a node with this data_dir running?",
            file.display()
        )
    })?;
    let admin = addresses
        .admin
        .with_context(|| format!("{}: the node has no admin API", file.display()))?;
    Ok(format!("http://{admin}"))
}

/// The admin URL of a node run with `config`: from the address file in its data directory,
/// else its `listen` address when that is a real port.
fn from_config(path: &Path, config: &Config) -> anyhow::Result<(String, Option<String>)> {
    let admin = config
        .admin
        .as_ref()
        .with_context(|| format!("{}: no [admin] section", path.display()))?;
    let token = admin.token.clone();
    if let Some(dir) = &admin.data_dir {
        if let Ok(url) = from_address_file(dir) {
            return Ok((url, token));
        }
    }
    let mut listen = admin.listen;
    if listen.port() == 0 {
        bail!(
            "{}: the admin API listens on port 0 and no running node wrote its address (to {ADDRESS_FILE} in [admin] data_dir): is the node running?",
            path.display()
        );
    }
    if listen.ip().is_unspecified() {
        listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok((format!("http://{listen}"), token))
}

/// A function stage to test.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum TestStage {
    /// The uploaded, unpublished version.
    #[default]
    Development,
    /// The version serving requests.
    Live,
}

/// An admin command.
#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Upload a module (`.wasm` or `.wat`) as a function's DEVELOPMENT version.
    Upload {
        /// The function.
        name: String,
        /// The module file.
        file: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Run a function's DEVELOPMENT (or LIVE) version on the node against a sample event.
    Test {
        /// The function.
        name: String,
        #[command(flatten)]
        event: EventArgs,
        /// The stage to run.
        #[arg(long, value_enum, default_value_t)]
        stage: TestStage,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a function's DEVELOPMENT version LIVE (the current LIVE is kept for rollback).
    Publish {
        /// The function.
        name: String,
        /// Make the config file's module LIVE instead (the way back after an upload).
        #[arg(long)]
        from_config: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make the version that was LIVE before the current one LIVE again.
    Rollback {
        /// The function.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the functions: stages, LIVE history, config modules an upload shadows.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one function: its stages, LIVE history and the behaviors using it.
    Describe {
        /// The function.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a function that no behavior uses, with its stored versions.
    Delete {
        /// The function.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Read and change the key-value stores functions read.
    Kv {
        #[command(subcommand)]
        command: KvCommand,
    },
    /// Remove cached objects by path (`/index.html`, or a prefix like `/img/*`), on one node or
    /// on several (`--admin` repeated, `--fleet`): then one line per node, address and result.
    Invalidate {
        /// Paths, each starting with `/`, optionally ending with one `*`.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// A file of admin API addresses, one per line (`#` starts a comment), added to any
        /// `--admin`.
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

impl AdminCommand {
    /// Makes the call and prints the answer.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            AdminCommand::Upload { name, file, admin } => {
                let module = std::fs::read(&file)
                    .with_context(|| format!("cannot read module {}", file.display()))?;
                print(
                    &admin
                        .client()?
                        .put_module(&function_path(&name, ""), module)
                        .await?,
                )
            }
            AdminCommand::Test {
                name,
                event,
                stage,
                admin,
            } => {
                let body = event.to_json()?;
                let query = match stage {
                    TestStage::Development => "",
                    TestStage::Live => "?stage=live",
                };
                let result = admin
                    .client()?
                    .post_json(&function_path(&name, &format!("/test{query}")), &body)
                    .await?;
                print(&result)?;
                // Like `test-function`: a function that failed fails the command, so scripts
                // can test before they publish.
                if let Some(error) = result.get("error").and_then(|e| e.as_str()) {
                    bail!("{error}");
                }
                Ok(())
            }
            AdminCommand::Publish {
                name,
                from_config,
                admin,
            } => {
                let query = if from_config { "?source=config" } else { "" };
                print(
                    &admin
                        .client()?
                        .post(&function_path(&name, &format!("/publish{query}")))
                        .await?,
                )
            }
            AdminCommand::Rollback { name, admin } => print(
                &admin
                    .client()?
                    .post(&function_path(&name, "/rollback"))
                    .await?,
            ),
            AdminCommand::List { admin } => {
                let list = admin.client()?.get("/functions").await?;
                print(&list)?;
                for function in list.as_array().into_iter().flatten() {
                    if function["shadowed"] == true {
                        let name = function["name"].as_str().unwrap_or_default();
                        eprintln!(
                            "note: {name}: an upload is LIVE, not the config's module {}; `edge publish {name} --from-config` serves the module",
                            function["config_module"].as_str().unwrap_or_default()
                        );
                    }
                }
                Ok(())
            }
            AdminCommand::Describe { name, admin } => {
                print(&admin.client()?.get(&function_path(&name, "")).await?)
            }
            AdminCommand::Delete { name, admin } => {
                print(&admin.client()?.delete(&function_path(&name, "")).await?)
            }
            AdminCommand::Kv { command } => command.run().await,
            AdminCommand::Invalidate {
                paths,
                fleet: None,
                admin,
            } if admin.admin.len() <= 1 => print(
                &admin
                    .client()?
                    .post_json("/invalidations", &serde_json::json!({ "paths": paths }))
                    .await?,
            ),
            AdminCommand::Invalidate {
                paths,
                fleet,
                admin,
            } => invalidate_fleet(&admin, fleet.as_deref(), paths).await,
        }
    }
}

/// `edge invalidate` on several nodes at once: one line per node, in the order given, with the
/// node's address and the accepted invalidation's id or the error; fails if any node did.
async fn invalidate_fleet(
    admin: &AdminArgs,
    fleet: Option<&Path>,
    paths: Vec<String>,
) -> anyhow::Result<()> {
    let mut nodes = admin.admin.clone();
    if let Some(file) = fleet {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the fleet file {}", file.display()))?;
        let listed = fleet_addresses(&text);
        if listed.is_empty() {
            bail!("{}: no admin addresses in it", file.display());
        }
        nodes.extend(listed);
    }
    let token = admin.fleet_token()?;
    let body = serde_json::json!({ "paths": paths });
    // Every node at once: a slow or unreachable node must not hold back the rest.
    let calls: Vec<_> = nodes
        .iter()
        .map(|url| {
            let (url, token, body) = (url.clone(), token.clone(), body.clone());
            tokio::spawn(async move {
                AdminClient::new(&url, token.as_deref())?
                    .post_json("/invalidations", &body)
                    .await
            })
        })
        .collect();
    let mut failed = 0;
    for (url, call) in nodes.iter().zip(calls) {
        let result = call
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the call failed: {e}")));
        match result {
            Ok(answer) => println!("{url} {}", accepted(&answer)),
            Err(e) => {
                failed += 1;
                println!("{url} error: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} nodes did not invalidate", nodes.len());
    }
    Ok(())
}

/// The admin addresses in a fleet file: one per line; blank lines and `#` comments skipped.
fn fleet_addresses(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            line.split_once('#')
                .map_or(line, |(before, _)| before)
                .trim()
        })
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One node's result for an accepted invalidation: `accepted ID (N objects removed)`.
fn accepted(answer: &serde_json::Value) -> String {
    let id = match &answer["id"] {
        serde_json::Value::String(id) => id.clone(),
        other => other.to_string(),
    };
    match answer["objects_removed"].as_u64() {
        Some(1) => format!("accepted {id} (1 object removed)"),
        Some(removed) => format!("accepted {id} ({removed} objects removed)"),
        None => format!("accepted {id}"),
    }
}

fn print(value: &serde_json::Value) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("cannot encode the answer")?
    );
    Ok(())
}

/// `edge kv`: one key-value store operation.
#[derive(clap::Subcommand, Debug)]
pub enum KvCommand {
    /// Every store and its key count, or every pair of STORE.
    List {
        /// The store.
        store: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One key's value.
    Get {
        /// The store.
        store: String,
        /// The key.
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set one key (atomically; on disk before it answers, with a data directory).
    Put {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove one key (a key that is not there is no error).
    Delete {
        /// The store.
        store: String,
        /// The key.
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

impl KvCommand {
    /// Makes the call and prints the answer.
    pub async fn run(self) -> anyhow::Result<()> {
        let answer = match self {
            KvCommand::List { store: None, admin } => admin.client()?.get("/kv").await?,
            KvCommand::List {
                store: Some(store),
                admin,
            } => admin.client()?.get(&kv_path(&store, None)).await?,
            KvCommand::Get { store, key, admin } => {
                admin.client()?.get(&kv_path(&store, Some(&key))).await?
            }
            KvCommand::Put {
                store,
                key,
                value,
                admin,
            } => {
                let patch = serde_json::json!({ "set": { key: value } });
                admin
                    .client()?
                    .patch_json(&kv_path(&store, None), &patch)
                    .await?
            }
            KvCommand::Delete { store, key, admin } => {
                let patch = serde_json::json!({ "delete": [key] });
                admin
                    .client()?
                    .patch_json(&kv_path(&store, None), &patch)
                    .await?
            }
        };
        print(&answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_files_skip_comments_and_blank_lines() {
        let text = "# regional tier\nhttp://rec-0.rec:9901\n\n  rec-1.rec:9901  # second\n#http://old:9901\n";
        assert_eq!(
            fleet_addresses(text),
            ["http://rec-0.rec:9901", "rec-1.rec:9901"]
        );
    }

    #[test]
    fn an_accepted_invalidation_names_its_id_and_removals() {
        let answer = serde_json::json!({"id": "7", "status": "Completed", "objects_removed": 2});
        assert_eq!(accepted(&answer), "accepted 7 (2 objects removed)");
        let answer = serde_json::json!({"id": "8", "objects_removed": 1});
        assert_eq!(accepted(&answer), "accepted 8 (1 object removed)");
    }
}
