//! A directory served like an S3 bucket: GET and HEAD only, `index.html` for directories,
//! validators for the cache, and no way out of the root.
//!
//! Escapes are refused twice: `..` segments (raw or percent-encoded) are rejected before the
//! path touches the file system, and the canonical path (symlinks resolved) must stay under the
//! canonical root, so a symlink pointing outside is served as missing.

use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use tokio::io::AsyncReadExt;

use super::Error;
use crate::body::EdgeBody;
use crate::conditional::is_not_modified;

/// Files up to this size are read in one call; larger ones stream in chunks so a huge file
/// never sits whole in memory unless the cache decides to keep it.
const READ_WHOLE_LIMIT: u64 = 1024 * 1024;
/// Chunk size when streaming a large file.
const STREAM_CHUNK: usize = 64 * 1024;
/// Chunks buffered ahead of a slow viewer.
const STREAM_DEPTH: usize = 4;

/// One static origin.
pub struct StaticBucket {
    name: String,
    root: PathBuf,
}

impl StaticBucket {
    /// A bucket serving `root`, which must be canonical (config validation makes it so).
    pub fn new(name: &str, root: PathBuf) -> Self {
        StaticBucket {
            name: name.to_owned(),
            root,
        }
    }

    /// Answers a request the way S3 would: 200, 304, 301 to add a directory's slash, 404, 405.
    pub async fn fetch(&self, request: Request<EdgeBody>) -> Result<Response<EdgeBody>, Error> {
        let method = request.method().clone();
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: a static origin serves GET and HEAD\n",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(response);
        }
        let raw_path = request.uri().path();
        let Some(relative) = relative_path(raw_path) else {
            return Ok(text(StatusCode::BAD_REQUEST, "bad request: invalid path\n"));
        };
        let Some((file, metadata)) = self.resolve(&relative).await else {
            return Ok(text(StatusCode::NOT_FOUND, "not found\n"));
        };
        if metadata.is_dir() {
            if !raw_path.ends_with('/') {
                return Ok(slash_redirect(&relative, request.uri().query()));
            }
            return match self.resolve(&relative.join("index.html")).await {
                Some((index, meta)) if meta.is_file() => self.serve(&request, &index, &meta).await,
                _ => Ok(text(StatusCode::NOT_FOUND, "not found\n")),
            };
        }
        if !metadata.is_file() {
            return Ok(text(StatusCode::NOT_FOUND, "not found\n"));
        }
        self.serve(&request, &file, &metadata).await
    }

    /// The canonical file for a relative path, if it exists inside the root.
    async fn resolve(&self, relative: &Path) -> Option<(PathBuf, std::fs::Metadata)> {
        let full = tokio::fs::canonicalize(self.root.join(relative))
            .await
            .ok()?;
        if !full.starts_with(&self.root) {
            return None;
        }
        let metadata = tokio::fs::metadata(&full).await.ok()?;
        Some((full, metadata))
    }

    async fn serve(
        &self,
        request: &Request<EdgeBody>,
        file: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<Response<EdgeBody>, Error> {
        let read_error = |source| Error::Read {
            origin: self.name.clone(),
            path: file.display().to_string(),
            source,
        };
        let modified = meta.modified().ok();
        let etag = modified.map(|m| etag(m, meta.len()));
        // HTTP dates have second resolution; compare conditionals at that resolution.
        let modified_secs =
            modified.and_then(|m| httpdate::parse_http_date(&httpdate::fmt_http_date(m)).ok());

        let mut builder = Response::builder();
        let headers = builder.headers_mut().expect("builder has no error yet");
        headers.insert(CONTENT_TYPE, content_type(file));
        if let Some(etag) = &etag {
            headers.insert(ETAG, etag.clone());
        }
        if let Some(m) = modified {
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(m)) {
                headers.insert(LAST_MODIFIED, v);
            }
        }
        if is_not_modified(request.headers(), etag.as_ref(), modified_secs) {
            return Ok(builder
                .status(StatusCode::NOT_MODIFIED)
                .body(EdgeBody::Empty)
                .expect("valid response parts"));
        }
        headers.insert(CONTENT_LENGTH, HeaderValue::from(meta.len()));
        let body = if request.method() == Method::HEAD {
            EdgeBody::Empty
        } else if meta.len() <= READ_WHOLE_LIMIT {
            EdgeBody::full(tokio::fs::read(file).await.map_err(read_error)?)
        } else {
            let handle = tokio::fs::File::open(file).await.map_err(read_error)?;
            stream_file(handle)
        };
        Ok(builder
            .status(StatusCode::OK)
            .body(body)
            .expect("valid response parts"))
    }
}

/// The decoded path relative to the root, or `None` if it is malformed or tries to climb out.
fn relative_path(raw: &str) -> Option<PathBuf> {
    let decoded = percent_decode_str(raw).decode_utf8().ok()?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut relative = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s => relative.push(s),
        }
    }
    // Every component must be a plain name: no root, prefix or parent sneaks in.
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(relative)
}

/// Characters escaped in a path segment of a `Location` we build (RFC 3986 §3.3 `pchar`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// 301 to the directory's slashed URL, where relative links in its index page work.
///
/// The location is rebuilt from the cleaned path, never the raw one: `//docs` must not become
/// `//docs/`, which browsers read as another host. A redirect that carries the viewer's query is
/// not stored, since the cache key may ignore the query and the next viewer would get this one's.
fn slash_redirect(relative: &Path, query: Option<&str>) -> Response<EdgeBody> {
    let mut location = String::from("/");
    for part in relative.iter() {
        location.extend(utf8_percent_encode(&part.to_string_lossy(), SEGMENT));
        location.push('/');
    }
    let mut response = text(StatusCode::MOVED_PERMANENTLY, "moved permanently\n");
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// A strong validator from modification time and size, as nginx builds it, with nanoseconds so
/// that two writes in one second of a same-sized file still differ.
fn etag(modified: SystemTime, len: u64) -> HeaderValue {
    let since = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "\"{:x}.{:x}-{:x}\"",
        since.as_secs(),
        since.subsec_nanos(),
        len
    ))
    .expect("hex digits and quotes are valid header bytes")
}

fn content_type(file: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(file).first_or_octet_stream();
    let value = if mime.type_() == mime_guess::mime::TEXT
        || mime.essence_str() == "application/javascript"
    {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_owned()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

fn stream_file(mut file: tokio::fs::File) -> EdgeBody {
    let (tx, body) = EdgeBody::channel(STREAM_DEPTH);
    tokio::spawn(async move {
        loop {
            let mut chunk = vec![0; STREAM_CHUNK];
            match file.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    break;
                }
            }
        }
    });
    body
}

/// A short plain-text response, as S3 answers errors; error statuses get a short lifetime
/// from the cache policy, not from us.
pub(super) fn text(status: StatusCode, body: &'static str) -> Response<EdgeBody> {
    let mut response = Response::new(EdgeBody::full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if status == StatusCode::BAD_REQUEST {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_path_refuses_escapes() {
        assert_eq!(relative_path("/a/b.txt"), Some(PathBuf::from("a/b.txt")));
        assert_eq!(relative_path("/a/./b"), Some(PathBuf::from("a/b")));
        assert_eq!(relative_path("/"), Some(PathBuf::new()));
        assert_eq!(relative_path("/a%20b"), Some(PathBuf::from("a b")));
        for bad in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/a/%2e%2e",
            "/a%2f..%2fb",
            "/a%00",
            "/a\\..\\b",
            "/%ff",
        ] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
    }
}
