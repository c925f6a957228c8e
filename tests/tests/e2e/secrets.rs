use domain::crypto::Keyring;
use domain::secrets;
use secrecy::{ExposeSecret, SecretString};
use workflowops_tests::TestDb;

fn ring(current: &SecretString, previous: &[SecretString]) -> Keyring {
    Keyring::new(current, previous).unwrap_or_else(|e| panic!("{e}"))
}

// SEC-003
#[tokio::test]
async fn stored_secrets_are_ciphertext_and_rotation_re_encrypts_them() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e:#}"));
    let old_key = Keyring::generate();
    let old = ring(&old_key, &[]);
    let plaintext = "n8n-api-key-0123456789abcdef";
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            secrets::put(
                &db.pool,
                &old,
                None,
                "provider_api_key",
                &SecretString::from(plaintext),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as("select key_id, ciphertext from secrets")
        .fetch_all(&db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(rows.len(), 5);
    for (key_id, ciphertext) in &rows {
        assert_eq!(key_id, old.current_key_id());
        assert!(
            !ciphertext
                .windows(plaintext.len())
                .any(|w| w == plaintext.as_bytes())
        );
    }
    let distinct: std::collections::HashSet<_> = rows.iter().map(|r| &r.1).collect();
    assert_eq!(distinct.len(), 5, "every ciphertext uses its own nonce");

    // Rotate: new current key, old one kept for reading until the rotation ran.
    let new_key = Keyring::generate();
    let both = ring(&new_key, std::slice::from_ref(&old_key));
    assert_eq!(secrets::rotate(&db.pool, &both, 2).await.unwrap_or(0), 5);
    let key_ids: Vec<String> = sqlx::query_scalar("select distinct key_id from secrets")
        .fetch_all(&db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(key_ids, vec![both.current_key_id().to_owned()]);
    // The new key alone now reads everything; the old one alone reads nothing.
    let new_only = ring(&new_key, &[]);
    for id in &ids {
        let value = secrets::get(&db.pool, &new_only, None, *id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value.expose_secret(), plaintext);
        assert!(secrets::get(&db.pool, &old, None, *id).await.is_err());
    }
    assert_eq!(secrets::rotate(&db.pool, &both, 2).await.unwrap_or(99), 0);
}

// SEC-003
#[tokio::test]
async fn a_secret_is_bound_to_its_row_and_tenant() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e:#}"));
    let keys = ring(&Keyring::generate(), &[]);
    let a = secrets::put(
        &db.pool,
        &keys,
        None,
        "git_token",
        &SecretString::from("token-a"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let b = secrets::put(
        &db.pool,
        &keys,
        None,
        "git_token",
        &SecretString::from("token-b"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Swap ciphertexts between rows: authentication must fail rather than return the other secret.
    sqlx::query("update secrets set ciphertext = (select ciphertext from secrets where id = $2) where id = $1")
        .bind(a)
        .bind(b)
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(secrets::get(&db.pool, &keys, None, a).await.is_err());
    // Another tenant's id is not found.
    let other = uuid::Uuid::now_v7();
    assert!(matches!(
        secrets::get(&db.pool, &keys, Some(other), b).await,
        Err(domain::Error::NotFound { .. })
    ));
}
