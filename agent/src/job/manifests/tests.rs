use std::os::unix::fs::PermissionsExt;

use super::*;

/// In flow style, with a comment-only document between the two objects.
const FLUX: &str = "\
{apiVersion: source.toolkit.fluxcd.io/v1, kind: GitRepository,
 metadata: {name: openova, namespace: flux-system},
 spec: {url: 'https://gitea.sovereign-handoff.example/openova/bootstrap-kit.git', interval: 1m}}
---
# a comment-only document between two objects is skipped
---
{apiVersion: kustomize.toolkit.fluxcd.io/v1, kind: Kustomization,
 metadata: {name: bootstrap-kit, namespace: flux-system},
 spec: {path: ./clusters/NODE_IP_PLACEHOLDER-not-rewritten-yet,
        sourceRef: {kind: GitRepository, name: openova-sources}}}
";

const PROVIDER: &str = "{apiVersion: pkg.crossplane.io/v1, kind: Provider, metadata: {name: provider-hcloud}, \
    spec: {package: 'registry.example/crossplane/provider-hcloud:v0.9.0'}}\n";

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir
}

fn refusal(files: &[(&str, &str)]) -> (Exit, String) {
    let dir = dir_with(files);
    let err = Manifests::load(dir.path()).err().expect("refused");
    (Exit::of(&err), format!("{err:#}"))
}

#[test]
fn files_in_name_order_objects_in_document_order() {
    let dir = dir_with(&[
        ("50-crossplane.optional.yaml", PROVIDER),
        ("10-flux-bootstrap.yaml", FLUX),
        ("notes.txt", "not a manifest"),
    ]);
    let m = Manifests::load(dir.path()).unwrap();
    assert!(!m.is_empty());
    let files: Vec<(&str, bool)> = m
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.optional))
        .collect();
    assert_eq!(
        files,
        [
            ("10-flux-bootstrap.yaml", false),
            ("50-crossplane.optional.yaml", true)
        ]
    );
    let ids: Vec<String> = m.files[0].objects.iter().map(Object::id).collect();
    assert_eq!(
        ids,
        [
            "GitRepository flux-system/openova",
            "Kustomization flux-system/bootstrap-kit"
        ]
    );
    assert_eq!(m.files[0].objects[1].doc, 2);
    assert_eq!(m.files[1].objects[0].id(), "Provider provider-hcloud");
    assert_eq!(m.files[1].objects[0].namespace, None);
    let body: Value = serde_json::from_slice(&m.files[1].objects[0].body).unwrap();
    assert_eq!(
        body["spec"]["package"],
        "registry.example/crossplane/provider-hcloud:v0.9.0"
    );
    let shown = m.render();
    assert!(
        shown.contains("manifest: Provider provider-hcloud (pkg.crossplane.io/v1) from 50-crossplane.optional.yaml (optional, valid)"),
        "{shown}"
    );
    assert!(!shown.contains("gitea"), "{shown}");
}

#[test]
fn a_missing_or_empty_directory_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        Manifests::load(&dir.path().join("none"))
            .unwrap()
            .is_empty()
    );
    let m = Manifests::load(dir.path()).unwrap();
    assert!(m.is_empty());
    assert_eq!(
        m.render(),
        format!("manifest: none in {}\n", dir.path().display())
    );
}

