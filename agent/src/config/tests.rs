use super::keys::docs_table;
use super::*;

const MINIMAL: &str = "deployment_id: \"0123456789abcdef\"\n\
    catalyst_api_url: https://console.openova.io/sovereign\n\
    public_address: 203.0.113.10\n";

fn setup(main: &str, drop_ins: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, main).unwrap();
    if !drop_ins.is_empty() {
        std::fs::create_dir(dir.path().join("config.d")).unwrap();
    }
    for (name, text) in drop_ins {
        std::fs::write(dir.path().join("config.d").join(name), text).unwrap();
    }
    (dir, file)
}

fn load_err(main: &str) -> String {
    let (_dir, file) = setup(main, &[]);
    let err = load(Some(&file), &Overrides::default()).unwrap_err();
    assert_eq!(Exit::of(&err), Exit::Config);
    format!("{err:#}")
}

#[test]
fn minimal_file_gets_contract_defaults() {
    let (_dir, file) = setup(MINIMAL, &[]);
    let c = load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(c.deployment_id, "0123456789abcdef");
    assert_eq!(
        c.public_address,
        AddressSource::Literal(PublicAddress::Ip("203.0.113.10".parse().unwrap()))
    );
    assert_eq!(c.kubeconfig, Path::new("/etc/rancher/k3s/k3s.yaml"));
    assert_eq!(c.state_dir, Path::new("/var/lib/catalyst-bootstrap"));
    assert_eq!(c.deadline, Duration::from_secs(1800));
    assert_eq!(c.seed.namespace, "openbao");
    assert_eq!(c.seed.name, "openbao-recovery-seed");
    assert_eq!(c.seed.key, "recovery-seed");
    assert_eq!(c.seed.marker, "openbao-init-marker");
}

#[test]
fn drop_ins_apply_in_lexical_order_and_flags_win() {
    let (_dir, file) = setup(
        MINIMAL,
        &[
            ("20-late.yaml", "region: nbg1\nseed:\n  name: late\n"),
            (
                "10-early.yaml",
                "region: fsn1\ndeadline: 5m\nseed:\n  namespace: vault\n",
            ),
            ("30-ignored.conf", "not: yaml: at: all"),
        ],
    );
    let flags = Overrides(vec![("deadline", "90s".into())]);
    let c = load(Some(&file), &flags).unwrap();
    assert_eq!(c.region.as_deref(), Some("nbg1"));
    assert_eq!(c.seed.namespace, "vault", "nested keys merge, not replace");
    assert_eq!(c.seed.name, "late");
    assert_eq!(c.deadline, Duration::from_secs(90));
}

