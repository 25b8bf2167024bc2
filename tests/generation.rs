//! A real `herd agent` keeps its node's last generation in `<data-dir>/generation` (mode 0600):
//! a restart on the same data dir gets a higher generation, even when the last start's clock was
//! ahead of this one's, and a corrupt file stops the agent with an error naming it.

#[path = "support/agent.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{SystemTime, UNIX_EPOCH};

use support::*;

/// The generation `/v1/members` lists for the agent itself.
fn own_generation(agent: &AgentProc) -> u64 {
    let members = agent.get("/v1/members");
    members
        .as_array()
        .and_then(|members| members.iter().find(|m| m["id"] == agent.id.as_str()))
        .and_then(|me| me["generation"].as_u64())
        .unwrap_or_else(|| panic!("{} does not list itself: {members}", agent.id))
}

/// The generation file's number, after checking that only herd's user may read it.
fn kept_generation(agent: &AgentProc) -> u64 {
    let path = agent.data_dir.join("generation");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    fs::read_to_string(&path).unwrap().trim().parse().unwrap()
}

#[test]
fn a_restarted_agent_gets_a_higher_generation_even_when_the_clock_went_back() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec::new("a", tmp.path(), "generation");

    let first = spec.start();
    let g1 = own_generation(&first);
    assert_eq!(kept_generation(&first), g1);
    first.kill();

    let second = spec.start();
    let g2 = own_generation(&second);
    assert!(g2 > g1, "{g2} after {g1}");
    assert_eq!(kept_generation(&second), g2);
    second.kill();

    // The last start's clock was an hour ahead of this one's: the file still wins.
    let hour = 3_600_000_000u64;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let ahead = now + hour;
    fs::write(spec.data_dir.join("generation"), format!("{ahead}\n")).unwrap();
    let third = spec.start();
    assert_eq!(own_generation(&third), ahead + 1);
    assert_eq!(kept_generation(&third), ahead + 1);
}

#[test]
fn a_corrupt_generation_file_stops_the_agent_with_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec::new("a", tmp.path(), "generation-corrupt");
    fs::create_dir_all(&spec.data_dir).unwrap();
    let path = spec.data_dir.join("generation");
    fs::write(&path, "not a number\n").unwrap();

    let out = exit_of(spec.command());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("not a generation number"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "not a number\n");
}
