//! Where log lines go: journald with structured fields when stderr is
//! connected to the journal, readable stderr lines otherwise. Every event an
//! SRE may search for has a stable `MESSAGE_ID` (see the journal catalog).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;

use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber, span};
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::memory::untrusted::one_line;

/// Declares `Event`, its `ALL` list, ids, levels, where it is told and
/// the docs' wording in one place. `cluster` events are also posted as
/// Kubernetes Events (see `events`), whose `reason` is the variant's name;
/// `journal` ones are not outcomes, only progress.
macro_rules! events {
    ($($variant:ident = $id:literal, $level:ident, $told:ident, $doc:literal;)*) => {
        /// Events with a stable `MESSAGE_ID`. The ids never change once released.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Event {
            $($variant,)*
        }

        impl Event {
            #[cfg(test)]
            pub(crate) const ALL: &[Event] = &[$(Event::$variant),*];

            pub(crate) fn id(self) -> &'static str {
                match self {
                    $(Event::$variant => $id,)*
                }
            }

            /// The Kubernetes Event's `reason`, for an outcome the cluster
            /// is told of (`None` for progress, told only to the journal).
            pub(crate) fn reason(self) -> Option<&'static str> {
                match self {
                    $(Event::$variant => told!($told, stringify!($variant)),)*
                }
            }

            /// A problem (the Event's `type` is `Warning`), not news.
            pub(crate) fn is_warning(self) -> bool {
                self.level() != Level::INFO
            }

            fn level(self) -> Level {
                match self {
                    $(Event::$variant => Level::$level,)*
                }
            }

            /// What the event is, as docs/operating.md's MESSAGE_ID table says it.
            #[cfg(test)]
            fn doc(self) -> &'static str {
                match self {
                    $(Event::$variant => $doc,)*
                }
            }
        }
    };
}

macro_rules! told {
    (cluster, $reason:expr) => {
        Some($reason)
    };
    (journal, $reason:expr) => {
        None
    };
}

/// Retired ids, never to be reused: a journal or a log pipeline may still
/// hold them with their old meaning. `LeaseHeld` ("this node holds the
/// Lease") and `PeerCompleted` ("another node did the work") went with HA
/// coordination in 0.2.
#[cfg(test)]
const RETIRED: &[&str] = &[
    "af57a974042a4ff296c47d91a6c7fb1b",
    "1fb5ef1b201e48b58b822ac5c42dab56",
];

