//! The documentation agrees with the project and with itself: one version
//! everywhere it is written, no hand copy of a file that can drift, and
//! every relative link pointing at a file (and heading) that exists. The
//! generated tables are checked next to what generates them: the keys in
//! `agent/src/config`, the exit codes in `agent/src/exit.rs`, the
//! `MESSAGE_ID`s in `agent/src/report/journal.rs`, the fault matrix in
//! `tests/tests/faults`, the man page in `agent/src/man.rs`.

use std::collections::HashMap;

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

/// The Markdown files a reader is sent to.
fn markdown_files() -> Vec<String> {
    let mut files: Vec<String> = [
        "README.md",
        "SECURITY.md",
        "packaging/README.md",
        "systemd/README.md",
        "cloud-init/README.md",
    ]
    .map(String::from)
    .to_vec();
    for dir in ["docs", "bench"] {
        let mut found: Vec<String> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".md"))
            .map(|name| format!("{dir}/{name}"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// A Markdown text's lines, each with whether it is inside a fenced code
/// block (the fence lines themselves count as inside).
fn lines_with_fences(text: &str) -> Vec<(&str, bool)> {
    let mut inside = false;
    text.lines()
        .map(|line| {
            let fence = line.trim_start().starts_with("```");
            if fence {
                inside = !inside;
            }
            (line, inside || fence)
        })
        .collect()
}

/// The fenced code blocks of a Markdown text, without their fences.
fn code_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some(String::new()),
            }
        } else if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    blocks
}

/// The anchors GitHub gives a file's headings: lowercased, everything but
/// letters, digits, `-` and `_` dropped, spaces made `-`; a repeated one
/// gets `-1`, `-2`, ….
fn anchors(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, in_code) in lines_with_fences(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if in_code || hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .trim_end_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let repeats = seen.entry(slug.clone()).or_insert(0);
        out.push(match *repeats {
            0 => slug,
            n => format!("{slug}-{n}"),
        });
        *repeats += 1;
    }
    out
}

/// The targets of a Markdown text's links and images (`[text](target)`),
/// outside code blocks and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for (line, in_code) in lines_with_fences(text) {
        if in_code {
            continue;
        }
        // Code spans are not links: keep only what lies between them.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    targets
}

/// Every relative link in the docs points at a file or folder that exists,
/// and a `#heading` at a heading of that file.
#[test]
fn relative_links_point_at_what_exists() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = read(&file);
        let dir = root().join(&file).parent().unwrap().to_path_buf();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                root().join(&file)
            } else {
                dir.join(path)
            };
            if !resolved.exists() {
                broken.push(format!("{file}: {target}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                if resolved.extension().is_some_and(|e| e == "md") {
                    let there = std::fs::read_to_string(&resolved).unwrap();
                    if !anchors(&there).iter().any(|a| a == anchor) {
                        broken.push(format!("{file}: {target}: no such heading"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_githubs() {
    let text = "# What `tests/run` needs\n```\n# not a heading\n```\n## The token's lifetime\n## A\n## A\n";
    assert_eq!(
        anchors(text),
        ["what-testsrun-needs", "the-tokens-lifetime", "a", "a-1"]
    );
    assert_eq!(
        link_targets("[a](x.md#b) `[c](nope)` ![d](e.png)\n```\n[f](g)\n```\n"),
        ["x.md#b", "e.png"]
    );
}

/// The cloud-init template is shown by linking to it, never by a copy that
/// drifts (one already had): any `#cloud-config` block in the docs must be
/// the template itself.
#[test]
fn no_doc_holds_a_drifted_copy_of_the_cloud_init_template() {
    let template = read("cloud-init/catalyst-bootstrap.tftpl");
    for file in markdown_files() {
        for block in code_blocks(&read(&file)) {
            if block.starts_with("#cloud-config") {
                assert_eq!(
                    block, template,
                    "{file} has a #cloud-config block that differs from \
                     cloud-init/catalyst-bootstrap.tftpl: link to the template instead"
                );
            }
        }
    }
    assert!(
        read("README.md").contains("(cloud-init/catalyst-bootstrap.tftpl)"),
        "README.md links to the template"
    );
}

/// bench/README.md shows the latest results as `bench/run` wrote them.
#[test]
fn the_benchmark_page_shows_the_results_bench_run_wrote() {
    let results = read("bench/results.md");
    assert!(
        read("bench/README.md").contains(results.trim()),
        "bench/README.md's table differs from bench/results.md (bench/run writes it); it should read:\n\n{}",
        results.trim()
    );
}
