//! Function crates: Rust crates (`cdylib`s on the SDK, like `functions/*` or what `edge new`
//! writes) built for `wasm32-wasip1` by a nested `cargo build`, for `edge demo` and `edge dev`.
//!
//! A config names a crate's output, e.g. `target/wasm32-wasip1/release/hello.wasm`; from such
//! a path [`FunctionCrate::for_module`] finds the crate (the crate at the root of that target
//! directory, or a member of the workspace there, like `functions/router`) and the target
//! directory and profile that produce it.
//! A build asks cargo for JSON messages and takes the `.wasm` cargo reports, so it never has to
//! guess where a workspace, `CARGO_TARGET_DIR` or `.cargo/config.toml` put it.

use std::io::BufRead as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context as _};

/// The compilation target of edge functions.
pub const WASM_TARGET: &str = "wasm32-wasip1";
/// The profile used when a module path does not name one: `--release`, the one documented
/// build command (`cargo build --release --target wasm32-wasip1`), which works in any crate.
const DEFAULT_PROFILE: &str = "release";
/// This repository's profile for its own example functions (see the root `Cargo.toml`); it
/// exists only in this workspace.
const WORKSPACE_PROFILE: &str = "wasm";

/// A crate that builds one function module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCrate {
    /// The directory holding its `Cargo.toml`.
    pub dir: PathBuf,
    /// Its package name.
    pub package: String,
    /// Its library name, the stem of the `.wasm` it builds.
    pub lib: String,
    /// `--profile` to build with.
    pub profile: String,
    /// `--target-dir`, when the config's module path says where the output is expected.
    pub target_dir: Option<PathBuf>,
}

