//! End-to-end tests: a real node on port 0, real origins on loopback, real HTTP.
//! One module per feature area; `harness` holds the shared builders.

mod harness;
mod logs;

mod abi;
mod admin;

mod caching;
mod collapsing;
mod compression;
mod conformance;
mod dynamic_origin;
mod errors;
mod faults;
mod functions;
mod hostile;
mod https_origin;
mod kv;
mod malformed;
mod operations;
mod origin_pool;
mod privacy;
mod replay;
mod routing;
mod s3_origin;
mod stale;
mod static_origin;
mod streaming;
mod tier;
mod tls;
mod traversal;
