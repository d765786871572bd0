//! Fault cases: the state directory and its file system.

use super::*;

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "state_dir_read_only",
        area: Area::Disk,
        fault: "state directory on a read-only file system",
        start: Start::DEFAULT,
        setup: |sb| mount_tmpfs(sb, "ro,size=64k"),
        drive: Drive::Run,
        exit: Some(73),
        says: "Read-only file system",
        outcome: "exit 73 before anything is sent or written",
        resume: Some(unmount),
    },
    Case {
        name: "state_dir_full",
        area: Area::Disk,
        fault: "state directory on a full file system",
        start: Start::DEFAULT,
        setup: |sb| {
            mount_tmpfs(sb, "size=16k");
            // Fill it; what is left is too little for state.json.
            let _ = std::fs::write(sb.state_dir().join("filler"), vec![0u8; 64 * 1024]);
        },
        drive: Drive::Run,
        exit: Some(73),
        says: "No space left on device",
        outcome: "exit 73 before anything is sent or written",
        resume: Some(unmount),
    },
    Case {
        name: "state_file_corrupt",
        area: Area::Disk,
        fault: "state.json is garbage; the seed already exists from the earlier run",
        start: Start::DEFAULT,
        setup: |sb| {
            std::fs::create_dir_all(sb.state_dir()).unwrap();
            std::fs::write(sb.state_dir().join("state.json"), "{\"version\": 1, \"dep").unwrap();
            sb.api.insert_secret(
                "openbao",
                "openbao-recovery-seed",
                json!({"recovery-seed": "c2VlZC1mcm9tLXRoZS1lYXJsaWVyLXJ1bi0wMDAwMDAwMDAwMDA="}),
            );
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "state.json.corrupt",
        outcome: "set aside as state.json.corrupt, job redone safely: existing seed kept",
        resume: None,
    },
    Case {
        name: "state_file_from_the_future",
        area: Area::Disk,
        fault: "state.json written by a newer version",
        start: Start::DEFAULT,
        setup: |sb| {
            std::fs::create_dir_all(sb.state_dir()).unwrap();
            let state = json!({"version": 99, "deployment_id": DEPLOYMENT_ID});
            std::fs::write(sb.state_dir().join("state.json"), state.to_string()).unwrap();
        },
        drive: Drive::Run,
        exit: Some(65),
        says: "newer catalyst-bootstrap",
        outcome: "exit 65, nothing done, the file left as it was",
        resume: None,
    },
];
