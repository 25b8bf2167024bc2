//! Specifications of versioned configs: encoding, decoding, ordering.

use std::time::{Duration, Instant};

use super::*;

const TEXT: &str = "[[worker]]\nname = \"a\"\ncommand = \"true\"\n";

fn config(version: u64, text: &str, by: &str) -> VersionedConfig {
    VersionedConfig::new(version, text, by, 1_700_000_000_000).unwrap()
}

/// A config of `n` workers, about 330 bytes each.
fn generated(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "[[worker]]\nname = \"worker-{i:04}\"\ncommand = \"python3\"\n\
             args = [\"workers/worker_{i}.py\", \"--queue\", \"jobs-{i}\", \"--verbose\"]\n\
             group = \"group-{}\"\nrestart = \"transient\"\nmax_restarts = 5\nperiod = \"10s\"\n\
             shutdown_timeout = \"3s\"\nprotocol = \"jsonl\"\n\
             env = {{ LOG_LEVEL = \"info\", WORKER_INDEX = \"{i}\", QUEUE_URL = \"amqp://queue.internal:5672/jobs\" }}\n\
             cwd = \"/srv/app/workers\"\n\n",
            i % 7
        ));
    }
    text
}

#[test]
fn the_checksum_is_the_crc32_of_the_text() {
    let c = config(1, TEXT, "node-a");
    assert_eq!(c.checksum, crc32fast::hash(TEXT.as_bytes()));
    assert_eq!(c.config().workers[0].name, "a");
}

#[test]
fn an_invalid_text_gets_no_version() {
    let err = VersionedConfig::new(1, "[[worker]]\nname = \"a\"\n", "node-a", 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pushed config:1:1: worker \"a\": missing field \"command\""
    );
}

#[test]
fn an_encoded_config_decodes_to_itself() {
    let c = config(7, TEXT, "node \"a\"\nwith a newline");
    let encoded = c.encode();
    assert_eq!(encoded.lines().count(), 1 + TEXT.lines().count());
    assert_eq!(VersionedConfig::decode(&encoded).unwrap(), c);
}

#[test]
fn the_header_is_self_describing_json() {
    let c = config(7, TEXT, "node-a");
    let encoded = c.encode();
    let (header, text) = encoded.split_once('\n').unwrap();
    let header: serde_json::Value = serde_json::from_str(header).unwrap();
    assert_eq!(header["herd_config"], 1);
    assert_eq!(header["version"], 7);
    assert_eq!(header["pushed_by"], "node-a");
    assert_eq!(header["len"], TEXT.len());
    assert_eq!(text, TEXT);
}

#[test]
fn an_empty_config_round_trips() {
    let c = config(1, "", "node-a");
    assert_eq!(VersionedConfig::decode(&c.encode()).unwrap(), c);
}

#[test]
fn a_truncated_payload_says_how_much_is_missing() {
    let encoded = config(1, TEXT, "node-a").encode();
    let cut = &encoded[..encoded.len() - 5];
    let err = VersionedConfig::decode(cut).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { expected, found } if found + 5 == expected));
    assert!(err.to_string().starts_with("truncated: "), "{err}");
    let header_only = &encoded[..10];
    assert!(matches!(
        VersionedConfig::decode(header_only),
        Err(DecodeError::MissingHeader)
    ));
    assert!(matches!(
        VersionedConfig::decode(""),
        Err(DecodeError::MissingHeader)
    ));
}

#[test]
fn a_flipped_byte_fails_the_checksum() {
    let encoded = config(1, TEXT, "node-a").encode();
    let corrupt = encoded.replacen("true", "trUe", 1);
    let err = VersionedConfig::decode(&corrupt).unwrap_err();
    assert!(matches!(err, DecodeError::Checksum { .. }), "{err}");
    assert!(err.to_string().starts_with("checksum mismatch"), "{err}");
}

#[test]
fn extra_bytes_after_the_text_are_rejected() {
    let encoded = config(1, TEXT, "node-a").encode() + "junk";
    let err = VersionedConfig::decode(&encoded).unwrap_err();
    assert!(matches!(err, DecodeError::TrailingBytes { .. }), "{err}");
}

#[test]
fn a_garbled_header_or_unknown_format_is_rejected() {
    let err = VersionedConfig::decode("not json\n").unwrap_err();
    assert!(matches!(err, DecodeError::Header { .. }), "{err}");
    let encoded = config(1, TEXT, "node-a").encode();
    let future = encoded.replacen("\"herd_config\":1", "\"herd_config\":2", 1);
    let err = VersionedConfig::decode(&future).unwrap_err();
    assert!(matches!(err, DecodeError::Format { found: 2 }), "{err}");
}

#[test]
fn an_intact_payload_with_an_invalid_config_is_rejected() {
    let text = "[[worker]]\nname = \"a\"\n";
    let header = format!(
        "{{\"herd_config\":1,\"version\":1,\"pushed_by\":\"x\",\"pushed_at_ms\":0,\"checksum\":{},\"len\":{}}}",
        crc32fast::hash(text.as_bytes()),
        text.len()
    );
    let err = VersionedConfig::decode(&format!("{header}\n{text}")).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid(_)), "{err}");
    assert!(
        err.to_string().contains("missing field \"command\""),
        "{err}"
    );
}

#[test]
fn a_higher_version_supersedes_a_lower_one() {
    let old = config(1, TEXT, "node-z");
    let new = config(2, "", "node-a");
    assert!(new.supersedes(&old));
    assert!(!old.supersedes(&new));
}

