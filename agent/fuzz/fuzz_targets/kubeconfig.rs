#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| catalyst_bootstrap::fuzz::kubeconfig(data));
