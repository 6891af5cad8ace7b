//! `edge new NAME`: scaffolds a function crate that lives outside this repository's workspace
//! and builds with the one documented command, `cargo build --release --target wasm32-wasip1`.
//!
//! The files it writes are the templates in `new_crate/` with `{{name}}`, `{{lib}}` and
//! `{{sdk_path}}` filled in: `Cargo.toml` (its own `[workspace]`, a `path` dependency on the
//! SDK, release settings for small modules), `src/lib.rs` (a viewer-request handler and its
//! tests on the SDK's `TestHost`), `edge.toml` (a node for `edge dev`), `public/index.html`,
//! `README.md`, `.gitignore`, and a `Cargo.lock` taken from the SDK's workspace so the first
//! build needs no network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context as _};

use super::function_crate::WASM_TARGET;

const CARGO_TOML: &str = include_str!("new_crate/Cargo.toml.template");
const LIB_RS: &str = include_str!("new_crate/lib.rs.template");
const EDGE_TOML: &str = include_str!("new_crate/edge.toml.template");
const README_MD: &str = include_str!("new_crate/README.md.template");
const INDEX_HTML: &str = "<!doctype html><title>{{name}}</title><h1>Served by the edge</h1>\n";
const GITIGNORE: &str = "/target\n";

/// Names cargo refuses for a package or its library (Rust's keywords, reserved words and
/// built-in crates), or that would shadow the SDK.
#[rustfmt::skip]
const RESERVED: &[&str] = &[
    "abstract", "alloc", "as", "async", "await", "become", "box", "break", "const", "continue",
    "core", "crate", "do", "dyn", "edge_sdk", "else", "enum", "extern", "false", "final", "fn",
    "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod", "move", "mut",
    "override", "priv", "proc_macro", "pub", "ref", "return", "self", "static", "std", "struct",
    "super", "test", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use",
    "virtual", "where", "while", "yield",
];

/// Create a function crate (outside this repository's workspace).
#[derive(clap::Args, Debug)]
pub struct New {
    /// The package name: lowercase letters, digits, `-` and `_`, starting with a letter.
    pub name: String,
    /// The directory to create (default: NAME in the current directory); it must not exist or
    /// be empty.
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// The SDK crate to depend on (default: the sdk/ of the checkout this `edge` was built
    /// from).
    #[arg(long, value_name = "PATH")]
    pub sdk: Option<PathBuf>,
}

impl New {
    /// Writes the crate and prints what to do next.
    pub fn run(self) -> anyhow::Result<()> {
        check_name(&self.name)?;
        let dir = self
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from(&self.name));
        ensure_empty(&dir)?;
        let sdk = find_sdk(self.sdk.as_deref())?;
        let lib = self.name.replace('-', "_");
        let sdk_path = toml::Value::String(sdk.display().to_string()).to_string();
        let fill = |template: &str| {
            template
                .replace("{{name}}", &self.name)
                .replace("{{lib}}", &lib)
                .replace("{{sdk_path}}", &sdk_path)
        };
        let mut files = vec![
            ("Cargo.toml", fill(CARGO_TOML)),
            ("src/lib.rs", fill(LIB_RS)),
            ("edge.toml", fill(EDGE_TOML)),
            ("public/index.html", fill(INDEX_HTML)),
            ("README.md", fill(README_MD)),
            (".gitignore", GITIGNORE.to_owned()),
        ];
        match lockfile(&self.name, &sdk) {
            Ok(lock) => files.push(("Cargo.lock", lock)),
            // Without it cargo resolves the SDK's dependencies itself, which needs the network
            // once: worth a warning, not a failure.
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "no Cargo.lock written; the first build resolves dependencies online"
            ),
        }
        for (file, text) in &files {
            let path = dir.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        println!(
            "created function crate {:?} in {}\n\n  cd {}\n  cargo test\n  cargo build --release --target {WASM_TARGET}\n  edge dev    # serves edge.toml on http://127.0.0.1:8080, rebuilds on every edit",
            self.name,
            dir.display(),
            dir.display()
        );
        Ok(())
    }
}

/// Refuses names cargo would refuse, or would accept only with a warning.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    ensure!(
        valid,
        "invalid crate name {name:?}: use lowercase letters, digits, '-' and '_', starting with a letter (at most 64 characters)"
    );
    ensure!(
        !RESERVED.contains(&name.replace('-', "_").as_str()),
        "invalid crate name {name:?}: it is reserved by Rust or used by the SDK; pick another"
    );
    Ok(())
}

