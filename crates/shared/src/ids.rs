//! Random identifiers and secrets.

use rand::RngCore;

const HEX: &[u8; 16] = b"0123456789abcdef";

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
        id.push(HEX[usize::from(b >> 4)] as char);
        id.push(HEX[usize::from(b & 0xf)] as char);
    }
    id
}

/// A new id that sorts by creation time, such as `evt_01936f…`: a kind prefix and a
/// UUIDv7 (48-bit millisecond timestamp, 74 random bits) in hex. Time order keeps index
/// inserts at the end of the b-tree.
pub fn time_ordered_id(prefix: &str) -> String {
    let uuid = uuid::Uuid::now_v7();
    let mut buffer = uuid::Uuid::encode_buffer();
    let hex = uuid.simple().encode_lower(&mut buffer);
    let mut id = String::with_capacity(prefix.len() + 1 + hex.len());
    id.push_str(prefix);
    id.push('_');
    id.push_str(hex);
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

    #[test]
    fn time_ordered_ids_sort_by_creation() {
        let ids: Vec<String> = (0..100).map(|_| time_ordered_id("evt")).collect();
        assert!(ids
            .iter()
            .all(|id| id.starts_with("evt_") && id.len() == 36));
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
    }
}
