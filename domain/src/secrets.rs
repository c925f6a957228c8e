//! The `secrets` table: every stored secret, sealed by [`crate::crypto::Keyring`].
//!
//! Other tables hold a secret's id, never its value. Reading one needs the tenant it belongs to.

use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::crypto::{Keyring, Sealed};
use crate::error::{Error, Result};
use crate::ids::new_id;

fn aad(id: Uuid, purpose: &str) -> Vec<u8> {
    [id.as_bytes().as_slice(), b":", purpose.as_bytes()].concat()
}

/// Seals `value` and stores it; returns the new secret's id.
pub async fn put(
    db: impl PgExecutor<'_>,
    keyring: &Keyring,
    tenant_id: Option<Uuid>,
    purpose: &str,
    value: &SecretString,
) -> Result<Uuid> {
    let id = new_id();
    let sealed = keyring.seal(&aad(id, purpose), value.expose_secret().as_bytes())?;
    sqlx::query("insert into secrets (id, tenant_id, purpose, key_id, ciphertext) values ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(tenant_id)
        .bind(purpose)
        .bind(&sealed.key_id)
        .bind(&sealed.bytes)
        .execute(db)
        .await?;
    Ok(id)
}

/// Opens the secret `id` of `tenant_id` (None = a platform-level secret).
pub async fn get(
    db: impl PgExecutor<'_>,
    keyring: &Keyring,
    tenant_id: Option<Uuid>,
    id: Uuid,
) -> Result<SecretString> {
    let row: Option<(String, String, Vec<u8>)> = sqlx::query_as(
        "select purpose, key_id, ciphertext from secrets where id = $1 and tenant_id is not distinct from $2",
    )
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(db)
    .await?;
    let (purpose, key_id, bytes) = row.ok_or(Error::not_found("secret"))?;
    let plain = keyring.open(&aad(id, &purpose), &Sealed { key_id, bytes })?;
    let text = String::from_utf8(plain.expose_secret().clone())
        .map_err(|_| Error::Crypto("secret is not UTF-8".into()))?;
    Ok(SecretString::from(text))
}

pub async fn delete(db: impl PgExecutor<'_>, tenant_id: Option<Uuid>, id: Uuid) -> Result<()> {
    sqlx::query("delete from secrets where id = $1 and tenant_id is not distinct from $2")
        .bind(id)
        .bind(tenant_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Re-encrypts every secret not sealed with the current key, in batches of `batch` rows, each
/// batch its own short transaction (rows locked with `skip locked`, so two rotations running at
/// once share the work). Returns how many secrets were re-encrypted.
pub async fn rotate(pool: &PgPool, keyring: &Keyring, batch: i64) -> Result<u64> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        let rows: Vec<(Uuid, String, String, Vec<u8>)> = sqlx::query_as(
            "select id, purpose, key_id, ciphertext from secrets where key_id <> $1 \
             order by id limit $2 for update skip locked",
        )
        .bind(keyring.current_key_id())
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(total);
        }
        for (id, purpose, key_id, bytes) in rows {
            let aad = aad(id, &purpose);
            let plain = keyring.open(&aad, &Sealed { key_id, bytes })?;
            let sealed = keyring.seal(&aad, plain.expose_secret())?;
            sqlx::query(
                "update secrets set key_id = $2, ciphertext = $3, updated_at = now() where id = $1",
            )
            .bind(id)
            .bind(&sealed.key_id)
            .bind(&sealed.bytes)
            .execute(&mut *tx)
            .await?;
            total += 1;
        }
        tx.commit().await?;
    }
}
