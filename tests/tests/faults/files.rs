//! Fault cases: input files that are not regular files.

use super::*;

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "kubeconfig_is_a_fifo",
        area: Area::Files,
        fault: "a FIFO where k3s.yaml should be",
        start: Start {
            kubeconfig: false,
            ..Start::DEFAULT
        },
        setup: |sb| sb.put_fifo(&sb.kubeconfig_path()),
        drive: Drive::Run,
        exit: Some(65),
        says: "is a FIFO (named pipe), not a regular file",
        outcome: "exit 65 at once naming the path; nothing sent",
        resume: Some(|sb| {
            std::fs::remove_file(sb.kubeconfig_path()).unwrap();
            sb.write_kubeconfig();
        }),
    },
    Case {
        name: "kubeconfig_is_a_device",
        area: Area::Files,
        fault: "a character device (endless zeros) where k3s.yaml should be",
        start: Start {
            kubeconfig: false,
            ..Start::DEFAULT
        },
        setup: |sb| sb.put_zero_device(&sb.kubeconfig_path()),
        drive: Drive::Run,
        exit: Some(65),
        says: "is a character device, not a regular file",
        outcome: "exit 65 at once; nothing read",
        resume: Some(|sb| {
            std::fs::remove_file(sb.kubeconfig_path()).unwrap();
            sb.write_kubeconfig();
        }),
    },
    Case {
        name: "token_is_a_fifo",
        area: Area::Files,
        fault: "a FIFO where the bearer token file should be",
        start: Start::DEFAULT,
        setup: |sb| sb.put_fifo(&sb.token_path()),
        drive: Drive::Run,
        exit: Some(78),
        says: "is a FIFO (named pipe), not a regular file",
        outcome: "exit 78 at once naming the path; token not used",
        resume: Some(|sb| {
            std::fs::remove_file(sb.token_path()).unwrap();
            sb.write_secret_file("bearer", &format!("{}\n", sb.token));
        }),
    },
    Case {
        name: "config_is_a_fifo",
        area: Area::Files,
        fault: "a FIFO where the configuration file should be",
        start: Start::DEFAULT,
        setup: |sb| sb.put_fifo(&sb.config_path()),
        drive: Drive::Run,
        exit: Some(78),
        says: "is a FIFO (named pipe), not a regular file",
        outcome: "exit 78 at once naming the path",
        resume: Some(|sb| {
            std::fs::remove_file(sb.config_path()).unwrap();
            sb.write_config("");
        }),
    },
    Case {
        name: "drop_in_is_a_fifo",
        area: Area::Files,
        fault: "a FIFO as a `config.d/*.yaml` drop-in",
        start: Start::DEFAULT,
        setup: |sb| sb.put_fifo(&sb.path("config.d/60-fifo.yaml")),
        drive: Drive::Run,
        exit: Some(78),
        says: "60-fifo.yaml: is a FIFO (named pipe), not a regular file",
        outcome: "exit 78 at once naming the drop-in",
        resume: Some(|sb| std::fs::remove_file(sb.path("config.d/60-fifo.yaml")).unwrap()),
    },
    Case {
        name: "drop_in_is_a_device",
        area: Area::Files,
        fault: "a character device (endless zeros) as a drop-in",
        start: Start::DEFAULT,
        setup: |sb| sb.put_zero_device(&sb.path("config.d/60-zero.yaml")),
        drive: Drive::Run,
        exit: Some(78),
        says: "60-zero.yaml: is a character device, not a regular file",
        outcome: "exit 78 at once; not read until memory runs out",
        resume: Some(|sb| std::fs::remove_file(sb.path("config.d/60-zero.yaml")).unwrap()),
    },
    Case {
        name: "kubeconfig_names_a_fifo_as_its_ca",
        area: Area::Files,
        fault: "k3s.yaml's `certificate-authority:` names a FIFO (kube would read it with a plain read)",
        start: Start::DEFAULT,
        setup: |sb| {
            let fifo = sb.path("ca-fifo.pem");
            sb.put_fifo(&fifo);
            let text = sb.api.kubeconfig();
            let line = text
                .lines()
                .find(|l| l.contains("certificate-authority-data:"))
                .unwrap()
                .to_string();
            let text = text.replace(
                &line,
                &format!("    certificate-authority: {}", fifo.display()),
            );
            sb.write_secret_file("k3s.yaml", &text);
        },
        drive: Drive::Run,
        exit: Some(65),
        says: "ca-fifo.pem: is a FIFO (named pipe), not a regular file",
        outcome: "exit 65 at once naming the file; nothing sent",
        resume: Some(|sb| sb.write_kubeconfig()),
    },
];
