//! The commands besides `run`: `status` and `doctor`.

pub(crate) mod doctor;
pub(crate) mod status;