#[test]
fn a_secret_is_refused_it_belongs_in_secrets_dir() {
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: ghcr-pull, namespace: flux-system}\nstringData: {token: hunter2hunter2hunter2}\n";
    let (exit, text) = refusal(&[("10-flux.yaml", &format!("{FLUX}---\n{secret}"))]);
    assert_eq!(exit, Exit::Data);
    assert!(
        text.contains("10-flux.yaml, document 3: is a Secret: Secrets go in `secrets_dir`"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn an_object_without_a_name_is_refused_naming_file_and_document() {
    let nameless = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: x-\n  namespace: default\ndata: {k: value-not-shown}\n";
    let (exit, text) = refusal(&[("20-cm.yaml", &format!("{PROVIDER}---\n{nameless}"))]);
    assert_eq!(exit, Exit::Data);
    assert!(
        text.contains("20-cm.yaml, document 2: field `metadata.name` is missing"),
        "{text}"
    );
    assert!(!text.contains("value-not-shown"), "{text}");
}

#[test]
fn invalid_yaml_is_refused_with_its_location_only() {
    let (exit, text) = refusal(&[(
        "10-flux.yaml",
        "kind: [unclosed\n  secret-looking-text: x\n",
    )]);
    assert_eq!(exit, Exit::Data);
    assert!(
        text.contains("10-flux.yaml: is not valid YAML (line"),
        "{text}"
    );
    assert!(!text.contains("secret-looking"), "{text}");
}

#[test]
fn fields_are_checked_and_named() {
    for (doc, says) in [
        ("- a\n- list\n", "expected a mapping"),
        ("kind: X\nmetadata: {name: x}\n", "`apiVersion` is missing"),
        (
            "apiVersion: Not A Version\nkind: X\nmetadata: {name: x}\n",
            "`apiVersion`",
        ),
        ("apiVersion: v1\nmetadata: {name: x}\n", "`kind` is missing"),
        (
            "apiVersion: v1\nkind: ConfigMapList\nmetadata: {name: x}\nitems: []\n",
            "kind ConfigMapList is a list",
        ),
        (
            "apiVersion: Not_A_Group/v1\nkind: X\nmetadata: {name: x}\n",
            "`apiVersion`",
        ),
        ("apiVersion: v1\nkind: ConfigMap\n", "`metadata` is missing"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a/b}\n",
            "`metadata.name` is not a valid",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: Not_A_Label}\n",
            "`metadata.namespace`",
        ),
    ] {
        let (exit, text) = refusal(&[("x.yaml", doc)]);
        assert_eq!(exit, Exit::Data, "{doc}");
        assert!(text.contains(says), "{doc}: {text}");
    }
    let twice = format!("{PROVIDER}---\n{PROVIDER}");
    let (_, text) = refusal(&[("x.yaml", &twice)]);
    assert!(
        text.contains("documents 1 and 2 are both Provider provider-hcloud"),
        "{text}"
    );
}

#[test]
fn files_others_may_write_or_links_are_refused_as_configuration() {
    let dir = dir_with(&[("10-flux.yaml", FLUX)]);
    let path = dir.path().join("10-flux.yaml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
    let err = Manifests::load(dir.path()).err().unwrap();
    assert_eq!(Exit::of(&err), Exit::Config);
    assert!(format!("{err:#}").contains("has mode 0664"), "{err:#}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Manifests::load(dir.path()).is_ok());
    std::os::unix::fs::symlink(&path, dir.path().join("20-link.yaml")).unwrap();
    let err = Manifests::load(dir.path()).err().unwrap();
    assert_eq!(Exit::of(&err), Exit::Config);
    assert!(format!("{err:#}").contains("a symbolic link"), "{err:#}");
}

#[test]
fn an_answer_that_echoes_a_body_is_withheld_but_names_are_shown() {
    let dir = dir_with(&[("10-flux.yaml", FLUX)]);
    Manifests::load(dir.path()).unwrap();
    let echo = Untrusted::new(
        "GitRepository.source.toolkit.fluxcd.io \"openova\" is invalid: spec.url: \
         https://gitea.sovereign-handoff.example/openova/bootstrap-kit.git",
    );
    assert_eq!(echo.shown(), untrusted::WITHHELD);
    // A reference's kind and name (8 to 15 characters) are words the
    // server's own messages use: they are not withheld.
    let named = Untrusted::new(
        "GitRepository.source.toolkit.fluxcd.io \"openova-sources\" is invalid: spec.interval: Required value",
    );
    assert!(
        named.shown().contains("\"openova-sources\" is invalid"),
        "{}",
        named.shown()
    );
}

#[test]
fn objects_of_one_type_with_other_names_are_not_repeats() {
    let two = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n---\n\
               apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: x}\n";
    let dir = dir_with(&[("cm.yaml", two)]);
    let m = Manifests::load(dir.path()).unwrap();
    assert_eq!(m.files[0].objects.len(), 2);
}

#[test]
fn strings_in_lists_are_withheld_too() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lists, namespace: x}\n\
                extra: [\"a-listed-value-0c4f9e1d2b7a6358\"]\n";
    let dir = dir_with(&[("cm.yaml", text)]);
    Manifests::load(dir.path()).unwrap();
    let echo = Untrusted::new("rejected: a-listed-value-0c4f9e1d2b7a6358 is not allowed");
    assert_eq!(echo.shown(), untrusted::WITHHELD);
}
