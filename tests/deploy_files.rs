//! The files herd ships for deployment (deploy/, Dockerfile) say what the README promises: the
//! agent file parses, the systemd unit runs as `herd` in a sandbox (and `systemd-analyze verify`
//! accepts it where systemd is installed), and the images run as a non-root user with the data
//! dir on their volume. Docker and Kubernetes cannot run here; these read their files.

use std::path::{Path, PathBuf};
use std::process::Command;

use herd::config::AgentFile;

fn shipped(path: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

/// Every `Key=value` of the unit's `[Service]` section, in order.
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut in_service = false;
    let mut settings = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.starts_with('#') {
            if let Some((key, value)) = line.split_once('=') {
                settings.push((key.to_string(), value.to_string()));
            }
        }
    }
    settings
}

#[test]
fn the_shipped_agent_file_parses_and_keeps_the_data_dir_in_var_lib_herd() {
    let (path, text) = shipped("deploy/herd.toml");
    let file = AgentFile::parse(&text, &path.display().to_string()).unwrap();
    assert_eq!(file.data_dir.as_deref(), Some(Path::new("/var/lib/herd")));
    assert_eq!(file.api.unwrap().ip().to_string(), "127.0.0.1");
    for key in ["encrypt_key_file", "api_token_file", "config_signers"] {
        assert!(text.contains(key), "the agent file mentions {key}");
    }
}

#[test]
fn the_systemd_unit_runs_as_herd_in_a_sandbox_with_its_data_dir_writable() {
    let (_, unit) = shipped("deploy/herd.service");
    let settings = service_settings(&unit);
    let value = |key: &str| {
        settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("the unit sets {key}"))
    };
    assert_eq!(value("User"), "herd");
    assert_eq!(value("Group"), "herd");
    assert_eq!(value("StateDirectory"), "herd");
    assert_eq!(value("StateDirectoryMode"), "0700");
    assert_eq!(value("ReadWritePaths"), "/var/lib/herd");
    assert_eq!(value("ProtectSystem"), "strict");
    assert_eq!(value("CapabilityBoundingSet"), "");
    for key in [
        "NoNewPrivileges",
        "PrivateTmp",
        "ProtectHome",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictSUIDSGID",
        "LockPersonality",
        "RestrictNamespaces",
    ] {
        assert_eq!(value(key), "yes", "{key}");
    }
    assert!(value("ExecStart").contains("--config /etc/herd/herd.toml"));
}

#[test]
fn systemd_analyze_accepts_the_unit_where_systemd_is_installed() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed; the unit's text is checked above");
        return;
    };
    assert!(out.status.success());
    let (_, unit) = shipped("deploy/herd.service");
    // verify wants the program to exist: point it at the binary under test.
    let unit = unit.replace(
        "/usr/local/bin/herd agent",
        &format!("{} agent", env!("CARGO_BIN_EXE_herd")),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herd.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // It warns, without failing, about keys it does not know or cannot parse.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("herd.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn the_image_runs_as_a_non_root_user_owning_its_data_dir() {
    let (_, dockerfile) = shipped("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let user_at = lines
        .iter()
        .position(|l| l.starts_with("USER "))
        .expect("the image sets USER");
    assert_eq!(lines[user_at], "USER herd:herd");
    assert!(dockerfile.contains("useradd --system --uid 10001"));
    assert!(dockerfile.contains("install -d -m 0700 -o herd -g herd /var/lib/herd"));
    let entry = lines
        .iter()
        .position(|l| l.starts_with("ENTRYPOINT"))
        .unwrap();
    assert!(user_at < entry, "USER comes before the entry point");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("CMD") && l.contains(r#""--data-dir", "/var/lib/herd""#)));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("HEALTHCHECK") && l.ends_with(r#"CMD ["herd", "health"]"#)),
        "the image checks its health with herd health"
    );
}

#[test]
fn compose_and_kubernetes_pass_a_data_dir_on_their_volume_and_run_as_herd() {
    let (_, compose) = shipped("deploy/docker-compose.yml");
    let commands: Vec<&str> = compose
        .lines()
        .filter(|l| l.trim_start().starts_with("command:"))
        .collect();
    assert_eq!(commands.len(), 3);
    for command in commands {
        assert!(
            command.contains(r#""--data-dir", "/var/lib/herd""#),
            "{command}"
        );
    }
    assert_eq!(
        compose.matches(":/var/lib/herd\"").count(),
        3,
        "each agent's volume"
    );
    assert!(compose.contains("read_only: true"));

    let (_, k8s) = shipped("deploy/k8s/herd.yaml");
    for needle in [
        "runAsNonRoot: true",
        "runAsUser: 10001",
        "fsGroup: 10001",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "--data-dir=/var/lib/herd/data",
        "{ name: data, mountPath: /var/lib/herd }",
        r#"exec: { command: ["herd", "health"] }"#,
    ] {
        assert!(k8s.contains(needle), "deploy/k8s/herd.yaml has {needle}");
    }
}
