//! Secrets at rest: the instance's [`MasterKey`] and the sealed format secrets are
//! stored in (trigger signing secrets, subscriber-token keys).
//!
//! A sealed value is `v1:<key id>:<base64url(nonce ‖ ciphertext)>`, sealed with
//! XChaCha20-Poly1305 under the master key and a random 24-byte nonce. The associated
//! data names the row the value belongs to ([`Aad`]), so a sealed value copied into
//! another row does not open. The key id (a fingerprint of the key, never the key) says
//! which key sealed a value; it is the only thing about the key that is ever logged.

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use picloud_shared::ids::random_bytes;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::private_files::{create_private_dir, restrict_to_owner};

/// The prefix of every sealed value; plaintext secrets never start with it.
pub const SEALED_PREFIX: &str = "v1:";
/// The name of the key file in the data dir.
pub const KEY_FILE_NAME: &str = "master.key";

const NONCE_LEN: usize = 24;

/// The 32-byte key every stored secret is sealed under. Its `Debug` shows the key id
/// only.
#[derive(Clone)]
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> MasterKey {
        MasterKey::from_bytes(random_bytes::<32>())
    }

    fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let mut digest = Sha256::new();
        digest.update(b"picloud master key id\0");
        digest.update(bytes);
        let digest = digest.finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        MasterKey {
            key: Zeroizing::new(bytes),
            id,
        }
    }

    /// Parses the standard base64 of 32 bytes (what `openssl rand -base64 32` prints),
    /// ignoring surrounding whitespace. The error never repeats the value.
    pub fn from_base64(encoded: &str) -> Result<MasterKey> {
        let invalid =
            || Error::Invalid("a master key must be the base64 of exactly 32 bytes".to_owned());
        let decoded = Zeroizing::new(STANDARD.decode(encoded.trim()).map_err(|_| invalid())?);
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| invalid())?;
        Ok(MasterKey::from_bytes(bytes))
    }

    /// The key in the form [`MasterKey::from_base64`] reads.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(*self.key))
    }

    /// The key's id: 16 hex digits of a hash of the key, safe to log and print.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reads the key file at `path`.
    pub fn read_file(path: &Path) -> Result<MasterKey> {
        restrict_to_owner(path).map_err(|e| {
            Error::Secrets(format!(
                "cannot restrict the key file {}: {e}",
                path.display()
            ))
        })?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Error::Secrets(format!("cannot read the key file {}: {e}", path.display()))
        })?);
        MasterKey::from_base64(&text)
            .map_err(|e| Error::Secrets(format!("{}: {e}", path.display())))
    }

    /// Writes the key to a new file at `path`, readable by its owner only (0600), its
    /// folder created 0700 if missing. Fails if the file exists.
    pub fn write_new_file(&self, path: &Path) -> Result<()> {
        let fail =
            |e: std::io::Error| Error::Secrets(format!("cannot write {}: {e}", path.display()));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent).map_err(fail)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(fail)?;
        file.write_all(format!("{}\n", self.to_base64().as_str()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(fail)
    }

    /// The key in the file at `path`, or a new one written there (0600) if there is
    /// none. The flag says whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(MasterKey, bool)> {
        if path.exists() {
            return Ok((MasterKey::read_file(path)?, false));
        }
        let key = MasterKey::generate();
        match key.write_new_file(path) {
            Ok(()) => Ok((key, true)),
            // Another process created it first: use theirs.
            Err(_) if path.exists() => Ok((MasterKey::read_file(path)?, false)),
            Err(e) => Err(e),
        }
    }

    /// Seals `plaintext` for the row `aad` names.
    pub fn seal(&self, aad: &Aad, plaintext: &[u8]) -> String {
        let nonce = random_bytes::<NONCE_LEN>();
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.0.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message of a secret's size");
        let mut body = Vec::with_capacity(NONCE_LEN + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        format!(
            "{SEALED_PREFIX}{}:{}",
            self.id,
            URL_SAFE_NO_PAD.encode(body)
        )
    }

    /// Opens a value [`MasterKey::seal`] made for the row `aad` names. Fails if it is not
    /// sealed, was sealed under another key, for another row, or was altered.
    pub fn open(&self, aad: &Aad, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let (key_id, body) = parse_sealed(stored)
            .ok_or_else(|| Error::Secrets(format!("the stored {} is not sealed", aad.label())))?;
        if key_id != self.id {
            return Err(Error::Secrets(format!(
                "the stored {} was sealed under master key {key_id}, not {}",
                aad.label(),
                self.id
            )));
        }
        let opened = (body.len() > NONCE_LEN)
            .then(|| {
                let (nonce, ciphertext) = body.split_at(NONCE_LEN);
                self.cipher()
                    .decrypt(
                        XNonce::from_slice(nonce),
                        Payload {
                            msg: ciphertext,
                            aad: aad.0.as_bytes(),
                        },
                    )
                    .ok()
            })
            .flatten();
        opened
            .map(Zeroizing::new)
            .ok_or_else(|| Error::Secrets(format!("the stored {} does not open", aad.label())))
    }

    /// [`MasterKey::open`] for a secret stored as text.
    pub fn open_text(&self, aad: &Aad, stored: &str) -> Result<String> {
        let opened = self.open(aad, stored.as_bytes())?;
        String::from_utf8(opened.to_vec())
            .map_err(|_| Error::Secrets(format!("the stored {} is not text", aad.label())))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.key.as_slice()))
    }
}

