//! Random identifiers and secrets.

use rand::RngCore;

/// A new opaque id such as `key_3f9c…`: a short kind prefix and 16 random bytes in hex.
///
/// Ids are random rather than sequential so they leak neither counts nor order.
pub fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let mut id = String::with_capacity(prefix.len() + 33);
    id.push_str(prefix);
    id.push('_');
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// `N` bytes from the operating system's CSPRNG, for secrets and signing keys.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_are_unique() {
        let a = random_id("key");
        let b = random_id("key");
        assert!(a.starts_with("key_"));
        assert_eq!(a.len(), 4 + 32);
        assert_ne!(a, b);
    }
}
