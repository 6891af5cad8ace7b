//! A client of the node's admin API (`runtime/src/admin/`): one HTTP/1.1 call per command, with
//! the bearer token, answering the JSON body of a 2xx or an error carrying the API's message.

use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Where `--admin` points when not given: the admin API's default listen address.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9901";

/// How long one call may take. An upload compiles the module on the node before answering,
/// which takes seconds for a large module; a node that has not answered in a minute is stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take. A node that is down (a pod gone from a fleet file, its address
/// black-holed) shows as an error in seconds instead of holding `edge invalidate` for the
/// whole call timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes escaped in a path segment: all but RFC 3986's unreserved characters, so a name can
/// never add a segment or a query to the route.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A client for one admin API.
pub struct AdminClient {
    /// `http://host:port` (and any path prefix), without a trailing `/`.
    base: String,
    /// `Authorization` value, when a token was given.
    authorization: Option<HeaderValue>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// A client for the admin API at `url` (`http://host:port`; the scheme may be left out),
    /// sending `token` as a bearer token if given.
    pub fn new(url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = url
            .parse()
            .with_context(|| format!("invalid admin URL {url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("invalid admin URL {url:?}: only http:// is supported");
        }
        if uri.authority().is_none() || uri.query().is_some() {
            bail!("invalid admin URL {url:?}: expected http://HOST:PORT");
        }
        let authorization = token
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
            .transpose()
            .context("invalid token: it must be printable ASCII")?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Ok(AdminClient {
            base: url.trim_end_matches('/').to_owned(),
            authorization,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.call(Method::GET, path, None, Bytes::new()).await
    }

    /// `POST path` with no body.
    pub async fn post(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.call(Method::POST, path, None, Bytes::new()).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.call(Method::DELETE, path, None, Bytes::new()).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let body = serde_json::to_vec(body).context("cannot encode the request body")?;
        self.call(Method::PATCH, path, Some("application/json"), body.into())
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let body = serde_json::to_vec(body).context("cannot encode the request body")?;
        self.call(Method::POST, path, Some("application/json"), body.into())
            .await
    }

    /// `PUT path` with a module (`.wasm` or `.wat` bytes), sent with `Expect: 100-continue`
    /// (RFC 9110 §10.1.1): a module over the node's upload limit gets its 413 before the body
    /// leaves. Sent whole, a large body meets a connection the node has closed after answering,
    /// and the user reads "Broken pipe" instead of the answer.
    pub async fn put_module(
        &self,
        path: &str,
        module: Vec<u8>,
    ) -> anyhow::Result<serde_json::Value> {
        let target = format!("PUT {path}");
        let exchange = self.put_expecting_continue(path, &module);
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{target}: no answer from {} in {CALL_TIMEOUT:?}", self.base))?
            .with_context(|| format!("{target}: cannot reach the admin API at {}", self.base))?;
        answer(&target, status, &body)
    }

    /// One `PUT` on its own connection: the head with `Expect: 100-continue`, then the body
    /// once the node says `100 Continue` (or has said nothing for [`CONTINUE_WAIT`], as
    /// servers that ignore `Expect` do), then the final answer, read to the connection's end.
    async fn put_expecting_continue(
        &self,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let uri: Uri = format!("{}{path}", self.base).parse()?;
        let authority = uri
            .authority()
            .context("the admin URL has a host")?
            .as_str();
        let port = uri.port_u16().unwrap_or(80);
        let mut stream =
            tokio::net::TcpStream::connect((uri.host().unwrap_or(authority), port)).await?;
        let mut head = format!(
            "PUT {} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/wasm\r\n\
             content-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n",
            uri.path_and_query().map_or("/", |p| p.as_str()),
            body.len()
        );
        if let Some(authorization) = &self.authorization {
            head.push_str("authorization: ");
            head.push_str(authorization.to_str()?);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut received = Vec::new();
        let interim = tokio::time::timeout(CONTINUE_WAIT, read_head(&mut stream, &mut received));
        // No interim answer in time: send the body anyway.
        if let Ok(head) = interim.await {
            let (status, end) = head?;
            if status != StatusCode::CONTINUE {
                // The final answer, the body never sent; the node closes the connection.
                stream.read_to_end(&mut received).await?;
                return Ok((status, Bytes::copy_from_slice(&received[end..])));
            }
            received.drain(..end);
        }
        stream.write_all(body).await?;
        let (status, end) = loop {
            let (status, end) = read_head(&mut stream, &mut received).await?;
            if status != StatusCode::CONTINUE {
                break (status, end);
            }
            received.drain(..end);
        };
        stream.read_to_end(&mut received).await?;
        Ok((status, Bytes::copy_from_slice(&received[end..])))
    }

    /// Calls `method path`; answers the JSON body of a 2xx response (a body that is not JSON
    /// comes back as a JSON string). Any other status is an error carrying the API's message.
    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> anyhow::Result<serde_json::Value> {
        let target = format!("{method} {path}");
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .body(Full::new(body))
            .with_context(|| format!("cannot build the request {target}"))?;
        if let Some(authorization) = &self.authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, authorization.clone());
        }
        if let Some(content_type) = content_type {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{target}: no answer from {} in {CALL_TIMEOUT:?}", self.base))?
            .with_context(|| format!("{target}: cannot reach the admin API at {}", self.base))?;
        answer(&target, status, &body)
    }
}

/// How long an upload waits for `100 Continue` before it sends the body anyway.
const CONTINUE_WAIT: Duration = Duration::from_secs(2);

/// The JSON body of a 2xx answer (a body that is not JSON comes back as a JSON string); any
/// other status is an error carrying the API's message.
fn answer(target: &str, status: StatusCode, body: &[u8]) -> anyhow::Result<serde_json::Value> {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    if !status.is_success() {
        let message = json
            .as_ref()
            .and_then(|j| j.get("error")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
        bail!("{target}: {status}: {message}");
    }
    Ok(json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned().into()))
}

/// Reads from `stream` into `buffer` until it holds a response head; answers its status and
/// where the head ends. The node's answers are `Connection: close`, so the body is the rest.
async fn read_head(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> anyhow::Result<(StatusCode, usize)> {
    use tokio::io::AsyncReadExt as _;
    loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let line = buffer[..at]
                .split(|b| *b == b'\n')
                .next()
                .unwrap_or_default();
            let status = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|code| StatusCode::from_bytes(code.as_bytes()).ok())
                .with_context(|| {
                    format!("not an HTTP answer: {:?}", String::from_utf8_lossy(line))
                })?;
            return Ok((status, at + 4));
        }
        anyhow::ensure!(buffer.len() < 64 * 1024, "the answer's head is over 64 KiB");
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        anyhow::ensure!(read > 0, "the connection closed before an answer");
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// `/functions/NAME` with `NAME` escaped as one path segment, then `rest`.
pub fn function_path(name: &str, rest: &str) -> String {
    format!("/functions/{}{rest}", utf8_percent_encode(name, SEGMENT))
}

/// `/kv/STORE`, or `/kv/STORE/KEY`, each escaped as one path segment (a key may hold `/`).
pub fn kv_path(store: &str, key: Option<&str>) -> String {
    let store = utf8_percent_encode(store, SEGMENT);
    match key {
        Some(key) => format!("/kv/{store}/{}", utf8_percent_encode(key, SEGMENT)),
        None => format!("/kv/{store}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_name_stays_one_segment() {
        assert_eq!(
            function_path("router", "/publish"),
            "/functions/router/publish"
        );
        assert_eq!(function_path("a/b?c", ""), "/functions/a%2Fb%3Fc");
    }

    #[test]
    fn admin_urls() {
        let base = |url: &str| AdminClient::new(url, None).map(|c| c.base);
        assert_eq!(
            base("127.0.0.1:9901").ok().as_deref(),
            Some("http://127.0.0.1:9901")
        );
        assert_eq!(
            base("http://127.0.0.1:9901/").ok().as_deref(),
            Some("http://127.0.0.1:9901")
        );
        assert_eq!(
            base("http://h:1/prefix/").ok().as_deref(),
            Some("http://h:1/prefix")
        );
        assert!(AdminClient::new("https://127.0.0.1:9901", None).is_err());
        assert!(AdminClient::new("http://127.0.0.1:9901?x", None).is_err());
        assert!(AdminClient::new("http://127.0.0.1:9901", Some("bad\ntoken")).is_err());
    }

    #[test]
    fn kv_keys_stay_one_segment() {
        assert_eq!(kv_path("flags", None), "/kv/flags");
        assert_eq!(
            kv_path("redirects", Some("/old?x")),
            "/kv/redirects/%2Fold%3Fx"
        );
    }
}
