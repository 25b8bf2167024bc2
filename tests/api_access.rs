//! Who may use a real `herd agent`'s HTTP API: the bearer token (`--api-token-file`), the
//! `Host` check (DNS rebinding), the `Origin` and `Content-Type` checks on state changes
//! (cross-site requests), the 4 MiB body limit, the refusal to serve a non-loopback address
//! without a token, the refusal counters and their rate-limited log, and the CLI against a
//! protected agent.

#[path = "support/agent.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;

use support::*;

/// Pushes `ONE_SLEEPER` and waits for it to run; returns its pid.
fn run_sleeper(agent: &AgentProc) -> u64 {
    let body = serde_json::json!({ "toml": ONE_SLEEPER }).to_string();
    let (status, answer) = agent.request("PUT", "/v1/config", Some(&body));
    assert_eq!(status, 200, "push: {answer}");
    let workers = agent.wait_workers("sleeper running", |w| running(w, &agent.id, "sleeper"));
    find(&workers, &agent.id, "sleeper").unwrap().1.unwrap()
}

/// The value of `herd_api_rejected_total{reason}` in this agent's metrics.
fn rejected(agent: &AgentProc, reason: &str) -> u64 {
    let (status, text) = agent.request("GET", "/metrics", None);
    assert_eq!(status, 200, "{text}");
    let text = text.as_str().unwrap().to_string();
    let prefix = format!("herd_api_rejected_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"))
        .parse()
        .unwrap()
}

/// How many of the agent's log lines are refusals logged for `reason`.
fn refusal_lines(agent: &AgentProc, reason: &str) -> usize {
    // The log is coloured: match the quoted value, not `reason=` before it.
    let field = format!("\"{reason}\"");
    agent
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("refused an API request") && l.contains(&field))
        .count()
}

#[test]
fn a_token_protected_api_asks_every_request_but_the_page_and_health_for_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("api-token");
    let a = Spec::new("a", tmp.path(), "token")
        .token_file(&token_file)
        .start();
    let token = a.token.clone().unwrap();
    assert_eq!(token.len(), 64, "{token}");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(a.log_contains("generated a new API token"));
    assert!(a.log_contains(&format!("http://{}/#token=<token>", a.api)));
    assert!(!a.log_contains(&token), "the token is never logged");

    let bearer = format!("Bearer {token}");
    for path in [
        "/v1/members",
        "/v1/workers",
        "/v1/config",
        "/metrics",
        "/nowhere",
    ] {
        let (status, body) = http("GET", &a.url(path), None);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("needs a token"),
            "{body}"
        );
        let (status, body) = http_with(
            "GET",
            &a.url(path),
            None,
            &[("authorization", "Bearer wrong")],
        );
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error"], "wrong API token");
    }
    for path in ["/v1/members", "/v1/workers", "/v1/config", "/metrics"] {
        let (status, body) = http_with("GET", &a.url(path), None, &[("authorization", &bearer)]);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, answer) = raw_http(
        a.api,
        &format!("GET /v1/members HTTP/1.1\r\nHost: {}", a.api),
        b"",
    );
    assert_eq!(status, 401);
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{answer}"
    );

    // The page and health are open; the page holds no data.
    let (status, health) = http("GET", &a.url("/v1/health"), None);
    assert_eq!((status, health["node"].as_str()), (200, Some("a")));
    let (status, page) = http("GET", &a.url("/"), None);
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("<title>herd</title>"));

    // A state change without the token changes nothing; with it, it acts.
    let pid = run_sleeper(&a);
    let (status, _) = http("POST", &a.url("/v1/workers/sleeper/stop"), None);
    assert_eq!(status, 401);
    assert!(running(&a.workers(), "a", "sleeper") && alive(pid));
    let (status, body) = a.request("POST", "/v1/workers/sleeper/restart", None);
    assert_eq!(status, 200, "{body}");
    a.wait_workers("a new sleeper", |w| {
        running(w, "a", "sleeper") && find(w, "a", "sleeper").unwrap().1 != Some(pid)
    });
    assert_eq!(rejected(&a, "unauthorized"), 12);
    assert_eq!(refusal_lines(&a, "unauthorized"), 1, "logged once a minute");

    // An agent restarted on the same file keeps its token.
    drop(a);
    let again = Spec::new("a", tmp.path(), "token")
        .token_file(&token_file)
        .start();
    assert_eq!(again.token.as_deref(), Some(token.as_str()));
    assert!(again.log_contains("read the API token"));
    again.get("/v1/members");
}

