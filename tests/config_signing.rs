//! Signed configs with real `herd agent` processes on loopback: with `--config-signers`, only a
//! push signed by a signer is taken, and it reaches every agent and runs; unsigned, tampered,
//! replayed or strangers' pushes are refused with 400 (409 for a replayed version) and change
//! nothing; a config injected into gossip by an agent without signers is ignored and counted;
//! an agent restarted with a signer list that no longer has its stored config's key does not
//! run it. Also `herd keygen`.

#[path = "support/agent.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use base64::Engine as _;
use herd::config::signature::sign;
use herd::config::SecretKey;
use serde_json::{json, Value};

use support::*;

const GOOD: &str = r#"
[[worker]]
name = "good"
command = "sleep"
args = ["3600"]
"#;

const EVIL: &str = r#"
[[worker]]
name = "evil"
command = "sleep"
args = ["3601"]
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn secret(path: &str) -> SecretKey {
    SecretKey::from_file_text(&fs::read_to_string(path).unwrap()).unwrap()
}

/// The value of the metric line that starts with `series` (name and labels), 0 if absent.
fn metric(agent: &AgentProc, series: &str) -> f64 {
    let (status, body) = http("GET", &agent.url("/metrics"), None);
    assert_eq!(status, 200);
    let text = body.as_str().unwrap().to_string();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{series} ")))
        .map_or(0.0, |v| v.parse().unwrap())
}

fn put_config(agent: &AgentProc, body: &Value) -> (u16, Value) {
    http("PUT", &agent.url("/v1/config"), Some(&body.to_string()))
}

fn fails_with(out: &std::process::Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure, got {out:?}");
    for needle in needles {
        assert!(stderr.contains(needle), "no {needle:?} in {stderr}");
    }
}

