//! Text that comes from outside the process: server answers, Kubernetes
//! `Status` messages, texts derived from files. It is held as
//! [`Untrusted`], which has no `Display`; the one way to an operator surface
//! (stderr, the journal, sd_notify, state.json, `status`, an error chain) is
//! [`Untrusted::shown`], which
//! - withholds the text whole when it repeats a secret this process holds or
//!   has sent ([`register`]), also when other characters were put between
//!   the secret's own (a line-wrapping proxy, zero-width characters),
//! - escapes control and format characters visibly, so a peer can neither
//!   add lines to the journal or to an sd_notify datagram nor drive the
//!   terminal of the SRE who reads them,
//! - and bounds the length.
//!
//! Secrets are registered as keyed hashes of their windows, never as text:
//! the registry keeps recognising the seed after the seed itself has been
//! wiped from memory.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, OnceLock};

use zeroize::Zeroizing;

/// A run of this many characters of a secret (in its own alphabet) counts as
/// the secret: a truncated echo is still an echo. Well below the 24 the
/// tests and the fuzzer look for in whole log lines, since the agent's own
/// words around a shown text can continue a run (`answered 430: 1234…` adds
/// the `0` before a token's `123…`; found by the fuzzer).
const WINDOW: usize = 16;
/// A secret shorter than a window (a password of 8 to 15 characters, in its
/// alphabet) counts only whole. Shorter ones cannot be recognised: regions
/// and flags such as `fsn1` are that short and not secret.
const SHORTEST: usize = 8;
/// Characters of outside text shown at most.
const MAX_SHOWN: usize = 300;
/// Bytes of outside text scanned for secrets at most; longer text is
/// withheld (nothing the agent shows is near this size).
const MAX_SCANNED: usize = 64 * 1024;

pub(crate) const WITHHELD: &str =
    "(withheld: the text repeats secret material this process holds or has sent)";

/// The characters a secret is written in; every other character of a text
/// is ignored when looking for the secret in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Alphabet {
    /// 0-9a-f, either case (the bearer token, the seed's bytes as hex).
    Hex,
    /// Standard base64 without padding (the seed's text and wire forms, the
    /// client key's PEM body and `client-key-data`).
    Base64,
}

impl Alphabet {
    const ALL: [Alphabet; 2] = [Alphabet::Hex, Alphabet::Base64];

    fn keep(self, c: u8) -> Option<u8> {
        match self {
            Alphabet::Hex => {
                let c = c.to_ascii_lowercase();
                c.is_ascii_hexdigit().then_some(c)
            }
            Alphabet::Base64 => (c.is_ascii_alphanumeric() || c == b'+' || c == b'/').then_some(c),
        }
    }

    /// The characters of `text` in this alphabet, in order. With `escapes`,
    /// an escape sequence (`\n`, `\u200b`: an echo that JSON-encodes or
    /// quotes what it repeats) counts as the one character it stands for;
    /// without, every character counts as itself. Both readings are checked:
    /// `\\b` is a backslash and a `b` to one, a backspace to the other.
    fn only(self, text: &[u8], escapes: bool) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(text.len()));
        let mut i = 0;
        while i < text.len() {
            let next = if escapes { text.get(i + 1) } else { None };
            let (c, len) = match (text[i], next) {
                (b'\\', Some(b'n' | b'r' | b't' | b'b' | b'f')) => (None, 2),
                (b'\\', Some(b'u')) => match text
                    .get(i + 2..i + 6)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                {
                    Some(code) => (u8::try_from(code).ok(), 6),
                    None => (None, 2),
                },
                (c, _) => (Some(c), 1),
            };
            out.extend(c.and_then(|c| self.keep(c)));
            i += len;
        }
        out
    }
}

struct Registry {
    keys: RandomState,
    /// Keyed hashes of each secret's windows, with the window's length: a
    /// [`WINDOW`], or a shorter secret whole.
    windows: HashSet<(Alphabet, usize, u64)>,
    /// The lengths in use.
    lengths: BTreeSet<usize>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Mutex::new(Registry {
            keys: RandomState::new(),
            windows: HashSet::new(),
            lengths: BTreeSet::new(),
        })
    })
}

