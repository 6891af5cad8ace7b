//! `request_*` host calls.

use edge_sdk::abi::{calls, IMPORT_MODULE};
use edge_sdk::host;
use wasmtime::{Caller, Linker};

use super::fields::{self, HeaderCalls};
use super::memory::{bytes, call, write_out};
use crate::wasm::state::HostState;

type C<'a> = Caller<'a, HostState>;

/// Adds the `request_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const GET_METHOD: &edge_sdk::abi::HostCall = &calls::REQUEST_GET_METHOD;
    linker.func_wrap(
        IMPORT_MODULE,
        GET_METHOD.name,
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(&mut c, GET_METHOD, |m, s| {
                write_out(
                    GET_METHOD,
                    m,
                    buf,
                    len,
                    out,
                    s.request.method.as_str().as_bytes(),
                )
            })
        },
    )?;
    const GET_URI: &edge_sdk::abi::HostCall = &calls::REQUEST_GET_URI;
    linker.func_wrap(
        IMPORT_MODULE,
        GET_URI.name,
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(&mut c, GET_URI, |m, s| {
                let uri = s.request.uri.path_and_query().map_or("/", |pq| pq.as_str());
                write_out(GET_URI, m, buf, len, out, uri.as_bytes())
            })
        },
    )?;
    const SET_URI: &edge_sdk::abi::HostCall = &calls::REQUEST_SET_URI;
    linker.func_wrap(
        IMPORT_MODULE,
        SET_URI.name,
        |mut c: C<'_>, ptr: i32, len: i32| {
            call(&mut c, SET_URI, |m, s| {
                s.request.uri = host::parse_uri(SET_URI, bytes(SET_URI, m, ptr, len)?)?;
                Ok(())
            })
        },
    )?;
    fields::add_to_linker(
        linker,
        HeaderCalls {
            calls: [
                &calls::REQUEST_GET_HEADER,
                &calls::REQUEST_GET_HEADERS,
                &calls::REQUEST_SET_HEADER,
                &calls::REQUEST_APPEND_HEADER,
                &calls::REQUEST_REMOVE_HEADER,
            ],
            read: |s| Some(&s.request.headers),
            write: |s| &mut s.request.headers,
        },
    )?;
    const CLIENT_IP: &edge_sdk::abi::HostCall = &calls::REQUEST_GET_CLIENT_IP;
    linker.func_wrap(
        IMPORT_MODULE,
        CLIENT_IP.name,
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(&mut c, CLIENT_IP, |m, s| {
                write_out(
                    CLIENT_IP,
                    m,
                    buf,
                    len,
                    out,
                    s.client_ip.to_string().as_bytes(),
                )
            })
        },
    )?;
    Ok(())
}
