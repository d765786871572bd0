//! Scenarios: the kubeconfig phase: address, preflight and catalyst-api's answers.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_api_503_three_times_then_204() {
    let sb = Sandbox::new();
    sb.catalyst
        .script((0..3).map(|_| Step::error(503, "write-failed")));
    let out = sb.run().await;
    assert_exit(&out, 0);
    let statuses: Vec<_> = sb.catalyst.requests().iter().map(|p| p.status).collect();
    assert_eq!(statuses, vec![Some(503), Some(503), Some(503), Some(204)]);
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
    assert_eq!(sb.state()["kubeconfig"]["attempts"], 4);
    let retry = sb
        .notify
        .statuses()
        .into_iter()
        .find(|s| s.contains("attempt 3 failed"))
        .expect("retry status");
    assert!(
        retry.contains("503 write-failed") && retry.contains("next try in"),
        "{retry}"
    );
    assert!(
        sb.notify
            .lines()
            .iter()
            .any(|l| l.starts_with("EXTEND_TIMEOUT_USEC="))
    );
    sb.assert_no_leaks(&[&out.stderr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let sb = Sandbox::new();
    sb.catalyst.script([Step::Respond {
        status: 429,
        body: r#"{"error":"rate-limited"}"#.into(),
        retry_after: Some("2".into()),
    }]);
    let out = sb.run().await;
    assert_exit(&out, 0);
    let puts = sb.catalyst.requests();
    assert_eq!(puts.len(), 2);
    let gap = puts[1].at - puts[0].at;
    // max_delay in the sandbox is 400 ms: only Retry-After explains 2 s.
    assert!(gap >= Duration::from_secs(2), "second try after {gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_response_then_already_set_is_success() {
    let sb = Sandbox::new();
    sb.catalyst.script([Step::StoreThenDrop]);
    let out = sb.run().await;
    assert_exit(&out, 0);
    let statuses: Vec<_> = sb.catalyst.requests().iter().map(|p| p.status).collect();
    assert_eq!(statuses, vec![None, Some(403)], "dropped, then already-set");
    assert_eq!(
        sb.catalyst.store_count(DEPLOYMENT_ID),
        1,
        "exactly one stored kubeconfig"
    );
    assert_stderr(&out, "already has this deployment's kubeconfig");
    assert_eq!(
        sb.state()["kubeconfig"]["detail"],
        "already captured by an earlier attempt or another control-plane node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_token_exits_77_after_one_request() {
    for (step, code) in [
        (Step::error(401, "missing-bearer"), "missing-bearer"),
        (Step::error(403, "invalid-bearer"), "invalid-bearer"),
        (Step::error(403, "no-bearer-hash"), "no-bearer-hash"),
    ] {
        let sb = Sandbox::new();
        sb.catalyst.script([step]);
        let out = sb.run().await;
        assert_exit(&out, 77);
        assert_eq!(
            sb.catalyst.requests().len(),
            1,
            "{code}: exactly one request"
        );
        assert!(
            out.stderr.contains(code) && out.stderr.contains("bearer token rejected"),
            "{}",
            out.stderr
        );
        assert_eq!(phase_outcome(&sb, "kubeconfig"), "failed");
        assert!(
            sb.seed_secret().is_some(),
            "the seed does not depend on the PUT"
        );
        assert!(!sb.state_dir().join("done").exists());
        assert!(
            sb.notify
                .statuses()
                .last()
                .unwrap()
                .starts_with("Failed (exit 77)")
        );
        sb.assert_no_leaks(&[&out.stderr]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_token_mismatch_is_rejected_by_the_contract_handler() {
    let sb = Sandbox::new();
    sb.write_secret_file(
        "bearer",
        &format!("{}\n", catalyst_bootstrap_tests::sandbox::new_token()),
    );
    let out = sb.run().await;
    assert_exit(&out, 77);
    assert_eq!(sb.catalyst.requests()[0].status, Some(403));
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprocessable_body_exits_65_and_redirect_exits_76_without_following() {
    let sb = Sandbox::new();
    sb.catalyst.script([Step::error(422, "body-too-large")]);
    assert_exit(&sb.run().await, 65);
    assert_eq!(sb.catalyst.requests().len(), 1);

    let sb = Sandbox::new();
    let elsewhere = Sandbox::new();
    sb.catalyst.script([Step::Redirect {
        status: 307,
        location: format!("{}/steal", elsewhere.catalyst.url()),
    }]);
    let out = sb.run().await;
    assert_exit(&out, 76);
    assert_stderr(&out, "not following");
    assert!(
        elsewhere.catalyst.requests().is_empty(),
        "the bearer token must not travel to the redirect target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_retried_and_logged_loudly() {
    let sb = Sandbox::new();
    sb.catalyst.script([Step::Respond {
        status: 404,
        body: "deployment not found\n".into(),
        retry_after: None,
    }]);
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(sb.catalyst.requests().len(), 2);
    assert!(
        out.stderr.contains("ERROR") && out.stderr.contains("does not know deployment"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_goes_into_the_query() {
    let sb = Sandbox::new();
    sb.write_config("region: nbg1\n");
    assert_exit(&sb.run().await, 0);
    assert_eq!(
        sb.catalyst.requests()[0].query.as_deref(),
        Some("region=nbg1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_fires_and_the_retry_completes() {
    let sb = Sandbox::new();
    sb.write_config("read_timeout: 500ms\n");
    // The fake stalls 3 s before answering (and storing): the agent gives up
    // on that try after 500 ms and its next try is answered at once.
    sb.catalyst.script([Step::Delay(Duration::from_secs(3))]);
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(&out, "attempt 1 failed: cannot reach catalyst-api");
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
    assert_eq!(sb.state()["kubeconfig"]["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_carries_catalyst_api_but_never_the_local_api_server() {
    let proxy = catalyst_bootstrap_tests::proxy::ConnectProxy::start().await;
    let sb = Sandbox::new();
    let mut cmd = sb.command(&["run"]);
    cmd.env("HTTPS_PROXY", &proxy.url);
    let out = catalyst_bootstrap_tests::sandbox::Agent::spawn(cmd)
        .finish()
        .await;
    assert_exit(&out, 0);
    let catalyst = sb.catalyst.url().trim_start_matches("https://").to_string();
    assert_eq!(
        proxy.targets(),
        vec![catalyst],
        "exactly the PUT went through the proxy"
    );
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);

    // NO_PROXY exempts catalyst-api too.
    let sb = Sandbox::new();
    let mut cmd = sb.command(&["run"]);
    cmd.env("HTTPS_PROXY", &proxy.url)
        .env("NO_PROXY", "127.0.0.1");
    let before = proxy.targets().len();
    assert_exit(
        &catalyst_bootstrap_tests::sandbox::Agent::spawn(cmd)
            .finish()
            .await,
        0,
    );
    assert_eq!(proxy.targets().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_address_from_the_hetzner_metadata_service() {
    use catalyst_bootstrap_tests::http::PlainServer;
    // Not up in the first moments of the boot, then the node's address.
    let metadata = PlainServer::start(vec![
        (503, b"".to_vec()),
        (200, b"198.51.100.23\n".to_vec()),
    ]);
    let sb = Sandbox::with(Start {
        cert_names: &["localhost", "127.0.0.1", "198.51.100.23"],
        ..Start::default()
    });
    sb.write_config(&format!(
        "public_address: hetzner-metadata\nmetadata_url: {}\n",
        metadata.url
    ));
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(metadata.hits(), 2);
    assert_stderr(
        &out,
        "public address from the metadata service: 198.51.100.23",
    );
    let stored = yaml(&sb.catalyst.stored(DEPLOYMENT_ID).unwrap());
    assert_eq!(
        stored["clusters"][0]["cluster"]["server"],
        format!("https://198.51.100.23:{}", sb.api.addr().port())
    );

    // Garbage instead of an address: refused before sending, exit 65.
    let metadata = PlainServer::start(vec![(200, b"<html>captive portal</html>".to_vec())]);
    let sb = Sandbox::new();
    sb.write_config(&format!(
        "public_address: hetzner-metadata\nmetadata_url: {}\n",
        metadata.url
    ));
    let out = sb.run().await;
    assert_exit(&out, 65);
    assert_stderr(&out, "not an IPv4 address");
    assert!(sb.catalyst.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_echoes_the_request_does_not_get_the_key_into_the_log() {
    let sb = Sandbox::new();
    // A misrouted URL answering 400 with the request it got, as debug
    // proxies and echo servers do.
    let kubeconfig = sb.api.kubeconfig();
    let key_line = kubeconfig
        .lines()
        .find(|l| l.contains("client-key-data"))
        .unwrap();
    let echoed =
        serde_json::json!({"error": "bad-request", "detail": format!("cannot parse {key_line}")})
            .to_string();
    sb.catalyst.script([Step::Respond {
        status: 400,
        body: echoed,
        retry_after: None,
    }]);
    let out = sb.run().await;
    assert_exit(&out, 76);
    assert_stderr(&out, "catalyst-api answered 400 bad-request");
    sb.assert_no_leaks(&[&out.stderr]);
}

/// The stored kubeconfig's first cluster.
fn delivered_cluster(sb: &Sandbox) -> Value {
    let stored = yaml(
        &sb.catalyst
            .stored(DEPLOYMENT_ID)
            .expect("kubeconfig captured"),
    );
    stored["clusters"][0]["cluster"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_checks_the_certificate_where_it_can_reach_the_server() {
    // Not an address of this node (NAT, floating IP): checked on loopback,
    // with no connection attempt to the outside.
    let sb = Sandbox::new();
    let port = sb.api.addr().port();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(
        &out,
        &format!("certificate (checked at 127.0.0.1:{port}) is valid for {PUBLIC_ADDRESS}"),
    );
    assert!(!out.stderr.contains("not reachable from this node"));
    assert!(delivered_cluster(&sb).get("tls-server-name").is_none());

    // One of the node's own addresses, where the API server listens:
    // checked there. (127.0.0.2 stands in for the public IPv4 on eth0.)
    const OWN: &str = "127.0.0.2";
    let start = Start {
        cert_names: &["localhost", "127.0.0.1", OWN],
        ..Start::default()
    };
    let sb = Sandbox::with(start);
    sb.write_config(&format!("public_address: {OWN}\n"));
    sb.api.serve_on(OWN.parse().unwrap());
    let port = sb.api.addr().port();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(
        &out,
        &format!("certificate (checked at {OWN}:{port}) is valid for {OWN}"),
    );

    // Its own address, but not reachable there (the API server listens on
    // another interface only): checked on loopback instead, saying why.
    let sb = Sandbox::with(start);
    sb.write_config(&format!("public_address: {OWN}\n"));
    let port = sb.api.addr().port();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(
        &out,
        &format!("public address {OWN}:{port} is not reachable from this node"),
    );
    assert_stderr(
        &out,
        &format!("certificate (checked at 127.0.0.1:{port}) is valid for {OWN}"),
    );

    // A DNS name is checked on loopback with the name as SNI (it may not
    // resolve yet at first boot).
    let sb = Sandbox::with(Start {
        cert_names: &["localhost", "127.0.0.1", SOVEREIGN_FQDN],
        ..Start::default()
    });
    sb.write_config(&format!("public_address: {SOVEREIGN_FQDN}\n"));
    let port = sb.api.addr().port();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(&out, &format!("is valid for {SOVEREIGN_FQDN}"));
    assert_eq!(
        delivered_cluster(&sb)["server"],
        format!("https://{SOVEREIGN_FQDN}:{port}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_falls_back_to_the_sovereign_fqdn_as_tls_server_name() {
    // What k3s gets from the shell today: --tls-san=<fqdn> only.
    let sb = Sandbox::with(Start {
        cert_names: &["localhost", "127.0.0.1", SOVEREIGN_FQDN],
        ..Start::default()
    });
    sb.write_config(&format!("sovereign_fqdn: {SOVEREIGN_FQDN}\n"));
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(
        &out,
        &format!(
            "is not valid for {PUBLIC_ADDRESS} but is for {SOVEREIGN_FQDN}; the kubeconfig gets tls-server-name"
        ),
    );
    let cluster = delivered_cluster(&sb);
    assert_eq!(cluster["tls-server-name"], SOVEREIGN_FQDN);
    assert_eq!(
        cluster["server"],
        format!("https://{PUBLIC_ADDRESS}:{}", sb.api.addr().port())
    );
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_refuses_a_kubeconfig_that_cannot_verify() {
    let sb = Sandbox::with(Start {
        cert_names: &["localhost", "127.0.0.1"],
        ..Start::default()
    });
    sb.write_config(&format!("sovereign_fqdn: {SOVEREIGN_FQDN}\n"));
    let out = sb.run().await;
    assert_exit(&out, 68);
    assert_stderr(
        &out,
        &format!("not valid for {PUBLIC_ADDRESS} (it names localhost, 127.0.0.1)"),
    );
    assert_stderr(&out, &format!("nor for the fallback name {SOVEREIGN_FQDN}"));
    assert_stderr(&out, &format!("start k3s with --tls-san={PUBLIC_ADDRESS}"));
    assert!(sb.catalyst.requests().is_empty(), "nothing may be sent");
    // The seed does not depend on the kubeconfig.
    assert!(sb.seed_secret().is_some());
    assert_eq!(phase_outcome(&sb, "kubeconfig"), "failed");
    let status = sb.notify.statuses().pop().unwrap_or_default();
    assert!(status.contains("--tls-san"), "{status}");
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);

    // `preflight: warn` sends it anyway, saying so.
    let sb = Sandbox::with(Start {
        cert_names: &["localhost", "127.0.0.1"],
        ..Start::default()
    });
    sb.write_config("preflight: warn\n");
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(&out, "no `sovereign_fqdn` is configured to fall back on");
    assert_stderr(
        &out,
        "sending the kubeconfig anyway because of `preflight: warn`",
    );
    assert!(sb.catalyst.stored(DEPLOYMENT_ID).is_some());
    assert!(delivered_cluster(&sb).get("tls-server-name").is_none());
}