/// Remembers `secret` (written in `alphabet`; other characters in it, such
/// as PEM line breaks, are ignored) so that no outside text repeating it is
/// shown: any [`WINDOW`] characters of it, or all of a shorter one down to
/// [`SHORTEST`]. Shorter still is not recognisable.
pub(crate) fn register(alphabet: Alphabet, secret: &[u8]) {
    let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    let Registry {
        keys,
        windows,
        lengths,
    } = &mut *registry;
    for escapes in [true, false] {
        let only = alphabet.only(secret, escapes);
        let len = only.len().min(WINDOW);
        if len < SHORTEST {
            continue;
        }
        lengths.insert(len);
        for window in only.windows(len) {
            windows.insert((alphabet, len, keys.hash_one(window)));
        }
    }
}

/// Remembers text that is not a secret but must not be shown either (an
/// object's body): only runs of a whole [`WINDOW`] count, so that the short
/// words a body shares with the server's own messages (a kind, a name in a
/// reference) stay readable.
pub(crate) fn register_text(alphabet: Alphabet, text: &[u8]) {
    if alphabet.only(text, false).len() >= WINDOW {
        register(alphabet, text);
    }
}

/// Whether `text` repeats a registered secret, in any of its alphabets.
fn repeats_secret(text: &[u8]) -> bool {
    let registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    if registry.windows.is_empty() {
        return false;
    }
    Alphabet::ALL.into_iter().any(|alphabet| {
        [true, false].into_iter().any(|escapes| {
            let only = alphabet.only(text, escapes);
            registry.lengths.iter().any(|&len| {
                only.windows(len).any(|window| {
                    let hash = registry.keys.hash_one(window);
                    registry.windows.contains(&(alphabet, len, hash))
                })
            })
        })
    })
}

/// Outside text. Deliberately no `Display`: see the module documentation.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Untrusted(String);

impl Untrusted {
    pub(crate) fn new(text: impl Into<String>) -> Untrusted {
        Untrusted(text.into())
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Untrusted {
        Untrusted(String::from_utf8_lossy(bytes).into_owned())
    }

    /// The text for comparisons (a `Status` reason, an error code) only;
    /// never for showing.
    pub(crate) fn matches(&self) -> &str {
        &self.0
    }

    /// The one way outside text reaches an operator surface.
    pub(crate) fn shown(&self) -> String {
        if self.0.len() > MAX_SCANNED || repeats_secret(self.0.as_bytes()) {
            return WITHHELD.to_string();
        }
        let shown = escape(self.0.trim());
        // The escapes add characters of their own (`\u{0}` holds a hex
        // digit): a secret's run cut short by one control character would
        // be whole again in what is shown. What is shown is checked too.
        if repeats_secret(shown.as_bytes()) {
            return WITHHELD.to_string();
        }
        shown
    }
}

impl fmt::Debug for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Untrusted({:?})", self.shown())
    }
}

/// Characters that change how text is laid out or read without being
/// visible themselves: zero-width characters, direction marks, embeddings,
/// overrides and isolates, invisible operators, the byte order mark.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{061c}' | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}')
}

/// Control characters (C0, DEL, C1) and format characters written as
/// visible escapes, at most [`MAX_SHOWN`] characters of the original.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_SHOWN * 2));
    let mut chars = text.chars();
    for c in chars.by_ref().take(MAX_SHOWN) {
        push_escaped(&mut out, c);
    }
    let rest = chars.count();
    if rest > 0 {
        out.push_str(&format!("… ({rest} more characters)"));
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() || is_format(c) => {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
        c => out.push(c),
    }
}

/// One line, whatever `text` holds: control and format characters escaped
/// as [`Untrusted::shown`] does, nothing withheld or cut. For surfaces that
/// are line-based (sd_notify, stderr), below the rule that outside text is
/// shown only through [`Untrusted::shown`].
pub(crate) fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() || is_format(c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    std::borrow::Cow::Owned(out)
}