#[test]
fn an_operators_token_file_is_trimmed_an_open_one_warned_about_an_empty_one_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("api-token");
    std::fs::write(&token_file, "  operator-chosen-token\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let a = Spec::new("a", tmp.path(), "token-file")
        .token_file(&token_file)
        .start();
    assert!(a.log_contains("can be read by its group or others"));
    let (status, _) = http_with(
        "GET",
        &a.url("/v1/members"),
        None,
        &[("authorization", "Bearer operator-chosen-token")],
    );
    assert_eq!(status, 200);
    drop(a);

    std::fs::write(&token_file, "\n  \n").unwrap();
    let out = exit_of(
        Spec::new("a", tmp.path(), "token-file")
            .token_file(&token_file)
            .command(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{} is empty", token_file.display())),
        "{err}"
    );
}

#[test]
fn an_agent_on_a_non_loopback_address_without_a_token_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = Spec::new("open", tmp.path(), "open");
    spec.api = Some("0.0.0.0:0".into());
    let out = exit_of(spec.command());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--api-token-file"), "{err}");
    assert!(err.contains("0.0.0.0:0"), "{err}");
    assert!(
        !spec.data_dir.exists(),
        "nothing was written before refusing"
    );

    // With a token it starts, and answers with the token.
    let token_file = tmp.path().join("api-token");
    let a = spec.token_file(&token_file).start();
    assert_eq!(a.api.ip().to_string(), "0.0.0.0");
    assert_eq!(a.get("/v1/health")["node"], "open");
    a.get("/v1/members");
    let (status, _) = http("GET", &a.url("/v1/members"), None);
    assert_eq!(status, 401);
}

#[test]
fn foreign_hosts_cross_origin_and_non_json_state_changes_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "host")
        .api_host("herd.test")
        .start();
    let pid = run_sleeper(&a);
    let port = a.api.port();
    let get = |host: &str| {
        raw_http(
            a.api,
            &format!("GET /v1/health HTTP/1.1\r\nHost: {host}"),
            b"",
        )
    };

    // DNS rebinding: the Host names someone else.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        format!("127.0.0.1.evil.example:{port}"),
    ] {
        let (status, answer) = get(&host);
        assert_eq!(status, 403, "{host}: {answer}");
        assert!(answer.contains("is not an address of this API"), "{answer}");
    }
    for host in [
        a.api.to_string(),
        format!("localhost:{port}"),
        "herd.test:8080".into(),
    ] {
        assert_eq!(get(&host).0, 200, "{host}");
    }

    // A body-less cross-site POST (no preflight) and a POST that is not JSON.
    let stop = |headers: &str| {
        raw_http(
            a.api,
            &format!(
                "POST /v1/workers/sleeper/stop HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n{headers}",
                a.api
            ),
            b"",
        )
    };
    let (status, answer) = stop("Origin: http://evil.example\r\nContent-Type: application/json");
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("cross-origin request refused"), "{answer}");
    let (status, answer) = stop("Origin: null\r\nContent-Type: application/json");
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = stop("");
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer.contains("Content-Type: application/json"),
        "{answer}"
    );
    let (status, answer) = stop("Content-Type: text/plain");
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = raw_http(
        a.api,
        &format!("DELETE /v1/workers/sleeper HTTP/1.1\r\nHost: {}", a.api),
        b"",
    );
    assert_eq!(status, 403, "{answer}");
    let workers = a.workers();
    assert_eq!(
        find(&workers, "a", "sleeper"),
        Some(("running".into(), Some(pid)))
    );

    // The API's own origin, with JSON, acts.
    let (status, answer) = stop(&format!(
        "Origin: http://{}\r\nContent-Type: application/json",
        a.api
    ));
    assert_eq!(status, 200, "{answer}");
    a.wait_workers("sleeper stopped", |w| {
        find(w, "a", "sleeper").is_some_and(|(state, _)| state == "stopped")
    });

    assert_eq!(rejected(&a, "host"), 3);
    assert_eq!(rejected(&a, "origin"), 2);
    assert_eq!(rejected(&a, "content_type"), 3);
    assert_eq!(refusal_lines(&a, "host"), 1);
    assert_eq!(refusal_lines(&a, "origin"), 1);
    assert_eq!(refusal_lines(&a, "content_type"), 1);
}

