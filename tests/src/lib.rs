//! Test harness for catalyst-bootstrap: fakes that speak the real protocols
//! (a Kubernetes API server with client-certificate TLS and `Status` errors,
//! catalyst-api per the contract table, an sd_notify socket) and a sandbox
//! that runs the real agent binary against them.

pub mod apiserver;
pub mod catalyst;
pub mod container;
pub mod faults;
pub mod handoff;
pub mod helm;
pub mod http;
mod inbox;
pub mod journal;
pub mod measure;
pub mod memory;
pub mod node;
pub mod notify;
pub mod pki;
pub mod proxy;
pub mod sandbox;
pub mod ship;
