//! The ABI has one spec (`sdk/ABI.md`) and two implementations (the SDK's imports and the
//! runtime's host calls). These tests check that all three agree: same calls, same signatures,
//! same status codes.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use edge_sdk::abi::{self, status, ValType, HOST_CALLS, IMPORT_MODULE};

use crate::harness::{Modules, Site, TestNode};

fn read(path: &str) -> Result<String> {
    Ok(std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path),
    )?)
}

fn wat_type(t: &ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
    }
}

/// A module importing every host call with the signature the shared table gives it loads into
/// the runtime: the runtime provides each, with that signature.
#[tokio::test(flavor = "multi_thread")]
async fn runtime_provides_every_host_call_with_its_signature() -> Result<()> {
    let imports: String = HOST_CALLS
        .iter()
        .map(|c| {
            let params: Vec<&str> = c.params.iter().map(wat_type).collect();
            let results: Vec<&str> = c.results.iter().map(wat_type).collect();
            format!(
                "(import \"{IMPORT_MODULE}\" \"{}\" (func (param {}) (result {})))\n",
                c.name,
                params.join(" "),
                results.join(" ")
            )
        })
        .collect();
    let wat = format!("(module {imports} (memory (export \"memory\") 1) (func (export \"viewer-request\") (result i32) (i32.const 0)))");
    let modules = Modules::new(&[("all", &wat)])?;
    let site = Site::new(&[("x", "ok")])?;
    let node = TestNode::start(&format!(
        "{}\n[origins.bucket]\ntype = \"static\"\nroot = {}\n[[behaviors]]\npath = \"*\"\norigin = \"bucket\"\nfunctions = {{ viewer_request = \"all\" }}\n",
        modules.toml(""),
        site.root()
    ))
    .await?;
    assert_eq!(node.get("/x").await?.text(), "ok");
    Ok(())
}

/// The SDK's `extern` block declares exactly the shared table's calls, with matching types
/// (pointers and `usize` are `i32` on wasm32).
#[test]
fn sdk_imports_match_the_table() -> Result<()> {
    let sys = read("sdk/src/sys.rs")?;
    let block = &sys[sys
        .find("unsafe extern \"C\" {")
        .expect("the SDK has an extern block")..];
    let block = &block[..block.find("\n    }").expect("the extern block ends")];
    let mut declared = BTreeSet::new();
    // Declarations may span lines (rustfmt): read them as `pub fn ...;` items.
    let flat: String = block.split_whitespace().collect::<Vec<_>>().join(" ");
    for line in flat
        .split(';')
        .map(str::trim)
        .filter_map(|l| l.find("pub fn ").map(|i| &l[i..]))
    {
        let name = &line["pub fn ".len()..line.find('(').expect("a parameter list")];
        let params = &line[line.find('(').expect("(") + 1..line.rfind(')').expect(")")];
        let types: Vec<ValType> = params
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                if p.ends_with("i64") {
                    ValType::I64
                } else {
                    ValType::I32
                }
            })
            .collect();
        let call = HOST_CALLS
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("the SDK imports {name}, which the table lacks"));
        assert_eq!(types, call.params, "parameters of {name}");
        assert!(
            line.replace(", )", ")").ends_with(") -> i32"),
            "{name} returns i32: {line}"
        );
        declared.insert(name.to_owned());
    }
    let table: BTreeSet<String> = HOST_CALLS.iter().map(|c| c.name.to_owned()).collect();
    assert_eq!(declared, table, "the SDK declares every host call");
    Ok(())
}

/// ABI.md documents exactly the table's calls, and the same status codes.
#[test]
fn spec_documents_every_call_and_status() -> Result<()> {
    let spec = read("sdk/ABI.md")?;
    let calls_section = &spec[spec.find("## Host calls").expect("a host calls section")..];
    let mut documented = BTreeSet::new();
    for line in calls_section.lines() {
        for part in line.split('`').skip(1).step_by(2) {
            if let Some(name) = part
                .split('(')
                .next()
                .filter(|_| part.contains('(') && part.contains("->"))
            {
                documented.insert(name.to_owned());
            }
        }
    }
    let table: BTreeSet<String> = HOST_CALLS.iter().map(|c| c.name.to_owned()).collect();
    assert_eq!(documented, table, "ABI.md's host calls");
    for call in HOST_CALLS {
        let documented = calls_section
            .lines()
            .find(|l| l.contains(&format!("`{}(", call.name)))
            .expect("documented");
        let params =
            &documented[documented.find('(').expect("(") + 1..documented.find(')').expect(")")];
        assert_eq!(
            params.split(',').filter(|p| !p.trim().is_empty()).count(),
            call.params.len(),
            "parameter count of {} in ABI.md",
            call.name
        );
    }
    for code in 0..=6 {
        let row = format!("| {code} | `{}` |", status::name(code));
        assert!(
            spec.contains(&row),
            "ABI.md lists status {code} as {}",
            status::name(code)
        );
    }
    assert!(
        spec.contains(&format!("version {}", abi::ABI_VERSION)),
        "ABI.md states the version"
    );
    Ok(())
}
