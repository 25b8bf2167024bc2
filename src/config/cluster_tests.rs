//! Specifications of the cluster config file.

use super::*;

const EXAMPLE: &str = r#"
[[worker]]
name = "thumbnailer"
command = "python3"
args = ["workers/thumbnailer.py"]
group = "media"
restart = "transient"
max_restarts = 5
period = "10s"
shutdown_timeout = "2s"
protocol = "jsonl"
env = { LOG_LEVEL = "info" }
cwd = "/srv/app"
user = "media"

[[worker]]
name = "janitor"
command = "/usr/bin/janitor"
"#;

fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
    ClusterConfig::parse(text, "cluster.toml")
}

fn error(text: &str) -> String {
    parse(text)
        .expect_err("the config should be rejected")
        .to_string()
}

fn tags(group: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("group".to_string(), group.to_string())])
}

#[test]
fn every_field_of_a_worker_is_read() {
    let config = parse(EXAMPLE).unwrap();
    let w = &config.workers[0];
    assert_eq!(w.name, "thumbnailer");
    assert_eq!(w.command, "python3");
    assert_eq!(w.args, ["workers/thumbnailer.py"]);
    assert_eq!(w.group.as_deref(), Some("media"));
    assert_eq!(w.restart, Restart::Transient);
    assert_eq!(w.max_restarts, 5);
    assert_eq!(w.period, Duration::from_secs(10));
    assert_eq!(w.shutdown_timeout, Duration::from_secs(2));
    assert_eq!(w.protocol, Some(Protocol::Jsonl));
    assert_eq!(w.env["LOG_LEVEL"], "info");
    assert_eq!(w.cwd, Some(PathBuf::from("/srv/app")));
    assert_eq!(w.user.as_deref(), Some("media"));
}

