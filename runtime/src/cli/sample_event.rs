//! The sample event of `edge test` and `edge test-function`: an event name and JSON files for
//! the request and, for response events, the response, in the shapes of
//! [`edge_runtime::wasm::test_event`].

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::builder::PossibleValuesParser;
use edge_runtime::wasm::test_event::{TestEvent, TestRequest, TestResponse};
use edge_sdk::abi::Event;
use serde::de::DeserializeOwned;

/// `--event`, `--request`, `--response`.
#[derive(clap::Args, Debug)]
pub struct EventArgs {
    /// The event to run.
    #[arg(long, value_parser = PossibleValuesParser::new(Event::ALL.map(Event::export_name)))]
    pub event: String,
    /// The request, as JSON: {"method": "GET", "uri": "/path?q=1", "headers": {"name":
    /// "value"}, "client_ip": "192.0.2.1"}; only `uri` is required.
    #[arg(long, value_name = "REQUEST.json")]
    pub request: PathBuf,
    /// The response, for origin-response and viewer-response, as JSON: {"status": 200,
    /// "headers": {"name": "value"}, "body": "text"}; only `status` is required.
    #[arg(long, value_name = "RESPONSE.json")]
    pub response: Option<PathBuf>,
}

impl EventArgs {
    /// Reads and checks the files.
    pub fn read(&self) -> anyhow::Result<TestEvent> {
        Ok(TestEvent {
            event: self.event.clone(),
            request: read_json::<TestRequest>(&self.request, "request")?,
            response: self
                .response
                .as_deref()
                .map(|path| read_json::<TestResponse>(path, "response"))
                .transpose()?,
        })
    }

    /// The body of the admin API's `POST /functions/NAME/test`.
    pub fn to_json(&self) -> anyhow::Result<serde_json::Value> {
        let event = self.read()?;
        Ok(serde_json::json!({
            "event": event.event,
            "request": event.request,
            "response": event.response,
        }))
    }
}

fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a sample {what}", path.display()))
}