// A new event gets a new id (`systemd-id128 new`), never one in `RETIRED`.
events! {
    PhaseStarted = "df2c0d73ea9d4d8d94b400ba1d14cb22", INFO, journal, "phase started";
    PhaseDone = "992915457fad452db1adbf2b2fe8754c", INFO, journal, "phase done";
    PhaseFailed = "d64c18af8a19446cb59b9b0f03d7c84b", ERROR, cluster, "phase failed";
    AttemptFailed = "47a37c7e14bf4ababafa0fa56453d7df", WARN, journal, "attempt failed, retrying";
    SeedWritten = "c4e83e47d0b2422da84b5910a325a4a5", INFO, cluster, "seed written";
    SeedKept = "b41d16531de94e57aa2dc5c0c72a6221", INFO, cluster, "seed kept (a Secret was already there)";
    SeedSkipped = "c3228eb551ff47308966a17f1cf58340", INFO, cluster, "seed skipped (OpenBao initialised)";
    SecretApplied = "555e4606595a433098f062ed9275b030", INFO, cluster, "bootstrap Secret applied (server-side apply)";
    SecretFileRemoved = "5bfd7ed497624e0f8e3ab4b7d6836893", INFO, journal, "a bootstrap Secret's file overwritten with zeros and removed";
    KubeconfigDelivered = "c0af651214a84c2aa716219b3091166e", INFO, cluster, "kubeconfig delivered";
    KubeconfigAlreadyCaptured = "ca8c8dd7732b49659c792b2422db06b1", INFO, cluster, "kubeconfig already captured";
    JobDone = "bb67bfad35d54f23989e2a36509a8f13", INFO, cluster, "job done";
    Interrupted = "351db55ad6f440d4bd3aa39d756b8d3f", WARN, cluster, "interrupted";
    PreflightPassed = "5569769074254d68b1abfd84230411b8", INFO, cluster, "preflight: certificate valid for the public address";
    PreflightFallback = "2bf7d179714648cda3043d25099edf55", INFO, cluster, "preflight: kubeconfig sent with `tls-server-name`";
    PreflightIgnored = "23aaec20ac8247a5b9da28edf88c3252", WARN, cluster, "preflight failed, sent anyway (`preflight: warn`)";
    WaitStarted = "54d2090c9b6d4d1483f65fd54c80194e", INFO, journal, "waiting started (kubeconfig file, `/readyz`)";
    WaitProgress = "a6830ed5e96742eb8bb7926613c4c759", INFO, journal, "still waiting (at most every 15 s)";
    WaitDone = "7d5914bd0da94c7fa5462d7b731a4e0f", INFO, journal, "waiting ended, with how long it took";
    KubeconfigRewritten = "ad0092d0f3784eeda56a734c492ceb1f", INFO, journal, "a cluster's loopback server rewritten to the public address";
    KubeconfigSending = "1b2da0855a5a490188c64f5626e8a931", INFO, journal, "sending the kubeconfig to catalyst-api";
    ObjectApplied = "8fbb7de726e046d5af1cf57f9b3407e6", INFO, cluster, "hand-off: an object applied (server-side apply)";
    KindAwaited = "7ef7fd754be54b73a59543f2ad8fcf2b", INFO, cluster, "hand-off: waiting for a kind to be served (its CRD absent or not Established)";
    ManifestSkipped = "665fd3d696e0444e82cd722f49d81072", WARN, cluster, "hand-off: an optional file skipped (its kinds not served in time, or refused)";
    MarkerWritten = "5203aad12fc64a7cb6e711392821df7c", INFO, cluster, "hand-off: the required objects are applied; `done_marker` written";
    CriticalDone = "e7e0af006a3347b29fd06023b47d30a7", INFO, journal, "kubeconfig, seed and bootstrap Secrets done: READY=1 (the hand-off goes on)";
}

/// Logs `message` as `event`, inside whatever phase/attempt span is current.
/// The journal's `CODE_FILE`/`CODE_LINE` name the caller (see [`AtCaller`]).
#[track_caller]
pub(crate) fn record(event: Event, message: &str) {
    let id = event.id();
    let at = std::panic::Location::caller();
    let (code_file, code_line) = (at.file(), at.line());
    match event.level() {
        Level::ERROR => tracing::error!(message_id = id, code_file, code_line, "{message}"),
        Level::WARN => tracing::warn!(message_id = id, code_file, code_line, "{message}"),
        _ => tracing::info!(message_id = id, code_file, code_line, "{message}"),
    }
}

/// Gives the journal layer an event from [`record`] as if it had been
/// logged at `record`'s caller: same level, message and `MESSAGE_ID`, with
/// the caller's file and line as its metadata (so `CODE_FILE`/`CODE_LINE`),
/// instead of the line in `record` every event would otherwise carry.
struct AtCaller<L>(L);

struct RecordSite;
static RECORD_SITE: RecordSite = RecordSite;
const RECORD_FIELDS: &[&str] = &["message", "message_id"];
static RECORD_METADATA: tracing::Metadata<'static> = tracing::Metadata::new(
    "record",
    "catalyst_bootstrap::journal",
    Level::INFO,
    None,
    None,
    None,
    tracing::field::FieldSet::new(RECORD_FIELDS, tracing::callsite::Identifier(&RECORD_SITE)),
    tracing::metadata::Kind::EVENT,
);

impl tracing::callsite::Callsite for RecordSite {
    fn set_interest(&self, _: tracing::subscriber::Interest) {}
    fn metadata(&self) -> &tracing::Metadata<'_> {
        &RECORD_METADATA
    }
}