#[test]
fn with_signers_only_a_push_signed_by_a_signer_is_taken_and_it_reaches_every_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = "signing-push";
    let (key, public) = keypair(tmp.path(), "signer.key");
    let (stranger_key, stranger) = keypair(tmp.path(), "stranger.key");
    let signers = ["--config-signers", public.as_str()];
    let a = Spec::new("a", tmp.path(), cluster).args(&signers).start();
    let b = Spec::new("b", tmp.path(), cluster)
        .args(&signers)
        .seed(&a)
        .start();
    let c = Spec::new("c", tmp.path(), cluster)
        .args(&signers)
        .seed(&a)
        .start();
    for agent in [&a, &b, &c] {
        agent.wait_members(3);
    }

    let file = write(tmp.path(), "cluster.toml", GOOD);
    let out = b.cli_ok(&[
        "config",
        "push",
        &file,
        "--sign",
        &key,
        "--cluster-id",
        cluster,
    ]);
    assert!(out.contains("as version 1"), "{out}");
    assert!(out.contains(&format!("signed by {public}")), "{out}");
    let first = c.wait_workers("good on every agent", |w| {
        ["a", "b", "c"].iter().all(|n| running(w, n, "good"))
    });
    for agent in [&a, &b, &c] {
        let config = agent.get("/v1/config");
        assert_eq!(config["version"], 1, "{}", agent.id);
        assert_eq!(config["signature"]["key"], public.as_str(), "{}", agent.id);
    }

    // Unsigned, through the CLI and the API.
    let evil = write(tmp.path(), "evil.toml", EVIL);
    fails_with(
        &a.cli(&["config", "push", &evil]),
        &[
            "unsigned: this agent adopts only configs signed by",
            &public,
            "(HTTP 400)",
        ],
    );
    let (status, body) = put_config(&a, &json!({ "toml": EVIL }));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unsigned"),
        "{body}"
    );
    // Signed by a key that is not a signer: named.
    fails_with(
        &a.cli(&[
            "config",
            "push",
            &evil,
            "--sign",
            &stranger_key,
            "--cluster-id",
            cluster,
        ]),
        &[
            &format!("signed by key {stranger}, which is not one of this agent's config signers"),
            "(HTTP 400)",
        ],
    );
    // Signed by the signer, but for another cluster, or for another text.
    fails_with(
        &a.cli(&[
            "config",
            "push",
            &evil,
            "--sign",
            &key,
            "--cluster-id",
            "another",
        ]),
        &["signature does not verify", "(HTTP 400)"],
    );
    let signature = sign(&secret(&key), cluster, 2, GOOD);
    let tampered = json!({ "toml": EVIL, "version": 2, "signature": signature });
    let (status, body) = put_config(&a, &tampered);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("signature does not verify"),
        "{body}"
    );

    // Nothing changed anywhere.
    for agent in [&a, &b, &c] {
        let config = agent.get("/v1/config");
        assert_eq!(config["version"], 1, "{}", agent.id);
        assert_eq!(config["toml"], GOOD, "{}", agent.id);
    }
    let now = a.workers();
    for node in ["a", "b", "c"] {
        assert_eq!(find(&now, node, "good"), find(&first, node, "good"));
        assert_eq!(find(&now, node, "evil"), None);
    }
    let refused = |reason: &str| {
        metric(
            &a,
            &format!("herd_config_push_refused_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refused("unsigned"), 2.0);
    assert_eq!(refused("unknown_signer"), 1.0);
    assert_eq!(refused("bad_signature"), 2.0);

    // The next signed push is version 2; replaying version 1's body is refused.
    let v1_signature = sign(&secret(&key), cluster, 1, GOOD);
    let replay = json!({ "toml": GOOD, "version": 1, "signature": v1_signature });
    let next = write(tmp.path(), "next.toml", &GOOD.replace("3600", "3602"));
    let out = a.cli_ok(&[
        "config",
        "push",
        &next,
        "--sign",
        &key,
        "--cluster-id",
        cluster,
    ]);
    assert!(out.contains("as version 2"), "{out}");
    for agent in [&a, &b, &c] {
        wait_until(&format!("{} at version 2", agent.id), || {
            agent.get("/v1/config")["version"] == 2
        });
    }
    let (status, body) = put_config(&c, &replay);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("signed for version 1, but the cluster is at version 2"),
        "{body}"
    );
    let as_newer = json!({ "toml": GOOD, "version": 3, "signature": v1_signature });
    let (status, body) = put_config(&c, &as_newer);
    assert_eq!(
        status, 400,
        "an old signature is not one for a newer version: {body}"
    );
    assert_eq!(c.get("/v1/config")["version"], 2);
}

#[test]
fn a_config_injected_into_gossip_by_an_agent_without_signers_is_ignored_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = "signing-forge";
    let (key, public) = keypair(tmp.path(), "signer.key");
    let signers = ["--config-signers", public.as_str()];
    let a = Spec::new("a", tmp.path(), cluster).args(&signers).start();
    let b = Spec::new("b", tmp.path(), cluster)
        .args(&signers)
        .seed(&a)
        .start();
    let forger = Spec::new("f", tmp.path(), cluster).seed(&a).start();
    for agent in [&a, &b, &forger] {
        agent.wait_members(3);
    }
    let sign_args = |file: &str| -> Vec<String> {
        [
            "config",
            "push",
            file,
            "--sign",
            &key,
            "--cluster-id",
            cluster,
        ]
        .map(String::from)
        .to_vec()
    };
    let good = write(tmp.path(), "good.toml", GOOD);
    a.cli_ok(
        &sign_args(&good)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    a.wait_workers("good on every agent", |w| {
        ["a", "b", "f"].iter().all(|n| running(w, n, "good"))
    });

    // The agent without signers keeps the signature, and still verifies one it is given.
    assert_eq!(
        forger.get("/v1/config")["signature"]["key"],
        public.as_str()
    );
    let tampered =
        json!({ "toml": EVIL, "version": 2, "signature": sign(&secret(&key), cluster, 2, GOOD) });
    let (status, body) = put_config(&forger, &tampered);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("signature does not verify"),
        "{body}"
    );

    // The agent without signers takes an unsigned push and gossips it as version 2.
    let evil = write(tmp.path(), "evil.toml", EVIL);
    let out = forger.cli_ok(&["config", "push", &evil]);
    assert!(out.contains("as version 2"), "{out}");
    forger.wait_workers("evil on the forger", |w| running(w, "f", "evil"));
    let rejected = "herd_config_rejected_total{reason=\"unsigned\"}";
    for agent in [&a, &b] {
        wait_until(&format!("{} to count the forged config", agent.id), || {
            metric(agent, rejected) >= 1.0
        });
        assert!(agent.log_contains("ignoring a config from gossip"));
    }
    for agent in [&a, &b] {
        let config = agent.get("/v1/config");
        assert_eq!(config["version"], 1, "{}", agent.id);
        assert_eq!(config["toml"], GOOD, "{}", agent.id);
        let stored = fs::read_to_string(agent.data_dir.join("cluster-config.herd")).unwrap();
        assert!(
            stored.ends_with(GOOD),
            "{} persisted only the signed config",
            agent.id
        );
    }

    // A signed push still gets through: the forged version 2 does not count as the cluster's.
    let next = write(tmp.path(), "next.toml", &GOOD.replace("good", "better"));
    let out = a.cli_ok(
        &sign_args(&next)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(out.contains("as version 2"), "{out}");
    let workers = b.wait_workers("better on a and b", |w| {
        running(w, "a", "better") && running(w, "b", "better")
    });
    for node in ["a", "b"] {
        assert_eq!(
            find(&workers, node, "evil"),
            None,
            "evil never ran on {node}"
        );
    }
    for agent in [&a, &b] {
        assert_eq!(agent.get("/v1/config")["signature"]["key"], public.as_str());
        assert_eq!(metric(agent, rejected), 1.0, "{} counts it once", agent.id);
    }
}

#[test]
fn an_agent_restarted_without_its_stored_configs_signer_does_not_run_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = "signing-restart";
    let (key, old) = keypair(tmp.path(), "old.key");
    let (_, new) = keypair(tmp.path(), "new.key");
    let spec = Spec::new("a", tmp.path(), cluster);
    let a = spec.clone().args(&["--config-signers", &old]).start();
    let good = write(tmp.path(), "good.toml", GOOD);
    a.cli_ok(&[
        "config",
        "push",
        &good,
        "--sign",
        &key,
        "--cluster-id",
        cluster,
    ]);
    let workers = a.wait_workers("good", |w| running(w, "a", "good"));
    let pid = find(&workers, "a", "good").unwrap().1.unwrap();
    a.kill();
    wait_until("the worker to die with its agent", || !alive(pid));

    let a = spec.clone().args(&["--config-signers", &new]).start();
    assert!(
        a.log_contains("not running the cluster config stored in the data dir"),
        "{:#?}",
        a.log.lock().unwrap()
    );
    assert_eq!(a.workers(), vec![]);
    assert_eq!(a.get("/v1/config")["version"], 0);
    assert_eq!(
        metric(&a, "herd_config_rejected_total{reason=\"unknown_signer\"}"),
        1.0
    );
    a.kill();

    // The file was kept: with the old key listed again, the config runs at once.
    let both = format!("{new},{old}");
    let a = spec.args(&["--config-signers", &both]).start();
    a.wait_workers("good again", |w| running(w, "a", "good"));
    assert_eq!(a.get("/v1/config")["version"], 1);
}

