//! Encryption of secrets at rest (SEC-003): AES-256-GCM under a master key.
//!
//! Keys are versioned by their fingerprint (`key_id`, stored beside each ciphertext), so a
//! keyring holds the current key plus any previous ones still needed to read old rows, and a
//! rotation re-encrypts rows until no row names an old key. Each ciphertext is bound to its
//! row through associated data, so ciphertexts cannot be swapped between rows.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::tokens::random_bytes;

const NONCE_LEN: usize = 12;

/// Why a configured master key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("is not valid base64")]
    NotBase64,
    #[error("must decode to exactly 32 bytes (got {0})")]
    WrongLength(usize),
}

struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl MasterKey {
    fn from_base64(encoded: &SecretString) -> Result<Self, KeyError> {
        let bytes = SecretBox::new(Box::new(
            STANDARD
                .decode(encoded.expose_secret().trim())
                .map_err(|_| KeyError::NotBase64)?,
        ));
        let raw = bytes.expose_secret();
        if raw.len() != 32 {
            return Err(KeyError::WrongLength(raw.len()));
        }
        let cipher =
            Aes256Gcm::new_from_slice(raw).map_err(|_| KeyError::WrongLength(raw.len()))?;
        // The fingerprint names the key without revealing it.
        let digest = Sha256::digest([b"workflowops-key-id:".as_slice(), raw].concat());
        let id = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { id, cipher })
    }
}

/// The master keys in force: one to encrypt with, any number still accepted for decryption.
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A sealed secret: which key sealed it, and nonce ‖ ciphertext ‖ tag.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl Keyring {
    pub fn new(current: &SecretString, previous: &[SecretString]) -> Result<Self, KeyError> {
        Ok(Self {
            current: MasterKey::from_base64(current)?,
            previous: previous
                .iter()
                .map(MasterKey::from_base64)
                .collect::<Result<_, _>>()?,
        })
    }

    /// A new random master key, base64-encoded, for `WFO_MASTER_KEY`.
    pub fn generate() -> SecretString {
        SecretString::from(STANDARD.encode(random_bytes::<32>()))
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, Error> {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let nonce =
            Nonce::try_from(&nonce_bytes[..]).map_err(|_| Error::Crypto("nonce length".into()))?;
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Crypto("encryption failed".into()))?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(&nonce_bytes);
        bytes.extend_from_slice(&ciphertext);
        Ok(Sealed {
            key_id: self.current.id.clone(),
            bytes,
        })
    }

    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<SecretBox<Vec<u8>>, Error> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| {
                Error::Crypto(format!(
                    "secret was sealed with master key {} which is not configured (set it in WFO_MASTER_KEY_PREVIOUS)",
                    sealed.key_id
                ))
            })?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(Error::Crypto("ciphertext is truncated".into()));
        }
        let (nonce_bytes, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_from(nonce_bytes).map_err(|_| Error::Crypto("nonce length".into()))?;
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(|plain| SecretBox::new(Box::new(plain)))
            .map_err(|_| {
                Error::Crypto("ciphertext failed authentication (wrong key or tampered)".into())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(current: &SecretString, previous: &[SecretString]) -> Keyring {
        match Keyring::new(current, previous) {
            Ok(k) => k,
            Err(e) => panic!("keyring: {e}"),
        }
    }

    #[test]
    fn seals_and_opens_with_the_same_associated_data_only() -> Result<(), Error> {
        let k = ring(&Keyring::generate(), &[]);
        let sealed = k.seal(b"row-1", b"n8n api key")?;
        assert!(!sealed.bytes.windows(11).any(|w| w == b"n8n api key"));
        assert_eq!(
            k.open(b"row-1", &sealed)?.expose_secret().as_slice(),
            b"n8n api key"
        );
        assert!(k.open(b"row-2", &sealed).is_err());
        Ok(())
    }

    #[test]
    fn previous_keys_still_open_what_they_sealed() -> Result<(), Error> {
        let old = Keyring::generate();
        let new = Keyring::generate();
        let sealed = ring(&old, &[]).seal(b"a", b"secret")?;
        assert!(ring(&new, &[]).open(b"a", &sealed).is_err());
        assert_eq!(
            ring(&new, &[old])
                .open(b"a", &sealed)?
                .expose_secret()
                .as_slice(),
            b"secret"
        );
        Ok(())
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert!(matches!(
            Keyring::new(&SecretString::from("not base64!"), &[]),
            Err(KeyError::NotBase64)
        ));
        assert!(matches!(
            Keyring::new(&SecretString::from(STANDARD.encode([0u8; 16])), &[]),
            Err(KeyError::WrongLength(16))
        ));
    }
}