/// One leaked `Metadata` per (level, file, line): as many as there are
/// `record` call sites, a few dozen.
fn metadata_at(level: Level, file: &str, line: u32) -> &'static tracing::Metadata<'static> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    type Sites = HashMap<(Level, String, u32), &'static tracing::Metadata<'static>>;
    static SITES: Mutex<Option<Sites>> = Mutex::new(None);
    let mut sites = SITES.lock().unwrap_or_else(|e| e.into_inner());
    sites
        .get_or_insert_with(HashMap::new)
        .entry((level, file.to_string(), line))
        .or_insert_with(|| {
            let file: &'static str = Box::leak(file.into());
            Box::leak(Box::new(tracing::Metadata::new(
                "record",
                "catalyst_bootstrap::journal",
                level,
                Some(file),
                Some(line),
                None,
                tracing::field::FieldSet::new(
                    RECORD_FIELDS,
                    tracing::callsite::Identifier(&RECORD_SITE),
                ),
                tracing::metadata::Kind::EVENT,
            )))
        })
}

/// The fields [`record`] sets.
#[derive(Default)]
struct Recorded {
    message: String,
    message_id: Option<String>,
    file: Option<String>,
    line: Option<u64>,
}

impl Visit for Recorded {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "message_id" => self.message_id = Some(value.to_string()),
            "code_file" => self.file = Some(value.to_string()),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "code_line" {
            self.line = Some(value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl<S, L> Layer<S> for AtCaller<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx);
    }
    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(id, values, ctx);
    }
    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_enter(id, ctx);
    }
    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_exit(id, ctx);
    }
    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.0.on_close(id, ctx);
    }
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Recorded::default();
        if event.metadata().fields().field("code_file").is_some() {
            event.record(&mut fields);
        }
        let (Some(file), Some(line), Some(id)) = (fields.file, fields.line, fields.message_id)
        else {
            return self.0.on_event(event, ctx);
        };
        let line = u32::try_from(line).unwrap_or(u32::MAX);
        let meta = metadata_at(*event.metadata().level(), &file, line);
        let set = meta.fields();
        let (message, message_id) = (
            set.field("message").expect("declared"),
            set.field("message_id").expect("declared"),
        );
        let values = [
            (&message, Some(&fields.message as &dyn tracing::Value)),
            (&message_id, Some(&id as &dyn tracing::Value)),
        ];
        let values = set.value_set(&values);
        self.0.on_event(&tracing::Event::new(meta, &values), ctx);
    }
}

/// systemd sets `JOURNAL_STREAM=dev:inode` for the stream it connected to
/// stderr; when it matches, stderr is the journal (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    let Some(expected) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    expected.to_string_lossy() == format!("{}:{}", meta.dev(), meta.ino())
}

pub fn init(verbose: bool) {
    let ours = if verbose { Level::DEBUG } else { Level::INFO };
    // Libraries stay at WARN: kube and hyper log request details at DEBUG.
    let filter = Targets::new()
        .with_target("catalyst_bootstrap", ours)
        .with_default(Level::WARN);
    if stderr_is_journal()
        && let Ok(layer) = tracing_journald::layer()
    {
        // The crate maps INFO to notice (5); ours are informational (6),
        // so `journalctl -p notice` shows what needs attention.
        let layer = layer
            .with_field_prefix(None)
            .with_syslog_identifier("catalyst-bootstrap".into())
            .with_priority_mappings(PriorityMappings {
                info: Priority::Informational,
                debug: Priority::Debug,
                ..PriorityMappings::new()
            });
        tracing_subscriber::registry()
            .with(AtCaller(layer).with_filter(filter))
            .init();
        return;
    }
    tracing_subscriber::registry()
        .with(Stderr.with_filter(filter))
        .init();
}

/// Readable lines for a person at a terminal:
/// `2026-11-22T05:14:02.711Z WARN  [kubeconfig #2] message key=value`.
/// The structured fields (MESSAGE_ID, deployment id) are for journald.
struct Stderr;

#[derive(Default)]
struct SpanFields {
    phase: Option<String>,
    attempt: Option<u64>,
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "catalyst_phase" {
            self.phase = Some(value.to_string());
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "catalyst_attempt" {
            self.attempt = Some(value);
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

#[derive(Default)]
struct EventFields {
    message: String,
    extra: String,
}

impl Visit for EventFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "message_id" | "code_file" | "code_line" => {}
            name => {
                let _ = write!(self.extra, " {name}={value:?}");
            }
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message_id" | "code_file" => {}
            name => {
                let _ = write!(self.extra, " {name}={value}");
            }
        }
    }
}