/// A missing directory, or an empty one, is fine; anything else is the user's work.
fn ensure_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => ensure!(
            entries.next().is_none(),
            "{} already exists and is not empty; pick another name or --path",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("{} cannot be used: {e}", dir.display()),
    }
    Ok(())
}

/// The SDK crate directory, absolute, checked to hold the `edge-sdk` package.
fn find_sdk(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let candidate = given.unwrap_or(&built_from);
    let hint = if given.is_some() {
        "--sdk must name the sdk/ directory of an edge checkout"
    } else {
        "this edge was built from a checkout that is gone; pass --sdk PATH to the sdk/ directory of an edge checkout"
    };
    let sdk = std::fs::canonicalize(candidate)
        .with_context(|| format!("no SDK at {}: {hint}", candidate.display()))?;
    let manifest = sdk.join("Cargo.toml");
    let package = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_owned));
    ensure!(
        package.as_deref() == Some("edge-sdk"),
        "{} is not the edge-sdk crate: {hint}",
        sdk.display()
    );
    Ok(sdk)
}

/// A `Cargo.lock` for the new crate: the SDK and everything it depends on, at the versions of
/// the SDK's own workspace lock, so cargo needs no registry index for the first build.
fn lockfile(name: &str, sdk: &Path) -> anyhow::Result<String> {
    let path = sdk
        .parent()
        .context("the SDK has no parent directory")?
        .join("Cargo.lock");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let lock: toml::Table = text
        .parse()
        .with_context(|| format!("{}: not a Cargo.lock", path.display()))?;
    let packages: Vec<&toml::Table> = lock
        .get("package")
        .and_then(|p| p.as_array())
        .context("no [[package]] in the SDK's Cargo.lock")?
        .iter()
        .filter_map(|p| p.as_table())
        .collect();
    // A dependency is `name` or, when two versions are locked, `name version`.
    let find = |dep: &str| {
        let mut words = dep.split(' ');
        let name = words.next().unwrap_or_default();
        let version = words.next();
        packages.iter().copied().find(|p| {
            p.get("name").and_then(|n| n.as_str()) == Some(name)
                && version.is_none_or(|v| p.get("version").and_then(|n| n.as_str()) == Some(v))
        })
    };
    let mut closure: BTreeMap<(String, String), &toml::Table> = BTreeMap::new();
    let mut todo = vec!["edge-sdk".to_owned()];
    while let Some(dep) = todo.pop() {
        let package =
            find(&dep).with_context(|| format!("{dep} is not in the SDK's Cargo.lock"))?;
        let key = |field: &str| {
            package
                .get(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        if closure
            .insert((key("name"), key("version")), package)
            .is_none()
        {
            todo.extend(
                package
                    .get("dependencies")
                    .and_then(|d| d.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str().map(str::to_owned)),
            );
        }
    }
    let mut own = toml::Table::new();
    own.insert("name".into(), name.into());
    own.insert("version".into(), "0.1.0".into());
    own.insert(
        "dependencies".into(),
        toml::Value::Array(vec!["edge-sdk".into()]),
    );
    let mut entries: Vec<toml::Value> = vec![own.into()];
    entries.extend(closure.into_values().map(|p| toml::Value::Table(p.clone())));
    let mut out = toml::Table::new();
    out.insert(
        "version".into(),
        lock.get("version").cloned().unwrap_or(4.into()),
    );
    out.insert("package".into(), toml::Value::Array(entries));
    Ok(format!(
        "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\n{}",
        toml::to_string(&out).context("cannot write the Cargo.lock")?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names() {
        for good in ["hello", "my-fn", "a_b2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "2fast", "Hello", "my fn", "x/y", "test", "edge-sdk", "self",
        ] {
            let error = check_name(bad).expect_err(bad).to_string();
            assert!(error.contains("invalid crate name"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_lockfile_holds_the_sdk_and_its_dependencies() -> anyhow::Result<()> {
        let lock: toml::Table = lockfile("hello", &find_sdk(None)?)?.parse()?;
        let names: Vec<&str> = lock["package"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("name")?.as_str())
            .collect();
        assert_eq!(names[0], "hello");
        assert!(
            names.contains(&"edge-sdk") && names.contains(&"http"),
            "{names:?}"
        );
        assert!(
            !names.contains(&"wasmtime"),
            "only the SDK's closure: {names:?}"
        );
        Ok(())
    }
}