#[test]
fn a_bad_signer_key_stops_the_agent_at_start_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Spec::new("a", tmp.path(), "signing-bad")
        .args(&["--config-signers", "not-a-key"])
        .command()
        .output()
        .unwrap();
    fails_with(
        &out,
        &["--config-signers \"not-a-key\"", "not standard base64"],
    );
}

#[test]
fn keygen_prints_a_gossip_key_and_writes_a_private_signing_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(HERD)
        .arg("keygen")
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line.lines().count(), 1);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line.trim_end())
        .unwrap();
    assert_eq!(bytes.len(), 32);

    let (path, public) = keypair(tmp.path(), "signer.key");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(secret(&path).public().to_string(), public);
    let before = fs::read_to_string(&path).unwrap();
    let again = std::process::Command::new(HERD)
        .args(["keygen", "--signing", "--out", &path])
        .output()
        .unwrap();
    fails_with(&again, &["never overwrites a key file"]);
    assert_eq!(fs::read_to_string(&path).unwrap(), before);

    let out = std::process::Command::new(HERD)
        .args(["keygen", "--signing"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let secret_line = text
        .lines()
        .find(|l| l.starts_with("herd-signing-key:"))
        .unwrap();
    let public_line = text.lines().last().unwrap();
    assert_eq!(
        SecretKey::from_file_text(secret_line)
            .unwrap()
            .public()
            .to_string(),
        public_line
    );
}
