//! `herd members --all` and `GET /v1/members?all=true` against real agents: a SIGKILLed member
//! is listed as failed and a SIGTERMed one as left, each with when and why, beside the live
//! ones; a member that comes back is live again, not departed.

#[path = "support/agent.rs"]
mod support;

use serde_json::Value;
use support::*;

fn departed(agent: &AgentProc) -> Vec<Value> {
    let all = agent.get("/v1/members?all=true");
    all.as_array()
        .unwrap()
        .iter()
        .filter(|m| m["status"] != "alive")
        .cloned()
        .collect()
}

#[test]
fn failed_and_left_members_are_listed_with_when_and_why_until_they_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "members-all").start();
    let b = Spec::new("b", tmp.path(), "members-all").seed(&a).start();
    let c_spec = Spec::new("c", tmp.path(), "members-all")
        .seed(&a)
        .tag("zone=z1");
    let c = c_spec.start();
    a.wait_members(3);
    assert!(departed(&a).is_empty());

    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    c.kill();
    b.terminate();
    let mut gone = Vec::new();
    wait_until("a to list b and c as departed", || {
        gone = departed(&a);
        gone.len() == 2
    });
    let find = |id: &str| gone.iter().find(|m| m["id"] == id).unwrap().clone();
    let (b_gone, c_gone) = (find("b"), find("c"));
    assert_eq!(
        (b_gone["status"].as_str(), b_gone["reason"].as_str()),
        (Some("left"), Some("graceful"))
    );
    assert_eq!(
        (c_gone["status"].as_str(), c_gone["reason"].as_str()),
        (Some("failed"), Some("failed"))
    );
    assert_eq!(c_gone["tags"]["zone"], "z1", "{c_gone}");
    for m in [&b_gone, &c_gone] {
        assert!(m["since_ms"].as_u64().unwrap() >= before_ms, "{m}");
        assert!(m["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{m}");
    }
    // Without all, only the live; the table says how long ago each went.
    assert_eq!(a.get("/v1/members").as_array().unwrap().len(), 1);
    let table = a.cli_ok(&["members", "--all"]);
    let line = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no {id} in {table}"))
            .to_string()
    };
    assert!(
        line("c").contains("failed ") && line("c").contains("s ago"),
        "{table}"
    );
    assert!(line("b").contains("left "), "{table}");
    assert!(line("a").contains("alive"), "{table}");
    assert!(!a.cli_ok(&["members"]).contains("failed"));
    let (status, body) = a.request("GET", "/v1/members?all=maybe", None);
    assert_eq!(status, 400, "{body}");

    // c comes back (a new incarnation): live again, no longer departed.
    let _c = c_spec.start();
    wait_until("a to see c live and not departed", || {
        let gone = departed(&a);
        gone.len() == 1 && gone[0]["id"] == "b"
    });
    a.wait_members(2);
}

#[test]
fn force_leave_marks_a_failed_member_left_on_every_node_and_refuses_a_live_one() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "force-leave").start();
    let b = Spec::new("b", tmp.path(), "force-leave").seed(&a).start();
    let c = Spec::new("c", tmp.path(), "force-leave").seed(&a).start();
    for agent in [&a, &b, &c] {
        agent.wait_members(3);
    }
    // A live member is refused, and nothing changes.
    let out = a.cli(&["force-leave", "b"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"b\" is a live member"),
        "{out:?}"
    );

    c.kill();
    for agent in [&a, &b] {
        wait_until("c failed on a and b", || {
            departed(agent)
                .iter()
                .any(|m| m["id"] == "c" && m["status"] == "failed")
        });
    }
    let out = a.cli_ok(&["force-leave", "c"]);
    assert!(out.contains("c left on 2/2 nodes"), "{out}");
    for node in ["a", "b"] {
        assert!(
            out.contains(&format!(
                "{node} marked \"c\" as left (forgot the gossip state of 1 incarnation)"
            )),
            "{out}"
        );
    }
    for agent in [&a, &b] {
        let gone = departed(agent);
        let c_gone = gone.iter().find(|m| m["id"] == "c").unwrap();
        assert_eq!(
            (c_gone["status"].as_str(), c_gone["reason"].as_str()),
            (Some("left"), Some("forced")),
            "{c_gone}"
        );
        let events = agent.get("/v1/events?since=0")["events"]
            .as_array()
            .unwrap()
            .clone();
        assert!(
            events.iter().any(|e| e["event"] == "member-leave"
                && e["member"] == "c"
                && e["reason"] == "forced"),
            "{events:?}"
        );
    }
    // Forcing it again finds nothing more to forget.
    let again = a.cli_ok(&["force-leave", "c"]);
    assert!(
        again.contains("forgot the gossip state of 0 incarnations"),
        "{again}"
    );
}