impl<S> Layer<S> for Stderr
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let (mut phase, mut attempt) = (None, None);
        for span in ctx
            .event_scope(event)
            .into_iter()
            .flat_map(|s| s.from_root())
        {
            if let Some(f) = span.extensions().get::<SpanFields>() {
                phase = f.phase.clone().or(phase);
                attempt = f.attempt.or(attempt);
            }
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let context = match (phase, attempt) {
            (Some(p), Some(n)) => format!("[{p} #{n}] "),
            (Some(p), None) => format!("[{p}] "),
            _ => String::new(),
        };
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ");
        // One line per event, whatever slipped into the text.
        let line = format!(
            "{now} {:<5} {context}{}{}\n",
            event.metadata().level(),
            one_line(&fields.message),
            one_line(&fields.extra)
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the journal layer is given: file, line, level, MESSAGE_ID, message.
    type Seen = (Option<String>, Option<u32>, Level, Option<String>, String);

    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<Seen>>>);

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut fields = Recorded::default();
            event.record(&mut fields);
            let meta = event.metadata();
            self.0.lock().unwrap().push((
                meta.file().map(str::to_string),
                meta.line(),
                *meta.level(),
                fields.message_id,
                fields.message,
            ));
        }
    }

    /// CODE_FILE/CODE_LINE come from the event's metadata: they name the
    /// caller of `record` (they named journal.rs's own line for every event).
    #[test]
    fn journal_events_carry_the_call_site() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(AtCaller(Capture(seen.clone())));
        let line = tracing::subscriber::with_default(subscriber, || {
            record(Event::PhaseFailed, "it broke");
            line!() - 1
        });
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.as_slice(),
            &[(
                Some(file!().to_string()),
                Some(line),
                Level::ERROR,
                Some(Event::PhaseFailed.id().to_string()),
                "it broke".to_string()
            )]
        );
    }

    #[test]
    fn message_ids_are_unique_128_bit_hex() {
        let mut ids: Vec<_> = Event::ALL.iter().map(|e| e.id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{id}"
            );
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), Event::ALL.len());
        for retired in RETIRED {
            assert!(!ids.contains(retired), "{retired} is retired");
        }
    }

    #[test]
    fn every_outcome_has_a_camel_case_reason_and_progress_none() {
        for e in Event::ALL {
            match e.reason() {
                Some(r) => {
                    assert!(r.len() <= 128 && r.starts_with(|c: char| c.is_ascii_uppercase()));
                    assert!(r.chars().all(|c| c.is_ascii_alphanumeric()), "{r}");
                }
                None => assert!(!e.is_warning() || *e == Event::AttemptFailed, "{e:?}"),
            }
        }
        assert_eq!(Event::SeedKept.reason(), Some("SeedKept"));
        assert_eq!(Event::WaitProgress.reason(), None);
        assert!(Event::PhaseFailed.is_warning() && !Event::SeedWritten.is_warning());
    }

    #[test]
    fn the_operating_manual_lists_every_message_id() {
        let mut table =
            String::from("| event | `MESSAGE_ID` | Kubernetes Event `reason` |\n|---|---|---|\n");
        for e in Event::ALL {
            let reason = e.reason().map(|r| format!("`{r}`")).unwrap_or("—".into());
            table += &format!("| {} | `{}` | {reason} |\n", e.doc(), e.id());
        }
        let doc = include_str!("../../../docs/operating.md");
        assert!(
            doc.contains(&table),
            "docs/operating.md's MESSAGE_ID table is out of date; it should read:\n\n{table}"
        );
    }

    #[test]
    fn the_journal_catalog_explains_every_message_id() {
        let catalog = include_str!("../../../systemd/catalyst-bootstrap.catalog");
        let entries: Vec<&str> = catalog
            .lines()
            .filter_map(|l| l.strip_prefix("-- "))
            .collect();
        let mut ids: Vec<&str> = Event::ALL.iter().map(|e| e.id()).collect();
        ids.sort();
        let mut listed = entries.clone();
        listed.sort();
        assert_eq!(listed, ids, "catalog entries and Event ids differ");
    }
}
