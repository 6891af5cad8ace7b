//! The commands of the `edge` binary, one module per group; `main.rs` only parses arguments
//! and dispatches here. This is the CLI edge of the program, so errors are `anyhow` here.
//!
//! - [`node`]: running a node from a config file (`serve`, `demo`, `dev`), reloading its config
//!   on SIGHUP.
//! - [`dev`]: `edge dev`, a node that rebuilds and hot-swaps its functions as their files change.
//! - [`function_crate`]: building function crates for `wasm32-wasip1` (`demo`, `dev`).
//! - [`new_crate`]: `edge new`, a function crate outside this workspace.
//! - [`admin`]: `upload`, `test`, `publish`, `rollback`, `list`, `describe`, `delete`, `kv`,
//!   `invalidate`, through [`admin_client`], a small client of the node's admin API.
//! - [`sample_event`] and [`test_function`]: running a module against a JSON sample event, on a
//!   node (`edge test`) or with no node at all (`edge test-function`).

pub mod admin;
pub mod admin_client;
pub mod dev;
pub mod function_crate;
pub mod new_crate;
pub mod node;
pub mod sample_event;
pub mod test_function;