#[test]
fn omitted_fields_take_their_defaults() {
    let config = parse(EXAMPLE).unwrap();
    let w = config.worker("janitor").unwrap();
    assert_eq!(w.args, Vec::<String>::new());
    assert_eq!(w.group, None);
    assert_eq!(w.restart, Restart::Permanent);
    assert_eq!(w.max_restarts, DEFAULT_MAX_RESTARTS);
    assert_eq!(w.period, DEFAULT_PERIOD);
    assert_eq!(w.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    assert_eq!(w.protocol, None);
    assert!(w.env.is_empty());
    assert_eq!(w.cwd, None);
}

#[test]
fn an_empty_file_is_a_config_without_workers() {
    assert_eq!(parse("").unwrap(), ClusterConfig::default());
    assert_eq!(parse("# nothing yet\n").unwrap().workers.len(), 0);
    assert_eq!(parse("worker = []\n").unwrap().workers.len(), 0);
}

#[test]
fn an_inline_array_of_worker_tables_is_accepted() {
    let config = parse(r#"worker = [{ name = "a", command = "true" }]"#).unwrap();
    assert_eq!(config.workers[0].name, "a");
}

#[test]
fn a_toml_syntax_error_is_rejected_with_its_line_and_column() {
    let text = "[[worker]]\nname = \"a\"\ncommand = python3\n";
    let err = parse(text).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Syntax {
                line: 3,
                column: 11,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("cluster.toml:3:11: "), "{err}");
}

#[test]
fn an_unknown_key_is_rejected_with_its_line_and_column() {
    let text = "[[worker]]\nname = \"thumbnailer\"\n\n\n\n\ncomand = \"python3\"\n";
    assert_eq!(
        error(text),
        "cluster.toml:7:1: worker \"thumbnailer\": unknown field \"comand\"; expected one of \
         name, command, args, group, restart, max_restarts, period, shutdown_timeout, protocol, \
         env, cwd, user, log, ready, ready_timeout, placement, quorum, events"
    );
}

#[test]
fn a_workers_log_rotation_is_read_with_sizes_in_units_or_bytes() {
    let worker = |log: &str| {
        let text = format!("[[worker]]\nname = \"w\"\ncommand = \"x\"\n{log}\n");
        parse(&text).map(|c| c.workers[0].log)
    };
    assert_eq!(
        worker("").unwrap(),
        LogConfig {
            max_size: 10 << 20,
            keep: 5
        }
    );
    let log = worker("log = { max_size = \"512KB\", keep = 2 }").unwrap();
    assert_eq!(
        log,
        LogConfig {
            max_size: 512 << 10,
            keep: 2
        }
    );
    assert_eq!(worker("log = { max_size = 4096 }").unwrap().max_size, 4096);
    assert_eq!(
        worker("log = { max_size = \"1 GB\" }").unwrap().max_size,
        1 << 30
    );
    assert_eq!(worker("log = { keep = 0 }").unwrap().keep, 0);
}

#[test]
fn a_bad_log_setting_is_named_with_its_line_and_column() {
    let text = "[[worker]]\nname = \"w\"\ncommand = \"x\"\nlog = { max_size = \"10XB\" }\n";
    assert_eq!(
        error(text),
        "cluster.toml:4:20: worker \"w\": field \"log.max_size\": unknown unit \"xb\"; \
         expected B, KB, MB or GB"
    );
    let text = "[[worker]]\nname = \"w\"\ncommand = \"x\"\nlog = { size = 1 }\n";
    assert_eq!(
        error(text),
        "cluster.toml:4:9: worker \"w\": unknown field \"log.size\"; expected one of \
         max_size, keep"
    );
    for bad in [
        "log = { max_size = 0 }",
        "log = { max_size = -1 }",
        "log = { keep = 1001 }",
        "log = \"10MB\"",
        "log = { max_size = \"99999999999GB\" }",
    ] {
        let text = format!("[[worker]]\nname = \"w\"\ncommand = \"x\"\n{bad}\n");
        assert!(error(&text).contains("\"log"), "{bad}: {}", error(&text));
    }
}

#[test]
fn an_unknown_top_level_key_is_rejected() {
    let err = parse("version = 2\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cluster.toml:1:1: unknown field \"version\"; expected one of worker"
    );
}

#[test]
fn a_single_worker_table_instead_of_an_array_is_rejected() {
    let err = error("[worker]\nname = \"a\"\ncommand = \"true\"\n");
    assert!(
        err.contains("field \"worker\": expected [[worker]] tables"),
        "{err}"
    );
}

#[test]
fn duplicate_worker_names_name_both_lines() {
    let text = r#"
[[worker]]
name = "a"
command = "true"

[[worker]]
name = "a"
command = "false"
"#;
    let err = parse(text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cluster.toml:7:8: duplicate worker name \"a\": already used on line 3"
    );
    assert_eq!(err.worker(), Some("a"));
}

#[test]
fn a_missing_command_is_reported_at_the_worker_header() {
    let text = "[[worker]]\nname = \"a\"\ncommand = \"true\"\n\n[[worker]]\nname = \"b\"\n";
    assert_eq!(
        error(text),
        "cluster.toml:5:1: worker \"b\": missing field \"command\""
    );
}

#[test]
fn a_missing_name_is_reported_with_the_worker_number() {
    let text = "[[worker]]\nname = \"a\"\ncommand = \"true\"\n[[worker]]\ncommand = \"x\"\n";
    assert_eq!(
        error(text),
        "cluster.toml:4:1: worker #2: missing field \"name\""
    );
}

#[test]
fn empty_names_and_commands_are_rejected() {
    let err = error("[[worker]]\nname = \"\"\ncommand = \"x\"\n");
    assert_eq!(
        err,
        "cluster.toml:2:8: worker #1: field \"name\": must not be empty"
    );
    let err = error("[[worker]]\nname = \"a\"\ncommand = \" \"\n");
    assert_eq!(
        err,
        "cluster.toml:3:11: worker \"a\": field \"command\": must not be empty"
    );
}

#[test]
fn names_must_be_usable_in_urls_and_on_the_command_line() {
    for bad in ["a b", "a/b", "-a", ".", "..", "é", &"x".repeat(65)] {
        let text = format!("[[worker]]\nname = {bad:?}\ncommand = \"x\"\n");
        let err = error(&text);
        assert!(err.contains("field \"name\""), "{bad}: {err}");
    }
    for good in ["a", "A.b_c-1", "9lives", &"x".repeat(64)] {
        let text = format!("[[worker]]\nname = {good:?}\ncommand = \"x\"\n");
        assert!(parse(&text).is_ok(), "{good}");
    }
}

#[test]
fn a_name_of_the_wrong_type_is_quoted() {
    let err = error("[[worker]]\nname = 5\ncommand = \"x\"\n");
    assert_eq!(
        err,
        "cluster.toml:2:8: worker #1: field \"name\": expected a string, found integer 5"
    );
}

#[test]
fn an_invalid_duration_is_rejected_with_its_value() {
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nperiod = \"ten\"\n");
    assert!(
        err.starts_with(
            "cluster.toml:4:10: worker \"a\": field \"period\": invalid duration \"ten\""
        ),
        "{err}"
    );
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nshutdown_timeout = 5\n");
    assert!(err.contains("expected a duration like \"5s\""), "{err}");
    assert!(err.contains("found integer 5"), "{err}");
}

#[test]
fn a_zero_period_is_rejected() {
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nperiod = \"0s\"\n");
    assert_eq!(
        err,
        "cluster.toml:4:10: worker \"a\": field \"period\": must be longer than zero"
    );
}

