//! Fault cases: peers, proxies and the environment that try to make the agent leak or lie.

use super::*;

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "seed_echoed_in_status",
        area: Area::Hostile,
        fault: "an admission webhook refuses the Secret create once with a `Status` quoting the request (the seed)",
        start: Start::DEFAULT,
        setup: |sb| {
            api_fault(
                sb,
                Method::POST,
                SECRETS,
                1,
                Fault::EchoInStatus {
                    code: 500,
                    reason: "InternalError",
                },
            )
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "withheld",
        outcome: "the message is withheld from every log and status; retried, seed written once",
        resume: None,
    },
    Case {
        name: "seed_echoed_by_proxy_502",
        area: Area::Hostile,
        fault: "a proxy answers the Secret create once with a plain-text 502 repeating the request",
        start: Start::DEFAULT,
        setup: |sb| api_fault(sb, Method::POST, SECRETS, 1, Fault::EchoRaw(502)),
        drive: Drive::Run,
        exit: Some(0),
        says: "withheld",
        outcome: "withheld; retried, seed written once",
        resume: None,
    },
    Case {
        name: "token_and_key_echoed_with_spacers",
        area: Area::Hostile,
        fault: "catalyst-api answers `503` once repeating the bearer and the kubeconfig, a zero-width space every ten characters",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script([Step::Echo {
                status: 503,
                spacer: "\u{200b}",
            }])
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "withheld",
        outcome: "withheld; retried, delivered",
        resume: None,
    },
    Case {
        name: "token_echoed_line_wrapped",
        area: Area::Hostile,
        fault: "catalyst-api answers `503` once repeating the request wrapped every ten characters",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script([Step::Echo {
                status: 503,
                spacer: "\n ",
            }])
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "withheld",
        outcome: "withheld; retried, delivered",
        resume: None,
    },
    Case {
        name: "error_code_injects_notify",
        area: Area::Hostile,
        fault: "catalyst-api's `error` code carries a newline, `READY=1`, `MAINPID=` and terminal escapes",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script([Step::Respond {
                status: 503,
                body: json!({"error": INJECTED, "detail": "x\u{7}"}).to_string(),
                retry_after: None,
            }])
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "node-b\\nREADY=1\\nMAINPID=1\\n\\u{1b}",
        outcome: "shown escaped on one line; systemd hears READY=1 only when done",
        resume: None,
    },
    Case {
        name: "catalyst_503_drip",
        area: Area::Hostile,
        fault: "catalyst-api sends a `503` body one byte per 200 ms (4 KiB) past the 3 s deadline",
        start: Start::DEFAULT,
        setup: |sb| {
            short_deadline(sb);
            sb.catalyst.script([Step::Drip {
                status: 503,
                every: Duration::from_millis(200),
            }]);
        },
        drive: Drive::RunWithin(Duration::from_secs(10)),
        exit: Some(69),
        says: "no complete answer before the deadline",
        outcome: "the attempt ends at the deadline: exit 69 within seconds",
        resume: Some(|sb| {
            sb.catalyst.clear_script();
            sb.write_config("");
        }),
    },
    Case {
        name: "secret_create_drip",
        area: Area::Hostile,
        fault: "the API server answers the Secret create with a `500` body one byte per 200 ms past the 3 s deadline",
        start: Start::DEFAULT,
        setup: |sb| {
            short_deadline(sb);
            api_fault(
                sb,
                Method::POST,
                SECRETS,
                1,
                Fault::Drip {
                    code: 500,
                    every: Duration::from_millis(200),
                },
            );
        },
        drive: Drive::RunWithin(Duration::from_secs(10)),
        exit: Some(69),
        says: "no complete answer before the deadline",
        outcome: "exit 69 within seconds of the deadline; the next run writes the seed once",
        resume: Some(|sb| {
            sb.api.clear_faults();
            sb.write_config("");
        }),
    },
    Case {
        name: "http_proxy_with_plain_url",
        area: Area::Hostile,
        fault: "plain-http loopback catalyst_api_url with `HTTP_PROXY`/`ALL_PROXY` naming a capturing proxy",
        start: Start {
            catalyst_plain: true,
            ..Start::DEFAULT
        },
        setup: proxies_to_trap,
        drive: Drive::Run,
        exit: Some(0),
        says: "delivered",
        outcome: "no proxy: delivered straight to catalyst-api, bearer never at the proxy",
        resume: None,
    },
    Case {
        name: "all_proxy_with_https_url",
        area: Area::Hostile,
        fault: "https catalyst_api_url with only `HTTP_PROXY`/`ALL_PROXY` set",
        start: Start::DEFAULT,
        setup: proxies_to_trap,
        drive: Drive::Run,
        exit: Some(0),
        says: "delivered",
        outcome: "no proxy (only `HTTPS_PROXY` counts); delivered",
        resume: None,
    },
];
