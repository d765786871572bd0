//! The value parsers and checks the keys use: each says what is wrong with
//! a value without the key (the loader adds which key and file).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use super::{KEYS, PublicAddress};

/// The known key closest to a misspelt one, if any is close enough to help.
pub(super) fn nearest_key(unknown: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (strsim::levenshtein(unknown, k.name), k.name))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

pub(super) fn parse_deployment_id(s: &str) -> anyhow::Result<String> {
    if s.len() != 16 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        bail!("must be 16 lowercase hex characters, got {s:?}");
    }
    Ok(s.to_string())
}

pub(super) fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

pub(super) fn parse_api_url(s: &str) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(s).with_context(|| format!("{s:?} is not a URL"))?;
    let host = url.host().ok_or_else(|| anyhow!("{s:?} has no host"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => bail!("{s:?} must use https (plain http is allowed only to a loopback address)"),
        other => bail!("{s:?} has scheme {other:?}; use https"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("the URL must not carry credentials; the bearer token is the credential");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("{s:?} must not have a query or fragment");
    }
    Ok(url)
}

pub(super) fn parse_public_address(s: &str) -> anyhow::Result<PublicAddress> {
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        if ip.is_unspecified() || ip.is_multicast() {
            bail!("{s:?} is not a usable unicast address");
        }
        return Ok(PublicAddress::Ip(ip));
    }
    dns_name(s).map(PublicAddress::Name)
}

/// A DNS name, lowercased, without a trailing dot.
pub(super) fn dns_name(s: &str) -> anyhow::Result<String> {
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| dns_label(label).is_ok())
        && !name
            .rsplit('.')
            .next()
            .unwrap_or("")
            .bytes()
            .all(|c| c.is_ascii_digit());
    if !valid {
        bail!("{s:?} is neither an IP address nor a DNS name");
    }
    Ok(name)
}

/// The node name Kubernetes uses by default: the kernel's hostname.
pub(super) fn hostname() -> anyhow::Result<String> {
    let raw = nix::unistd::gethostname().context("reading the hostname for `node_name`")?;
    let name = raw.to_string_lossy().to_ascii_lowercase();
    dns_subdomain(&name).context("the hostname cannot serve as `node_name`; set `node_name`")
}

pub(super) fn parse_region(s: &str) -> anyhow::Result<String> {
    dns_label(s).context("a region is a lowercase DNS label such as \"fsn1\"")
}

pub(crate) fn dns_label(s: &str) -> anyhow::Result<String> {
    let ok = (1..=63).contains(&s.len())
        && s.bytes()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        bail!("{s:?} is not a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)");
    }
    Ok(s.to_string())
}

pub(crate) fn dns_subdomain(s: &str) -> anyhow::Result<String> {
    if s.len() > 253 || s.split('.').any(|l| dns_label(l).is_err()) {
        bail!("{s:?} is not a valid Kubernetes object name");
    }
    Ok(s.to_string())
}

/// Helm release names: a DNS label of at most 53 characters.
pub(super) fn helm_release_name(s: &str) -> anyhow::Result<String> {
    let name = dns_label(s)?;
    if name.len() > 53 {
        bail!("{s:?} is longer than the 53 characters Helm allows for a release name");
    }
    Ok(name)
}

pub(crate) fn secret_key(s: &str) -> anyhow::Result<String> {
    let ok = (1..=253).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        bail!("{s:?} is not a valid Secret data key");
    }
    Ok(s.to_string())
}

pub(super) fn absolute(s: &str) -> anyhow::Result<PathBuf> {
    if !Path::new(s).is_absolute() {
        bail!("{s:?} must be an absolute path");
    }
    Ok(PathBuf::from(s))
}

/// `"500ms"`, `"90s"`, `"30m"`, `"1h"`; a bare number means seconds. (jiff's
/// friendly format accepts far more: `1.5h`, `5 days`, `-1s`, `P1D`.)
pub(crate) fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        anyhow!("{s:?} is not a duration; write it like \"90s\", \"30m\" or \"500ms\"")
    })?;
    let unit_ms = match unit.trim() {
        "" | "s" => 1000,
        "ms" => 1,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        other => bail!("{s:?} has unknown unit {other:?}; use ms, s, m or h"),
    };
    Ok(Duration::from_millis(n.saturating_mul(unit_ms)))
}

/// A duration as the documentation writes it, in the largest unit that
/// keeps it whole (`30m`, `10s`, `90s`, `500ms`); `parse_duration` reads it back.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, per) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}