impl FunctionCrate {
    /// The crate in `dir` (`--crate DIR`), built with `--release` into cargo's own target
    /// directory unless [`FunctionCrate::output_at`] says otherwise.
    pub fn in_dir(dir: &Path) -> anyhow::Result<Self> {
        let manifest = dir.join("Cargo.toml");
        let (package, lib) = names(&manifest)?.with_context(|| {
            format!(
                "{} has no [package]: not a function crate",
                manifest.display()
            )
        })?;
        Ok(FunctionCrate {
            dir: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned()),
            package,
            lib,
            profile: DEFAULT_PROFILE.into(),
            target_dir: None,
        })
    }

    /// The crate that builds `module`, if `module` is a cargo output path
    /// (`ROOT/target/wasm32-wasip1/PROFILE/LIB.wasm`) and `ROOT/functions/*` or `ROOT` is a
    /// package whose library is `LIB`, or so is a member of the workspace at `ROOT`. The module
    /// need not exist yet.
    pub fn for_module(module: &Path) -> Option<Self> {
        let module = std::fs::canonicalize(module)
            .or_else(|_| std::path::absolute(module))
            .unwrap_or_else(|_| module.to_owned());
        let mut output = CargoOutput::parse(&module)?;
        // A module not built yet was not canonicalized; its crate directory can be.
        let root = std::fs::canonicalize(output.target_dir.parent()?).ok()?;
        output.target_dir = root.join(output.target_dir.file_name()?);
        let mut candidates = workspace_members(&root);
        candidates.extend(subdirectories(&root.join("functions")));
        candidates.push(root.clone());
        candidates.into_iter().find_map(|dir| {
            let (package, lib) = names(&dir.join("Cargo.toml")).ok()??;
            (lib == output.lib).then(|| FunctionCrate {
                dir,
                package,
                lib,
                profile: output.profile.clone(),
                target_dir: Some(output.target_dir.clone()),
            })
        })
    }

    /// Takes the profile and target directory from `module` if it is this crate's output.
    pub fn output_at(&mut self, module: &Path) {
        let module = std::fs::canonicalize(module).unwrap_or_else(|_| module.to_owned());
        if let Some(output) = CargoOutput::parse(&module).filter(|o| o.lib == self.lib) {
            self.profile = output.profile;
            self.target_dir = Some(output.target_dir);
        }
    }

    /// The files whose change calls for a rebuild: everything under `src/`, `Cargo.toml` and
    /// `build.rs`.
    pub fn sources(&self) -> Vec<PathBuf> {
        let mut files = vec![self.dir.join("Cargo.toml"), self.dir.join("build.rs")];
        let mut dirs = vec![self.dir.join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files
    }

    /// Runs `cargo build` for this crate and returns the `.wasm` it built. Cargo's progress and
    /// compile errors go to stderr as usual; its JSON messages on stdout say where the module is.
    pub fn build(&self) -> anyhow::Result<PathBuf> {
        let mut command = cargo();
        command.arg("build");
        if self.profile == DEFAULT_PROFILE {
            command.arg("--release");
        } else {
            command.args(["--profile", &self.profile]);
        }
        command
            .args([
                "--target",
                WASM_TARGET,
                "--message-format=json-render-diagnostics",
            ])
            .arg("--manifest-path")
            .arg(self.dir.join("Cargo.toml"))
            .stdout(Stdio::piped());
        if let Some(target_dir) = &self.target_dir {
            command.arg("--target-dir").arg(target_dir);
        }
        tracing::info!(package = %self.package, dir = %self.dir.display(), "building function crate");
        let mut child = command
            .spawn()
            .context("cannot run cargo to build the function crate")?;
        let mut module = None;
        if let Some(stdout) = child.stdout.take() {
            for line in std::io::BufReader::new(stdout).lines() {
                // Reading stops only with cargo's stdout; the exit status below tells the rest.
                let Ok(line) = line else { break };
                if let Some(wasm) = self.artifact(&line) {
                    module = Some(wasm);
                }
            }
        }
        let status = child.wait().context("cargo did not finish")?;
        ensure!(
            status.success(),
            "building function crate {:?} failed (cargo's errors are above)",
            self.package
        );
        let module = module.with_context(|| {
            format!(
                "cargo built no .wasm for {:?}: its Cargo.toml needs [lib] crate-type = [\"cdylib\"]",
                self.package
            )
        })?;
        tracing::info!(package = %self.package, module = %module.display(), "built function crate");
        Ok(module)
    }

    /// The `.wasm` named by one line of cargo's JSON output, if it is this crate's library.
    fn artifact(&self, line: &str) -> Option<PathBuf> {
        let message: serde_json::Value = serde_json::from_str(line).ok()?;
        if message["reason"] != "compiler-artifact" {
            return None;
        }
        let manifest = Path::new(message["manifest_path"].as_str()?);
        let ours = std::fs::canonicalize(manifest).ok()?
            == std::fs::canonicalize(self.dir.join("Cargo.toml")).ok()?;
        if !ours {
            return None;
        }
        message["filenames"]
            .as_array()?
            .iter()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"))
            .map(PathBuf::from)
    }
}

/// `ROOT/target/wasm32-wasip1/PROFILE_DIR/LIB.wasm`, taken apart.
#[derive(Debug, PartialEq, Eq)]
struct CargoOutput {
    target_dir: PathBuf,
    profile: String,
    lib: String,
}

impl CargoOutput {
    fn parse(module: &Path) -> Option<Self> {
        if module.extension()? != "wasm" {
            return None;
        }
        let lib = module.file_stem()?.to_str()?.to_owned();
        let profile_dir = module.parent()?;
        let triple_dir = profile_dir.parent()?;
        if triple_dir.file_name()? != WASM_TARGET {
            return None;
        }
        let profile = match profile_dir.file_name()?.to_str()? {
            // cargo's `dev` profile writes to `debug/`.
            "debug" => "dev".to_owned(),
            other => other.to_owned(),
        };
        let target_dir = triple_dir.parent()?.to_owned();
        if !matches!(
            target_dir.components().next_back(),
            Some(Component::Normal(_))
        ) {
            return None;
        }
        Some(CargoOutput {
            target_dir,
            profile,
            lib,
        })
    }
}

/// The member directories `ROOT/Cargo.toml`'s `[workspace] members` lists, a trailing `/*`
/// expanded (the form cargo's own templates use); nothing if there is no workspace.
fn workspace_members(root: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok());
    let members = manifest
        .as_ref()
        .and_then(|m| m.get("workspace")?.get("members")?.as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str());
    let mut dirs = Vec::new();
    for member in members {
        match member.strip_suffix("/*") {
            Some(parent) => dirs.extend(subdirectories(&root.join(parent))),
            None => dirs.push(root.join(member)),
        }
    }
    dirs
}