#[test]
fn bodies_over_4_mib_are_refused_before_they_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spec::new("a", tmp.path(), "big")
        .token_file(&tmp.path().join("api-token"))
        .start();
    let auth = format!("Authorization: Bearer {}", a.token.as_deref().unwrap());
    let five_mib = 5 * 1024 * 1024;

    // Declared: answered from the head alone; no byte of the body is sent.
    let (status, answer) = raw_http(
        a.api,
        &format!(
            "PUT /v1/config HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {five_mib}\r\n{auth}",
            a.api
        ),
        b"",
    );
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("over 4194304 bytes"), "{answer}");

    // Undeclared (chunked): cut off at 4 MiB as the handler reads it.
    let text = format!("{{\"toml\": \"{}\"}}", "#".repeat(five_mib));
    let mut chunked = format!("{:x}\r\n", text.len()).into_bytes();
    chunked.extend_from_slice(text.as_bytes());
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, answer) = raw_http(
        a.api,
        &format!(
            "PUT /v1/config HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n{auth}",
            a.api
        ),
        &chunked,
    );
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("{\"error\":"), "{answer}");

    assert_eq!(a.get("/v1/config")["version"], 0, "nothing was pushed");
    assert_eq!(rejected(&a, "too_large"), 2);
    assert_eq!(rejected(&a, "unauthorized"), 0);
}

#[test]
fn the_cli_sends_the_token_from_the_environment_or_a_file_and_says_when_it_has_none() {
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("api-token");
    let a = Spec::new("a", tmp.path(), "cli-token")
        .tag("group=media")
        .token_file(&token_file)
        .start();
    let config = tmp.path().join("cluster.toml");
    std::fs::write(&config, ONE_SLEEPER).unwrap();

    // HERD_API_TOKEN (set by `cli`): every verb, state changes included.
    a.cli_ok(&["config", "push", config.to_str().unwrap()]);
    a.wait_workers("sleeper running", |w| running(w, "a", "sleeper"));
    for verb in ["restart", "stop", "start", "delete", "start"] {
        a.cli_ok(&[verb, "sleeper"]);
    }
    let status = a.cli_ok(&["status"]);
    assert!(status.contains("sleeper"), "{status}");

    // --api-token-file, with no token in the environment.
    let mut cmd = a.cli_command(&["--api-token-file", token_file.to_str().unwrap(), "members"]);
    let out = cmd.env_remove("HERD_API_TOKEN").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains('a'));

    // No token: the error says what to set.
    let out = a
        .cli_command(&["workers"])
        .env_remove("HERD_API_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the agent at http://{} requires an API token: set HERD_API_TOKEN or --api-token-file",
            a.api
        )),
        "{err}"
    );

    // A wrong token: the error says which one was refused.
    let out = a
        .cli_command(&["restart", "sleeper"])
        .env("HERD_API_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the API token from HERD_API_TOKEN"),
        "{err}"
    );
}

#[test]
fn an_api_host_that_is_not_a_host_stops_the_agent_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = exit_of(
        Spec::new("a", tmp.path(), "bad-host")
            .api_host("http://herd.example.com")
            .command(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--api-host"), "{err}");
    assert!(err.contains("\"http://herd.example.com\""), "{err}");
}
