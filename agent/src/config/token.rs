//! The single-use bearer token for catalyst-api: where it is read from, what
//! a valid one looks like, and how it is kept out of every log line.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use zeroize::Zeroizing;

use crate::exit::Exit;
use crate::memory::untrusted::{self, Alphabet};

/// Name of the systemd credential (`LoadCredential=kubeconfig-bearer:…`).
pub(crate) const CREDENTIAL: &str = "kubeconfig-bearer";
const TOKEN_LEN: usize = 64;
/// Where catalyst-bootstrap.service loads the credential from
/// (`LoadCredential=kubeconfig-bearer:/etc/credstore/kubeconfig-bearer`),
/// and where cloud-init writes it.
pub(crate) const CREDSTORE: &str = "/etc/credstore/kubeconfig-bearer";

/// The token. Debug and Display print `<redacted>`; the only way to the
/// characters is [`BearerToken::header_value`]. Reading it registers it with
/// [`untrusted`], so no outside text that repeats it is ever shown.
pub(crate) struct BearerToken {
    value: Zeroizing<String>,
    source: PathBuf,
}

impl BearerToken {
    /// Reads the token from the systemd credential when the unit passed one,
    /// otherwise from `token_file`.
    pub(crate) fn load(token_file: Option<&Path>) -> anyhow::Result<Self> {
        let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(|dir| Path::new(&dir).join(CREDENTIAL))
            .filter(|p| p.exists());
        let (path, from_credential) = match (credential, token_file) {
            (Some(p), _) => (p, true),
            (None, Some(f)) => (f.to_path_buf(), false),
            (None, None) => {
                return Err(anyhow::anyhow!(
                    "no bearer token: pass the systemd credential `{CREDENTIAL}` \
                     (LoadCredential={CREDENTIAL}:<file>) or set `token_file` in the configuration"
                ))
                .context(Exit::Config);
            }
        };
        let token = Self::read(&path, from_credential)
            .with_context(|| format!("bearer token {}", path.display()))
            .context(Exit::Config)?;
        Ok(token)
    }

    /// For `check-config` run by hand, outside the unit: no
    /// `$CREDENTIALS_DIRECTORY` then, so without `token_file` the token is
    /// looked for where the unit loads it from (`credstore`). When it is
    /// not there, the error says why that may be and how to check.
    /// `done` says the job already finished (the unit deletes the
    /// single-use token then).
    pub(crate) fn load_as_the_unit_would(
        token_file: Option<&Path>,
        credstore: &Path,
        done: bool,
    ) -> anyhow::Result<Self> {
        if std::env::var_os("CREDENTIALS_DIRECTORY").is_some() || token_file.is_some() {
            return Self::load(token_file);
        }
        let unit = format!(
            "catalyst-bootstrap.service loads the credential `{CREDENTIAL}` from {} \
             (LoadCredential=; see `systemctl cat catalyst-bootstrap`)",
            credstore.display()
        );
        match Self::read(credstore, true) {
            Ok(token) => Ok(token),
            Err(e) => {
                use crate::config::file::FileError;
                let file_error = e.downcast_ref::<FileError>();
                let missing = matches!(file_error, Some(FileError::Missing));
                let denied = matches!(file_error, Some(FileError::Io(io))
                    if io.kind() == std::io::ErrorKind::PermissionDenied);
                let why = if missing && done {
                    "it does not exist: the job is done, and the unit deletes the single-use token \
                     once it has been used (ExecStopPost=); nothing to fix"
                        .to_string()
                } else if missing {
                    "it does not exist: cloud-init writes it (write_files, 0600 root); \
                     check `ls -l` of that path and `cloud-init status --long`"
                        .to_string()
                } else if denied {
                    format!("it {e:#} (it is root's, mode 0600: run check-config as root)")
                } else {
                    format!("it {e:#}")
                };
                Err(anyhow::anyhow!("no bearer token: {unit}, and {why}")).context(Exit::Config)
            }
        }
    }

