//! `[origins.NAME]`: a directory (`static`), HTTP and HTTPS targets (`http`) or an S3 bucket
//! (`s3`). Files an origin names (`ca_file`, `secret_access_key_file`) are read here, at load
//! time, so a bad one stops the load instead of failing requests.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use toml::Spanned;

use super::raw::RawOrigin;
use super::{Error, Validator, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT};

/// Region signed into S3 requests when `region` is absent: what S3-compatible servers (MinIO,
/// Ceph, s3s) expect by default.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

/// One origin, by name.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// The table name in `[origins.NAME]`.
    pub name: String,
    /// What kind of origin and its settings.
    pub kind: OriginKind,
}

/// The kinds of origin.
#[derive(Debug, Clone)]
pub enum OriginKind {
    /// A directory served like an S3 bucket.
    Static {
        /// Absolute, canonical path of the bucket directory.
        root: PathBuf,
    },
    /// HTTP and HTTPS targets balanced round-robin.
    Http {
        /// `scheme://host:port` of each target.
        targets: Vec<Target>,
        /// Per-attempt connect timeout (TCP and TLS handshake together).
        connect_timeout: Duration,
        /// Time to response headers.
        response_timeout: Duration,
        /// How `https` targets are verified.
        tls: OriginTls,
    },
    /// An S3 bucket (or any S3-compatible server), requests signed with SigV4.
    S3(S3Config),
}

/// One HTTP target of a dynamic origin, or an S3 endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
}

/// Certificate verification for an origin's `https` targets.
#[derive(Debug, Clone, Default)]
pub struct OriginTls {
    /// Roots trusted besides the webpki (Mozilla) roots, from `ca_file`.
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// The name verified and sent as SNI instead of the target's host (`tls_server_name`).
    pub server_name: Option<ServerName<'static>>,
}

/// A `type = "s3"` origin.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `scheme://host:port` of the S3 endpoint; requests are path-style (`/bucket/key`).
    pub endpoint: Target,
    /// The bucket.
    pub bucket: String,
    /// The region signed into requests.
    pub region: String,
    /// The object served for paths ending in `/`, if any.
    pub index: Option<String>,
    /// Who the requests are signed as.
    pub credentials: S3Credentials,
    /// Connect timeout (TCP and TLS handshake together).
    pub connect_timeout: Duration,
    /// Time to response headers.
    pub response_timeout: Duration,
    /// How an `https` endpoint is verified.
    pub tls: OriginTls,
}

/// AWS credentials for an S3 origin.
#[derive(Debug, Clone)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// A session token (temporary credentials), from `AWS_SESSION_TOKEN`.
    pub session_token: Option<Secret>,
}

/// A secret string that `Debug` does not print, so a logged config leaks nothing.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The keys each origin type accepts besides `type`.
const STATIC_KEYS: &[&str] = &["root"];
const HTTP_KEYS: &[&str] = &[
    "targets",
    "connect_timeout",
    "response_timeout",
    "ca_file",
    "tls_server_name",
];
const S3_KEYS: &[&str] = &[
    "endpoint",
    "bucket",
    "region",
    "index",
    "access_key_id",
    "secret_access_key_file",
    "connect_timeout",
    "response_timeout",
    "ca_file",
    "tls_server_name",
];

