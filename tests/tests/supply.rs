//! Supply chain, for both arches: the dependency list cargo-auditable
//! embeds in the binary (`.dep-v0`) against cargo's own resolution for the
//! target, and the CycloneDX SBOM beside the .deb against the binary.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use catalyst_bootstrap_tests::ship::{
    Artifacts, arm64_artifacts, artifacts, require, root, run, stdout, unpack,
};

/// Crates the binary lists but does not hold, each with why. cargo-auditable
/// resolves features over the whole workspace (`cargo metadata` has no
/// `-p`), so a feature that only the tests crate enables adds its optional
/// dependency to the agent's list. Never more than these: any other crate
/// that `cargo tree` does not show for the agent fails the test.
const LISTED_NOT_COMPILED: &[(&str, &str)] = &[
    (
        "httpdate",
        "hyper's `server` feature, which only the tests crate's fake servers enable",
    ),
    (
        "memoffset",
        "nix's `socket` feature, which only the tests crate enables",
    ),
];

/// One entry of the embedded list.
struct Embedded {
    name: String,
    version: String,
    source: String,
    /// Runs at build time only: a build script's or proc-macro's crate.
    build: bool,
    root: bool,
}

fn target(a: &Artifacts) -> &'static str {
    match a.arch {
        "amd64" => "x86_64-unknown-linux-gnu",
        _ => "aarch64-unknown-linux-gnu",
    }
}

/// The `.dep-v0` section of the binary: zlib-compressed JSON (the format of
/// `auditable-serde`, read here with the tools already at hand).
fn embedded(a: &Artifacts) -> Vec<Embedded> {
    let objcopy = match a.arch {
        "amd64" => "objcopy",
        _ => "aarch64-linux-gnu-objcopy",
    };
    require(objcopy, "binutils");
    let dir = tempfile::tempdir().unwrap();
    let section = dir.path().join("dep-v0");
    run(Command::new(objcopy)
        .arg(format!("--dump-section=.dep-v0={}", section.display()))
        .arg(&a.binary)
        .arg(dir.path().join("unchanged")));
    let compressed = std::fs::read(&section).unwrap();
    let json = miniz_oxide::inflate::decompress_to_vec_zlib(&compressed)
        .unwrap_or_else(|e| panic!("{}: .dep-v0 does not inflate: {e:?}", a.arch));
    let list: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(list["format"], 1, "{list}");
    list["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Embedded {
            name: p["name"].as_str().unwrap().into(),
            version: p["version"].as_str().unwrap().into(),
            source: p["source"].as_str().unwrap().into(),
            build: p["kind"] == "build",
            root: p["root"] == true,
        })
        .collect()
}

/// The crates `cargo tree` shows for the agent on `target`, over `edges`.
fn cargo_tree(target: &str, edges: &str) -> BTreeSet<(String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = stdout(
        Command::new(cargo)
            .args([
                "tree",
                "--locked",
                "-p",
                "catalyst-bootstrap",
                "--prefix",
                "none",
            ])
            .args(["-f", "{p}", "-e", edges, "--target", target])
            .current_dir(root()),
    );
    tree.lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap().to_string();
            let version = words.next().unwrap().trim_start_matches('v').to_string();
            (name, version)
        })
        .collect()
}

#[test]
fn binary_lists_every_crate_compiled_in() {
    lists_every_crate(artifacts());
}

#[test]
fn arm64_binary_lists_every_crate_compiled_in() {
    lists_every_crate(arm64_artifacts());
}

fn lists_every_crate(a: &Artifacts) {
    let list = embedded(a);
    let root_entry: Vec<_> = list.iter().filter(|p| p.root).collect();
    assert!(
        root_entry.len() == 1
            && root_entry[0].name == "catalyst-bootstrap"
            && root_entry[0].version == a.version,
        "{}: the root of the list is not the agent",
        a.arch
    );
    for p in list.iter().filter(|p| !p.root) {
        assert_eq!(
            p.source, "crates.io",
            "{} {}: not from crates.io",
            p.name, p.version
        );
    }
    let listed: BTreeSet<(String, String)> = list
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    // Everything cargo compiles for the agent: its own code, what links
    // into it, and what runs at build time (build scripts, proc-macros),
    // which the list carries with kind "build".
    let compiled = cargo_tree(target(a), "normal,build");
    let linked = cargo_tree(target(a), "normal");
    let missing: Vec<_> = compiled.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "{}: compiled in but not listed: {missing:?}",
        a.arch
    );
    let extra: BTreeSet<&str> = listed
        .difference(&compiled)
        .map(|(name, _)| name.as_str())
        .collect();
    let known: BTreeSet<&str> = LISTED_NOT_COMPILED.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        extra, known,
        "{}: the crates listed but not compiled in are not the known ones (an unknown one is never \
         accepted; a known one that is gone leaves LISTED_NOT_COMPILED)",
        a.arch
    );
    // What the list says is in the binary is what cargo links.
    for p in list
        .iter()
        .filter(|p| !p.build && !known.contains(p.name.as_str()))
    {
        assert!(
            linked.contains(&(p.name.clone(), p.version.clone())),
            "{}: {} {} listed as in the binary, but cargo tree -e normal does not link it",
            a.arch,
            p.name,
            p.version
        );
    }
    println!(
        "{}: {} crates listed in .dep-v0 ({} in the binary, {} at build time only; {} listed \
         but not compiled: {known:?})",
        a.arch,
        list.len() - 1,
        list.iter().filter(|p| !p.root && !p.build).count(),
        list.iter().filter(|p| p.build).count(),
        known.len()
    );
}

