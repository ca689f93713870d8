//! Subscriber tokens on the wire: compact JWS with HS256 (a JWT any library decodes),
//! made and checked with hmac/sha2/base64. No storage here: the
//! [`crate::token_authority`] finds the key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted; anything longer is refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Clock skew tolerated for `iat` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 30;

/// What a subscriber token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The app whose key signed it.
    pub app: String,
    /// The topics it lets its holder subscribe to.
    pub topics: Vec<String>,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// An opaque subject the app chose (a user id, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    kid: String,
}

/// Why a token was refused. Callers answer every one of these with the same 401; the
/// reason is for debug logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not three base64url parts of JSON, too long, or claims of the wrong shape.
    #[error("malformed token")]
    Malformed,
    /// The header names an algorithm other than HS256 (`none` included).
    #[error("algorithm not allowed")]
    Algorithm,
    /// No usable key has the header's kid.
    #[error("unknown or retired key")]
    UnknownKey,
    /// The MAC does not match.
    #[error("bad signature")]
    Signature,
    /// Signed for another app.
    #[error("token of another app")]
    OtherApp,
    /// Past `exp`.
    #[error("expired")]
    Expired,
    /// Before `nbf` or `iat`.
    #[error("not yet valid")]
    NotYetValid,
    /// Lives longer than the longest lifetime this server mints (plus leeway), or has
    /// times whose arithmetic would overflow.
    #[error("lifetime too long")]
    Lifetime,
    /// Lists no topics.
    #[error("no topics")]
    NoTopics,
}

/// Signs `claims` with `secret` under key id `kid`.
pub fn sign(claims: &TokenClaims, kid: &str, secret: &[u8]) -> String {
    let header = Header {
        alg: "HS256".into(),
        typ: Some("JWT".into()),
        kid: kid.into(),
    };
    let mut token = encode_json(&header);
    token.push('.');
    token.push_str(&encode_json(claims));
    let signature = mac(secret, token.as_bytes()).finalize().into_bytes();
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}

/// A token whose shape and algorithm are fine, before its signature is checked.
#[derive(Debug)]
pub struct Unverified<'a> {
    /// The key id from the header.
    pub kid: String,
    signing_input: &'a str,
    claims: &'a str,
    signature: Vec<u8>,
}

/// Splits a token and reads its header; refuses anything but HS256.
pub fn parse(token: &str) -> Result<Unverified<'_>, Rejected> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Rejected::Malformed);
    }
    let Some((signing_input, signature)) = token.rsplit_once('.') else {
        return Err(Rejected::Malformed);
    };
    let Some((header, claims)) = signing_input.split_once('.') else {
        return Err(Rejected::Malformed);
    };
    if claims.contains('.') {
        return Err(Rejected::Malformed);
    }
    let header: Header = decode_json(header)?;
    if header.alg != "HS256" {
        return Err(Rejected::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Rejected::Malformed)?;
    Ok(Unverified {
        kid: header.kid,
        signing_input,
        claims,
        signature,
    })
}

impl Unverified<'_> {
    /// Checks the MAC in constant time against `secret`, then the claims: the app must
    /// be `app`, `now_secs` within `[nbf/iat, exp)`, the lifetime (`exp - iat`, and
    /// what is left of it, `exp - now_secs`) at most `max_lifetime_secs` plus the
    /// leeway, and at least one topic listed. All time arithmetic is checked: absurd
    /// values are refused, never overflowed.
    pub fn verify(
        self,
        secret: &[u8],
        app: &str,
        now_secs: i64,
        max_lifetime_secs: i64,
    ) -> Result<TokenClaims, Rejected> {
        mac(secret, self.signing_input.as_bytes())
            .verify_slice(&self.signature)
            .map_err(|_| Rejected::Signature)?;
        let claims: TokenClaims = decode_json(self.claims)?;
        if claims.app != app {
            return Err(Rejected::OtherApp);
        }
        if now_secs >= claims.exp {
            return Err(Rejected::Expired);
        }
        let latest_start = now_secs.saturating_add(LEEWAY_SECS);
        if claims.nbf.unwrap_or(claims.iat) > latest_start || claims.iat > latest_start {
            return Err(Rejected::NotYetValid);
        }
        let longest = max_lifetime_secs.saturating_add(LEEWAY_SECS);
        let too_long = |from: i64| claims.exp.checked_sub(from).is_none_or(|l| l > longest);
        if too_long(claims.iat) || too_long(now_secs) {
            return Err(Rejected::Lifetime);
        }
        if claims.topics.is_empty() {
            return Err(Rejected::NoTopics);
        }
        Ok(claims)
    }
}

fn mac(secret: &[u8], input: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(input);
    mac
}

