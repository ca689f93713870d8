//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, the scheme svix
//! uses), so receivers can verify deliveries with any off-the-shelf library.
//!
//! A secret is `whsec_` and the standard base64 of the key bytes. The signed content is
//! `{msg_id}.{timestamp}.{body}`, the signature is the base64 of its HMAC-SHA256 under
//! the key, and the `webhook-signature` header carries it as `v1,<signature>`. While a
//! rotated-out secret is still in its grace period the header carries one signature per
//! secret, separated by spaces, and a receiver accepts the delivery if any one matches.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::triggers::SECRET_PREFIX;

/// The signature scheme version this module produces and accepts.
const VERSION: &str = "v1";

/// Signs one delivery with `secret`: returns `v1,<base64 signature>`.
///
/// `timestamp` is in seconds since the epoch, as sent in the `webhook-timestamp` header.
/// A secret that is not `whsec_` and non-empty base64 is [`Error::Invalid`].
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String> {
    let signature = signature(&key(secret)?, msg_id, timestamp, body);
    Ok(format!("{VERSION},{signature}"))
}

/// The `webhook-signature` header value for a delivery signed with every secret in
/// `secrets` (the current one, and the previous one during rotation): the signatures of
/// [`sign`], space-separated, in the order given.
pub fn signature_header(
    secrets: &[&str],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String> {
    let signatures = secrets
        .iter()
        .map(|secret| sign(secret, msg_id, timestamp, body))
        .collect::<Result<Vec<_>>>()?;
    Ok(signatures.join(" "))
}

/// Whether `header` (a `webhook-signature` value) holds a `v1` signature of this delivery
/// under `secret`. Signatures are compared in constant time; an invalid secret or a
/// malformed header is simply `false`. Does not judge the timestamp's freshness: that is
/// the receiver's replay window.
pub fn verify(secret: &str, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Ok(key) = key(secret) else {
        return false;
    };
    let expected = signature(&key, msg_id, timestamp, body);
    header
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == VERSION)
        // Fold rather than `any`, so every entry is compared whatever matched first.
        .fold(false, |found, (_, candidate)| {
            found | bool::from(expected.as_bytes().ct_eq(candidate.as_bytes()))
        })
}

/// The key bytes of a `whsec_` secret.
fn key(secret: &str) -> Result<Vec<u8>> {
    let invalid = |why: &str| Error::Invalid(format!("invalid signing secret: {why}"));
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| invalid("must start with 'whsec_'"))?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| invalid("must be 'whsec_' and standard base64"))?;
    if key.is_empty() {
        return Err(invalid("the key is empty"));
    }
    Ok(key)
}

/// The base64 HMAC-SHA256 of `{msg_id}.{timestamp}.{body}` under `key`.
fn signature(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector published with the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    const OTHER: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn matches_the_spec_test_vector() {
        assert_eq!(sign(SECRET, MSG_ID, TIMESTAMP, BODY).unwrap(), SIGNATURE);
        assert!(verify(SECRET, MSG_ID, TIMESTAMP, BODY, SIGNATURE));
    }

    #[test]
    fn rotation_header_lists_every_secret_in_order_and_verifies_with_either() {
        let header = signature_header(&[OTHER, SECRET], MSG_ID, TIMESTAMP, BODY).unwrap();
        let other = sign(OTHER, MSG_ID, TIMESTAMP, BODY).unwrap();
        assert_eq!(header, format!("{other} {SIGNATURE}"));
        assert!(verify(SECRET, MSG_ID, TIMESTAMP, BODY, &header));
        assert!(verify(OTHER, MSG_ID, TIMESTAMP, BODY, &header));
        let third = "whsec_c2VjcmV0LXRoYXQtc2lnbmVkLW5vdGhpbmc=";
        assert!(!verify(third, MSG_ID, TIMESTAMP, BODY, &header));
        assert_eq!(
            signature_header(&[SECRET], MSG_ID, TIMESTAMP, BODY).unwrap(),
            SIGNATURE
        );
    }

    #[test]
    fn tampering_fails_verification() {
        assert!(!verify(
            SECRET,
            MSG_ID,
            TIMESTAMP,
            br#"{"test": 2432232315}"#,
            SIGNATURE
        ));
        assert!(!verify(SECRET, MSG_ID, TIMESTAMP + 1, BODY, SIGNATURE));
        assert!(!verify(SECRET, "msg_other", TIMESTAMP, BODY, SIGNATURE));
        assert!(!verify(OTHER, MSG_ID, TIMESTAMP, BODY, SIGNATURE));
    }

    #[test]
    fn garbage_headers_are_false_not_panics() {
        let sig = SIGNATURE.strip_prefix("v1,").unwrap();
        for header in [
            "",
            " ",
            "v1",
            "v1,",
            ",,,",
            "garbage",
            sig,
            &format!("v2,{sig}"),
            &format!("v1a,{sig}"),
            &format!("v1,{sig}x"),
            &format!("v1,{}", &sig[..sig.len() - 1]),
            "v1,\u{0}\u{ff}é",
            "v1,!!!! v1,????",
        ] {
            assert!(
                !verify(SECRET, MSG_ID, TIMESTAMP, BODY, header),
                "{header:?}"
            );
        }
        // A valid entry among garbage still verifies.
        let mixed = format!("v2,abc  garbage {SIGNATURE}\tv1,");
        assert!(verify(SECRET, MSG_ID, TIMESTAMP, BODY, &mixed));
    }

    #[test]
    fn invalid_secrets_are_rejected() {
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
        ] {
            let err = sign(bad, MSG_ID, TIMESTAMP, BODY).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{bad}: {err}");
            assert!(!verify(bad, MSG_ID, TIMESTAMP, BODY, SIGNATURE));
        }
        assert!(signature_header(&[SECRET, "bad"], MSG_ID, TIMESTAMP, BODY).is_err());
    }

    #[test]
    fn signs_generated_32_byte_secrets() {
        let secret = format!(
            "{SECRET_PREFIX}{}",
            STANDARD.encode(picloud_shared::ids::random_bytes::<32>())
        );
        let signature = sign(&secret, MSG_ID, TIMESTAMP, b"").unwrap();
        // "v1," and the base64 of a 32-byte MAC.
        assert_eq!(signature.len(), 3 + 44);
        assert!(verify(&secret, MSG_ID, TIMESTAMP, b"", &signature));
    }
}
