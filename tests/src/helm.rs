//! Helm v3's adoption rule for objects that already exist when a release is
//! installed (`pkg/action/validate.go`, `existingResourceConflict` and
//! `checkOwnership`): the object is adopted when it carries the label
//! `app.kubernetes.io/managed-by: Helm` and the annotations naming exactly
//! this release and its namespace; otherwise `helm install` stops with the
//! message built here, and Flux retries the install forever.

use serde_json::Value;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_HELM: &str = "Helm";
pub const RELEASE_NAME_ANNOTATION: &str = "meta.helm.sh/release-name";
pub const RELEASE_NAMESPACE_ANNOTATION: &str = "meta.helm.sh/release-namespace";

/// What `helm install` of `release` in `namespace` does with the live
/// object `existing`: `Ok(())` when it adopts it, else the error Helm
/// prints (`Unable to continue with install: ` is prefixed by Helm's caller).
pub fn install_over(existing: &Value, release: &str, namespace: &str) -> Result<(), String> {
    check_ownership(existing, release, namespace).map_err(|e| {
        format!(
            "{} {:?} in namespace {:?} exists and cannot be imported into the current release: {e}",
            existing["kind"].as_str().unwrap_or(""),
            existing["metadata"]["name"].as_str().unwrap_or(""),
            existing["metadata"]["namespace"].as_str().unwrap_or(""),
        )
    })
}

/// `checkOwnership`: every failing requirement, joined with "; ".
pub fn check_ownership(obj: &Value, release: &str, namespace: &str) -> Result<(), String> {
    let labels = &obj["metadata"]["labels"];
    let annotations = &obj["metadata"]["annotations"];
    let mut errs = Vec::new();
    if let Err(e) = require_value(labels, MANAGED_BY_LABEL, MANAGED_BY_HELM) {
        errs.push(format!("label validation error: {e}"));
    }
    if let Err(e) = require_value(annotations, RELEASE_NAME_ANNOTATION, release) {
        errs.push(format!("annotation validation error: {e}"));
    }
    if let Err(e) = require_value(annotations, RELEASE_NAMESPACE_ANNOTATION, namespace) {
        errs.push(format!("annotation validation error: {e}"));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("invalid ownership metadata; {}", errs.join("; ")))
    }
}

/// `requireValue`, with Go's `%q` quoting (which matches Rust's `{:?}` for
/// the plain ASCII keys and values involved).
fn require_value(map: &Value, key: &str, want: &str) -> Result<(), String> {
    match map.get(key) {
        None => Err(format!("missing key {key:?}: must be set to {want:?}")),
        Some(actual) => {
            let actual = actual.as_str().unwrap_or("");
            if actual == want {
                Ok(())
            } else {
                Err(format!(
                    "key {key:?} must equal {want:?}: current value is {actual:?}"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(labels: Option<Value>, annotations: Option<Value>) -> Value {
        let mut meta = json!({"name": "openbao-recovery-seed", "namespace": "openbao"});
        if let Some(l) = labels {
            meta["labels"] = l;
        }
        if let Some(a) = annotations {
            meta["annotations"] = a;
        }
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {}})
    }

    fn owned(release: &str, namespace: &str) -> Value {
        secret(
            Some(json!({MANAGED_BY_LABEL: "Helm", "app.kubernetes.io/name": "openbao"})),
            Some(json!({
                RELEASE_NAME_ANNOTATION: release,
                RELEASE_NAMESPACE_ANNOTATION: namespace,
                "openbao.openova.io/single-use": "true",
            })),
        )
    }

    #[test]
    fn adopts_an_object_owned_by_this_release() {
        assert_eq!(
            install_over(&owned("openbao", "openbao"), "openbao", "openbao"),
            Ok(())
        );
    }

    #[test]
    fn refuses_an_object_without_metadata() {
        let err = install_over(&secret(None, None), "openbao", "openbao").unwrap_err();
        assert_eq!(
            err,
            "Secret \"openbao-recovery-seed\" in namespace \"openbao\" exists and cannot be \
             imported into the current release: invalid ownership metadata; \
             label validation error: missing key \"app.kubernetes.io/managed-by\": must be set to \"Helm\"; \
             annotation validation error: missing key \"meta.helm.sh/release-name\": must be set to \"openbao\"; \
             annotation validation error: missing key \"meta.helm.sh/release-namespace\": must be set to \"openbao\""
        );
        // Empty maps are the same as absent ones.
        assert_eq!(
            check_ownership(
                &secret(Some(json!({})), Some(json!({}))),
                "openbao",
                "openbao"
            ),
            check_ownership(&secret(None, None), "openbao", "openbao"),
        );
    }

    #[test]
    fn refuses_an_object_of_another_release() {
        let err =
            check_ownership(&owned("bp-openbao", "openbao"), "openbao", "openbao").unwrap_err();
        assert_eq!(
            err,
            "invalid ownership metadata; annotation validation error: key \"meta.helm.sh/release-name\" \
             must equal \"openbao\": current value is \"bp-openbao\""
        );
        let err =
            check_ownership(&owned("openbao", "flux-system"), "openbao", "openbao").unwrap_err();
        assert!(err.contains("\"meta.helm.sh/release-namespace\" must equal \"openbao\": current value is \"flux-system\""), "{err}");
    }

    #[test]
    fn refuses_an_object_with_only_part_of_the_metadata() {
        let s = secret(Some(json!({MANAGED_BY_LABEL: "Helm"})), None);
        let err = check_ownership(&s, "openbao", "openbao").unwrap_err();
        assert!(!err.contains("label validation error"), "{err}");
        assert_eq!(
            err.matches("annotation validation error").count(),
            2,
            "{err}"
        );
        let s = secret(Some(json!({MANAGED_BY_LABEL: "kustomize"})), None);
        assert!(check_ownership(&s, "openbao", "openbao").unwrap_err().contains(
            "key \"app.kubernetes.io/managed-by\" must equal \"Helm\": current value is \"kustomize\""
        ));
    }
}
