//! Bad input: every case exits with its documented code, names the field or
//! file, and loses nothing (no state written, no request sent).

use std::os::unix::fs::PermissionsExt;

use catalyst_bootstrap_tests::sandbox::{Agent, DEPLOYMENT_ID, Finished, Sandbox};

async fn check(sb: &Sandbox, args: &[&str]) -> Finished {
    sb.spawn(args).finish().await
}

fn assert_refused(sb: &Sandbox, out: &Finished, needles: &[&str]) {
    assert_eq!(out.code, Some(78), "stderr:\n{}", out.stderr);
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "missing {needle:?} in:\n{}",
            out.stderr
        );
    }
    assert!(
        !sb.state_dir().exists(),
        "nothing may be written on bad input"
    );
    assert!(
        sb.api.requests().is_empty() && sb.catalyst.requests().is_empty(),
        "no request on bad input"
    );
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
}

/// (drop-in YAML, what the message must contain)
const CONFIG_CASES: &[(&str, &[&str])] = &[
    (
        "deployment_id: \"0123\"\n",
        &[
            "invalid `deployment_id`",
            "16 lowercase hex",
            "50-test.yaml",
        ],
    ),
    (
        "deployment_id: \"0123456789ABCDEF\"\n",
        &["invalid `deployment_id`"],
    ),
    (
        "catalyst_api_url: http://192.0.2.1/sovereign\n",
        &["invalid `catalyst_api_url`", "must use https"],
    ),
    (
        "catalyst_api_url: not a url\n",
        &["invalid `catalyst_api_url`"],
    ),
    (
        "public_address: \"under_score!.example\"\n",
        &[
            "invalid `public_address`",
            "neither an IP address nor a DNS name",
        ],
    ),
    ("public_address: 0.0.0.0\n", &["invalid `public_address`"]),
    (
        "deplyment_id: \"0123456789abcdef\"\n",
        &[
            "unknown key `deplyment_id`",
            "did you mean `deployment_id`?",
        ],
    ),
    (
        "seed:\n  nmae: x\n",
        &["unknown key `seed.nmae`", "did you mean `seed.name`?"],
    ),
    ("deadline: forever\n", &["invalid `deadline`"]),
    ("region: Falkenstein\n", &["invalid `region`"]),
    (
        "kubeconfig: relative/k3s.yaml\n",
        &["invalid `kubeconfig`", "absolute path"],
    ),
    (
        "deployment_id: [unclosed\n",
        &["50-test.yaml: not valid YAML"],
    ),
    ("- a\n- list\n", &["expected a mapping"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_values_name_the_key_and_the_file() {
    for (yaml, needles) in CONFIG_CASES {
        for command in ["run", "check-config"] {
            let sb = Sandbox::new();
            sb.write_config(yaml);
            let out = check(&sb, &[command]).await;
            assert_refused(&sb, &out, needles);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_file_and_missing_key() {
    let sb = Sandbox::new();
    let mut cmd = sb.command(&["run"]);
    cmd.arg("--config").arg(sb.path("absent.yaml"));
    let out = Agent::spawn(cmd).finish().await;
    assert_refused(&sb, &out, &["absent.yaml does not exist"]);

    let sb = Sandbox::new();
    let text = std::fs::read_to_string(sb.config_path()).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("public_address"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(sb.config_path(), without).unwrap();
    let out = check(&sb, &["run"]).await;
    assert_refused(&sb, &out, &["missing required key `public_address`"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_files() {
    for (content, needle) in [
        ("", "is empty"),
        ("\n", "is empty"),
        ("   \t\n", "is empty"),
        ("abc def\n", "contains whitespace"),
        ("0123456789abcdef\n", "is not 64 lowercase hex characters"),
    ] {
        let sb = Sandbox::new();
        sb.write_secret_file("bearer", content);
        let out = check(&sb, &["run"]).await;
        assert_refused(&sb, &out, &["bearer token", "bearer", needle]);
    }
    let sb = Sandbox::new();
    std::fs::remove_file(sb.token_path()).unwrap();
    let out = check(&sb, &["run"]).await;
    assert_refused(&sb, &out, &["bearer token", "does not exist"]);

    let sb = Sandbox::new();
    std::fs::remove_file(sb.token_path()).unwrap();
    let text = std::fs::read_to_string(sb.config_path()).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("token_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(sb.config_path(), without).unwrap();
    let out = check(&sb, &["run"]).await;
    assert_refused(&sb, &out, &["no bearer token", "kubeconfig-bearer"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn world_readable_token_file_is_used_with_a_warning() {
    let sb = Sandbox::new();
    std::fs::set_permissions(sb.token_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = sb.run().await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("WARN")
            && out
                .stderr
                .contains("readable by group or others (mode 644)"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_credential_wins_over_token_file() {
    let sb = Sandbox::new();
    let creds = sb.path("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("kubeconfig-bearer"), format!("{}\n", sb.token)).unwrap();
    // The configured file holds a wrong token: only the credential works.
    sb.write_secret_file(
        "bearer",
        &format!("{}\n", catalyst_bootstrap_tests::sandbox::new_token()),
    );
    let out = sb
        .command(&["check-config"])
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "bearer_token: <redacted> (from {}/kubeconfig-bearer)",
            creds.display()
        )),
        "{stdout}"
    );
    let agent = catalyst_bootstrap_tests::sandbox::Agent::spawn({
        let mut cmd = sb.command(&["run"]);
        cmd.env("CREDENTIALS_DIRECTORY", &creds);
        cmd
    });
    let out = agent.finish().await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_prints_the_effective_configuration_without_secrets() {
    let sb = Sandbox::new();
    sb.write_config("region: fsn1\n");
    let out = check(&sb, &["check-config"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for line in [
        format!("deployment_id: {DEPLOYMENT_ID}"),
        "region: fsn1".to_string(),
        "seed.namespace: openbao".to_string(),
        "seed.name: openbao-recovery-seed".to_string(),
        "deadline: 1m".to_string(),
        "bearer_token: <redacted>".to_string(),
    ] {
        assert!(
            out.stdout.contains(&line),
            "missing {line:?} in:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains(&sb.token));
    assert!(sb.api.requests().is_empty() && sb.catalyst.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_override_the_files() {
    let sb = Sandbox::new();
    let out = check(
        &sb,
        &["check-config", "--region", "hel1", "--deadline", "5m"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("region: hel1") && out.stdout.contains("deadline: 5m"),
        "{}",
        out.stdout
    );
    let out = check(&sb, &["check-config", "--deployment-id", "xyz"]).await;
    assert_eq!(out.code, Some(78));
    assert!(
        out.stderr
            .contains("--deployment-id: invalid `deployment_id`"),
        "{}",
        out.stderr
    );
}
