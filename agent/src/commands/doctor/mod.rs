//! `catalyst-bootstrap doctor`: every dependency of the job, checked without
//! side effects. It never reads the bearer token into a request, never
//! writes to the API server (GETs only), never sends the kubeconfig, never
//! creates or locks the state directory: it is safe while the service runs.
//! Every network step has a short timeout, and the independent ones run
//! concurrently, so it answers within seconds even when everything is down.

//!
//! One module per check group; they share one check type, [`Line`].

mod catalyst;
mod cluster;
mod handoff;
mod local;

use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{self, Overrides};
use crate::job::kubeconfig;
use crate::memory::untrusted::Untrusted;
use crate::report::state;

use self::catalyst::catalyst_side;
use self::cluster::server_side;
use self::local::{credential, state_line};

/// Per connection attempt.
const CONNECT: Duration = Duration::from_secs(2);
/// Per check (a request and its answer).
const TOTAL: Duration = Duration::from_secs(5);
/// The `Date` header has whole seconds: less than this apart is no skew.
const SKEW_OK: i64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Line {
    check: &'static str,
    result: Verdict,
    seen: String,
    fix: Option<String>,
}

fn ok(check: &'static str, seen: impl Into<String>) -> Line {
    Line {
        check,
        result: Verdict::Ok,
        seen: seen.into(),
        fix: None,
    }
}

fn warn(check: &'static str, seen: impl Into<String>, fix: impl Into<String>) -> Line {
    Line {
        check,
        result: Verdict::Warn,
        seen: seen.into(),
        fix: Some(fix.into()),
    }
}

fn fail(check: &'static str, seen: impl Into<String>, fix: impl Into<String>) -> Line {
    Line {
        check,
        result: Verdict::Fail,
        seen: seen.into(),
        fix: Some(fix.into()),
    }
}

/// `fut` within [`TOTAL`], its time taken, or why not.
async fn timed<T, E: std::fmt::Display>(
    fut: impl Future<Output = Result<T, E>>,
) -> (Result<T, String>, Duration) {
    let start = Instant::now();
    let out = match tokio::time::timeout(TOTAL, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", TOTAL.as_secs())),
    };
    (out, start.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// Runs every check and prints them; the exit code: 0 when none failed.
pub(crate) async fn run(explicit: Option<&Path>, overrides: &Overrides, json: bool) -> u8 {
    let lines = checks(explicit, overrides).await;
    print!("{}", render(&lines, json));
    u8::from(lines.iter().any(|l| l.result == Verdict::Fail))
}

fn render(lines: &[Line], json: bool) -> String {
    if json {
        let mut text = serde_json::to_string_pretty(lines).expect("lines serialize");
        text.push('\n');
        return text;
    }
    let mut out = String::new();
    for l in lines {
        let word = match l.result {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        };
        let _ = write!(out, "{word:<4}  {}: {}", l.check, l.seen);
        if let Some(fix) = &l.fix {
            let _ = write!(out, "; fix: {fix}");
        }
        out.push('\n');
    }
    let count = |v| lines.iter().filter(|l| l.result == v).count();
    let _ = writeln!(
        out,
        "{} ok, {} warn, {} fail: {}",
        count(Verdict::Ok),
        count(Verdict::Warn),
        count(Verdict::Fail),
        if count(Verdict::Fail) == 0 {
            "nothing stands in the job's way"
        } else {
            "a run would not succeed as things are"
        }
    );
    out
}

async fn checks(explicit: Option<&Path>, overrides: &Overrides) -> Vec<Line> {
    let mut config = match config::load(explicit, overrides) {
        Ok(config) => config,
        Err(e) => {
            let fix = if config::nothing_configured(explicit) {
                format!(
                    "create {}/config.yaml with `deployment_id`, `catalyst_api_url` and \
                     `public_address` (cloud-init's snippet writes it; see \
                     docs/configuration.md), or pass --config FILE",
                    config::ETC_DIR
                )
            } else {
                "correct the file or flag named; the other checks need the configuration \
                 (`catalyst-bootstrap check-config` prints it once it loads)"
                    .to_string()
            };
            return vec![fail("config", format!("{e:#}"), fix)];
        }
    };
    let mut lines = vec![ok("config", config.layers())];
    config.connect_timeout = config.connect_timeout.min(CONNECT);
    config.read_timeout = config.read_timeout.min(TOTAL);
    let config = config;
    let done = state::is_done(&config.state_dir);

    lines.push(credential(&config, done));

    let kc = kubeconfig::read(&config.kubeconfig);
    lines.push(match &kc {
        Ok(kc) => ok(
            "kubeconfig",
            format!(
                "{}: {} cluster(s), current context {}",
                config.kubeconfig.display(),
                kc.clusters.len(),
                Untrusted::new(kc.current_context.clone().unwrap_or_default()).shown()
            ),
        ),
        Err(kubeconfig::ReadError::Missing(_)) => fail(
            "kubeconfig",
            format!("{} does not exist", config.kubeconfig.display()),
            "k3s writes it when it starts: `systemctl status k3s`; a run waits for it",
        ),
        Err(e) => fail(
            "kubeconfig",
            e.to_string(),
            "k3s wrote something unusable: restart k3s to rewrite it",
        ),
    });
    let kc = kc.ok();

    // The API server side and catalyst-api side run concurrently.
    let (server_lines, catalyst_lines) =
        tokio::join!(server_side(&config, kc.as_ref()), catalyst_side(&config));
    let [
        rewrite,
        api_server,
        clock,
        address,
        preflight,
        seed,
        manifests,
    ] = server_lines;
    lines.extend([rewrite, api_server, clock, address, preflight]);
    lines.extend(catalyst_lines);
    lines.push(seed);
    lines.push(manifests);
    lines.extend(handoff::marker(&config));
    lines.push(state_line(&config, done));
    lines
}

#[cfg(test)]
mod tests {
    use super::cluster::clock_line;
    use super::*;

    #[test]
    fn lines_read_as_documented() {
        let lines = [
            ok("config", "read a.yaml"),
            fail("kubeconfig", "/x does not exist", "start k3s"),
        ];
        assert_eq!(
            render(&lines, false),
            "ok    config: read a.yaml\nfail  kubeconfig: /x does not exist; fix: start k3s\n\
             1 ok, 0 warn, 1 fail: a run would not succeed as things are\n"
        );
        let json: serde_json::Value = serde_json::from_str(&render(&lines, true)).unwrap();
        assert_eq!(json[0]["result"], "ok");
        assert_eq!(json[0]["fix"], serde_json::Value::Null);
        assert_eq!(json[1]["check"], "kubeconfig");
        assert_eq!(json[1]["fix"], "start k3s");
    }

    #[test]
    fn skew_is_judged_from_the_date_header() {
        let now = jiff::Timestamp::now();
        let date = |secs: i64| {
            jiff::fmt::rfc2822::DateTimePrinter::new()
                .timestamp_to_rfc9110_string(&(now - jiff::SignedDuration::from_secs(secs)))
                .unwrap()
        };
        assert_eq!(
            clock_line(Some(&date(0)), false, Verdict::Ok).result,
            Verdict::Ok
        );
        let ahead = clock_line(Some(&date(120)), false, Verdict::Ok);
        assert_eq!(ahead.result, Verdict::Warn);
        assert!(ahead.seen.contains("ahead"), "{}", ahead.seen);
        assert_eq!(
            clock_line(Some(&date(0)), true, Verdict::Ok).result,
            Verdict::Fail
        );
        assert_eq!(clock_line(None, false, Verdict::Fail).result, Verdict::Fail);
    }
}
