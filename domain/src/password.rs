//! Passwords: argon2id hashes in PHC format, with a policy on length.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::Error;
use crate::validate::Validator;

pub const MIN_LEN: usize = 12;
/// Long enough for any passphrase; short enough that hashing it costs nothing extra.
pub const MAX_LEN: usize = 256;

pub fn check_policy(v: &mut Validator, field: &str, password: &str) {
    let len = password.chars().count();
    if len < MIN_LEN {
        v.error(field, format!("must be at least {MIN_LEN} characters"));
    } else if len > MAX_LEN {
        v.error(field, format!("must be at most {MAX_LEN} characters"));
    }
}

pub fn hash(password: &str) -> Result<String, Error> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Crypto(format!("hashing a password: {e}")))
}

/// Whether `password` matches `stored`. A malformed stored hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_LEN * 4 {
        return false;
    }
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Burns the same time as a real verification, so an unknown email answers as slowly as a
/// wrong password and login timing does not reveal which accounts exist.
pub fn verify_dummy(password: &str) {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$K1Rk2ti5Yx+YAmc0m6x4nYpjoWcv21WV2M1GWVuhQJo";
    let _ = verify(password, DUMMY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let stored = hash("correct horse battery").ok();
        let stored = stored.as_deref().unwrap_or_default();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", stored));
        assert!(!verify("wrong horse battery", stored));
        assert!(!verify("anything", "not a phc string"));
    }
}
