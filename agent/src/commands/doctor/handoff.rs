//! doctor's hand-off checks: the files of `manifests.dir` as a run would
//! read them, which of their kinds the API server serves now (discovery
//! GETs only), and whether `done_marker` could be written.

use std::collections::BTreeSet;

use super::{Line, fail, ok, timed, warn};
use crate::config::{self, Config};
use crate::job::manifests::Manifests;
use crate::peers::cluster::Cluster;
use crate::peers::discovery::Discovery;
use crate::report::state::State;

/// What a run would apply, and which kinds it would wait for.
pub(super) async fn manifests(config: &Config, cluster: Option<&Cluster>) -> Line {
    const CHECK: &str = "manifests";
    let loaded = match Manifests::load(&config.manifests_dir) {
        Ok(m) => m,
        Err(e) => {
            return fail(
                CHECK,
                format!("{e:#}"),
                "correct or remove the file named; a run refuses to start with it",
            );
        }
    };
    if loaded.is_empty() {
        return ok(
            CHECK,
            format!(
                "no manifests in {}: a run hands nothing over",
                config.manifests_dir.display()
            ),
        );
    }
    let earlier = State::read(&config.state_dir)
        .ok()
        .flatten()
        .map(|s| s.handed)
        .unwrap_or_default();
    let objects: Vec<_> = loaded
        .files
        .iter()
        .flat_map(|f| f.objects.iter().map(move |o| (f, o)))
        .collect();
    let pending = objects
        .iter()
        .filter(|(f, o)| !earlier.contains(&o.handed(&f.name)))
        .count();
    let plan = format!(
        "{} object(s) in {} file(s), {pending} to apply",
        objects.len(),
        loaded.files.len()
    );
    let Some(cluster) = cluster else {
        return warn(
            CHECK,
            format!("{plan}; kinds not checked: the API server cannot be reached"),
            "see `api-server`",
        );
    };
    let kinds: BTreeSet<(&str, &str, bool)> = objects
        .iter()
        .map(|(f, o)| (o.api_version.as_str(), o.kind.as_str(), f.optional))
        .collect();
    let discovery = Discovery::new(cluster);
    let (mut served, mut missing, mut optional_missing) = (Vec::new(), Vec::new(), Vec::new());
    for (api_version, kind, optional) in kinds {
        let named = format!("{kind} ({api_version})");
        match timed(discovery.resolve(api_version, kind)).await.0 {
            Ok(_) => served.push(named),
            Err(_) if optional => optional_missing.push(named),
            Err(_) => missing.push(named),
        }
    }
    let mut seen = format!("{plan}; served now: {}", list(&served));
    if !missing.is_empty() {
        seen += &format!("; not served yet: {}", list(&missing));
    }
    if !optional_missing.is_empty() {
        seen += &format!(
            "; not served yet, optional (waited for {} after the required ones, then skipped): {}",
            config::format_duration(config.optional_wait),
            list(&optional_missing)
        );
    }
    if missing.is_empty() {
        ok(CHECK, seen)
    } else {
        warn(
            CHECK,
            seen,
            "a run waits for these kinds until the deadline: check what installs their CRDs \
             (`kubectl get crd`, `flux check`)",
        )
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// Whether `done_marker` could be written: its directory must exist.
pub(super) fn marker(config: &Config) -> Option<Line> {
    const CHECK: &str = "done-marker";
    let path = config.done_marker.as_deref()?;
    let dir = path.parent().unwrap_or(path);
    Some(if path.exists() {
        ok(
            CHECK,
            format!("{} exists (written by a run)", path.display()),
        )
    } else if dir.is_dir() {
        ok(
            CHECK,
            format!(
                "{} would be written once the required manifests are applied",
                path.display()
            ),
        )
    } else {
        fail(
            CHECK,
            format!("{} does not exist", dir.display()),
            "create the directory (upstream's write_files make /var/lib/catalyst), or set \
             `done_marker` elsewhere with a drop-in granting it in the unit (`ReadWritePaths=`)",
        )
    })
}
