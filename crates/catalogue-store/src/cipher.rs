//! Fernet (AES-128-CBC with HMAC-SHA256, the format of Python's `cryptography`), so that
//! values encrypted by the reference system's tools decrypt here and the other way round.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use pipeline::ports::{DecryptError, SecretCipher};
use secrecy::{ExposeSecret, SecretString};

/// A key that is not a Fernet key.
#[derive(Debug, thiserror::Error)]
#[error(
    "not a Fernet key: a key is 32 random bytes written in url-safe base64 (44 characters); \
     make one with `nachet-catalogue keygen`"
)]
pub struct InvalidKey;

/// The [`SecretCipher`] of stored catalogue versions.
pub struct FernetCipher {
    fernet: fernet::Fernet,
}

impl FernetCipher {
    pub fn new(key: &SecretString) -> Result<Self, InvalidKey> {
        fernet::Fernet::new(key.expose_secret().trim())
            .map(|fernet| Self { fernet })
            .ok_or(InvalidKey)
    }

    /// A new random key.
    pub fn generate_key() -> SecretString {
        SecretString::from(fernet::Fernet::generate_key())
    }
}

impl std::fmt::Debug for FernetCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FernetCipher([key])")
    }
}

/// A Fernet token: version byte 0x80, 8-byte time, 16-byte IV, ciphertext in 16-byte
/// blocks (at least one), 32-byte HMAC.
fn looks_like_token(token: &str) -> Result<(), String> {
    let bytes = URL_SAFE
        .decode(token)
        .or_else(|_| URL_SAFE_NO_PAD.decode(token))
        .map_err(|_| "not url-safe base64".to_owned())?;
    if bytes.first() != Some(&0x80) {
        return Err("not a Fernet token".into());
    }
    if bytes.len() < 1 + 8 + 16 + 16 + 32 || (bytes.len() - (1 + 8 + 16 + 32)) % 16 != 0 {
        return Err("a Fernet token of the wrong length".into());
    }
    Ok(())
}

impl SecretCipher for FernetCipher {
    fn encrypt(&self, plain: &str) -> String {
        self.fernet.encrypt(plain.as_bytes())
    }

    fn decrypt(&self, token: &str) -> Result<String, DecryptError> {
        let token = token.trim();
        looks_like_token(token).map_err(DecryptError::NotAToken)?;
        let bytes = self
            .fernet
            .decrypt(token)
            .map_err(|_| DecryptError::WrongKey)?;
        String::from_utf8(bytes)
            .map_err(|_| DecryptError::NotAToken("decrypts to bytes that are not text".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> FernetCipher {
        FernetCipher::new(&FernetCipher::generate_key()).unwrap()
    }

    #[test]
    fn a_value_round_trips_and_the_token_does_not_show_it() {
        let c = cipher();
        let token = c.encrypt("https://models.example/score");
        assert!(!token.contains("models.example"));
        assert_eq!(c.decrypt(&token).unwrap(), "https://models.example/score");
    }

    #[test]
    fn another_key_is_told_apart_from_a_value_that_is_not_a_token() {
        let token = cipher().encrypt("secret");
        assert_eq!(cipher().decrypt(&token), Err(DecryptError::WrongKey));
        assert!(matches!(
            cipher().decrypt("https://plain.example"),
            Err(DecryptError::NotAToken(_))
        ));
        assert!(matches!(
            cipher().decrypt("gAAAAA"),
            Err(DecryptError::NotAToken(_))
        ));
    }

    #[test]
    fn a_bad_key_is_refused_with_the_way_to_make_one() {
        let error = FernetCipher::new(&SecretString::from("short")).unwrap_err();
        assert!(error.to_string().contains("nachet-catalogue keygen"));
    }

    /// A token made by Python's `cryptography` (Fernet spec test vector).
    #[test]
    fn decrypts_the_fernet_specification_vector() {
        let key = SecretString::from("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=");
        let token = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==";
        assert_eq!(
            FernetCipher::new(&key).unwrap().decrypt(token).unwrap(),
            "hello"
        );
    }
}
