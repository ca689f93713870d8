//! `crypto::hmac_sha256(key, message)` (lower-case hex) and
//! `crypto::verify_hs256_jwt(token, key)`, for checking the app's own user sessions:
//! returns the claims when the signature is right and the token is within `nbf`/`exp`,
//! throws otherwise.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rhai::Dynamic;
use sha2::Sha256;

use super::{sdk_fn, throw, SdkResult};
use crate::value::to_script;
use rhai::Module;

type HmacSha256 = Hmac<Sha256>;

pub(super) fn register(module: &mut Module) {
    sdk_fn("hmac_sha256").set_into_module(module, |key: &str, message: &str| -> String {
        let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("any key length");
        mac.update(message.as_bytes());
        hex(&mac.finalize().into_bytes())
    });
    sdk_fn("verify_hs256_jwt").set_into_module(
        module,
        |token: &str, key: &str| -> SdkResult<Dynamic> {
            let now = picloud_shared::time::now_ms() / 1000;
            match verify_hs256(token, key.as_bytes(), now) {
                Ok(claims) => Ok(to_script(&claims)),
                Err(why) => throw(format!("crypto::verify_hs256_jwt: {why}")),
            }
        },
    );
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The claims of `token` if it is an HS256 JWT signed with `key`, valid at `now` (Unix
/// seconds).
pub(crate) fn verify_hs256(token: &str, key: &[u8], now: i64) -> Result<serde_json::Value, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT (three dot-separated parts)".into());
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| format!("the {what} is not base64url"))
    };
    let header: serde_json::Value = serde_json::from_slice(&decode(header, "header")?)
        .map_err(|_| "the header is not JSON".to_owned())?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err("the token is not signed with HS256".into());
    }
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(&token.as_bytes()[..token.len() - signature.len() - 1]);
    mac.verify_slice(&decode(signature, "signature")?)
        .map_err(|_| "the signature does not match".to_owned())?;
    let claims: serde_json::Value = serde_json::from_slice(&decode(payload, "payload")?)
        .map_err(|_| "the payload is not JSON".to_owned())?;
    if !claims.is_object() {
        return Err("the payload is not a JSON object".into());
    }
    let time = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .map(|t| Some(t as i64))
            .ok_or_else(|| format!("the `{name}` claim is not a number")),
    };
    if let Some(exp) = time("exp")? {
        if now >= exp {
            return Err("the token has expired".into());
        }
    }
    if let Some(nbf) = time("nbf")? {
        if now < nbf {
            return Err("the token is not valid yet".into());
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A token from jwt.io's HS256 example ("your-256-bit-secret"), with no exp.
    const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
        eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
        SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    #[test]
    fn a_well_signed_token_gives_its_claims_and_others_are_refused() {
        let claims = verify_hs256(TOKEN, b"your-256-bit-secret", 1_700_000_000).unwrap();
        assert_eq!(claims["name"], "John Doe");
        let wrong_key = verify_hs256(TOKEN, b"another-secret", 1_700_000_000);
        assert_eq!(wrong_key.unwrap_err(), "the signature does not match");
        let tampered = TOKEN.replace(
            "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ",
            "eyJzdWIiOiIxIn0",
        );
        assert!(verify_hs256(&tampered, b"your-256-bit-secret", 0).is_err());
        assert!(verify_hs256("a.b", b"k", 0).is_err());
    }

    #[test]
    fn expiry_and_not_before_are_checked() {
        let sign = |claims: &str| {
            let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
            let body = URL_SAFE_NO_PAD.encode(claims);
            let mut mac = HmacSha256::new_from_slice(b"k").unwrap();
            mac.update(format!("{head}.{body}").as_bytes());
            let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
            format!("{head}.{body}.{sig}")
        };
        let token = sign(r#"{"sub":"u1","exp":100,"nbf":50}"#);
        assert!(verify_hs256(&token, b"k", 99).is_ok());
        assert_eq!(
            verify_hs256(&token, b"k", 100).unwrap_err(),
            "the token has expired"
        );
        assert_eq!(
            verify_hs256(&token, b"k", 49).unwrap_err(),
            "the token is not valid yet"
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"u1"}"#)
        );
        assert_eq!(
            verify_hs256(&none, b"k", 0).unwrap_err(),
            "the token is not signed with HS256"
        );
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