/// A PEM document's base64 body (the DER), without its BEGIN/END lines.
pub(crate) fn register_pem(pem: &[u8]) {
    let mut body = Zeroizing::new(Vec::with_capacity(pem.len()));
    for line in pem.split(|&c| c == b'\n') {
        if !line.starts_with(b"-----") {
            body.extend_from_slice(line);
        }
    }
    register(Alphabet::Base64, &body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    /// Each test registers its own random secrets: the registry is global.
    fn random_hex() -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn random_base64(n: usize) -> String {
        let mut bytes = vec![0u8; n];
        getrandom::fill(&mut bytes).unwrap();
        STANDARD.encode(bytes)
    }

    /// `+` and `/` are characters of a base64 secret: a text that has the
    /// secret's other characters without them is not the secret.
    #[test]
    fn plus_and_slash_are_part_of_a_base64_secret() {
        let hex = random_hex();
        let (x, y, z) = (&hex[..8], &hex[8..16], &hex[16..24]);
        register(Alphabet::Base64, format!("{x}+{y}/{z}").as_bytes());
        let echo = format!("bad value {x}+{y}/{z}");
        assert_eq!(Untrusted::new(&echo).shown(), WITHHELD);
        let other = format!("a different value {x}{y}{z}");
        assert_eq!(Untrusted::new(&other).shown(), other);
    }

    /// A key read from a file is recognised by its base64 body, whatever
    /// its line breaks; the armour lines are words, not the secret.
    #[test]
    fn a_pem_body_is_recognised_without_its_armour() {
        let body = random_base64(48);
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n{}\n-----END PRIVATE KEY-----\n",
            &body[..32],
            &body[32..]
        );
        register_pem(pem.as_bytes());
        let echo = format!("tls: bad key data {}", &body[20..50]);
        assert_eq!(Untrusted::new(&echo).shown(), WITHHELD);
        let armour = "expected -----BEGIN PRIVATE KEY----- and -----END PRIVATE KEY-----";
        assert_eq!(Untrusted::new(armour).shown(), armour);
    }

    #[test]
    fn control_and_format_characters_are_escaped_visibly() {
        let text = Untrusted::new(
            "node-b\nREADY=1\r\nMAINPID=1\u{1b}]0;x\u{7}\u{9b}\u{7f}a\u{200b}b\u{202e}c\u{2066}d",
        );
        let shown = text.shown();
        assert_eq!(
            shown,
            "node-b\\nREADY=1\\r\\nMAINPID=1\\u{1b}]0;x\\u{7}\\u{9b}\\u{7f}a\\u{200b}b\\u{202e}c\\u{2066}d"
        );
        assert!(!shown.chars().any(|c| c.is_control() || is_format(c)));
    }

    #[test]
    fn one_line_keeps_everything_but_breaks() {
        assert_eq!(one_line("plain text; fine"), "plain text; fine");
        assert_eq!(one_line("a\nREADY=1\u{1b}"), "a\\nREADY=1\\u{1b}");
        let long = "z".repeat(1000);
        assert_eq!(one_line(&long), long);
    }

    #[test]
    fn length_is_bounded() {
        let shown = Untrusted::new("x".repeat(10_000)).shown();
        assert!(shown.starts_with(&"x".repeat(MAX_SHOWN)));
        assert!(shown.ends_with("(9700 more characters)"), "{shown}");
        assert_eq!(
            Untrusted::new("y".repeat(MAX_SCANNED + 1)).shown(),
            WITHHELD
        );
    }

    /// Found by the fuzzer: `\\b` read as an escaped backspace hid the `b`
    /// of `…c3\\b4a…`, which a reader sees as a `b`: 16 characters of the
    /// token in one reading, 15 in the other.
    #[test]
    fn an_escaped_backslash_does_not_hide_a_character() {
        let token = "f0e1d2c3b4a59687f0e1d2c3b4a59687f0e1d2c3b4a59687f0e1d2c3b4a59687";
        register(Alphabet::Hex, token.as_bytes());
        let text = r#"answered 401: "wwww f0e1d2c3\\b4a59687 www""#;
        assert_eq!(Untrusted::new(text).shown(), WITHHELD);
    }

    /// Found by the fuzzer: a NUL, then 23 characters of the token. The
    /// text holds no whole window of it, but what is shown does: the
    /// escape `\u{0}` spells the token's first digit.
    #[test]
    fn an_escape_cannot_complete_a_secret() {
        let token = "0fedcba9876543210fedcba9876543210fedcba9876543210fedcba987654321";
        register(Alphabet::Hex, token.as_bytes());
        let text = format!("error: k\u{1}\u{0}{}-", &token[1..WINDOW]);
        assert_eq!(Untrusted::new(text).shown(), WITHHELD);
    }

    /// Issue 21: a 12-character password quoted by an admission webhook
    /// reached the journal; only runs of 16 counted.
    #[test]
    fn a_short_secret_is_recognised_whole() {
        for len in [SHORTEST, 12, WINDOW - 1] {
            let value = &random_base64(12)[..len];
            register(Alphabet::Base64, value.as_bytes());
            let echo = format!("admission webhook denied: password \"{value}\" is too weak");
            assert_eq!(Untrusted::new(&echo).shown(), WITHHELD, "{len}");
            let wrapped = format!("quoted: {}\u{200b}{}", &value[..3], &value[3..]);
            assert_eq!(Untrusted::new(&wrapped).shown(), WITHHELD, "{len}");
            // Part of it is not the secret.
            let part = format!("password \"{}\" is too weak", &value[1..]);
            assert_eq!(Untrusted::new(&part).shown(), part, "{len}");
        }
    }

    #[test]
    fn shorter_values_are_not_recognisable() {
        register(Alphabet::Base64, b"fsn1");
        register(Alphabet::Base64, b"Ab-3!x-9");
        for text in ["region fsn1", "flag Ab3x9 set"] {
            assert_eq!(Untrusted::new(text).shown(), text);
        }
    }

    #[test]
    fn a_registered_secret_is_withheld_in_every_disguise() {
        let token = random_hex();
        register(Alphabet::Hex, token.as_bytes());
        let key = random_base64(120);
        let pem = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n{}\n-----END EC PRIVATE KEY-----\n",
            &key[..64],
            &key[64..]
        );
        register(Alphabet::Base64, pem.as_bytes());

        let withheld =
            |text: String| assert_eq!(Untrusted::new(text.clone()).shown(), WITHHELD, "{text}");
        withheld(format!("Authorization: Bearer {token}"));
        withheld(format!("…{}…", &token[20..46]));
        withheld(token.to_uppercase());
        // A character put in every few characters, and zero-width ones.
        let spaced: String = token
            .chars()
            .enumerate()
            .flat_map(|(i, c)| [c].into_iter().chain((i % 5 == 4).then_some('\n')))
            .collect();
        withheld(spaced);
        let zw: String = token.chars().flat_map(|c| [c, '\u{200b}']).collect();
        withheld(zw);
        // The key wrapped differently from how it was sent, JSON-escaped.
        withheld(format!("bad line: {}\\\n {}", &key[10..30], &key[30..50]));
        withheld(
            key.as_bytes()
                .chunks(7)
                .map(|c| String::from_utf8_lossy(c))
                .collect::<Vec<_>>()
                .join("\\n"),
        );
        withheld(
            key.as_bytes()
                .chunks(5)
                .map(|c| String::from_utf8_lossy(c))
                .collect::<Vec<_>>()
                .join("\\u200b"),
        );

        for fine in [
            r#"{"error":"write-failed","detail":"disk busy"}"#,
            "the object has been modified; please apply your changes to the latest version and try again",
            "namespaces \"openbao\" not found",
        ] {
            assert_eq!(Untrusted::new(fine).shown(), fine);
        }
        // Fewer than a window's worth of the secret is not the secret.
        let short = &token[..WINDOW - 1];
        assert_eq!(Untrusted::new(short).shown(), short);
    }

    #[test]
    fn debug_goes_through_the_filter() {
        let text = Untrusted::new("a\u{1b}[31mb");
        assert_eq!(format!("{text:?}"), "Untrusted(\"a\\\\u{1b}[31mb\")");
    }
}
