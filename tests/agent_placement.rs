//! Placed workers across five real agents: `placement = "one"` runs on exactly one node (the
//! highest by rendezvous weight, holding the name `herd.placed/<worker>`), `{ instances = 2 }`
//! on the two highest; a SIGKILL of the node running them moves them to the next by weight; a
//! new node takes only the workers for which it now ranks highest, and nothing else moves.

#[path = "support/agent.rs"]
mod support;

use serde_json::json;
use support::*;

const CONFIG: &str = "[[worker]]\nname = \"single\"\ncommand = \"sleep\"\nargs = [\"3600\"]\nplacement = \"one\"\n\n\
    [[worker]]\nname = \"pair\"\ncommand = \"sleep\"\nargs = [\"3600\"]\nplacement = { instances = 2 }\n\n\
    [[worker]]\nname = \"all\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n";

type Listing = [(String, String, String, Option<u64>)];

/// The nodes on which `name` runs, sorted.
fn nodes_running(workers: &Listing, name: &str) -> Vec<String> {
    let mut nodes: Vec<String> = workers
        .iter()
        .filter(|w| w.1 == name && w.2 == "running")
        .map(|w| w.0.clone())
        .collect();
    nodes.sort();
    nodes
}

fn expected(name: &str, nodes: &[&str], k: usize) -> Vec<String> {
    let mut chosen: Vec<String> = herd::placement::place(name, nodes.iter().copied(), k)
        .into_iter()
        .map(str::to_string)
        .collect();
    chosen.sort();
    chosen
}

fn pid_of(workers: &Listing, node: &str, name: &str) -> Option<u64> {
    find(workers, node, name).and_then(|(_, pid)| pid)
}

#[test]
fn placed_workers_run_where_weights_say_move_on_a_crash_and_a_join_moves_only_what_it_must() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = ["a", "b", "c", "d", "e"];
    let first = Spec::new("a", tmp.path(), "placed").start();
    let mut agents = vec![first];
    for id in &ids[1..] {
        let agent = Spec::new(id, tmp.path(), "placed").seed(&agents[0]).start();
        agents.push(agent);
    }
    for agent in &agents {
        agent.wait_members(ids.len());
    }
    let (status, body) = http(
        "PUT",
        &agents[0].url("/v1/config"),
        Some(&json!({ "toml": CONFIG }).to_string()),
    );
    assert_eq!(status, 200, "{body}");

    let single = expected("single", &ids, 1);
    let pair = expected("pair", &ids, 2);
    let placed = |w: &Listing| {
        nodes_running(w, "single") == single
            && nodes_running(w, "pair") == pair
            && nodes_running(w, "all").len() == ids.len()
    };
    // Each agent reads the cluster from gossip: wait until every one has heard.
    let before = agents[1].wait_workers("placed workers where the weights say", placed);
    for agent in &agents {
        agent.wait_workers("placed workers where the weights say", placed);
        wait_until("the singleton's name listed", || {
            agent
                .get("/v1/names")
                .as_array()
                .is_some_and(|n| !n.is_empty())
        });
    }
    // Status says where and why; the name lists the owner on every node.
    let listed = agents[2].get("/v1/workers");
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "single" && w["state"] == "running")
        .unwrap();
    assert_eq!(row["placement"], format!("one → {}", single[0]));
    let names = agents[3].get("/v1/names");
    assert_eq!(names[0]["name"], "herd.placed/single", "{names}");
    assert_eq!(names[0]["owner"]["id"], single[0], "{names}");
    let out = agents[3].cli_ok(&["workers"]);
    assert!(
        out.contains(&format!("placement one → {}", single[0])),
        "{out}"
    );
    let out = agents[4].cli_ok(&["names"]);
    assert!(
        out.contains("herd.placed/single") && out.contains(&single[0]),
        "{out}"
    );

    // SIGKILL the node running the singleton: it moves to the next by weight.
    let owner = single[0].clone();
    let index = ids.iter().position(|id| *id == owner).unwrap();
    let killed = agents.remove(index);
    killed.kill();
    let left: Vec<&str> = ids.iter().copied().filter(|id| *id != owner).collect();
    let single_after = expected("single", &left, 1);
    let pair_after = expected("pair", &left, 2);
    let watcher = &agents[0];
    let after = watcher.wait_workers("the singleton on the next node by weight", |w| {
        nodes_running(w, "single") == single_after && nodes_running(w, "pair") == pair_after
    });
    // What did not have to move kept its process.
    for node in &pair_after {
        if pair.contains(node) {
            assert_eq!(pid_of(&after, node, "pair"), pid_of(&before, node, "pair"));
        }
    }
    for node in &left {
        assert_eq!(pid_of(&after, node, "all"), pid_of(&before, node, "all"));
    }

    // A new node takes only what it now ranks highest for.
    let joined = Spec::new("f", tmp.path(), "placed")
        .seed(&agents[0])
        .start();
    let mut now: Vec<&str> = left.clone();
    now.push("f");
    let single_join = expected("single", &now, 1);
    let pair_join = expected("pair", &now, 2);
    let last = watcher.wait_workers("placement after f joined", |w| {
        nodes_running(w, "single") == single_join
            && nodes_running(w, "pair") == pair_join
            && nodes_running(w, "all").len() == now.len()
    });
    for node in &pair_join {
        if pair_after.contains(node) {
            assert_eq!(pid_of(&last, node, "pair"), pid_of(&after, node, "pair"));
        }
    }
    if single_join == single_after {
        assert_eq!(
            pid_of(&last, &single_join[0], "single"),
            pid_of(&after, &single_join[0], "single"),
            "the singleton did not have to move"
        );
    }
    drop(joined);
}
