//! The edge cache: keys ([`key`]), freshness rules ([`policy`]), serving stale ([`stale`]),
//! the object store ([`store`]), request collapsing ([`coalesce`]) and compressed variants
//! ([`compress`]). The flow calls these from `cache_lookup` and `cache_store`; nothing here
//! does I/O (compression runs on tokio's blocking threads).

pub mod coalesce;
pub mod compress;
pub mod key;
pub mod policy;
pub mod stale;
pub mod store;
pub mod stored_headers;

pub use coalesce::{Coalescer, FlightOutcome, Join, Leader};
pub use key::CacheKey;
pub use store::{CachedObject, Lookup, Store};