/// The directories in `dir`, sorted.
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The package name and library name of the manifest at `path`; `None` for a manifest with no
/// `[package]` (a virtual workspace).
fn names(path: &Path) -> anyhow::Result<Option<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let manifest: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{}: not a Cargo manifest", path.display()))?;
    let Some(package) = manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
    else {
        return Ok(None);
    };
    let lib = manifest
        .get("lib")
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
        .map_or_else(|| package.replace('-', "_"), str::to_owned);
    Ok(Some((package.to_owned(), lib)))
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Installs the `wasm32-wasip1` target with rustup if rustup lacks it (without rustup, cargo
/// reports a missing target itself).
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if installed.is_ok_and(|o| !String::from_utf8_lossy(&o.stdout).contains(WASM_TARGET)) {
        tracing::info!("installing the {WASM_TARGET} target");
        let status = Command::new("rustup")
            .args(["target", "add", WASM_TARGET])
            .status()?;
        ensure!(status.success(), "`rustup target add {WASM_TARGET}` failed");
    }
    Ok(())
}

/// Builds the demo's edge functions (`functions/router`, `functions/headers`) in this
/// repository, with the workspace's own `wasm` profile.
pub fn build_demo_functions() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ensure_wasm_target()?;
    tracing::info!("building the demo functions (router, headers)");
    let status = cargo()
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            WORKSPACE_PROFILE,
            "--target",
            WASM_TARGET,
            "-p",
            "router",
            "-p",
            "headers",
        ])
        .status()
        .context("cannot run cargo to build the demo functions")?;
    if !status.success() {
        bail!("building the demo functions failed (see above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_output_paths() {
        assert_eq!(
            CargoOutput::parse(Path::new("/ws/target/wasm32-wasip1/wasm/cache_key.wasm")),
            Some(CargoOutput {
                target_dir: "/ws/target".into(),
                profile: "wasm".into(),
                lib: "cache_key".into(),
            })
        );
        assert_eq!(
            CargoOutput::parse(Path::new("/ws/target/wasm32-wasip1/debug/f.wasm"))
                .map(|o| o.profile),
            Some("dev".into())
        );
        assert_eq!(CargoOutput::parse(Path::new("/ws/fn.wat")), None);
        assert_eq!(CargoOutput::parse(Path::new("/ws/build/fn.wasm")), None);
    }

    #[test]
    fn finds_a_member_of_any_workspace_and_a_crate_not_built_yet() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let member = root.path().join("crates/greeter");
        std::fs::create_dir_all(member.join("src"))?;
        std::fs::write(
            root.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\"crates/*\"]\n",
        )?;
        std::fs::write(
            member.join("Cargo.toml"),
            "[package]\nname = \"greeter\"\nversion = \"0.1.0\"\n",
        )?;
        let module = root
            .path()
            .join("target/wasm32-wasip1/release/greeter.wasm");
        let found = FunctionCrate::for_module(&module).expect("crates/greeter builds it");
        assert_eq!(found.dir, std::fs::canonicalize(&member)?);
        assert_eq!(found.profile, "release");
        assert_eq!(
            found.target_dir,
            Some(std::fs::canonicalize(root.path())?.join("target"))
        );
        Ok(())
    }

    #[test]
    fn finds_the_workspace_function_crate_of_a_module() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let module = root.join("target/wasm32-wasip1/wasm/cache_key.wasm");
        let found = FunctionCrate::for_module(&module).expect("functions/cache-key builds it");
        assert_eq!(found.package, "cache-key");
        assert!(found.dir.ends_with("functions/cache-key"), "{found:?}");
        assert_eq!(found.profile, "wasm");
        assert!(found
            .target_dir
            .as_ref()
            .is_some_and(|t| t.ends_with("target")));
        assert!(found.sources().iter().any(|s| s.ends_with("src/lib.rs")));
    }
}
