//! Secret material, the foundation every layer stands on: memory that holds
//! it (locked pages, an allocator that wipes what it frees, the kubeconfig
//! body on its way out) and recognising it in text from outside
//! (`untrusted`, the one filter between a peer's words and an operator).

pub(crate) mod alloc;
pub(crate) mod kubeconfig;
pub(crate) mod locked;
pub(crate) mod untrusted;
