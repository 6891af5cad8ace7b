//! An S3 bucket origin: GET and HEAD of objects, path-style (`endpoint/bucket/key`), signed with
//! AWS Signature Version 4 by the `aws-sigv4` crate, sent through the same pooled client as
//! an http origin (see [`DynamicPool`]).
//!
//! The viewer's path is the object key: its percent-encoding is decoded once and the key is
//! encoded again the way S3 and SigV4 expect (every byte but the unreserved ones and `/`), so a
//! viewer's `%20` and a literal space in a signed name come out the same. A path ending in `/`
//! asks for the `index` object below it, as a CloudFront distribution's default root object.
//!
//! Conditional and Range headers go to S3, which answers them; validators (`ETag`,
//! `Last-Modified`) and `Content-Type`, `Cache-Control`, ... come back untouched, so the cache
//! revalidates against S3 with `If-None-Match` like against any origin. Nothing else of the
//! viewer's request reaches S3 (no cookies, no query: `?acl` or `?versionId` would address
//! something other than the object). S3's errors are mapped by their `<Code>`: `NoSuchKey` is
//! 404, `AccessDenied` 403, anything else a 502 whose log line carries the code.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_smithy_runtime_api::client::identity::Identity;
use http::header::{
    ALLOW, HOST, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::static_bucket::text;
use super::{DynamicPool, Error};
use crate::body::EdgeBody;
use crate::config::{S3Config, Target};

/// Request headers S3 is given: the ones it answers itself (conditionals, ranges).
const FORWARDED: [HeaderName; 6] = [
    IF_MATCH,
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_UNMODIFIED_SINCE,
    IF_RANGE,
    RANGE,
];

/// What S3 (and SigV4's canonical URI) leaves unencoded in a key: RFC 3986's unreserved
/// characters, and `/` between the key's segments.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// An S3 error body is a few hundred bytes; more is not S3's XML.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// One `type = "s3"` origin.
pub struct S3Bucket {
    name: String,
    /// The endpoint as the one target of a pool: connect timeout, keep-alive and TLS as for
    /// any http origin.
    pool: DynamicPool,
    endpoint: Target,
    /// `/bucket/`, the start of every request path.
    bucket_path: String,
    region: String,
    index: Option<String>,
    identity: Identity,
}

/// Where a viewer's path leads in the bucket.
#[derive(Debug, PartialEq)]
enum ObjectKey {
    /// This key, already encoded for the request path.
    Key(String),
    /// Nothing to fetch: the bucket itself (`/` with no `index`), which S3 would answer
    /// with a listing.
    None,
    /// Not a key a viewer may ask for (invalid UTF-8 once decoded, `.` or `..` segments).
    Invalid,
}

impl S3Bucket {
    /// The origin for a validated config.
    pub fn new(name: &str, config: &S3Config) -> Self {
        let credentials = &config.credentials;
        let identity = Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key.0,
            credentials.session_token.as_ref().map(|t| t.0.clone()),
            None,
            "edge config",
        )
        .into();
        S3Bucket {
            name: name.to_owned(),
            pool: DynamicPool::new(
                name,
                vec![config.endpoint.clone()],
                config.connect_timeout,
                config.response_timeout,
                &config.tls,
            ),
            endpoint: config.endpoint.clone(),
            bucket_path: format!("/{}/", config.bucket),
            region: config.region.clone(),
            index: config.index.clone(),
            identity,
        }
    }

    /// Fetches the object the request's path names, as a signed GET or HEAD.
    pub async fn fetch(&self, request: Request<EdgeBody>) -> Result<Response<EdgeBody>, Error> {
        let method = request.method().clone();
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: an s3 origin serves GET and HEAD\n",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(response);
        }
        let key = match object_key(request.uri().path(), self.index.as_deref()) {
            ObjectKey::Key(key) => key,
            ObjectKey::None => return Ok(text(StatusCode::NOT_FOUND, "not found\n")),
            ObjectKey::Invalid => {
                return Ok(text(StatusCode::BAD_REQUEST, "bad request: invalid path\n"))
            }
        };
        let signed = self.signed_request(method, &key, request.headers())?;
        // Idempotent and bodiless: a failed connect may be retried.
        let response = self.pool.fetch(signed, true, None).await?;
        let status = response.status();
        if status.is_success()
            || matches!(
                status,
                StatusCode::NOT_MODIFIED
                    | StatusCode::PRECONDITION_FAILED
                    | StatusCode::RANGE_NOT_SATISFIABLE
            )
        {
            return Ok(response);
        }
        self.error_response(response).await
    }

    /// The request S3 receives: path-style, the forwarded headers, signed.
    fn signed_request(
        &self,
        method: Method,
        key: &str,
        viewer: &http::HeaderMap,
    ) -> Result<Request<EdgeBody>, Error> {
        let sign_error = |reason: String| Error::Sign {
            origin: self.name.clone(),
            reason,
        };
        let path = format!("{}{key}", self.bucket_path);
        let mut request = Request::new(EdgeBody::Empty);
        *request.method_mut() = method;
        *request.uri_mut() = path
            .parse()
            .map_err(|e| sign_error(format!("{path:?} is not a request path: {e}")))?;
        let headers = request.headers_mut();
        // Signed with the `Host` the pool will send.
        if let Some(host) = self.pool.first_host() {
            headers.insert(HOST, host.clone());
        }
        for name in &FORWARDED {
            // A value that is not text cannot be signed; S3 would refuse it anyway.
            if let Some(value) = viewer.get(name).filter(|v| v.to_str().is_ok()) {
                headers.insert(name.clone(), value.clone());
            }
        }

        let mut settings = SigningSettings::default();
        // The path is encoded once, here; S3 checks the signature against it as sent, not
        // normalized.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| sign_error(e.to_string()))?
            .into();
        let url = format!(
            "{}://{}{path}",
            self.endpoint.scheme, self.endpoint.authority
        );
        let signable = SignableRequest::new(
            request.method().as_str(),
            url,
            request
                .headers()
                .iter()
                .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| sign_error(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| sign_error(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }

    /// S3 answered with an error: a missing key or denied access is the viewer's answer, any
    /// other error is the origin failing.
    async fn error_response(
        &self,
        response: Response<EdgeBody>,
    ) -> Result<Response<EdgeBody>, Error> {
        let status = response.status();
        // A HEAD error has no body; neither may a proxy's error in front of S3.
        let body = Limited::new(response.into_body(), ERROR_BODY_LIMIT)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        let code = xml_element(&body, "Code");
        match (code, status) {
            (Some("NoSuchKey"), _) | (None, StatusCode::NOT_FOUND) => {
                Ok(text(StatusCode::NOT_FOUND, "not found\n"))
            }
            (Some("AccessDenied"), _) | (None, StatusCode::FORBIDDEN) => {
                Ok(text(StatusCode::FORBIDDEN, "access denied\n"))
            }
            (code, status) => Err(Error::S3 {
                origin: self.name.clone(),
                status: status.as_u16(),
                code: code.unwrap_or("-").to_owned(),
                message: xml_element(&body, "Message").unwrap_or_default().to_owned(),
            }),
        }
    }
}

/// The encoded object key for a viewer's (percent-encoded) path.
fn object_key(path: &str, index: Option<&str>) -> ObjectKey {
    let Ok(decoded) = percent_decode_str(path).decode_utf8() else {
        return ObjectKey::Invalid;
    };
    let Some(key) = decoded.strip_prefix('/') else {
        return ObjectKey::Invalid;
    };
    // Some S3-compatible servers resolve dot segments, which could reach another bucket.
    if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return ObjectKey::Invalid;
    }
    let mut key = key.to_owned();
    if key.is_empty() || key.ends_with('/') {
        match index {
            Some(index) => key.push_str(index),
            None if key.is_empty() => return ObjectKey::None,
            None => {}
        }
    }
    ObjectKey::Key(utf8_percent_encode(&key, KEY_ENCODE).to_string())
}

/// The text of the first `<name>...</name>` in S3's error XML (codes and messages carry no
/// markup, and a code is all that is needed: no XML parser for that).
fn xml_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> ObjectKey {
        object_key(path, Some("index.html"))
    }

    #[test]
    fn keys_are_decoded_once_and_encoded_as_sigv4_expects() {
        assert_eq!(key("/a%20b.txt"), ObjectKey::Key("a%20b.txt".into()));
        assert_eq!(key("/a b.txt"), ObjectKey::Key("a%20b.txt".into()));
        // `%2520` is a literal `%20` in the key: decoded once, its `%` encoded again.
        assert_eq!(key("/a%2520b"), ObjectKey::Key("a%2520b".into()));
        assert_eq!(key("/a+b"), ObjectKey::Key("a%2Bb".into()));
        assert_eq!(key("/caf%C3%A9"), ObjectKey::Key("caf%C3%A9".into()));
        assert_eq!(key("/café"), ObjectKey::Key("caf%C3%A9".into()));
        assert_eq!(
            key("/a!$&'()*,;=:@b~-_.txt"),
            ObjectKey::Key("a%21%24%26%27%28%29%2A%2C%3B%3D%3A%40b~-_.txt".into())
        );
        assert_eq!(
            key("/dir/sub/"),
            ObjectKey::Key("dir/sub/index.html".into())
        );
        assert_eq!(key("/"), ObjectKey::Key("index.html".into()));
    }

    #[test]
    fn bucket_root_and_escapes_are_refused() {
        assert_eq!(object_key("/", None), ObjectKey::None);
        assert_eq!(object_key("/dir/", None), ObjectKey::Key("dir/".into()));
        assert_eq!(key("/a/../other-bucket/x"), ObjectKey::Invalid);
        assert_eq!(key("/a/%2E%2E/x"), ObjectKey::Invalid);
        assert_eq!(key("/./x"), ObjectKey::Invalid);
        assert_eq!(key("/%FF"), ObjectKey::Invalid);
        assert_eq!(key("/a..b"), ObjectKey::Key("a..b".into()));
    }

    #[test]
    fn error_code_is_read_from_the_xml() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
                   <Message>The request signature we calculated does not match</Message></Error>";
        assert_eq!(xml_element(xml, "Code"), Some("SignatureDoesNotMatch"));
        assert_eq!(
            xml_element(xml, "Message"),
            Some("The request signature we calculated does not match")
        );
        assert_eq!(xml_element("<html>bad gateway</html>", "Code"), None);
    }
}