    fn read(path: &Path, from_credential: bool) -> anyhow::Result<Self> {
        // One trailing newline (and a CR before it) is allowed.
        let (raw, meta) = crate::config::file::read(path, TOKEN_LEN + 2)?;
        if !from_credential && meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "bearer token file {} is readable by group or others (mode {:o}); make it 0600",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
        let text = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            bail!("is empty");
        }
        if text.iter().any(u8::is_ascii_whitespace) {
            bail!("contains whitespace; it must be exactly {TOKEN_LEN} lowercase hex characters");
        }
        if text.len() != TOKEN_LEN || !text.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            bail!(
                "is not {TOKEN_LEN} lowercase hex characters ({} bytes read)",
                text.len()
            );
        }
        let mut value = Zeroizing::new(String::with_capacity(TOKEN_LEN));
        value.push_str(std::str::from_utf8(text).expect("checked hex"));
        untrusted::register(Alphabet::Hex, value.as_bytes());
        Ok(BearerToken {
            value,
            source: path.to_path_buf(),
        })
    }

    /// Where the token came from (for check-config and log lines).
    pub(crate) fn source(&self) -> &Path {
        &self.source
    }

    /// The `Authorization` header, marked sensitive so hyper and reqwest
    /// never print it.
    pub(crate) fn header_value(&self) -> http::HeaderValue {
        let mut value = Zeroizing::new(String::with_capacity(7 + TOKEN_LEN));
        value.push_str("Bearer ");
        value.push_str(&self.value);
        let mut header = http::HeaderValue::from_str(&value).expect("hex is a valid header value");
        header.set_sensitive(true);
        header
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl fmt::Display for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "f0e1d2c3b4a59687f0e1d2c3b4a59687f0e1d2c3b4a59687f0e1d2c3b4a59687";

    fn write(dir: &Path, name: &str, content: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// Removed when dropped: tests leave nothing in /tmp.
    fn tmpdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn err_of(content: &[u8]) -> String {
        let dir = tmpdir();
        let path = write(dir.path(), &format!("t{}", content.len()), content, 0o600);
        format!("{:#}", BearerToken::read(&path, false).unwrap_err())
    }

    #[test]
    fn accepts_token_with_trailing_newline() {
        let dir = tmpdir();
        for (name, content) in [
            ("a", format!("{GOOD}\n")),
            ("b", GOOD.to_string()),
            ("c", format!("{GOOD}\r\n")),
        ] {
            let path = write(dir.path(), name, content.as_bytes(), 0o600);
            let token = BearerToken::read(&path, false).unwrap();
            assert_eq!(
                token.header_value().to_str().unwrap(),
                format!("Bearer {GOOD}")
            );
            assert!(token.header_value().is_sensitive());
        }
    }

    #[test]
    fn rejects_empty_whitespace_and_malformed_tokens() {
        assert!(err_of(b"").contains("is empty"));
        assert!(err_of(b"\n").contains("is empty"));
        assert!(err_of(b"  \t \n").contains("is empty"));
        assert!(
            err_of(format!("{} {}", &GOOD[..32], &GOOD[32..]).as_bytes()).contains("whitespace")
        );
        assert!(err_of(GOOD.to_uppercase().as_bytes()).contains("64 lowercase hex"));
        assert!(err_of(&GOOD.as_bytes()[..63]).contains("64 lowercase hex"));
    }

    #[test]
    fn error_never_contains_the_token_text() {
        let almost = format!("{}Z", &GOOD[..63]);
        let msg = err_of(almost.as_bytes());
        assert!(!msg.contains(&GOOD[..63]), "{msg}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = BearerToken::load(Some(Path::new("/nonexistent/bearer"))).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("/nonexistent/bearer"), "{msg}");
        assert_eq!(Exit::of(&err), Exit::Config);
    }

    /// check-config by hand: the token is where the unit loads it from,
    /// or the error says why it is not and how to check.
    #[test]
    fn check_config_finds_the_credential_where_the_unit_loads_it() {
        let dir = tmpdir();
        let path = write(dir.path(), "kubeconfig-bearer", GOOD.as_bytes(), 0o600);
        let token = BearerToken::load_as_the_unit_would(None, &path, false).unwrap();
        assert_eq!(token.source(), path);

        let gone = dir.path().join("gone");
        let msg = format!(
            "{:#}",
            BearerToken::load_as_the_unit_would(None, &gone, false).unwrap_err()
        );
        assert!(
            msg.contains(&gone.display().to_string())
                && msg.contains("LoadCredential=")
                && msg.contains("cloud-init writes it"),
            "{msg}"
        );
        let msg = format!(
            "{:#}",
            BearerToken::load_as_the_unit_would(None, &gone, true).unwrap_err()
        );
        assert!(msg.contains("the job is done"), "{msg}");

        let bad = write(
            dir.path(),
            "bad",
            format!("{}x", &GOOD[..63]).as_bytes(),
            0o600,
        );
        let err = BearerToken::load_as_the_unit_would(None, &bad, false).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("64 lowercase hex") && !msg.contains(&GOOD[..63]),
            "{msg}"
        );
        assert_eq!(Exit::of(&err), Exit::Config);
    }

    #[test]
    fn the_unit_loads_the_credential_from_credstore() {
        let unit = include_str!("../../../systemd/catalyst-bootstrap.service");
        assert!(unit.contains(&format!("LoadCredential={CREDENTIAL}:{CREDSTORE}\n")));
    }

    #[test]
    fn redacts_in_debug_and_display() {
        let dir = tmpdir();
        let path = write(dir.path(), "t", GOOD.as_bytes(), 0o600);
        let token = BearerToken::read(&path, false).unwrap();
        assert_eq!(format!("{token}"), "<redacted>");
        assert!(!format!("{token:?}").contains(GOOD));
    }
}