fn encode_json<T: Serialize>(value: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("token parts serialize"))
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, Rejected> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejected::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Rejected::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;

    fn claims() -> TokenClaims {
        TokenClaims {
            app: "shop".into(),
            topics: vec!["orders".into()],
            iat: NOW,
            nbf: Some(NOW),
            exp: NOW + 60,
            sub: Some("user-1".into()),
        }
    }

    const MAX_LIFETIME: i64 = 3600;

    fn check(token: &str) -> Result<TokenClaims, Rejected> {
        parse(token)?.verify(KEY, "shop", NOW, MAX_LIFETIME)
    }

    fn part(value: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn round_trip() {
        let token = sign(&claims(), "k1", KEY);
        assert_eq!(parse(&token).unwrap().kid, "k1");
        assert_eq!(check(&token), Ok(claims()));
    }

    /// The token is a standard JWT: its signature is HMAC-SHA256 over
    /// `base64url(header).base64url(claims)`, computed here independently.
    #[test]
    fn is_a_standard_hs256_jwt() {
        let token = sign(&claims(), "k1", KEY);
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut mac = HmacSha256::new_from_slice(KEY).unwrap();
        mac.update(input.as_bytes());
        assert_eq!(
            URL_SAFE_NO_PAD.decode(signature).unwrap(),
            mac.finalize().into_bytes().to_vec()
        );
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": "k1"})
        );
    }

    #[test]
    fn refusals() {
        let good = sign(&claims(), "k1", KEY);
        let (header, rest) = good.split_once('.').unwrap();
        let (body, signature) = rest.split_once('.').unwrap();

        // Another key.
        assert_eq!(
            parse(&sign(&claims(), "k1", b"another key"))
                .unwrap()
                .verify(KEY, "shop", NOW, MAX_LIFETIME),
            Err(Rejected::Signature)
        );
        // Claims swapped under the same signature.
        let mut other = claims();
        other.topics = vec!["everything".into()];
        let forged = format!("{header}.{}.{signature}", encode_json(&other));
        assert_eq!(check(&forged), Err(Rejected::Signature));
        // alg none, and another HMAC.
        for alg in ["none", "HS512", "hs256", "RS256"] {
            let h = part(serde_json::json!({"alg": alg, "kid": "k1"}));
            assert_eq!(
                check(&format!("{h}.{body}.{signature}")).unwrap_err(),
                Rejected::Algorithm
            );
            assert_eq!(
                check(&format!("{h}.{body}.")).unwrap_err(),
                Rejected::Algorithm
            );
        }
        // Another app's claims, correctly signed with this key.
        let mut foreign = claims();
        foreign.app = "blog".into();
        assert_eq!(check(&sign(&foreign, "k1", KEY)), Err(Rejected::OtherApp));
        // Time.
        let mut expired = claims();
        expired.exp = NOW;
        assert_eq!(check(&sign(&expired, "k1", KEY)), Err(Rejected::Expired));
        let mut early = claims();
        early.nbf = Some(NOW + 3600);
        assert_eq!(check(&sign(&early, "k1", KEY)), Err(Rejected::NotYetValid));
        let mut future = claims();
        future.iat = NOW + 3600;
        future.nbf = None;
        assert_eq!(check(&sign(&future, "k1", KEY)), Err(Rejected::NotYetValid));
        let mut empty = claims();
        empty.topics.clear();
        assert_eq!(check(&sign(&empty, "k1", KEY)), Err(Rejected::NoTopics));
        // Claims of the wrong shape, correctly signed.
        let bad_claims = part(
            serde_json::json!({"app": "shop", "topics": "orders", "iat": NOW, "exp": NOW + 60}),
        );
        let input = format!("{header}.{bad_claims}");
        let sig = URL_SAFE_NO_PAD.encode(mac(KEY, input.as_bytes()).finalize().into_bytes());
        assert_eq!(check(&format!("{input}.{sig}")), Err(Rejected::Malformed));
    }

    #[test]
    fn lifetimes_beyond_the_maximum_are_refused() {
        let with = |iat: i64, nbf: Option<i64>, exp: i64| {
            check(&sign(
                &TokenClaims {
                    iat,
                    nbf,
                    exp,
                    ..claims()
                },
                "k1",
                KEY,
            ))
        };
        // Up to the maximum plus the leeway is fine; a second more is not.
        assert!(with(NOW, None, NOW + MAX_LIFETIME + LEEWAY_SECS).is_ok());
        assert_eq!(
            with(NOW, None, NOW + MAX_LIFETIME + LEEWAY_SECS + 1),
            Err(Rejected::Lifetime)
        );
        // Issued long ago but expiring within the maximum: too long a lifetime.
        assert_eq!(with(NOW - 86_400, None, NOW + 60), Err(Rejected::Lifetime));
        // Absurd times are refused, never overflowed.
        let cases = [
            (NOW, None, i64::MAX),
            (i64::MIN, None, NOW + 60),
            (-1, None, NOW + 60),
            (i64::MIN, Some(i64::MIN), i64::MAX),
            (NOW, Some(i64::MAX), i64::MAX),
            (i64::MAX, None, i64::MAX),
        ];
        for (iat, nbf, exp) in cases {
            assert!(
                with(iat, nbf, exp).is_err(),
                "({iat}, {nbf:?}, {exp}) was accepted"
            );
        }
        // A clock at the end of time does not overflow either.
        let token = sign(&claims(), "k1", KEY);
        assert_eq!(
            parse(&token)
                .unwrap()
                .verify(KEY, "shop", i64::MAX, i64::MAX),
            Err(Rejected::Expired)
        );
        assert!(parse(&token)
            .unwrap()
            .verify(KEY, "shop", i64::MIN, i64::MAX)
            .is_err());
    }

    #[test]
    fn malformed_input_of_any_shape() {
        let good = sign(&claims(), "k1", KEY);
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        let cases = [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "a.b",
            "a.b.c.d",
            "eyJhbGciOiJIUzI1NiJ9..",
            &good[..good.len() / 2],
            &long,
            "💥.💥.💥",
            "e30.e30.e30",
        ];
        for case in cases {
            assert!(check(case).is_err(), "{case:?} was accepted");
        }
        let with_extra = format!("{good}.x");
        assert_eq!(check(&with_extra), Err(Rejected::Malformed));
        // A flipped bit anywhere fails.
        for i in 0..good.len() {
            let mut bytes = good.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != good {
                assert!(check(&tampered).is_err(), "tampered at {i} was accepted");
            }
        }
    }
}
