//! Specifications of config signatures: what they bind, what the signer check refuses, the
//! text forms of keys.

use super::*;

const TEXT: &str = "[[worker]]\nname = \"a\"\ncommand = \"true\"\n";

fn signed(key: &SecretKey) -> ConfigSignature {
    sign(key, "prod", 7, TEXT)
}

#[test]
fn a_signature_verifies_for_exactly_what_was_signed() {
    let key = SecretKey::generate();
    let signature = signed(&key);
    assert_eq!(verify(&signature, "prod", 7, TEXT), Ok(()));
}

#[test]
fn a_tampered_text_does_not_verify() {
    let signature = signed(&SecretKey::generate());
    let tampered = TEXT.replace("true", "rm");
    let err = verify(&signature, "prod", 7, &tampered).unwrap_err();
    assert_eq!(err.reason(), "bad_signature");
    assert!(verify(&signature, "prod", 7, &format!("{TEXT} ")).is_err());
}

#[test]
fn another_version_does_not_verify() {
    let signature = signed(&SecretKey::generate());
    let err = verify(&signature, "prod", 8, TEXT).unwrap_err();
    assert!(
        err.to_string()
            .contains("did not sign version 8 of this config text for cluster \"prod\""),
        "{err}"
    );
}

#[test]
fn another_cluster_does_not_verify() {
    let signature = signed(&SecretKey::generate());
    assert!(verify(&signature, "staging", 7, TEXT).is_err());
}

#[test]
fn a_signature_claimed_by_another_key_does_not_verify() {
    let signature = signed(&SecretKey::generate());
    let other = SecretKey::generate().public();
    let forged = ConfigSignature {
        key: other,
        ..signature
    };
    let err = verify(&forged, "prod", 7, TEXT).unwrap_err();
    assert_eq!(
        err,
        Refusal::BadSignature {
            key: other,
            version: 7,
            cluster_id: "prod".into()
        }
    );
}

#[test]
fn the_signed_bytes_are_the_documented_lines_then_the_text() {
    assert_eq!(
        signed_bytes("prod", 7, TEXT),
        format!("herd config signature v1\ncluster \"prod\"\nversion 7\n{TEXT}").into_bytes()
    );
    // A cluster id cannot spill into the version line.
    assert_eq!(
        signed_bytes("a\nversion 9", 7, ""),
        b"herd config signature v1\ncluster \"a\\nversion 9\"\nversion 7\n".to_vec()
    );
}

#[test]
fn the_check_passes_only_a_valid_signature_by_a_signer() {
    let signer = SecretKey::generate();
    let stranger = SecretKey::generate();
    let signers = Signers::new([signer.public()]);
    assert_eq!(
        signers.check(Some(&signed(&signer)), "prod", 7, TEXT),
        Ok(())
    );

    let err = signers.check(None, "prod", 7, TEXT).unwrap_err();
    assert_eq!(err.reason(), "unsigned");
    assert!(
        err.to_string().contains(&signer.public().to_string()),
        "{err}"
    );

    let err = signers
        .check(Some(&signed(&stranger)), "prod", 7, TEXT)
        .unwrap_err();
    assert_eq!(err.reason(), "unknown_signer");
    assert!(
        err.to_string().starts_with(&format!(
            "signed by key {}, which is not one of",
            stranger.public()
        )),
        "{err}"
    );

    let err = signers
        .check(Some(&signed(&signer)), "prod", 8, TEXT)
        .unwrap_err();
    assert_eq!(err.reason(), "bad_signature");
    for refusal in [
        Refusal::Unsigned { signers: vec![] },
        err,
        Refusal::UnknownSigner {
            key: signer.public(),
            signers: vec![],
        },
    ] {
        assert!(Refusal::REASONS.contains(&refusal.reason()));
    }
}

#[test]
fn without_signers_every_config_passes() {
    let signers = Signers::default();
    assert!(!signers.required());
    assert_eq!(signers.check(None, "prod", 7, TEXT), Ok(()));
}

#[test]
fn signers_drop_duplicates() {
    let key = SecretKey::generate().public();
    assert_eq!(Signers::new([key, key]).keys(), &[key]);
}

#[test]
fn a_secret_key_file_round_trips_and_names_no_secret_in_errors() {
    let key = SecretKey::generate();
    let text = key.to_file_text();
    assert!(text.starts_with(SECRET_KEY_PREFIX) && text.ends_with('\n'));
    assert_eq!(text.lines().count(), 1);
    let read = SecretKey::from_file_text(&text).unwrap();
    assert_eq!(read.public(), key.public());

    assert_eq!(
        SecretKey::from_file_text("q0Jb0w0qCzq9e8o3uQk3hQ5l8Ue1lGk1l0mAq4rS9dM=").unwrap_err(),
        KeyError::Prefix
    );
    let short = format!("{SECRET_KEY_PREFIX}c2VjcmV0");
    let err = SecretKey::from_file_text(&short).unwrap_err().to_string();
    assert!(!err.contains("c2VjcmV0"), "{err}");
    assert!(err.contains("6 bytes, expected 32"), "{err}");
    assert!(!format!("{key:?}").contains(&text[SECRET_KEY_PREFIX.len()..].trim()[..8]));
}

#[test]
fn a_public_key_round_trips_through_its_text() {
    let key = SecretKey::generate().public();
    let text = key.to_string();
    assert_eq!(text.len(), 44);
    assert_eq!(PublicKey::parse(&format!(" {text}\n")).unwrap(), key);
    assert_eq!(serde_json::to_string(&key).unwrap(), format!("\"{text}\""));
}

#[test]
fn a_bad_public_key_is_quoted_in_its_error() {
    let err = PublicKey::parse("not-base64!").unwrap_err().to_string();
    assert!(
        err.starts_with("public key \"not-base64!\" is not standard base64"),
        "{err}"
    );
    let err = PublicKey::parse("AAAA").unwrap_err().to_string();
    assert_eq!(err, "public key \"AAAA\" is 3 bytes, expected 32");
}

#[test]
fn a_signature_round_trips_through_its_json_form() {
    let signature = signed(&SecretKey::generate());
    let json = serde_json::to_value(&signature).unwrap();
    assert_eq!(json["key"], signature.key.to_string());
    let text: SignatureText = serde_json::from_value(json).unwrap();
    assert_eq!(ConfigSignature::parse(&text).unwrap(), signature);
    let bad = SignatureText {
        key: signature.key.to_string(),
        sig: "AAAA".into(),
    };
    assert_eq!(
        ConfigSignature::parse(&bad).unwrap_err().to_string(),
        "signature \"AAAA\" is 3 bytes, expected 64"
    );
}
