//! The host side of ABI v1 (`sdk/ABI.md`): one file per group of host calls, each with an
//! `add_to_linker`. Bodies stay short: read guest memory through [`memory`], act on
//! `HostState`, return a status. Guest mistakes are statuses; only host faults trap.

mod cache;
mod fields;
mod kv;
mod log;
pub mod memory;
mod origin;
mod request;
mod response;

use wasmtime::Linker;

use super::state::HostState;

/// Defines every `edge_v1` host call and WASI preview 1 in `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    request::add_to_linker(linker)?;
    response::add_to_linker(linker)?;
    cache::add_to_linker(linker)?;
    origin::add_to_linker(linker)?;
    log::add_to_linker(linker)?;
    kv::add_to_linker(linker)?;
    crate::wasm::wasi::add_to_linker(linker)?;
    Ok(())
}
