//! The `edge` commands that run a node or talk to one, driven as a user would: real processes,
//! real files, loopback sockets on free ports (read back from the node's log).
//!
//! - [`demo`]: `edge demo` shows what the README says it shows.
//! - [`dev`]: `edge dev` hot-swaps a changed `.wat` or `.wasm` module and a rebuilt function
//!   crate without emptying the cache, builds a crate that was never built, keeps the old
//!   version when the new one is broken, and keeps an uploaded LIVE version.
//! - [`reload`]: SIGHUP reloads a valid config and refuses an invalid one.
//! - [`admin`]: `upload`, `test`, `publish`, `list`, `rollback`, `invalidate` against a node's
//!   admin API, and a wrong token.
//! - [`fleet`]: `invalidate` against several nodes (`--admin` repeated, `--fleet FILE`).
//! - [`new`]: `edge new` writes a function crate that builds, tests and serves.
//! - [`lifecycle`]: the LIVE history across kill -9, the CLI finding a local node (`--config`,
//!   `--data-dir`, `EDGE_ADMIN`), shadowed config modules, `kv`, `describe`, `delete`.
//! - [`test_function`]: `edge test-function` runs a module with no node.

mod admin;
mod demo;
mod dev;
mod fleet;
mod harness;
mod lifecycle;
mod new;
mod reload;
mod test_function;
