//! Bearer tokens: session tokens, API keys and invitation tokens.
//!
//! Each is 256 random bits, shown to its owner once and stored only as a SHA-256 hash (the
//! tokens are high-entropy, so a fast hash is enough; a slow one would cost every request).
//! A typed prefix tells which kind a token is, so a leaked one is recognisable by scanners.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

pub const SESSION_PREFIX: &str = "wfo_s_";
pub const API_KEY_PREFIX: &str = "wfo_k_";
pub const INVITATION_PREFIX: &str = "wfo_i_";

/// A freshly minted token: the plaintext to hand out once, and the hash to store.
#[derive(Debug)]
pub struct Minted {
    pub plaintext: String,
    pub hash: [u8; 32],
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS random source failing is unrecoverable for a security product: refuse to go on.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

fn mint(prefix: &str) -> Minted {
    let plaintext = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    Minted {
        hash: hash(&plaintext),
        plaintext,
    }
}

pub fn session() -> Minted {
    mint(SESSION_PREFIX)
}

pub fn invitation() -> Minted {
    mint(INVITATION_PREFIX)
}

/// An API key `wfo_k_<public id>_<secret>`: the public id is listed (so people can tell keys apart
/// without seeing them); the whole string is the secret.
#[derive(Debug)]
pub struct MintedKey {
    pub prefix: String,
    pub token: Minted,
}

pub fn api_key() -> MintedKey {
    let public: String = random_bytes::<5>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let prefix = format!("{API_KEY_PREFIX}{public}");
    let plaintext = format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    MintedKey {
        prefix,
        token: Minted {
            hash: hash(&plaintext),
            plaintext,
        },
    }
}

/// A random password for generated accounts (demo tenant, CLI without `--password`).
pub fn password() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<18>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hashed() {
        let a = session();
        let b = session();
        assert_ne!(a.plaintext, b.plaintext);
        assert!(a.plaintext.starts_with(SESSION_PREFIX));
        assert_eq!(a.hash, hash(&a.plaintext));
        let key = api_key();
        assert!(key.token.plaintext.starts_with(&format!("{}_", key.prefix)));
        assert_eq!(key.prefix.len(), API_KEY_PREFIX.len() + 10);
    }
}
