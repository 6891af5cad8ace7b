//! The raw host calls of `edge_v1`, one function per import, over byte slices. On
//! `wasm32` they call the imports; natively they call the simulated host in
//! [`crate::testing`], so handlers can be unit-tested with `cargo test`. This is the only
//! module with `unsafe`.

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod imports {
    #[link(wasm_import_module = "edge_v1")]
    unsafe extern "C" {
        pub fn request_get_method(buf: *mut u8, len: usize, out: *mut u32) -> i32;
        pub fn request_get_uri(buf: *mut u8, len: usize, out: *mut u32) -> i32;
        pub fn request_set_uri(ptr: *const u8, len: usize) -> i32;
        pub fn request_get_header(
            name: *const u8,
            name_len: usize,
            buf: *mut u8,
            len: usize,
            out: *mut u32,
        ) -> i32;
        pub fn request_get_headers(buf: *mut u8, len: usize, out: *mut u32) -> i32;
        pub fn request_set_header(
            name: *const u8,
            name_len: usize,
            value: *const u8,
            value_len: usize,
        ) -> i32;
        pub fn request_append_header(
            name: *const u8,
            name_len: usize,
            value: *const u8,
            value_len: usize,
        ) -> i32;
        pub fn request_remove_header(name: *const u8, name_len: usize) -> i32;
        pub fn request_get_client_ip(buf: *mut u8, len: usize, out: *mut u32) -> i32;
        pub fn origin_set(ptr: *const u8, len: usize) -> i32;
        pub fn cache_key_set(ptr: *const u8, len: usize) -> i32;
        pub fn cache_key_add(ptr: *const u8, len: usize) -> i32;
        pub fn cache_set_ttl(seconds: i64) -> i32;
        pub fn response_get_status(out: *mut u32) -> i32;
        pub fn response_set_status(code: i32) -> i32;
        pub fn response_get_header(
            name: *const u8,
            name_len: usize,
            buf: *mut u8,
            len: usize,
            out: *mut u32,
        ) -> i32;
        pub fn response_get_headers(buf: *mut u8, len: usize, out: *mut u32) -> i32;
        pub fn response_set_header(
            name: *const u8,
            name_len: usize,
            value: *const u8,
            value_len: usize,
        ) -> i32;
        pub fn response_append_header(
            name: *const u8,
            name_len: usize,
            value: *const u8,
            value_len: usize,
        ) -> i32;
        pub fn response_remove_header(name: *const u8, name_len: usize) -> i32;
        pub fn response_get_body(buf: *mut u8, len: usize, out: *mut u32) -> i32;
        pub fn response_set_body(ptr: *const u8, len: usize) -> i32;
        pub fn log(level: i32, ptr: *const u8, len: usize) -> i32;
        pub fn kv_get(
            store: *const u8,
            store_len: usize,
            key: *const u8,
            key_len: usize,
            buf: *mut u8,
            len: usize,
            out: *mut u32,
        ) -> i32;
    }
}

/// Defines each wrapper twice: over the import on wasm32, over the simulated host natively.
/// The SDK reads whole header lists, so the single-header reads stay unused (`dead_code`); they
/// are declared for completeness of the ABI.
macro_rules! host_calls {
    ($( fn $name:ident($($arg:ident: $ty:ty),*) => ($($call:expr),*); )*) => {
        $(
            #[cfg(target_arch = "wasm32")]
            #[allow(unsafe_code, dead_code)]
            pub(crate) fn $name($($arg: $ty),*) -> i32 {
                // SAFETY: every pointer comes from a live slice or reference borrowed for the
                // duration of the call, with its true length; the host writes at most `len`
                // bytes into an output buffer and four bytes to `out`.
                unsafe { imports::$name($($call),*) }
            }
            #[cfg(not(target_arch = "wasm32"))]
            #[allow(dead_code)]
            pub(crate) fn $name($($arg: $ty),*) -> i32 {
                crate::testing::raw::$name($($arg),*)
            }
        )*
    };
}

host_calls! {
    fn request_get_method(buf: &mut [u8], out: &mut u32) => (buf.as_mut_ptr(), buf.len(), out);
    fn request_get_uri(buf: &mut [u8], out: &mut u32) => (buf.as_mut_ptr(), buf.len(), out);
    fn request_set_uri(uri: &[u8]) => (uri.as_ptr(), uri.len());
    fn request_get_header(name: &[u8], buf: &mut [u8], out: &mut u32) => (name.as_ptr(), name.len(), buf.as_mut_ptr(), buf.len(), out);
    fn request_get_headers(buf: &mut [u8], out: &mut u32) => (buf.as_mut_ptr(), buf.len(), out);
    fn request_set_header(name: &[u8], value: &[u8]) => (name.as_ptr(), name.len(), value.as_ptr(), value.len());
    fn request_append_header(name: &[u8], value: &[u8]) => (name.as_ptr(), name.len(), value.as_ptr(), value.len());
    fn request_remove_header(name: &[u8]) => (name.as_ptr(), name.len());
    fn request_get_client_ip(buf: &mut [u8], out: &mut u32) => (buf.as_mut_ptr(), buf.len(), out);
    fn origin_set(name: &[u8]) => (name.as_ptr(), name.len());
    fn cache_key_set(key: &[u8]) => (key.as_ptr(), key.len());
    fn cache_key_add(part: &[u8]) => (part.as_ptr(), part.len());
    fn cache_set_ttl(seconds: i64) => (seconds);
    fn response_get_status(out: &mut u32) => (out);
    fn response_set_status(code: i32) => (code);
    fn response_get_header(name: &[u8], buf: &mut [u8], out: &mut u32) => (name.as_ptr(), name.len(), buf.as_mut_ptr(), buf.len(), out);
    fn response_get_headers(buf: &mut [u8], out: &mut u32) => (buf.as_mut_ptr(), buf.len(), out);
    fn response_set_header(name: &[u8], value: &[u8]) => (name.as_ptr(), name.len(), value.as_ptr(), value.len());
    fn response_append_header(name: &[u8], value: &[u8]) => (name.as_ptr(), name.len(), value.as_ptr(), value.len());
    fn response_remove_header(name: &[u8]) => (name.as_ptr(), name.len());
    fn response_get_body(buf: &mut [u8], out: &mut u32) => (buf.as_mut_ptr(), buf.len(), out);
    fn response_set_body(body: &[u8]) => (body.as_ptr(), body.len());
    fn log(level: i32, line: &[u8]) => (level, line.as_ptr(), line.len());
    fn kv_get(store: &[u8], key: &[u8], buf: &mut [u8], out: &mut u32) => (store.as_ptr(), store.len(), key.as_ptr(), key.len(), buf.as_mut_ptr(), buf.len(), out);
}

/// Why the last host call was refused, when the host says: the simulated host does, the node
/// writes it to its log instead.
#[cfg(target_arch = "wasm32")]
pub(crate) fn take_refusal() -> Option<String> {
    None
}

/// Why the last host call was refused, when the host says: the simulated host does, the node
/// writes it to its log instead.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn take_refusal() -> Option<String> {
    crate::testing::raw::take_refusal()
}
