//! The dashboard at `GET /` in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver): a real `herd agent` with an API token and a pushed
//! config, the page opened at `/#token=...` takes the token out of its address, shows the node,
//! the members with their tags and the config each holds, the workers with their pids, and its
//! restart button restarts the worker (the page shows the new pid) or shows the API's error; the
//! event feed shows the config's adoption and a member's failure, the crashed member stays listed
//! as failed, and a click on a worker's name shows its recent output. Opened without the token,
//! the page shows that it is unauthorised and how to open it; given the token, it goes live.
//!
//! `HERD_DASHBOARD_SCREENSHOT=/path.png` also saves a screenshot of the page.

#[path = "support/browser.rs"]
mod browser;
#[path = "support/agent.rs"]
mod support;

use std::time::Instant;

use browser::Browser;
use support::*;

/// The cluster config: one worker that runs, one that cannot start.
const CONFIG: &str = r#"
[[worker]]
name = "sleeper"
command = "sleep"
args = ["3600"]

[[worker]]
name = "broken"
command = "/nonexistent/herd-dashboard-test"

[[worker]]
name = "talker"
command = "sh"
args = ["-c", "echo hello from talker; echo oops >&2; exec sleep 3600"]
"#;

const SLEEPER: &str = r#"tr[data-node="a"][data-worker="sleeper"]"#;
const BROKEN: &str = r#"tr[data-node="a"][data-worker="broken"]"#;

fn pid(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[test]
fn the_dashboard_shows_workers_and_its_restart_button_changes_the_pid() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let agent = Spec::new("a", tmp.path(), "dash")
        .tag("group=media")
        .token_file(&tmp.path().join("api-token"))
        .start();
    let token = agent.token.clone().unwrap();
    let (status, body) = agent.request(
        "PUT",
        "/v1/config",
        Some(&serde_json::json!({ "toml": CONFIG }).to_string()),
    );
    assert_eq!(status, 200, "push: {body}");

    let browser = Browser::start();
    browser.goto(&agent.url(&format!("/#token={token}")));

    // The header, the members; the token is gone from the address.
    browser.wait_text("#node", "this node's id", |t| t == "a");
    assert_eq!(browser.current_url(), agent.url("/"));
    browser.wait_text("#members-count", "one member", |t| t == "1");
    browser.wait_text("#config-version", "config version 1", |t| t == "1");
    browser.wait_text(r#"tr[data-member="a"] td.status"#, "member a alive", |t| {
        t == "alive"
    });

    // The worker, running, with the pid the API reports.
    browser.wait_text(&format!("{SLEEPER} td.state"), "sleeper running", |t| {
        t == "running"
    });
    let shown = browser.wait_text(&format!("{SLEEPER} td.pid"), "sleeper's pid", |t| {
        pid(t).is_some()
    });
    let first = pid(&shown).unwrap();
    let api_pid = find(&agent.workers(), "a", "sleeper").and_then(|(_, pid)| pid);
    assert_eq!(api_pid, Some(first), "the page shows the API's pid");
    assert!(alive(first), "pid {first} is a live process");

    // Restart: the page shows a new pid, and the old process is gone.
    browser.click(&format!(r#"{SLEEPER} button[data-action="restart"]"#));
    let shown = browser.wait_text(&format!("{SLEEPER} td.pid"), "a new pid", |t| {
        pid(t).is_some_and(|p| p != first)
    });
    let second = pid(&shown).unwrap();
    browser.wait_text("#message", "the restart's result", |t| {
        t.contains("restart sleeper on a: done")
    });
    browser.wait_text(
        &format!("{SLEEPER} td.state"),
        "sleeper running again",
        |t| t == "running",
    );
    let api_pid = find(&agent.workers(), "a", "sleeper").and_then(|(_, pid)| pid);
    assert_eq!(api_pid, Some(second), "the page shows the API's new pid");
    wait_until("the old process to end", || !alive(first));

    // A worker that cannot start: shown failed, and a failed action's error is shown.
    browser.wait_text(&format!("{BROKEN} td.state"), "broken failed", |t| {
        t == "failed"
    });
    let detail = browser.text(&format!("{BROKEN} td.detail")).unwrap();
    assert!(
        detail.starts_with("spawn failed: ENOENT (No such file or directory)"),
        "detail: {detail:?}"
    );
    browser.click(&format!(r#"{BROKEN} button[data-action="restart"]"#));
    browser.wait_text("#message", "the API's error", |t| {
        t.contains("restart broken on a failed: cannot start worker broken")
            && t.contains("No such file or directory")
    });

    // The config each member holds, with its workers' state (broken cannot start).
    browser.wait_text(r#"tr[data-member="a"] td.config"#, "a's config", |t| {
        t == "1 failed"
    });
    // The event feed shows the config's adoption.
    browser.wait_text(
        r#"#events li[data-event="config-adopted"]"#,
        "the config-adopted event",
        |t| t.contains("version=1") && t.contains("via=push"),
    );
    // A worker's recent output, on a click on its name.
    browser.click(r#"tr[data-node="a"][data-worker="talker"] button[data-output]"#);
    browser.wait_text("#output-text", "talker's output", |t| {
        t.contains("hello from talker") && t.contains("oops")
    });
    browser.wait_text("#output-title", "the output's title", |t| {
        t.starts_with("Output of talker on a")
    });
    // A member that crashes stays listed, as failed, and the feed says so.
    let b = Spec::new("b", tmp.path(), "dash")
        .seed(&agent)
        .token_file(&tmp.path().join("api-token"))
        .start();
    browser.wait_text(r#"tr[data-member="b"] td.status"#, "b alive", |t| {
        t == "alive"
    });
    b.kill();
    browser.wait_text(r#"tr[data-member="b"] td.status"#, "b failed", |t| {
        t == "failed"
    });
    browser.wait_text(
        r#"#events li[data-event="member-failed"]"#,
        "the member-failed event",
        |t| t.contains("member=b"),
    );
    assert!(browser.find("#health").is_ok());

    if let Some(path) = std::env::var_os("HERD_DASHBOARD_SCREENSHOT") {
        browser.screenshot(std::path::Path::new(&path));
    }
    eprintln!("dashboard test took {:?}", started.elapsed());
}

#[test]
fn the_dashboard_without_the_token_shows_it_is_unauthorised_and_how_to_open_it() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Spec::new("b", tmp.path(), "dash-auth")
        .token_file(&tmp.path().join("api-token"))
        .start();
    let token = agent.token.clone().unwrap();
    let browser = Browser::start();

    browser.goto(&agent.url("/"));
    let shown = browser.wait_text("#auth", "the unauthorised notice", |t| {
        t.contains("Unauthorised")
    });
    assert!(shown.contains("opened without one"), "{shown}");
    assert!(
        shown.contains(&format!("http://{}/#token=<token>", agent.api)),
        "{shown}"
    );
    assert!(shown.contains("--api-token-file"), "{shown}");
    browser.wait_text("#conn", "the unauthorised state", |t| t == "unauthorised");

    // A wrong token is refused, and said so.
    browser.goto(&agent.url("/#token=wrong"));
    browser.wait_text("#auth", "the refused token", |t| {
        t.contains("refused the token this page was opened with")
    });

    // The right token, added to the address, takes effect: the notice goes, the page is live.
    browser.goto(&agent.url(&format!("/#token={token}")));
    browser.wait_text("#node", "this node's id", |t| t == "b");
    browser.wait_text("#conn", "live", |t| t.starts_with("live"));
    assert_eq!(browser.text("#auth").unwrap(), "", "the notice is hidden");
}
