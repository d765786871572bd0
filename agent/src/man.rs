//! The man page's reference sections (configuration keys, exit codes),
//! generated from the declarations they describe; the test checks that
//! `packaging/catalyst-bootstrap.1`, the reference the .deb ships, has them.

use std::fmt::Write as _;

use crate::config::{Initial, KEYS, Kind};

/// Text as roff reads it literally: backslashes and hyphens escaped, no
/// Markdown backticks, no control character at a line's start.
fn roff(text: &str) -> String {
    let text = text
        .replace('`', "")
        .replace('\\', "\\e")
        .replace('-', "\\-");
    match text.chars().next() {
        Some('.' | '\'') => format!("\\&{text}"),
        _ => text,
    }
}

/// `.SH CONFIGURATION`'s key list, from `KEYS`.
fn keys() -> String {
    let mut out = String::new();
    for k in KEYS.iter().filter(|k| k.kind != Kind::Table) {
        let default = match k.initial {
            Initial::Required => "Required. ".to_string(),
            Initial::Value(v) => format!("Default: {v}. "),
            Initial::Unset(text) if !text.is_empty() => format!("Default: {text}. "),
            Initial::Unset(_) => String::new(),
        };
        let flag = k
            .flag
            .map(|v| format!(", \\fB\\-\\-{}\\fR \\fI{v}\\fR", roff(&k.flag_name())))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            ".TP\n\\fB{}\\fR{flag}\n{}{}",
            roff(k.name),
            roff(&default),
            roff(k.doc)
        );
    }
    out
}

/// `.SH EXIT STATUS`: the agent's codes, then `status`'s (from its --help).
fn exit_status() -> String {
    let mut out = String::new();
    for (code, meaning) in crate::exit::meanings() {
        let _ = writeln!(out, ".TP\n.B {code}\n{}", roff(meaning));
    }
    out += ".SS status\n";
    let mut items: Vec<(String, String)> = Vec::new();
    for line in crate::commands::status::HELP.lines().skip(1) {
        let line = line.trim();
        match line.split_once(char::is_whitespace) {
            Some((code, text)) if code.parse::<u8>().is_ok() => {
                items.push((code.to_string(), text.trim().to_string()));
            }
            _ => {
                let last = items.last_mut().expect("a code before its continuation");
                last.1 = format!("{} {line}", last.1);
            }
        }
    }
    for (code, text) in items {
        let _ = writeln!(out, ".TP\n.B {code}\n{}", roff(&text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = include_str!("../../packaging/catalyst-bootstrap.1");

    fn check(what: &str, section: &str) {
        assert!(
            PAGE.contains(section),
            "packaging/catalyst-bootstrap.1's {what} is out of date; it should contain:\n\n{section}"
        );
    }

    #[test]
    fn man_page_lists_every_key() {
        check("key list", &format!(".SH CONFIGURATION KEYS\n{}", keys()));
    }

    #[test]
    fn man_page_lists_every_exit_code() {
        check("exit codes", &format!(".SH EXIT STATUS\n{}", exit_status()));
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff(".x `a-b` \\"), "\\&.x a\\-b \\e");
    }
}
