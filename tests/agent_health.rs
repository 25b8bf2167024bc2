//! `GET /v1/health` as a readiness probe against real agents: a node that holds an older config
//! than a live member's (here one it refused, being unsigned) for longer than its
//! `--health-config-lag` is 503 `config_behind`, naming both versions and the member; the node
//! that holds the newest stays 200, and the lagging one is 200 again once it catches up.

#[path = "support/agent.rs"]
mod support;

use serde_json::json;
use support::*;

#[test]
fn a_node_whose_config_lags_a_members_for_longer_than_the_limit_is_unready_until_it_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keypair(tmp.path(), "signer.key");
    let a = Spec::new("a", tmp.path(), "health-lag").start();
    let b = Spec::new("b", tmp.path(), "health-lag")
        .seed(&a)
        .args(&["--config-signers", &public, "--health-config-lag", "2s"])
        .start();
    a.wait_members(2);
    b.wait_members(2);
    assert_eq!(b.request("GET", "/v1/health", None).0, 200);

    // An unsigned config: a takes it, b refuses it and falls behind.
    let (status, body) = a.request(
        "PUT",
        "/v1/config",
        Some(&json!({ "toml": ONE_SLEEPER }).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let version = body["version"].as_u64().unwrap();
    let mut health = serde_json::Value::Null;
    wait_until("b to report its config behind", || {
        let (status, body) = b.request("GET", "/v1/health", None);
        health = body;
        status == 503
    });
    assert_eq!(health["status"], "config_behind", "{health}");
    let reason = health["reason"].as_str().unwrap();
    assert!(
        reason.contains("holds no config")
            && reason.contains(&format!("a holds version {version}")),
        "{reason}"
    );
    assert_eq!(health["config_version"], 0);
    // The probe's command: exit 1, the reason on stderr.
    let out = b.cli(&["health"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("node b is unhealthy")
            && stderr.contains("config_behind: this node holds no config"),
        "{stderr}"
    );
    assert_eq!(a.request("GET", "/v1/health", None).0, 200);

    // A signed push of a newer version catches b up (b verifies it; a takes any config).
    let file = tmp.path().join("cluster.toml");
    std::fs::write(&file, ONE_SLEEPER).unwrap();
    a.cli_ok(&[
        "config",
        "push",
        file.to_str().unwrap(),
        "--sign",
        &key,
        "--cluster-id",
        "health-lag",
    ]);
    wait_until("b to be healthy again", || {
        b.request("GET", "/v1/health", None).0 == 200
    });
    assert!(b.cli_ok(&["health"]).starts_with("ok: node b, 2 members"));
}
