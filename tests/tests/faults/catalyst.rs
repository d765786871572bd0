//! Fault cases: catalyst-api.

use super::*;

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "catalyst_unreachable",
        area: Area::CatalystApi,
        fault: "catalyst-api refuses connections at first",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.set_up(false),
        drive: Drive::Heal {
            when: |_, e| e.contains("cannot reach catalyst-api"),
            heal: |sb| sb.catalyst.set_up(true),
        },
        exit: Some(0),
        says: "cannot reach catalyst-api",
        outcome: "probes quickly, then on its cadence; delivers on recovery",
        resume: None,
    },
    Case {
        name: "catalyst_dns_failure",
        area: Area::CatalystApi,
        fault: "catalyst-api's name does not resolve (no DNS at first boot)",
        start: Start::DEFAULT,
        setup: |sb| {
            let url = sb.catalyst.url().replace("127.0.0.1", "catalyst.invalid");
            sb.write_config(&format!("{SHORT_DEADLINE}catalyst_api_url: {url}\n"));
        },
        drive: Drive::NoDns,
        exit: Some(69),
        says: "catalyst.invalid",
        outcome: "retried until the deadline; exit 69 naming the lookup failure; seed written",
        resume: None,
    },
    Case {
        name: "catalyst_unknown_ca",
        area: Area::CatalystApi,
        fault: "catalyst-api's certificate is from a CA not in `ca_bundle`",
        start: Start::DEFAULT,
        setup: |sb| {
            short_deadline(sb);
            sb.catalyst.present(&Pki::new(CERT_NAMES).server);
        },
        drive: Drive::Run,
        exit: Some(69),
        says: "invalid peer certificate",
        outcome: "never sends the token; exit 69 at the deadline naming the certificate error",
        resume: None,
    },
    Case {
        name: "catalyst_cert_not_yet_valid",
        area: Area::CatalystApi,
        fault: "catalyst-api's certificate not valid yet (the node's clock is behind) at first",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst
                .present(&sb.pki.issue_server(CERT_NAMES, Some(2100)))
        },
        drive: Drive::Heal {
            when: |_, e| e.contains("certificate not valid yet"),
            heal: |sb| sb.catalyst.present(&sb.pki.server),
        },
        exit: Some(0),
        says: "certificate not valid yet",
        outcome: "keeps retrying (until the deadline), delivers once the clock agrees",
        resume: None,
    },
    Case {
        name: "catalyst_503_retry_after",
        area: Area::CatalystApi,
        fault: "`503` with `Retry-After: 1`, twice",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script((0..2).map(|_| {
                Step::Respond {
                    status: 503,
                    body:
                        r#"{"error":"kubeconfigs-dir-unwritable","detail":"read-only file system"}"#
                            .into(),
                    retry_after: Some("1".into()),
                }
            }))
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "next try in 1.",
        outcome: "waits as told, then delivers",
        resume: None,
    },
    Case {
        name: "catalyst_slow_header",
        area: Area::CatalystApi,
        fault: "catalyst-api sends no answer for 3 s (`read_timeout: 500ms`)",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.write_config("read_timeout: 500ms\n");
            sb.catalyst.script([Step::Delay(Duration::from_secs(3))]);
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "attempt 1 failed",
        outcome: "the try times out, the retry delivers; captured once",
        resume: None,
    },
    Case {
        name: "catalyst_slow_body",
        area: Area::CatalystApi,
        fault: "catalyst-api stalls 3 s in the middle of an answer's body",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.write_config("read_timeout: 500ms\n");
            sb.catalyst.script([Step::SlowBody {
                status: 503,
                stall: Duration::from_secs(3),
            }]);
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "attempt 1 failed",
        outcome: "the read times out, the retry delivers",
        resume: None,
    },
    Case {
        name: "catalyst_answer_lost",
        area: Area::CatalystApi,
        fault: "catalyst-api stores the kubeconfig, the answer is lost",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.script([Step::StoreThenDrop]),
        drive: Drive::Run,
        exit: Some(0),
        says: "already-set",
        outcome: "the retry gets `403 already-set`: success, captured once",
        resume: None,
    },
    Case {
        name: "catalyst_404",
        area: Area::CatalystApi,
        fault: "`404 deployment not found`, twice (ingress not routed yet)",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script((0..2).map(|_| Step::Respond {
                status: 404,
                body: "deployment not found\n".into(),
                retry_after: None,
            }))
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "does not know deployment",
        outcome: "an ERROR line per try, retried; delivers",
        resume: None,
    },
    Case {
        name: "catalyst_401",
        area: Area::CatalystApi,
        fault: "`401 missing-bearer`",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.script([Step::error(401, "missing-bearer")]),
        drive: Drive::Run,
        exit: Some(77),
        says: "missing-bearer",
        outcome: "exit 77 at once, no retry; the seed is still written",
        resume: None,
    },
    Case {
        name: "catalyst_403_invalid_bearer",
        area: Area::CatalystApi,
        fault: "`403 invalid-bearer`",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.script([Step::error(403, "invalid-bearer")]),
        drive: Drive::Run,
        exit: Some(77),
        says: "invalid-bearer",
        outcome: "exit 77 at once, no retry",
        resume: None,
    },
    Case {
        name: "catalyst_422",
        area: Area::CatalystApi,
        fault: "`422 body-too-large`",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.script([Step::error(422, "body-too-large")]),
        drive: Drive::Run,
        exit: Some(65),
        says: "body-too-large",
        outcome: "exit 65 at once",
        resume: None,
    },
    Case {
        name: "catalyst_redirect",
        area: Area::CatalystApi,
        fault: "`307` redirect to another host",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script([Step::Redirect {
                status: 307,
                location: "https://127.0.0.9:9/elsewhere".into(),
            }])
        },
        drive: Drive::Run,
        exit: Some(76),
        says: "307",
        outcome: "not followed (the bearer goes nowhere else); exit 76",
        resume: None,
    },
    Case {
        name: "deadline_passes",
        area: Area::CatalystApi,
        fault: "catalyst-api answers `503` until the 3 s deadline",
        start: Start::DEFAULT,
        setup: |sb| {
            short_deadline(sb);
            sb.catalyst
                .script((0..1000).map(|_| Step::error(503, "write-failed")));
        },
        drive: Drive::Run,
        exit: Some(69),
        says: "gave up after",
        outcome: "exit 69; state and log name the last error",
        resume: Some(|sb| {
            sb.catalyst.clear_script();
            sb.write_config("");
        }),
    },
];
