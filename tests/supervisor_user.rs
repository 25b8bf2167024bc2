//! Workers run as another user (`WorkerSpec::user`), with real processes.
//!
//! The tests run as root (here and in CI), so the supervisor switches users;
//! run without root, each test checks the refusal instead, which the pure
//! decision's unit tests (src/supervisor/user.rs) also cover.

#[path = "support/supervisor.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;

use herd::supervisor::{Error, Supervisor, WorkerSpec, WorkerState};
use nix::unistd::{geteuid, User};
use support::*;

fn nobody() -> User {
    User::from_name("nobody")
        .unwrap()
        .expect("this machine has a user named nobody")
}

/// Whether this process may switch users; without it, asks for the refusal.
async fn switches_or_is_refused(sup: &Supervisor, spec: WorkerSpec) -> Option<u32> {
    let result = sup.start_worker(spec.clone()).await;
    if geteuid().is_root() {
        return Some(result.expect("root starts a worker as nobody"));
    }
    let err = result.expect_err("a worker as nobody needs root");
    assert!(
        matches!(&err, Error::NeedsRoot { worker, user, .. } if *worker == spec.name && user == "nobody"),
        "{err:?}"
    );
    None
}

/// A `Uid:`/`Gid:`/`Groups:` line of /proc/<pid>/status, as numbers.
fn status_ids(pid: u32, field: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in the status of {pid}"));
    line.split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The first stdout line of `name` starting with `prefix`, without the prefix.
async fn line_after(sup: &Supervisor, name: &str, prefix: &str) -> String {
    eventually(&format!("{prefix:?} in {name}'s output"), || async {
        let tail = sup.tail(name).await.ok()?;
        tail.stdout
            .iter()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
    })
    .await
}

#[tokio::test]
async fn a_worker_with_a_user_runs_with_its_uid_primary_gid_and_groups_only() {
    let sup = Supervisor::builder().start();
    let Some(pid) = switches_or_is_refused(&sup, sleeper("as-nobody").user("nobody")).await else {
        return sup.shutdown().await;
    };
    let user = nobody();
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    // Real, effective, saved and file-system ids, all of them.
    assert_eq!(status_ids(pid, "Uid:"), [uid; 4]);
    assert_eq!(status_ids(pid, "Gid:"), [gid; 4]);
    let name = std::ffi::CString::new("nobody").unwrap();
    let mut expected: Vec<u32> = nix::unistd::getgrouplist(&name, user.gid)
        .unwrap()
        .iter()
        .map(|g| g.as_raw())
        .collect();
    expected.sort_unstable();
    expected.dedup();
    let mut groups = status_ids(pid, "Groups:");
    groups.sort_unstable();
    assert_eq!(groups, expected, "root's groups are dropped");
    // herd's own worker beside it stays root.
    let own = sup.start_worker(sleeper("as-herd")).await.unwrap();
    assert_eq!(status_ids(own, "Uid:"), [0; 4]);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_worker_gets_the_users_home_user_and_logname_unless_its_env_sets_them() {
    let sup = Supervisor::builder().start();
    let script_text = r#"echo "env $HOME $USER $LOGNAME"; exec sleep 3600"#;
    let spec = script("env-default", script_text).user("nobody");
    if switches_or_is_refused(&sup, spec).await.is_none() {
        return sup.shutdown().await;
    }
    let home = nobody().dir.display().to_string();
    assert_eq!(
        line_after(&sup, "env-default", "env ").await,
        format!("{home} nobody nobody")
    );
    let spec = script("env-own", script_text)
        .user("nobody")
        .env("HOME", "/srv/media")
        .env("LOGNAME", "media");
    sup.start_worker(spec).await.unwrap();
    assert_eq!(
        line_after(&sup, "env-own", "env ").await,
        "/srv/media nobody media"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_workers_process_group_still_dies_on_stop() {
    let sup = Supervisor::builder().start();
    let spec = script("family", "sleep 3600 & echo child $!; wait").user("nobody");
    let Some(pid) = switches_or_is_refused(&sup, spec).await else {
        return sup.shutdown().await;
    };
    let child: u32 = line_after(&sup, "family", "child ").await.parse().unwrap();
    let uid = nobody().uid.as_raw();
    assert_eq!(
        status_ids(child, "Uid:"),
        [uid; 4],
        "its children are nobody's too"
    );
    sup.stop_worker("family").await.unwrap();
    wait_reaped(pid).await;
    wait_dead(child).await;
    assert_eq!(
        sup.worker_status("family").await.unwrap().state,
        WorkerState::Stopped
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_worker_enters_its_working_directory_as_its_user() {
    let sup = Supervisor::builder().start();
    let open = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = script("in-open", "echo cwd $(pwd); exec sleep 3600")
        .user("nobody")
        .current_dir(open.path());
    if switches_or_is_refused(&sup, spec).await.is_none() {
        return sup.shutdown().await;
    }
    let cwd = line_after(&sup, "in-open", "cwd ").await;
    assert_eq!(cwd, open.path().display().to_string());

    // A dir only root may enter: root could, nobody cannot, and the start says so.
    let closed = tempfile::tempdir().unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = sup
        .start_worker(
            sleeper("in-closed")
                .user("nobody")
                .current_dir(closed.path()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Spawn { worker, .. } if worker == "in-closed"),
        "{err:?}"
    );
    assert!(err.to_string().contains("Permission denied"), "{err}");
    sup.shutdown().await;
}

#[tokio::test]
async fn an_unknown_user_is_a_start_error_naming_it_and_others_are_unaffected() {
    let sup = Supervisor::builder().start();
    let mut events = sup.subscribe();
    let pid = sup.start_worker(sleeper("bystander")).await.unwrap();
    let err = sup
        .start_worker(sleeper("ghost").user("herd-no-such-user"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownUser { worker, user } if worker == "ghost" && user == "herd-no-such-user"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "cannot start worker ghost: it sets user = \"herd-no-such-user\", \
         and there is no such user on this machine"
    );
    let status = sup.status().await;
    assert_eq!(status.len(), 2, "{status:?}");
    assert_eq!(status[0].pid, Some(pid));
    // Registered as failed with the error as its reason, and not retried.
    assert_eq!(
        status[1].state,
        herd::supervisor::WorkerState::Failed {
            reason: err.to_string()
        }
    );
    wait_event(
        &mut events,
        |e| matches!(e, herd::supervisor::WorkerEvent::Started { name, .. } if name == "bystander"),
    )
    .await;
    let seen = wait_event(
        &mut events,
        |e| matches!(e, herd::supervisor::WorkerEvent::Failed { name, .. } if name == "ghost"),
    )
    .await;
    assert_eq!(seen.len(), 1, "nothing but Failed for ghost: {seen:?}");
    sup.delete_worker("ghost").await.unwrap();
    assert_eq!(sup.status().await.len(), 1);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_malformed_user_name_is_an_invalid_spec() {
    let sup = Supervisor::builder().start();
    for bad in ["", "two words", "a:b"] {
        let err = sup
            .start_worker(sleeper("odd").user(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidSpec { worker, reason } if worker == "odd" && reason.starts_with("user ")),
            "{bad:?}: {err:?}"
        );
    }
    assert!(sup.status().await.is_empty());
    sup.shutdown().await;
}
