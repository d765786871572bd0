//! The documentation agrees with the project: one version everywhere it is
//! written.

use catalyst_bootstrap_tests::ship::root;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The Debian changelog's newest entry and the man page's header name the
/// workspace's version (the package takes its version from Cargo.toml).
#[test]
fn changelog_and_man_page_name_the_version() {
    let changelog = read("packaging/changelog");
    let first = changelog.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("catalyst-bootstrap ({VERSION}) ")),
        "packaging/changelog's newest entry is {first:?}, the version is {VERSION}"
    );
    let man = read("packaging/catalyst-bootstrap.1");
    let th = man.lines().next().unwrap_or_default();
    assert!(
        th.starts_with(".TH ") && th.contains(&format!("\"catalyst-bootstrap {VERSION}\"")),
        "packaging/catalyst-bootstrap.1's header is {th:?}, the version is {VERSION}"
    );
}

/// Artifact names in the docs (`catalyst-bootstrap_X.Y.Z_amd64.deb`,
/// `catalyst-bootstrap-X.Y.Z-linux-arm64`) are the ones `packaging/build`
/// makes today.
#[test]
fn docs_name_the_artifacts_of_this_version() {
    for path in ["README.md", "packaging/README.md"] {
        let text = read(path);
        for (i, _) in text.match_indices("catalyst-bootstrap") {
            let rest = &text[i + "catalyst-bootstrap".len()..];
            let Some(rest) = rest.strip_prefix(['_', '-']) else {
                continue;
            };
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if version.contains('.') {
                assert_eq!(
                    version.trim_end_matches('.'),
                    VERSION,
                    "{path} names an artifact of another version: catalyst-bootstrap{}",
                    rest.chars().take(40).collect::<String>()
                );
            }
        }
    }
}