/// Whether a stored value is sealed (rather than a plaintext secret written by a version
/// before sealing). Plaintext signing keys are exactly 32 random bytes and plaintext
/// trigger secrets start with `whsec_`, so neither is mistaken for a sealed value.
pub fn is_sealed(stored: &[u8]) -> bool {
    parse_sealed(stored).is_some()
}

/// The key id that sealed a stored value, if it is sealed.
pub fn sealed_key_id(stored: &[u8]) -> Option<&str> {
    parse_sealed(stored).map(|(id, _)| id)
}

/// Splits a sealed value into its key id and its decoded nonce and ciphertext.
fn parse_sealed(stored: &[u8]) -> Option<(&str, Vec<u8>)> {
    let text = std::str::from_utf8(stored.strip_prefix(SEALED_PREFIX.as_bytes())?).ok()?;
    let (key_id, body) = text.split_once(':')?;
    if key_id.len() != 16 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((key_id, URL_SAFE_NO_PAD.decode(body).ok()?))
}

/// The associated data binding a sealed value to its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad(String);

impl Aad {
    /// A trigger's signing secret, current or previous (rotation moves the current one
    /// into the previous column, so both share the trigger's binding).
    pub fn trigger_secret(trigger_id: &str) -> Aad {
        Aad(format!("trigger secret\0{trigger_id}"))
    }

    /// A key in `app_secrets`.
    pub fn app_secret(app: &str, purpose: &str, kid: &str) -> Aad {
        Aad(format!("app secret\0{app}\0{purpose}\0{kid}"))
    }

    /// An outbox source's database URL.
    pub fn source_url(source_id: &str) -> Aad {
        Aad(format!("source url\0{source_id}"))
    }

    /// The check value proving which key this database's secrets are sealed under.
    pub fn key_check() -> Aad {
        Aad("master key check".to_owned())
    }

    /// What the value is, for error messages.
    fn label(&self) -> String {
        self.0.replace('\0', " ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let key = MasterKey::generate();
        let aad = Aad::trigger_secret("trg_1");
        let sealed = key.seal(&aad, b"whsec_abc");
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("whsec_abc"));
        assert!(is_sealed(sealed.as_bytes()));
        assert_eq!(sealed_key_id(sealed.as_bytes()), Some(key.id()));
        assert_eq!(key.open_text(&aad, &sealed).unwrap(), "whsec_abc");
        assert_ne!(key.seal(&aad, b"whsec_abc"), sealed, "random nonces");

        assert!(key
            .open(&Aad::trigger_secret("trg_2"), sealed.as_bytes())
            .is_err());
        assert!(MasterKey::generate().open(&aad, sealed.as_bytes()).is_err());
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(key.open(&aad, &altered).is_err());
        assert!(
            key.open(&aad, b"whsec_abc").is_err(),
            "plaintext is not accepted"
        );
    }

    #[test]
    fn plaintext_secrets_are_not_taken_for_sealed_ones() {
        assert!(!is_sealed(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        assert!(!is_sealed(&[7u8; 32]));
        assert!(!is_sealed(b"v1:0123456789abcdef0123:xx"));
    }

    #[test]
    fn keys_parse_from_base64_and_never_show_in_debug() {
        let key = MasterKey::generate();
        let encoded = key.to_base64();
        let parsed = MasterKey::from_base64(&format!(" {}\n", encoded.as_str())).unwrap();
        assert_eq!(parsed.id(), key.id());
        assert!(!format!("{key:?}").contains(encoded.as_str()));
        for bad in ["", "not base64!", &STANDARD.encode([1u8; 31])] {
            let error = MasterKey::from_base64(bad).unwrap_err().to_string();
            assert!(error.contains("32 bytes"), "{error}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_created_0600_in_a_0700_folder_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join(KEY_FILE_NAME);
        let (created, fresh) = MasterKey::load_or_create(&path).unwrap();
        assert!(fresh);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (loaded, fresh) = MasterKey::load_or_create(&path).unwrap();
        assert!(!fresh);
        assert_eq!(loaded.id(), created.id());
        assert_eq!(
            mode(&path),
            0o600,
            "a key file readable by others is tightened"
        );
    }
}
