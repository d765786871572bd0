//! `events.k8s.io/v1` Events: created with the real validation, listed and
//! read back like any object.

use serde_json::{Value, json};

use super::store::{CORE, Resource, bad_request, create};
use super::{Cluster, FakeApiServer, status};

pub(super) const EVENTS: Resource = Resource {
    group: "events.k8s.io",
    kind: "Event",
    resource: "events",
    short_names: &["ev"],
    ..CORE
};

impl FakeApiServer {
    /// The `events.k8s.io/v1` Events stored in `namespace`, in the order
    /// they were created.
    pub fn events(&self, namespace: &str) -> Vec<Value> {
        let c = self.lock();
        match EVENTS.list(&c, Some(namespace))["items"].take() {
            Value::Array(items) => items,
            _ => Vec::new(),
        }
    }
}

/// Creates an `events.k8s.io/v1` Event, validated as the API server does
/// (`ValidateEventCreate`): 422 Invalid naming every field at fault.
pub(super) fn create_event(
    c: &mut Cluster,
    path: &str,
    ns: &str,
    raw: &[u8],
    body: Option<Value>,
) -> (u16, Value) {
    let Some(mut obj) = body.filter(|_| !raw.is_empty()) else {
        return bad_request();
    };
    if obj["kind"] != "Event" || obj["apiVersion"] != "events.k8s.io/v1" {
        return bad_request();
    }
    let name = match (
        obj["metadata"]["name"].as_str(),
        obj["metadata"]["generateName"].as_str(),
    ) {
        (Some(name), _) => name.to_string(),
        (None, Some(prefix)) => format!("{prefix}{:05x}", c.resource_version + 1),
        (None, None) => String::new(),
    };
    let text = |field: &str| obj[field].as_str().unwrap_or("").to_string();
    let mut causes = Vec::new();
    let mut require = |ok: bool, field: &str, why: &str| {
        if !ok {
            causes.push(format!("{field}: {why}"));
        }
    };
    require(!name.is_empty(), "metadata.name", "Required value");
    require(name.len() <= 253, "metadata.name", "Too long");
    require(
        obj["metadata"]["namespace"]
            .as_str()
            .is_none_or(|n| n == ns),
        "metadata.namespace",
        "does not match the namespace of the request",
    );
    require(
        obj["eventTime"]
            .as_str()
            .is_some_and(|t| t.len() == 27 && t.ends_with('Z')),
        "eventTime",
        "Required value (MicroTime, RFC 3339 with microseconds)",
    );
    let controller = text("reportingController");
    require(
        !controller.is_empty(),
        "reportingController",
        "Required value",
    );
    require(
        controller
            .split_once('/')
            .is_some_and(|(d, n)| d.contains('.') && !n.is_empty() && !n.contains('/')),
        "reportingController",
        "must be a qualified name (domain/name)",
    );
    let instance = text("reportingInstance");
    require(!instance.is_empty(), "reportingInstance", "Required value");
    require(
        instance.len() <= 128,
        "reportingInstance",
        "Too long: may not be more than 128 bytes",
    );
    for field in ["action", "reason"] {
        let value = text(field);
        require(!value.is_empty(), field, "Required value");
        require(
            value.len() <= 128,
            field,
            "Too long: may not be more than 128 bytes",
        );
    }
    require(
        ["Normal", "Warning"].contains(&text("type").as_str()),
        "type",
        "Unsupported value: supported values: \"Normal\", \"Warning\"",
    );
    require(
        text("note").len() <= 1024,
        "note",
        "Too long: may not be more than 1024 bytes",
    );
    let regarding = &obj["regarding"];
    require(
        regarding["kind"].is_string() && regarding["name"].is_string(),
        "regarding",
        "Required value",
    );
    if !causes.is_empty() {
        let msg = format!(
            "Event.events.k8s.io \"{name}\" is invalid: [{}]",
            causes.join(", ")
        );
        return (
            422,
            status(422, "Invalid", &msg, json!({"name": name, "kind": "Event"})),
        );
    }
    obj["metadata"]["name"] = name.clone().into();
    obj["metadata"]["namespace"] = ns.into();
    create(
        c,
        &format!("{path}/{name}"),
        "events.events.k8s.io",
        &name,
        obj,
        |_| {},
    )
}
