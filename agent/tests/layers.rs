//! The folders are floors, and an import only ever points down (or across):
//! a type that a lower floor needs lives on that floor or below it.

use std::path::Path;

/// Lowest first. `exit` (a file at the top) is on the ground floor too.
const FLOORS: &[&[&str]] = &[
    &["memory", "exit"],
    &["config"],
    &["peers"],
    &["report"],
    &["job"],
    &["commands"],
];

fn floor(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

/// Every `crate::<module>` a file names, with its line number.
fn imports(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let module: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push((n + 1, module));
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_import_points_up() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut up = Vec::new();
    let mut checked = 0;
    for (level, folders) in FLOORS.iter().enumerate() {
        for folder in folders.iter().filter(|f| src.join(f).is_dir()) {
            let mut paths = Vec::new();
            files(&src.join(folder), &mut paths);
            for path in paths {
                checked += 1;
                let text = std::fs::read_to_string(&path).unwrap();
                for (line, module) in imports(&text) {
                    if floor(&module).is_some_and(|to| to > level) {
                        up.push(format!(
                            "{}:{line} imports crate::{module}",
                            path.strip_prefix(&src).unwrap().display()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} files found under {}",
        src.display()
    );
    assert!(
        up.is_empty(),
        "imports that point up a floor:\n{}",
        up.join("\n")
    );
}

#[test]
fn the_check_sees_an_import_that_points_up() {
    let found =
        imports("use crate::report::journal;\n// crate::job in a comment\nlet x = crate::job::X;");
    assert_eq!(
        found,
        vec![(1, "report".to_string()), (3, "job".to_string())]
    );
    assert!(floor("report") > floor("peers"));
}
