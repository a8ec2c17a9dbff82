//! The project's own rules, checked like tests (after TigerBeetle's tidy.zig): dependencies
//! point one way, and the sans-io layers stay free of tokio.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// crate -> workspace crates it may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("silt-config", &[]),
    ("silt-index", &[]),
    ("silt-archiver", &["silt-index", "silt-config"]),
    (
        "silt-broker",
        &["silt-archiver", "silt-index", "silt-config"],
    ),
    (
        "silt",
        &["silt-broker", "silt-archiver", "silt-index", "silt-config"],
    ),
];

#[test]
fn workspace_dependencies_point_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let members: BTreeSet<String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        if name == "silt-tests" {
            continue;
        }
        let permitted = allowed
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in tidy's table"));
        for dependency in package["dependencies"].as_array().unwrap() {
            let dep = dependency["name"].as_str().unwrap();
            let normal = dependency["kind"].is_null();
            if members.contains(dep) && normal {
                assert!(permitted.contains(&dep), "{name} must not depend on {dep}");
            }
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn sans_io_layers_do_not_touch_tokio_or_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["index/src", "broker/src/protocol"] {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        assert!(!files.is_empty(), "{dir} has no sources");
        for file in files {
            // Code only: comments may name what the code must not use.
            let text: String = std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for forbidden in [
                "tokio",
                "std::fs",
                "std::net",
                "Instant::now",
                "SystemTime::now",
            ] {
                assert!(
                    !text.contains(forbidden),
                    "{} uses {forbidden}: it must stay sans-io",
                    file.display()
                );
            }
        }
    }
}
