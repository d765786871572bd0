//! The rewritten kubeconfig on its way to catalyst-api: it carries the
//! cluster-admin client key, so it lives here with the other secret
//! material, below the peer that sends it and the phase that builds it.

use bytes::Bytes;

/// One server address that was rewritten, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewrite {
    pub(crate) cluster: String,
    pub(crate) from: String,
    pub(crate) to: String,
}

/// The body to PUT. Dropping the last clone zeroizes it.
pub(crate) struct Rewritten {
    pub(crate) body: Bytes,
    pub(crate) rewrites: Vec<Rewrite>,
}