#[test]
fn equal_versions_pick_the_same_winner_from_either_side() {
    let a = config(3, TEXT, "node-a");
    let b = config(3, "", "node-b");
    assert_ne!(a.supersedes(&b), b.supersedes(&a));
    let same_text = config(3, TEXT, "node-b");
    assert!(same_text.supersedes(&a));
    assert!(!a.supersedes(&same_text));
}

#[test]
fn the_tie_rule_is_version_then_checksum_then_pusher() {
    let low = config(3, TEXT, "node-z");
    let high = config(3, "", "node-a");
    let (low, high) = if low.checksum < high.checksum {
        (low, high)
    } else {
        (high, low)
    };
    assert!(
        high.supersedes(&low) && !low.supersedes(&high),
        "the higher checksum wins whoever pushed it"
    );
    let by_a = config(3, TEXT, "node-a");
    let by_b = config(3, TEXT, "node-b");
    assert!(by_b.supersedes(&by_a) && !by_a.supersedes(&by_b));
    let newer = config(4, TEXT, "node-a");
    assert!(
        newer.supersedes(&high),
        "a higher version beats any checksum"
    );
}

#[test]
fn the_parent_round_trips_and_an_old_header_has_none() {
    let parent = ConfigId {
        version: 6,
        checksum: 42,
    };
    let c = config(7, TEXT, "node-a").with_parent(parent);
    let encoded = c.encode();
    assert!(
        encoded.starts_with('{') && encoded.contains(r#""parent":{"version":6,"checksum":42}"#)
    );
    assert_eq!(
        VersionedConfig::decode(&encoded).unwrap().parent,
        Some(parent)
    );
    let old = config(7, TEXT, "node-a");
    assert!(!old.encode().contains("parent"), "no parent, no field");
    assert_eq!(VersionedConfig::decode(&old.encode()).unwrap().parent, None);
}

#[test]
fn a_winner_made_without_knowing_a_config_is_told_from_one_built_on_it() {
    let ours = config(5, TEXT, "node-a");
    let rival = config(5, "", "node-b").with_parent(ConfigId {
        version: 4,
        checksum: 1,
    });
    assert!(
        rival.made_without(&ours),
        "the same version: both pushes took it"
    );
    let on_ours = config(6, "", "node-b").with_parent(ours.id());
    assert!(!on_ours.made_without(&ours));
    let on_newer = config(8, "", "node-b").with_parent(ConfigId {
        version: 7,
        checksum: 9,
    });
    assert!(!on_newer.made_without(&ours));
    let on_older = config(6, "", "node-b").with_parent(ConfigId {
        version: 4,
        checksum: 1,
    });
    assert!(on_older.made_without(&ours));
    let on_rival = config(6, "", "node-c").with_parent(rival.id());
    assert!(
        on_rival.made_without(&ours),
        "built on the push that beat ours"
    );
    let from_nothing = config(6, "", "node-c").with_parent(ConfigId::NONE);
    assert!(from_nothing.made_without(&ours));
    let unknown = config(6, "", "node-c");
    assert!(
        !unknown.made_without(&ours),
        "no parent: only a tie says so"
    );
}

#[test]
fn identical_content_never_supersedes_itself() {
    let a = config(3, TEXT, "node-a");
    assert!(!a.supersedes(&a.clone()));
}

#[test]
fn a_config_of_300_workers_parses_quickly_and_round_trips() {
    let text = generated(300);
    assert!(text.len() > 90_000, "{} bytes", text.len());
    let started = Instant::now();
    let c = config(42, &text, "node-a");
    let encoded = c.encode();
    let decoded = VersionedConfig::decode(&encoded).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(decoded, c);
    assert_eq!(decoded.config().workers.len(), 300);
    assert_eq!(decoded.config().workers[299].name, "worker-0299");
    // Two parses of ~100 KB; generous for an unoptimized build on a busy machine.
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn a_versioned_config_serializes_with_its_parsed_workers() {
    let json = serde_json::to_value(config(5, TEXT, "node-a")).unwrap();
    assert_eq!(json["version"], 5);
    assert_eq!(json["config"]["workers"][0]["name"], "a");
}

#[test]
fn a_signature_travels_in_the_header_and_decodes_with_the_config() {
    use crate::config::signature::{sign, SecretKey};
    let key = SecretKey::generate();
    let c = config(7, TEXT, "node-a").with_signature(sign(&key, "prod", 7, TEXT));
    let encoded = c.encode();
    let header: serde_json::Value =
        serde_json::from_str(encoded.split_once('\n').unwrap().0).unwrap();
    assert_eq!(header["signature"]["key"], key.public().to_string());
    assert_eq!(header["herd_config"], 1, "the format number is unchanged");
    let decoded = VersionedConfig::decode(&encoded).unwrap();
    assert_eq!(decoded, c);
    assert_eq!(decoded.signature.unwrap().key, key.public());
}

#[test]
fn an_unsigned_encoding_has_no_signature_field() {
    let encoded = config(7, TEXT, "node-a").encode();
    assert!(!encoded.split_once('\n').unwrap().0.contains("signature"));
}

#[test]
fn an_unreadable_signature_is_a_decode_error() {
    let encoded = config(7, TEXT, "node-a").encode();
    let broken = encoded.replacen(
        "\"len\"",
        "\"signature\":{\"key\":\"AAAA\",\"sig\":\"AAAA\"},\"len\"",
        1,
    );
    let err = VersionedConfig::decode(&broken).unwrap_err();
    assert!(matches!(err, DecodeError::Signature(_)), "{err}");
    assert!(err.to_string().contains("public key \"AAAA\""), "{err}");
}