#[test]
fn sbom_lists_exactly_the_crates_the_binary_embeds() {
    sbom_matches_binary(artifacts());
}

#[test]
fn arm64_sbom_lists_exactly_the_crates_the_binary_embeds() {
    sbom_matches_binary(arm64_artifacts());
}

fn sbom_matches_binary(a: &Artifacts) {
    let bom: serde_json::Value = serde_json::from_slice(&std::fs::read(&a.sbom).unwrap()).unwrap();
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    assert!(
        bom["serialNumber"]
            .as_str()
            .is_some_and(|s| s.starts_with("urn:uuid:") && s.len() == 45),
        "{}",
        bom["serialNumber"]
    );
    // The time is the commit's (SOURCE_DATE_EPOCH), not the build's.
    let epoch = stdout(
        Command::new("git")
            .args(["log", "-1", "--format=%ct"])
            .current_dir(root()),
    );
    let time = stdout(Command::new("date").args([
        "-u",
        "-d",
        &format!("@{}", epoch.trim()),
        "+%Y-%m-%dT%H:%M:%SZ",
    ]));
    assert_eq!(
        bom["metadata"]["timestamp"],
        time.trim(),
        "{}: the SBOM's time is SOURCE_DATE_EPOCH, the last commit's: {} was built from another commit",
        a.arch,
        a.sbom.display()
    );

    let agent = &bom["metadata"]["component"];
    assert_eq!(agent["name"], "catalyst-bootstrap");
    assert_eq!(agent["version"], a.version.as_str());
    assert_eq!(agent["type"], "application");
    let properties = agent["properties"].as_array().unwrap();
    assert!(
        properties
            .iter()
            .any(|p| p["name"] == "catalyst:target" && p["value"] == target(a)),
        "{}: the SBOM is not for {}: {properties:?}",
        a.arch,
        target(a)
    );

    let list = embedded(a);
    let components = bom["components"].as_array().unwrap();
    let mut crates = BTreeMap::new();
    let mut debian = BTreeMap::new();
    for c in components {
        let (name, version) = (
            c["name"].as_str().unwrap().to_string(),
            c["version"].as_str().unwrap().to_string(),
        );
        let purl = c["purl"].as_str().unwrap_or_default();
        let licence = c["licenses"][0]["expression"].as_str().unwrap_or_default();
        assert!(!licence.is_empty(), "{name} {version}: no licence");
        if purl.starts_with("pkg:cargo/") {
            assert_eq!(purl, format!("pkg:cargo/{name}@{version}"));
            assert!(
                crates
                    .insert((name.clone(), version), c["scope"].clone())
                    .is_none(),
                "{name} twice"
            );
        } else {
            assert!(purl.starts_with("pkg:deb/debian/"), "{purl}");
            debian.insert(name, version);
        }
    }
    let listed: BTreeMap<(String, String), serde_json::Value> = list
        .iter()
        .filter(|p| !p.root)
        .map(|p| {
            let scope = if p.build { "excluded" } else { "required" };
            ((p.name.clone(), p.version.clone()), scope.into())
        })
        .collect();
    assert!(
        crates == listed,
        "{}: the SBOM's crates are not the binary's:\nonly in the SBOM: {:?}\nonly in the binary: {:?}",
        a.arch,
        crates
            .keys()
            .filter(|k| !listed.contains_key(*k))
            .collect::<Vec<_>>(),
        listed
            .keys()
            .filter(|k| !crates.contains_key(*k))
            .collect::<Vec<_>>()
    );

    // glibc and libgcc are compiled in too, from these Debian packages
    // (the ones that hold the libc.a and libgcc*.a the linker resolves).
    let packages: &[&str] = match a.arch {
        "amd64" => &["libc6-dev", "libgcc-12-dev"],
        _ => &["libc6-dev-arm64-cross", "libgcc-12-dev-arm64-cross"],
    };
    let installed: BTreeMap<String, String> = packages
        .iter()
        .map(|p| {
            let version = stdout(Command::new("dpkg-query").args(["-W", "-f=${Version}", p]));
            (p.to_string(), version)
        })
        .collect();
    assert_eq!(debian, installed, "{}: the C libraries", a.arch);
    assert!(
        components
            .iter()
            .any(|c| c["cpe"].as_str().is_some_and(|s| s.contains(":gnu:glibc:"))),
        "{}: no glibc CPE for scanners to match",
        a.arch
    );

    // The .deb carries the same file.
    let unpacked = unpack(&a.deb);
    let shipped = unpacked
        .path()
        .join("usr/share/doc/catalyst-bootstrap")
        .join(a.sbom.file_name().unwrap());
    assert!(
        std::fs::read(&shipped).unwrap() == std::fs::read(&a.sbom).unwrap(),
        "{}: the .deb's SBOM differs from {}",
        a.arch,
        a.sbom.display()
    );
    println!(
        "{}: the SBOM lists the binary's {} crates and {} Debian packages: {debian:?}",
        a.arch,
        crates.len(),
        debian.len()
    );
}