#[test]
fn unknown_restart_and_protocol_values_are_rejected() {
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nrestart = \"always\"\n");
    assert_eq!(
        err,
        "cluster.toml:4:11: worker \"a\": field \"restart\": unknown restart \"always\"; \
         expected permanent, transient or temporary"
    );
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nprotocol = \"grpc\"\n");
    assert!(
        err.contains("unknown protocol \"grpc\"; expected jsonl"),
        "{err}"
    );
}

#[test]
fn a_negative_max_restarts_is_rejected() {
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nmax_restarts = -1\n");
    assert!(
        err.contains("field \"max_restarts\": expected an integer"),
        "{err}"
    );
}

#[test]
fn env_values_must_be_strings_and_keys_usable() {
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nenv = { N = 1 }\n");
    assert!(
        err.contains("field \"env.N\": expected a string, found integer 1"),
        "{err}"
    );
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nenv = { \"A=B\" = \"1\" }\n");
    assert!(err.contains("invalid variable name \"A=B\""), "{err}");
}

#[test]
fn args_must_be_an_array_of_strings() {
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nargs = \"-v\"\n");
    assert!(
        err.contains("field \"args\": expected an array of strings, found string"),
        "{err}"
    );
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nargs = [\"-v\", 2]\n");
    assert!(err.contains("cluster.toml:4:15:"), "{err}");
}

#[test]
fn a_group_must_be_a_single_valid_name() {
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\ngroup = \"a,b\"\n");
    assert!(err.contains("field \"group\""), "{err}");
}

#[test]
fn a_user_is_optional_and_read_as_a_name() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.worker("janitor").unwrap().user, None);
    for good in ["nobody", "www-data", "svc.media_1", &"u".repeat(64)] {
        let text = format!("[[worker]]\nname = \"a\"\ncommand = \"x\"\nuser = {good:?}\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.workers[0].user.as_deref(), Some(good));
    }
}

#[test]
fn an_empty_user_is_rejected_with_its_line_and_column() {
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nuser = \"\"\n");
    assert_eq!(
        err,
        "cluster.toml:4:8: worker \"a\": field \"user\": must not be empty"
    );
}

#[test]
fn a_user_with_whitespace_or_separators_is_rejected_with_its_line_and_column() {
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\n  user = \"web admin\"\n");
    assert_eq!(
        err,
        "cluster.toml:4:10: worker \"a\": field \"user\": \"web admin\" contains ' '; \
         a user name has no whitespace, control characters, ':' or '/'"
    );
    let long = format!("{:?}", "u".repeat(65));
    let bads = [
        r#""tab\there""#,
        r#""nul\u0000""#,
        r#""new\nline""#,
        r#""a:b""#,
        r#""../root""#,
        &long,
    ];
    for bad in bads {
        let text = format!("[[worker]]\nname = \"a\"\ncommand = \"x\"\nuser = {bad}\n");
        let err = error(&text);
        assert!(
            err.starts_with("cluster.toml:4:8: worker \"a\": field \"user\": "),
            "{bad:?}: {err}"
        );
    }
    let err = error("[[worker]]\nname = \"a\"\ncommand = \"x\"\nuser = 65534\n");
    assert_eq!(
        err,
        "cluster.toml:4:8: worker \"a\": field \"user\": expected a string, found integer 65534"
    );
}

#[test]
fn the_origin_names_a_pushed_config() {
    let err = ClusterConfig::parse("oops", "pushed config").unwrap_err();
    assert!(err.to_string().starts_with("pushed config:1:"), "{err}");
}

#[test]
fn a_worker_without_group_runs_on_every_node() {
    let config = parse(EXAMPLE).unwrap();
    let janitor = config.worker("janitor").unwrap();
    assert!(janitor.runs_on(&BTreeMap::new()));
    assert!(janitor.runs_on(&tags("db")));
}

