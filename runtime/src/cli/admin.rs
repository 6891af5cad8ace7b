//! The commands that drive a running node through its admin API: `upload`, `test`, `publish`,
//! `rollback`, `list` and `invalidate`. Each prints the API's JSON answer on stdout; an answer
//! that is not 2xx is an error (its message on stderr, exit status 1).

use std::path::PathBuf;

use anyhow::{bail, Context as _};

use super::admin_client::{function_path, AdminClient, DEFAULT_ADMIN_URL};
use super::sample_event::EventArgs;

/// Where the admin API is and how to authenticate; every admin command takes these.
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// The node's admin API.
    #[arg(long, value_name = "URL", default_value = DEFAULT_ADMIN_URL)]
    pub admin: String,
    /// The admin API's bearer token (`[admin] token` of the node's config).
    #[arg(long, env = "EDGE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl AdminArgs {
    fn client(&self) -> anyhow::Result<AdminClient> {
        AdminClient::new(&self.admin, self.token.as_deref())
    }
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
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a function's previous LIVE version LIVE again.
    Rollback {
        /// The function.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the functions and their stages.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove cached objects by path (`/index.html`, or a prefix like `/img/*`).
    Invalidate {
        /// Paths, each starting with `/`, optionally ending with one `*`.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
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
            AdminCommand::Publish { name, admin } => print(
                &admin
                    .client()?
                    .post(&function_path(&name, "/publish"))
                    .await?,
            ),
            AdminCommand::Rollback { name, admin } => print(
                &admin
                    .client()?
                    .post(&function_path(&name, "/rollback"))
                    .await?,
            ),
            AdminCommand::List { admin } => print(&admin.client()?.get("/functions").await?),
            AdminCommand::Invalidate { paths, admin } => print(
                &admin
                    .client()?
                    .post_json("/invalidations", &serde_json::json!({ "paths": paths }))
                    .await?,
            ),
        }
    }
}

fn print(value: &serde_json::Value) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("cannot encode the answer")?
    );
    Ok(())
}
