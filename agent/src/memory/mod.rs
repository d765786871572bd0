//! Memory that holds secrets: locked pages, and an allocator that wipes
//! what it frees.

pub(crate) mod alloc;
pub(crate) mod locked;