#[test]
fn a_grouped_worker_runs_on_nodes_whose_group_tag_lists_its_group() {
    let config = parse(EXAMPLE).unwrap();
    let thumbnailer = config.worker("thumbnailer").unwrap();
    assert!(thumbnailer.runs_on(&tags("media")));
    assert!(thumbnailer.runs_on(&tags("db, media ,gpu")));
    assert!(!thumbnailer.runs_on(&tags("mediaX")));
    assert!(!thumbnailer.runs_on(&tags("")));
    assert!(!thumbnailer.runs_on(&BTreeMap::new()));
    let other_tag = BTreeMap::from([("role".to_string(), "media".to_string())]);
    assert!(!thumbnailer.runs_on(&other_tag));
}

#[test]
fn workers_for_selects_by_tags_in_file_order() {
    let config = parse(EXAMPLE).unwrap();
    let names = |t: &BTreeMap<String, String>| -> Vec<String> {
        config.workers_for(t).map(|w| w.name.clone()).collect()
    };
    assert_eq!(names(&tags("media")), ["thumbnailer", "janitor"]);
    assert_eq!(names(&tags("db")), ["janitor"]);
}

#[test]
fn a_worker_maps_to_the_supervisor_spec() {
    let config = parse(EXAMPLE).unwrap();
    let spec = config.workers[0].to_spec();
    let expected = WorkerSpec::new("thumbnailer", "python3")
        .args(["workers/thumbnailer.py"])
        .env("LOG_LEVEL", "info")
        .current_dir("/srv/app")
        .user("media")
        .restart(Restart::Transient)
        .shutdown_timeout(Duration::from_secs(2))
        .jsonl();
    assert_eq!(spec, expected);
    assert_eq!(
        config.workers[1].to_spec(),
        WorkerSpec::new("janitor", "/usr/bin/janitor")
    );
}

#[test]
fn a_config_serializes_to_readable_json_and_back() {
    let config = parse(EXAMPLE).unwrap();
    let json = serde_json::to_value(&config).unwrap();
    let w = &json["workers"][0];
    assert_eq!(w["period"], "10s");
    assert_eq!(w["shutdown_timeout"], "2s");
    assert_eq!(w["restart"], "transient");
    assert_eq!(w["protocol"], "jsonl");
    let back: ClusterConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, config);
}

fn one_worker(extra: &str) -> String {
    format!("[[worker]]\nname = \"a\"\ncommand = \"x\"\n{extra}")
}

#[test]
fn each_kind_of_readiness_is_read_and_reaches_the_spec() {
    let config = parse(&one_worker(
        "ready = { tcp = \"127.0.0.1:8080\" }\nready_timeout = \"10s\"\n",
    ))
    .unwrap();
    let w = &config.workers[0];
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    assert_eq!(w.ready, Some(Readiness::Tcp(addr)));
    assert_eq!(w.ready_timeout, Duration::from_secs(10));
    let spec = w.to_spec();
    assert_eq!(spec.ready, Some(Readiness::Tcp(addr)));
    assert_eq!(spec.ready_timeout, Duration::from_secs(10));

    let config = parse(&one_worker(
        "protocol = \"jsonl\"\nready = { jsonl = true }\n",
    ))
    .unwrap();
    assert_eq!(config.workers[0].ready, Some(Readiness::Jsonl));
    assert_eq!(config.workers[0].ready_timeout, DEFAULT_READY_TIMEOUT);

    let config = parse(&one_worker("[worker.ready]\nafter = \"2s\"\n")).unwrap();
    let w = &config.workers[0];
    assert_eq!(w.ready, Some(Readiness::After(Duration::from_secs(2))));
    assert_eq!(
        w.to_spec().ready,
        Some(Readiness::After(Duration::from_secs(2)))
    );
}

#[test]
fn without_ready_a_worker_is_ready_at_exec_as_before() {
    let config = parse(EXAMPLE).unwrap();
    let w = config.worker("janitor").unwrap();
    assert_eq!(w.ready, None);
    assert_eq!(w.ready_timeout, DEFAULT_READY_TIMEOUT);
    assert_eq!(
        w.to_spec(),
        WorkerSpec::new("janitor", "/usr/bin/janitor"),
        "the spec is the same as before readiness existed"
    );
}

