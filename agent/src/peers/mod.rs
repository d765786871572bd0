//! The peers the agent talks to: catalyst-api, the local API server, the
//! metadata service, and how it retries them.

pub(crate) mod api;
pub(crate) mod client;
pub(crate) mod cluster;
pub(crate) mod discovery;
pub(crate) mod metadata;
pub(crate) mod retry;