impl Validator<'_> {
    pub(super) fn origin(
        &self,
        name: &Spanned<String>,
        raw: &RawOrigin,
    ) -> Result<OriginConfig, Error> {
        let prefix = format!("origins.{}", name.get_ref());
        let key = |field: &str| format!("{prefix}.{field}");
        let type_name = raw.kind.get_ref().as_str();
        let allowed = match type_name {
            "static" => STATIC_KEYS,
            "http" => HTTP_KEYS,
            "s3" => S3_KEYS,
            other => {
                return Err(self.invalid(
                    &raw.kind,
                    &key("type"),
                    format!(
                        "unknown origin type {other:?}; expected \"static\", \"http\" or \"s3\""
                    ),
                ))
            }
        };
        for (field, span) in present_fields(raw) {
            if !allowed.contains(&field) {
                return Err(self.error(
                    span,
                    &key(field),
                    format!("not used by a {type_name:?} origin"),
                ));
            }
        }
        let kind = match type_name {
            "static" => {
                let Some(root) = &raw.root else {
                    return Err(self.invalid(
                        &raw.kind,
                        &key("root"),
                        "a static origin needs `root`, the directory to serve",
                    ));
                };
                let path = self.path(root.get_ref());
                let root_dir = std::fs::canonicalize(&path)
                    .ok()
                    .filter(|p| p.is_dir())
                    .ok_or_else(|| {
                        self.invalid(
                            root,
                            &key("root"),
                            format!("{} is not a directory", path.display()),
                        )
                    })?;
                OriginKind::Static { root: root_dir }
            }
            "http" => {
                let Some(targets) = &raw.targets else {
                    return Err(self.invalid(
                        &raw.kind,
                        &key("targets"),
                        "an http origin needs `targets`, e.g. [\"http://127.0.0.1:3000\"]",
                    ));
                };
                if targets.get_ref().is_empty() {
                    return Err(self.error(
                        targets.span(),
                        &key("targets"),
                        "needs at least one target",
                    ));
                }
                let targets = targets
                    .get_ref()
                    .iter()
                    .map(|t| self.target(t, &key("targets")))
                    .collect::<Result<Vec<_>, _>>()?;
                let (connect_timeout, response_timeout) = self.origin_timeouts(raw, &key)?;
                OriginKind::Http {
                    targets,
                    connect_timeout,
                    response_timeout,
                    tls: self.origin_tls(raw, &key)?,
                }
            }
            _ => OriginKind::S3(self.s3(raw, &key, |var| std::env::var(var).ok())?),
        };
        Ok(OriginConfig {
            name: name.get_ref().clone(),
            kind,
        })
    }

    fn s3(
        &self,
        raw: &RawOrigin,
        key: &dyn Fn(&str) -> String,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Config, Error> {
        let missing = |field: &str, example: &str| {
            self.invalid(
                &raw.kind,
                &key(field),
                format!("an s3 origin needs `{field}`, e.g. {field} = {example:?}"),
            )
        };
        let endpoint = raw
            .endpoint
            .as_ref()
            .ok_or_else(|| missing("endpoint", "http://127.0.0.1:9000"))?;
        let endpoint = self.target(endpoint, &key("endpoint"))?;
        let bucket = raw
            .bucket
            .as_ref()
            .ok_or_else(|| missing("bucket", "assets"))?;
        // Bucket names are DNS labels (plus the legacy `_` and capitals): nothing in them needs
        // encoding in a path, and no `/` can move a request into another bucket.
        let valid_bucket = !bucket.get_ref().is_empty()
            && bucket
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            && !matches!(bucket.get_ref().as_str(), "." | "..");
        if !valid_bucket {
            return Err(self.invalid(
                bucket,
                &key("bucket"),
                format!(
                    "{:?} is not a bucket name (letters, digits, `.`, `-`, `_`)",
                    bucket.get_ref()
                ),
            ));
        }
        let region = match &raw.region {
            Some(region) if region.get_ref().is_empty() => {
                return Err(self.invalid(region, &key("region"), "must not be empty"))
            }
            Some(region) => region.get_ref().clone(),
            None => DEFAULT_S3_REGION.to_owned(),
        };
        let index = match &raw.index {
            Some(index)
                if index.get_ref().is_empty()
                    || index.get_ref().starts_with('/')
                    || index.get_ref().ends_with('/') =>
            {
                return Err(self.invalid(
                    index,
                    &key("index"),
                    "must be an object name such as \"index.html\"",
                ))
            }
            Some(index) => Some(index.get_ref().clone()),
            None => None,
        };
        let (connect_timeout, response_timeout) = self.origin_timeouts(raw, key)?;
        Ok(S3Config {
            endpoint,
            bucket: bucket.get_ref().clone(),
            region,
            index,
            credentials: self.s3_credentials(raw, key, env)?,
            connect_timeout,
            response_timeout,
            tls: self.origin_tls(raw, key)?,
        })
    }

    /// The config's keys when both are given; otherwise the environment, as the AWS SDKs read
    /// it. A key id without its secret (or the reverse) is a mistake, not a fallback.
    fn s3_credentials(
        &self,
        raw: &RawOrigin,
        key: &dyn Fn(&str) -> String,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Credentials, Error> {
        match (&raw.access_key_id, &raw.secret_access_key_file) {
            (Some(id), Some(file)) => {
                if id.get_ref().is_empty() {
                    return Err(self.invalid(id, &key("access_key_id"), "must not be empty"));
                }
                let path = self.path(file.get_ref());
                let secret = std::fs::read_to_string(&path).map_err(|e| {
                    self.invalid(
                        file,
                        &key("secret_access_key_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let secret = secret.trim();
                if secret.is_empty() {
                    return Err(self.invalid(
                        file,
                        &key("secret_access_key_file"),
                        format!("{} is empty", path.display()),
                    ));
                }
                Ok(S3Credentials {
                    access_key_id: id.get_ref().clone(),
                    secret_access_key: Secret(secret.to_owned()),
                    session_token: None,
                })
            }
            (Some(id), None) => Err(self.invalid(
                id,
                &key("secret_access_key_file"),
                "`access_key_id` needs `secret_access_key_file`, the file holding its secret",
            )),
            (None, Some(file)) => Err(self.invalid(
                file,
                &key("access_key_id"),
                "`secret_access_key_file` needs `access_key_id`",
            )),
            (None, None) => {
                let var = |name: &str| env(name).filter(|v| !v.is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) => Ok(S3Credentials {
                        access_key_id: id,
                        secret_access_key: Secret(secret),
                        session_token: var("AWS_SESSION_TOKEN").map(Secret),
                    }),
                    _ => Err(self.invalid(
                        &raw.kind,
                        &key("access_key_id"),
                        "an s3 origin needs credentials: AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY in the environment, or `access_key_id` and \
                         `secret_access_key_file`",
                    )),
                }
            }
        }
    }

    /// `connect_timeout` and `response_timeout`, which every networked origin takes.
    fn origin_timeouts(
        &self,
        raw: &RawOrigin,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(Duration, Duration), Error> {
        Ok((
            self.duration(
                raw.connect_timeout.as_ref(),
                &key("connect_timeout"),
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            self.duration(
                raw.response_timeout.as_ref(),
                &key("response_timeout"),
                DEFAULT_RESPONSE_TIMEOUT,
            )?,
        ))
    }

    /// `ca_file` (every certificate in it must parse) and `tls_server_name`.
    fn origin_tls(
        &self,
        raw: &RawOrigin,
        key: &dyn Fn(&str) -> String,
    ) -> Result<OriginTls, Error> {
        let mut tls = OriginTls::default();
        if let Some(file) = &raw.ca_file {
            let path = self.path(file.get_ref());
            let bad = |why: String| self.invalid(file, &key("ca_file"), why);
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(format!("cannot load {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(bad(format!("{} holds no PEM certificate", path.display())));
            }
            let mut roots = rustls::RootCertStore::empty();
            for cert in &certs {
                roots.add(cert.clone()).map_err(|e| {
                    bad(format!(
                        "{} holds a certificate that cannot be a root: {e}",
                        path.display()
                    ))
                })?;
            }
            tls.ca_certs = certs;
        }
        if let Some(name) = &raw.tls_server_name {
            tls.server_name = Some(ServerName::try_from(name.get_ref().clone()).map_err(|_| {
                self.invalid(
                    name,
                    &key("tls_server_name"),
                    format!("{:?} is not a DNS name or IP address", name.get_ref()),
                )
            })?);
        }
        Ok(tls)
    }

    pub(super) fn target(&self, raw: &Spanned<String>, key: &str) -> Result<Target, Error> {
        let bad = |why: &str| {
            self.invalid(
                raw,
                key,
                format!(
                    "{:?} {why}; expected \"http://host:port\" or \"https://host:port\"",
                    raw.get_ref()
                ),
            )
        };
        let uri: Uri = raw.get_ref().parse().map_err(|_| bad("is not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            _ => return Err(bad("has no http:// or https:// scheme")),
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("has a path; targets are host and port only"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("has user info; targets are host and port only"));
        }
        Ok(Target { scheme, authority })
    }
}

/// The optional keys set in an origin's table, with where they are.
fn present_fields(raw: &RawOrigin) -> Vec<(&'static str, Range<usize>)> {
    let optional: [(&'static str, Option<Range<usize>>); 12] = [
        ("root", raw.root.as_ref().map(Spanned::span)),
        ("targets", raw.targets.as_ref().map(Spanned::span)),
        (
            "connect_timeout",
            raw.connect_timeout.as_ref().map(Spanned::span),
        ),
        (
            "response_timeout",
            raw.response_timeout.as_ref().map(Spanned::span),
        ),
        ("ca_file", raw.ca_file.as_ref().map(Spanned::span)),
        (
            "tls_server_name",
            raw.tls_server_name.as_ref().map(Spanned::span),
        ),
        ("endpoint", raw.endpoint.as_ref().map(Spanned::span)),
        ("bucket", raw.bucket.as_ref().map(Spanned::span)),
        ("region", raw.region.as_ref().map(Spanned::span)),
        ("index", raw.index.as_ref().map(Spanned::span)),
        (
            "access_key_id",
            raw.access_key_id.as_ref().map(Spanned::span),
        ),
        (
            "secret_access_key_file",
            raw.secret_access_key_file.as_ref().map(Spanned::span),
        ),
    ];
    optional
        .into_iter()
        .filter_map(|(field, span)| Some((field, span?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    /// An s3 origin table with these extra lines, and a behavior for it.
    fn s3_toml(extra: &str) -> String {
        format!(
            "[origins.assets]\ntype = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"assets\"\n{extra}\n\n[[behaviors]]\npath = \"*\"\norigin = \"assets\"\n"
        )
    }

    fn err(text: &str) -> String {
        match text.parse::<Config>() {
            Ok(_) => panic!("config should have been refused"),
            Err(e) => e.to_string(),
        }
    }

    /// The credentials a raw origin table resolves to with this environment.
    fn credentials(table: &str, env: &[(&str, &str)]) -> Result<S3Credentials, Error> {
        let raw: RawOrigin = toml::from_str(table).expect("a valid table");
        let validator = Validator {
            text: table,
            file: "<inline>",
            base: Path::new("."),
        };
        let key = |field: &str| format!("origins.assets.{field}");
        validator.s3_credentials(&raw, &key, |name| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn s3_origin_reads_its_secret_file_and_never_prints_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cr3t-value\n").expect("write secret");
        let text = s3_toml(&format!(
            "region = \"eu-west-1\"\nindex = \"index.html\"\naccess_key_id = \"AKID\"\nsecret_access_key_file = {:?}",
            secret.display().to_string()
        ));
        let config: Config = text.parse().expect("valid s3 origin");
        let OriginKind::S3(s3) = &config.origins[0].kind else {
            panic!("an s3 origin");
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.region.as_str(), s3.index.as_deref()),
            ("assets", "eu-west-1", Some("index.html"))
        );
        assert_eq!(s3.credentials.access_key_id, "AKID");
        assert_eq!(s3.credentials.secret_access_key.0, "s3cr3t-value");
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn s3_credentials_come_from_the_environment_when_the_keys_are_absent() {
        let table = "type = \"s3\"\n";
        let c = credentials(
            table,
            &[
                ("AWS_ACCESS_KEY_ID", "AKENV"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret"),
                ("AWS_SESSION_TOKEN", "token"),
            ],
        )
        .expect("credentials from the environment");
        assert_eq!(c.access_key_id, "AKENV");
        assert_eq!(c.secret_access_key.0, "env-secret");
        assert_eq!(c.session_token.map(|t| t.0).as_deref(), Some("token"));

        let e = credentials(table, &[("AWS_ACCESS_KEY_ID", "AKENV")])
            .expect_err("no secret")
            .to_string();
        assert!(
            e.contains("`origins.assets.access_key_id`")
                && e.contains("AWS_ACCESS_KEY_ID")
                && e.contains("AWS_SECRET_ACCESS_KEY")
                && e.contains("secret_access_key_file"),
            "{e}"
        );
        let e = credentials("type = \"s3\"\naccess_key_id = \"AK\"\n", &[])
            .expect_err("no secret file")
            .to_string();
        assert!(e.contains("`origins.assets.secret_access_key_file`"), "{e}");
        let e = credentials(
            "type = \"s3\"\naccess_key_id = \"AK\"\nsecret_access_key_file = \"/no/such/file\"\n",
            &[],
        )
        .expect_err("unreadable secret file")
        .to_string();
        assert!(
            e.contains("`origins.assets.secret_access_key_file`") && e.contains("/no/such/file"),
            "{e}"
        );
    }

    #[test]
    fn s3_keys_are_checked() {
        let keys = "access_key_id = \"AK\"\nsecret_access_key_file = \"/no/such/file\"";
        for (extra, message) in [
            (
                "root = \".\"",
                "`origins.assets.root`: not used by a \"s3\" origin",
            ),
            ("targets = [\"http://a:1\"]", "not used by a \"s3\" origin"),
            ("index = \"/index.html\"", "`origins.assets.index`"),
            (
                "region = \"\"",
                "`origins.assets.region`: must not be empty",
            ),
            (keys, "/no/such/file"),
        ] {
            let e = err(&s3_toml(extra));
            assert!(e.contains(message), "{extra}: {e}");
        }
        let e = err(&s3_toml(keys).replace("bucket = \"assets\"", "bucket = \"a/../b\""));
        assert!(e.contains("`origins.assets.bucket`"), "{e}");
        let e = err(&s3_toml(keys).replace("endpoint = \"http://127.0.0.1:9000\"\n", ""));
        assert!(e.contains("an s3 origin needs `endpoint`"), "{e}");
        let e = err("[origins.h]\ntype = \"http\"\ntargets = [\"http://a:1\"]\nbucket = \"b\"\n");
        assert!(
            e.contains("`origins.h.bucket`: not used by a \"http\" origin"),
            "{e}"
        );
    }

    #[test]
    fn tls_server_name_must_be_a_name() {
        let e = err("[origins.h]\ntype = \"http\"\ntargets = [\"https://10.0.0.1:443\"]\ntls_server_name = \"not a name\"\n");
        assert!(e.contains("`origins.h.tls_server_name`"), "{e}");
        let c: Config = "[origins.h]\ntype = \"http\"\ntargets = [\"https://10.0.0.1:443\"]\ntls_server_name = \"app.internal\"\n[[behaviors]]\npath = \"*\"\norigin = \"h\"\n"
            .parse()
            .expect("valid");
        let OriginKind::Http { tls, .. } = &c.origins[0].kind else {
            panic!("an http origin");
        };
        assert_eq!(
            tls.server_name
                .as_ref()
                .map(|n| n.to_str().into_owned())
                .as_deref(),
            Some("app.internal")
        );
    }
}