#[test]
fn bad_readiness_is_rejected_naming_line_column_and_field() {
    let err = error(&one_worker("ready = { jsonl = true }\n"));
    assert!(
        err.starts_with(
            "cluster.toml:4:19: worker \"a\": field \"ready.jsonl\": needs protocol = \"jsonl\""
        ),
        "{err}"
    );
    let err = error(&one_worker("ready = { tcp = \"localhost:80\" }\n"));
    assert!(
        err.starts_with("cluster.toml:4:17: worker \"a\": field \"ready.tcp\": invalid address"),
        "{err}"
    );
    let err = error(&one_worker("ready = { http = \"/health\" }\n"));
    assert!(err.starts_with("cluster.toml:4:11: "), "{err}");
    assert!(err.contains("ready.http"), "{err}");
    let err = error(&one_worker(
        "ready = { after = \"1s\", tcp = \"127.0.0.1:1\" }\n",
    ));
    assert!(
        err.starts_with("cluster.toml:4:9: worker \"a\": field \"ready\": expected exactly one of tcp, jsonl or after"),
        "{err}"
    );
    let err = error(&one_worker("ready = \"tcp\"\n"));
    assert!(err.contains("field \"ready\": expected a table"), "{err}");
    let err = error(&one_worker(
        "ready = { jsonl = false }\nprotocol = \"jsonl\"\n",
    ));
    assert!(err.contains("field \"ready.jsonl\": must be true"), "{err}");
    let err = error(&one_worker("ready = { after = \"40s\" }\n"));
    assert!(
        err.contains("field \"ready.after\": must be shorter than ready_timeout (30s)"),
        "{err}"
    );
    let err = error(&one_worker("ready = { after = \"0s\" }\n"));
    assert!(err.contains("must be longer than zero"), "{err}");
}

#[test]
fn bad_ready_timeouts_are_rejected() {
    let err = error(&one_worker(
        "ready = { tcp = \"127.0.0.1:1\" }\nready_timeout = \"0s\"\n",
    ));
    assert_eq!(
        err,
        "cluster.toml:5:17: worker \"a\": field \"ready_timeout\": must be longer than zero"
    );
    let err = error(&one_worker("ready_timeout = \"5s\"\n"));
    assert!(
        err.contains("field \"ready_timeout\": needs ready"),
        "{err}"
    );
    let err = error(&one_worker(
        "ready = { tcp = \"127.0.0.1:1\" }\nready_timeout = 5\n",
    ));
    assert!(err.contains("expected a duration"), "{err}");
}

#[test]
fn readiness_survives_the_json_form() {
    let config = parse(&one_worker(
        "ready = { after = \"2s\" }\nready_timeout = \"1m\"\n",
    ))
    .unwrap();
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["workers"][0]["ready_timeout"], "1m");
    let back: ClusterConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, config);
}

#[test]
fn placement_is_each_one_or_k_instances_and_quorum_needs_one() {
    let placement = |extra: &str| parse(&one_worker(extra)).map(|c| c.workers[0].placement);
    assert_eq!(placement("").unwrap(), Placement::Each);
    assert_eq!(
        placement("placement = \"each\"\n").unwrap(),
        Placement::Each
    );
    assert_eq!(placement("placement = \"one\"\n").unwrap(), Placement::One);
    assert_eq!(
        placement("placement = { instances = 3 }\n").unwrap(),
        Placement::Instances(3)
    );
    let config = parse(&one_worker("placement = \"one\"\nquorum = true\n")).unwrap();
    assert!(config.workers[0].quorum);
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["workers"][0]["placement"], "one");
    let back: ClusterConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, config);

    let err = error(&one_worker("placement = \"two\"\n"));
    assert!(
        err.contains("field \"placement\": unknown placement \"two\"; expected \"each\", \"one\" or { instances = k }"),
        "{err}"
    );
    let err = error(&one_worker("placement = { instances = 0 }\n"));
    assert!(
        err.contains("field \"placement.instances\": must be 1 to 1000"),
        "{err}"
    );
    let err = error(&one_worker("placement = { count = 2 }\n"));
    assert!(err.contains("placement.count"), "{err}");
    let err = error(&one_worker("quorum = true\n"));
    assert!(
        err.contains("field \"quorum\": needs placement = \"one\""),
        "{err}"
    );
    let err = error(&one_worker("placement = 3\n"));
    assert!(err.contains("field \"placement\""), "{err}");
}

#[test]
fn events_are_for_json_lines_workers_only() {
    let base = "[[worker]]\nname = \"w\"\ncommand = \"x\"\nevents = true\n";
    let config = ClusterConfig::parse(&format!("{base}protocol = \"jsonl\"\n"), "c.toml").unwrap();
    assert!(config.workers[0].events);
    assert_eq!(
        error(base),
        "cluster.toml:4:10: worker \"w\": field \"events\": needs protocol = \"jsonl\""
    );
    let plain = ClusterConfig::parse("[[worker]]\nname = \"w\"\ncommand = \"x\"\n", "c.toml");
    assert!(!plain.unwrap().workers[0].events);
}