#[test]
fn missing_file_and_missing_key_are_named() {
    let err = load(
        Some(Path::new("/nonexistent/config.yaml")),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/config.yaml does not exist"));
    assert!(
        load_err("catalyst_api_url: https://x.example\npublic_address: 1.2.3.4\n")
            .contains("missing required key `deployment_id`")
    );
}

#[test]
fn malformed_yaml_names_the_file() {
    let msg = load_err("deployment_id: [unclosed\n");
    assert!(msg.contains("config.yaml: not valid YAML"), "{msg}");
}

#[test]
fn unknown_key_suggests_the_nearest() {
    let msg = load_err(&format!("{MINIMAL}deplyoment_id: x\n"));
    assert!(
        msg.contains("unknown key `deplyoment_id` (did you mean `deployment_id`?)"),
        "{msg}"
    );
    let msg = load_err(&format!("{MINIMAL}seed:\n  namepsace: x\n"));
    assert!(msg.contains("did you mean `seed.namespace`?"), "{msg}");
    let msg = load_err(&format!("{MINIMAL}colour: blue\n"));
    assert!(
        msg.contains("unknown key `colour`") && !msg.contains("did you mean"),
        "{msg}"
    );
}

#[test]
fn bad_values_name_key_and_file() {
    let msg = load_err(&MINIMAL.replace("0123456789abcdef", "0123456789ABCDEF"));
    assert!(
        msg.contains("invalid `deployment_id`") && msg.contains("16 lowercase hex"),
        "{msg}"
    );
    assert!(msg.contains("config.yaml"), "{msg}");
    let msg = load_err(
        "deployment_id: 1234567890123456\ncatalyst_api_url: https://a.example\npublic_address: 1.2.3.4\n",
    );
    assert!(msg.contains("quote it"), "{msg}");
    let msg = load_err(&MINIMAL.replace("https://console", "http://console"));
    assert!(msg.contains("must use https"), "{msg}");
    let msg = load_err(&MINIMAL.replace("203.0.113.10", "not_a host!"));
    assert!(msg.contains("invalid `public_address`"), "{msg}");
    let msg = load_err(&format!("{MINIMAL}region: Fsn1\n"));
    assert!(msg.contains("invalid `region`"), "{msg}");
    let msg = load_err(&format!("{MINIMAL}deadline: soon\n"));
    assert!(msg.contains("invalid `deadline`"), "{msg}");
}

#[test]
fn helm_release_defaults_to_todays_openbao_release() {
    let (_dir, file) = setup(MINIMAL, &[]);
    assert_eq!(
        load(Some(&file), &Overrides::default())
            .unwrap()
            .seed
            .helm_release,
        Some(HelmRelease {
            name: "openbao".into(),
            namespace: "openbao".into()
        })
    );
    let (_dir, file) = setup(
        &format!(
            "{MINIMAL}seed:\n  helm_release:\n    name: bp-openbao\n    namespace: flux-system\n"
        ),
        &[],
    );
    let c = load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(
        c.seed.helm_release,
        Some(HelmRelease {
            name: "bp-openbao".into(),
            namespace: "flux-system".into()
        })
    );
    let msg = load_err(&format!(
        "{MINIMAL}seed:\n  helm_release:\n    name: bp-openbao\n"
    ));
    assert!(
        msg.contains("missing required key `seed.helm_release.namespace`"),
        "{msg}"
    );
}

#[test]
fn helm_release_none_turns_the_metadata_off() {
    let (_dir, file) = setup(&format!("{MINIMAL}seed:\n  helm_release: none\n"), &[]);
    let c = load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(c.seed.helm_release, None);
    let text = render(&c, Path::new("/t"));
    assert!(
        text.contains("seed.helm_release: none (no Helm ownership metadata)"),
        "{text}"
    );
    // Layers: a drop-in's table replaces an earlier `none`, and back.
    let table = "seed:\n  helm_release:\n    name: x\n    namespace: kit\n";
    let (_dir, file) = setup(
        &format!("{MINIMAL}seed:\n  helm_release: none\n"),
        &[("10-table.yaml", table)],
    );
    let c = load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(c.seed.helm_release.unwrap().name, "x");
    let (_dir, file) = setup(
        &format!("{MINIMAL}{table}"),
        &[("10-none.yaml", "seed:\n  helm_release: none\n")],
    );
    let c = load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(c.seed.helm_release, None);
}

#[test]
fn helm_release_refuses_other_scalars() {
    for bad in ["bp-openbao", "false", "\"\"", "~", "None"] {
        let msg = load_err(&format!("{MINIMAL}seed:\n  helm_release: {bad}\n"));
        assert!(
            msg.contains("config.yaml: invalid `seed.helm_release`")
                && msg.contains("is neither `none`"),
            "{bad}: {msg}"
        );
    }
}

#[test]
fn http_is_allowed_only_to_loopback() {
    for ok in [
        "http://127.0.0.1:8080",
        "http://[::1]:80/x",
        "http://localhost/",
    ] {
        assert!(parse_api_url(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://10.0.0.1",
        "ftp://x.example",
        "https://user:pw@x.example",
        "https://x.example/?a=b",
    ] {
        assert!(parse_api_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn public_address_forms() {
    assert_eq!(
        parse_public_address("2001:db8::1").unwrap().url_host(),
        "[2001:db8::1]"
    );
    assert_eq!(
        parse_public_address("[2001:db8::1]").unwrap().url_host(),
        "[2001:db8::1]"
    );
    assert_eq!(
        parse_public_address("API.Example.com.").unwrap().url_host(),
        "api.example.com"
    );
    for bad in [
        "",
        "0.0.0.0",
        "a..b",
        "-a.example",
        "1.2.3",
        "host_name.example",
    ] {
        assert!(parse_public_address(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn hetzner_metadata_source() {
    let (_dir, file) = setup(&MINIMAL.replace("203.0.113.10", "hetzner-metadata"), &[]);
    let c = load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(
        c.public_address,
        AddressSource::HetznerMetadata("http://169.254.169.254".parse().unwrap())
    );
    let (_dir, file) = setup(
        &format!(
            "{}metadata_url: http://127.0.0.1:8080\n",
            MINIMAL.replace("203.0.113.10", "hetzner-metadata")
        ),
        &[],
    );
    let c = load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(
        c.public_address,
        AddressSource::HetznerMetadata("http://127.0.0.1:8080".parse().unwrap())
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert!(parse_duration("5 days").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn lease_duration_is_accepted_and_ignored() {
    let (_dir, file) = setup(MINIMAL, &[]);
    let c = load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(c.lease_duration_set, None);
    let text = render(&c, Path::new("/t"));
    assert!(
        !text.contains("lease_duration"),
        "unset, it is not shown:\n{text}"
    );
    for value in ["30s", "90", "\"2m\""] {
        let (_dir, file) = setup(&format!("{MINIMAL}lease_duration: {value}\n"), &[]);
        let c = load(Some(&file), &Overrides::default()).unwrap();
        let origin = c.lease_duration_set.as_deref().unwrap();
        assert!(origin.ends_with("config.yaml"), "{origin}");
        let text = render(&c, Path::new("/t"));
        let shown = value.trim_matches('"');
        assert!(
            text.contains(&format!(
                "\nlease_duration: {shown} (ignored: no longer used)\n"
            )),
            "{text}"
        );
    }
    // Still a known key: a typo near it is still caught.
    assert!(load_err(&format!("{MINIMAL}lease_duraton: 30s\n")).contains("lease_duration"));
}

/// With no configuration at all `status` reads the default state
/// directory; a configuration that does not load is exit 78, never the
/// default; `--state-dir` wins over both.
#[test]
fn status_falls_back_to_the_default_state_dir_only_with_no_configuration() {
    let root = tempfile::tempdir().unwrap();
    let (usr, etc) = (root.path().join("usr"), root.path().join("etc"));
    let dirs = [usr.to_str().unwrap(), etc.to_str().unwrap()];
    let none = Overrides::default();
    let default = PathBuf::from(default_text("state_dir"));
    assert_eq!(
        state_dir_for_status_in(None, &none, &dirs).unwrap(),
        default
    );
    // A config.d with no `*.yaml` in it configures nothing either.
    std::fs::create_dir_all(etc.join("config.d")).unwrap();
    std::fs::write(etc.join("config.d").join("notes.txt"), "").unwrap();
    assert_eq!(
        state_dir_for_status_in(None, &none, &dirs).unwrap(),
        default
    );

    let flag = Overrides(vec![("state_dir", "/srv/flag".into())]);
    assert_eq!(
        state_dir_for_status_in(None, &flag, &dirs).unwrap(),
        PathBuf::from("/srv/flag")
    );

    let (_dir, broken) = setup("deployment_id: [\n", &[]);
    let err = state_dir_for_status_in(Some(&broken), &none, &dirs).unwrap_err();
    assert_eq!(Exit::of(&err), Exit::Config, "{err:#}");
    assert!(format!("{err:#}").contains("--state-dir DIR"), "{err:#}");

    let (_dir, file) = setup(&format!("{MINIMAL}state_dir: /srv/state\n"), &[]);
    assert_eq!(
        state_dir_for_status_in(Some(&file), &none, &dirs).unwrap(),
        PathBuf::from("/srv/state")
    );
}

#[test]
fn render_shows_no_secret_and_every_key() {
    let (_dir, file) = setup(MINIMAL, &[]);
    let c = load(Some(&file), &Overrides::default()).unwrap();
    let text = render(&c, Path::new("/run/credentials/x/kubeconfig-bearer"));
    for key in KEYS.iter().filter(|k| k.kind != Table && !k.retired) {
        assert!(
            text.contains(&format!("\n{}: ", key.name)) || text.starts_with(key.name),
            "{} missing from\n{text}",
            key.name
        );
    }
    assert!(!text.contains("(not used)\n"), "{text}");
    assert!(text.contains("bearer_token: <redacted> (from /run/credentials/x/kubeconfig-bearer)"));
    // Durations in the units the documentation uses.
    for line in [
        "deadline: 30m\n",
        "connect_timeout: 10s\n",
        "retry.max_delay: 1m\n",
        "metadata_url: http://169.254.169.254 (not used",
        "sovereign_fqdn: (none)\n",
        "ca_bundle: (system trust store)\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
}

#[test]
fn durations_render_in_the_documented_units_and_read_back() {
    for (ms, text) in [
        (0, "0s"),
        (500, "500ms"),
        (1500, "1500ms"),
        (10_000, "10s"),
        (90_000, "90s"),
        (300_000, "5m"),
        (1_800_000, "30m"),
        (3_600_000, "1h"),
    ] {
        let d = Duration::from_millis(ms);
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(text).unwrap(), d);
    }
}

#[test]
fn declarations_are_consistent() {
    for k in KEYS {
        if let Initial::Value(v) = k.initial
            && k.kind == Kind::Duration
        {
            parse_duration(v).unwrap();
        }
        assert!(
            !(k.secret && k.flag.is_some()),
            "{}: argv is public",
            k.name
        );
        assert_eq!(k.doc.is_empty(), k.kind == Table, "{}", k.name);
        if let Some((parent, _)) = k.name.rsplit_once('.') {
            assert!(
                matches!(key(parent).kind, Table | TextOrTable),
                "{}",
                k.name
            );
        }
    }
    let retry = RetryDelays::default();
    assert_eq!(retry.initial, Duration::from_secs(1));
    assert_eq!(retry.max, Duration::from_secs(60));
    assert_eq!(retry.overloaded, Duration::from_secs(10));
}

#[test]
fn the_configuration_reference_lists_every_key() {
    let doc = include_str!("../../../docs/configuration.md");
    let table = docs_table();
    assert!(
        doc.contains(&table),
        "docs/configuration.md's key table is out of date; it should read:\n\n{table}"
    );
}

#[test]
fn the_configuration_reference_names_every_flag() {
    let doc = include_str!("../../../docs/configuration.md");
    for k in KEYS.iter().filter(|k| k.flag.is_some()) {
        let flag = format!("`--{}`", k.flag_name());
        assert!(
            doc.contains(&flag),
            "docs/configuration.md does not name {flag}"
        );
    }
}

#[test]
fn etc_drop_ins_mask_usr_lib_ones_of_the_same_name() {
    let root = tempfile::tempdir().unwrap();
    let usr = root.path().join("usr");
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&usr).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    for (dir, name) in [
        (&usr, "10-a.yaml"),
        (&usr, "20-b.yaml"),
        (&etc, "20-b.yaml"),
        (&etc, "05-c.yaml"),
        (&usr, "30-d.yaml"),
        (&etc, "40-e.conf"),
    ] {
        std::fs::write(dir.join(name), "").unwrap();
    }
    let found = drop_ins(&[&usr, &etc, &root.path().join("absent")]).unwrap();
    assert_eq!(
        found,
        [
            etc.join("05-c.yaml"),
            usr.join("10-a.yaml"),
            etc.join("20-b.yaml"),
            usr.join("30-d.yaml"),
        ]
    );
}

#[test]
fn missing_key_names_the_file_in_use_and_the_flag() {
    let msg = load_err("catalyst_api_url: https://x.example\npublic_address: 1.2.3.4\n");
    assert!(
        msg.contains("config.yaml or a drop-in in")
            && msg.contains("config.d/, or pass --deployment-id")
            && !msg.contains(ETC_DIR),
        "{msg}"
    );
}

#[test]
fn duplicate_key_names_file_key_and_line() {
    let msg = load_err(&format!("{MINIMAL}region: fsn1\nregion: nbg1\n"));
    assert!(
        msg.contains("config.yaml: duplicate key `region` on line 5")
            && !msg.contains("DuplicateKeyPolicy"),
        "{msg}"
    );
}

#[test]
fn a_node_never_configured_is_told_apart_from_one_configured_wrongly() {
    let dir = tempfile::tempdir().unwrap();
    let (usr, etc) = (dir.path().join("usr"), dir.path().join("etc"));
    std::fs::create_dir_all(etc.join("config.d")).unwrap();
    let dirs = [usr.to_str().unwrap(), etc.to_str().unwrap()];
    assert!(nothing_configured_in(None, &dirs));
    assert!(!nothing_configured_in(Some(Path::new("/x.yaml")), &dirs));
    std::fs::write(etc.join("config.d/50-x.yaml"), "region: x\n").unwrap();
    assert!(!nothing_configured_in(None, &dirs));
    std::fs::remove_file(etc.join("config.d/50-x.yaml")).unwrap();
    std::fs::write(etc.join("config.yaml"), "").unwrap();
    assert!(!nothing_configured_in(None, &dirs));
}

/// Found by the fuzzer: a max delay below the default initial delay blamed
/// "defaults" instead of the file that set it.
#[test]
fn a_max_delay_below_the_default_initial_delay_names_its_file() {
    let text = load_err(&format!("{MINIMAL}retry:\n  max_delay: 500ms\n"));
    assert!(text.contains("config.yaml"), "{text}");
    assert!(!text.starts_with("defaults"), "{text}");
}
