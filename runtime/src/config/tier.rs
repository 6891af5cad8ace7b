//! `[tier]`: the regional tier (see `crate::tier`). A node with `parents` fetches cacheable
//! misses from them; any node with a token accepts tier requests that carry it.

use http::uri::Scheme;
use http::HeaderValue;
use toml::Spanned;

use super::raw::RawTier;
use super::{Error, Target, Validator};

/// What an edge does when no parent could answer a fill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnParentFailure {
    /// Fetch from the origin itself, as a node without parents would.
    #[default]
    Origin,
    /// Answer 502: the origin must only ever see the regional tier.
    Error,
}

/// `[tier]`, validated.
#[derive(Debug, Clone, Default)]
pub struct TierConfig {
    /// Regional nodes, in file order (the rendezvous hash, not this order, picks one per key).
    pub parents: Vec<Target>,
    /// The shared secret from `token_file`, trimmed; `None` without a `[tier]` token.
    pub token: Option<HeaderValue>,
    /// `on_parent_failure`.
    pub on_parent_failure: OnParentFailure,
}

impl Validator<'_> {
    pub(super) fn tier(&self, raw: Option<&Spanned<RawTier>>) -> Result<TierConfig, Error> {
        let Some(raw) = raw else {
            return Ok(TierConfig::default());
        };
        let span = raw.span();
        let raw = raw.get_ref();
        let mut parents = Vec::new();
        if let Some(list) = &raw.parents {
            for (i, parent) in list.get_ref().iter().enumerate() {
                let key = format!("tier.parents[{i}]");
                let target = self.target(parent, &key)?;
                if target.scheme != Scheme::HTTP {
                    return Err(self.invalid(parent, &key, "parents are reached over http://"));
                }
                parents.push(target);
            }
        }
        let token = match &raw.token_file {
            Some(file) => Some(self.tier_token(file)?),
            None if parents.is_empty() => None,
            None => {
                return Err(self.error(
                    span,
                    "tier.token_file",
                    "a node with `parents` needs `token_file`: parents refuse requests without the tier token",
                ))
            }
        };
        let on_parent_failure = match &raw.on_parent_failure {
            None => OnParentFailure::default(),
            Some(v) => match v.get_ref().as_str() {
                "origin" => OnParentFailure::Origin,
                "error" => OnParentFailure::Error,
                other => {
                    return Err(self.invalid(
                        v,
                        "tier.on_parent_failure",
                        format!("{other:?} is not \"origin\" or \"error\""),
                    ))
                }
            },
        };
        Ok(TierConfig {
            parents,
            token,
            on_parent_failure,
        })
    }

    /// Reads the token file (relative to the config file), trimmed of the newline editors and
    /// `kubectl create secret --from-file` leave.
    fn tier_token(&self, file: &Spanned<String>) -> Result<HeaderValue, Error> {
        let path = self.path(file.get_ref());
        let text = std::fs::read_to_string(&path).map_err(|e| {
            self.invalid(
                file,
                "tier.token_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(self.invalid(
                file,
                "tier.token_file",
                format!("{} is empty", path.display()),
            ));
        }
        HeaderValue::from_str(token).map_err(|_| {
            self.invalid(
                file,
                "tier.token_file",
                format!("{} holds characters a header cannot carry", path.display()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::OnParentFailure;

    fn config(tier: &str) -> Result<Config, super::Error> {
        format!(
            "[origins.app]\ntype = \"http\"\ntargets = [\"http://127.0.0.1:1\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n[tier]\n{tier}"
        )
        .parse()
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret-token\n").expect("write");
        let c = config(&format!(
            "parents = [\"http://10.0.0.1:8080\"]\ntoken_file = {:?}\non_parent_failure = \"error\"",
            file.display().to_string()
        ))
        .expect("valid");
        assert_eq!(
            c.tier.token.as_ref().map(|t| t.as_bytes()),
            Some(&b"s3cret-token"[..])
        );
        assert_eq!(c.tier.parents.len(), 1);
        assert_eq!(c.tier.on_parent_failure, OnParentFailure::Error);
    }

    #[test]
    fn missing_or_empty_token_file_names_the_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").expect("write");
        for tier in [
            "parents = [\"http://10.0.0.1:8080\"]".to_owned(),
            "token_file = \"/nonexistent/tier-token\"".to_owned(),
            format!("token_file = {:?}", empty.display().to_string()),
        ] {
            let error = config(&tier).expect_err("refused").to_string();
            assert!(error.contains("tier.token_file"), "{error}");
        }
        let error = config("on_parent_failure = \"retry\"")
            .expect_err("refused")
            .to_string();
        assert!(error.contains("tier.on_parent_failure"), "{error}");
        let error = config("parnets = []").expect_err("refused").to_string();
        assert!(error.contains("parnets"), "{error}");
    }
}
