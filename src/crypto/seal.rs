//! Symmetric sealing with Fernet (AES-128-CBC + HMAC-SHA256), the one symmetric format
//! used everywhere: wrapped keys, sealed private keys, file names, chat messages and file
//! chunks. Fernet is what the Python `cryptography` package reads, so file blobs can be
//! decrypted offline.

use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use super::{CryptoError, random_bytes};

/// A 32-byte Fernet key (16 bytes signing, 16 bytes encryption). Zeroized on drop.
///
/// The `fernet::Fernet` built from it is kept beside it (it zeroizes itself on drop), so
/// that sealing a file chunk by chunk does not rebuild it each time: building one leaves
/// a copy of the key bytes behind in freed memory, inside the `fernet` crate, which we
/// cannot wipe. Keeping it makes that one copy per key instead of one per operation.
pub struct SecretKey {
    bytes: SecretBox<[u8; 32]>,
    fernet: Option<fernet::Fernet>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl Clone for SecretKey {
    fn clone(&self) -> Self {
        Self {
            bytes: SecretBox::init_with_mut(|b: &mut [u8; 32]| {
                b.copy_from_slice(self.bytes.expose_secret())
            }),
            fernet: self.fernet.clone(),
        }
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(random_bytes::<32>());
        let key = Self::from_bytes(&bytes);
        zeroize::Zeroize::zeroize(&mut *bytes);
        key
    }

    /// Copy key bytes into a new zeroizing box.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        use base64::Engine;
        let encoded = Zeroizing::new(base64::engine::general_purpose::URL_SAFE.encode(bytes));
        Self {
            bytes: SecretBox::init_with_mut(|b: &mut [u8; 32]| b.copy_from_slice(bytes)),
            // Cannot fail for 32 bytes; if it ever did, sealing reports BadKey.
            fernet: fernet::Fernet::new(&encoded),
        }
    }

    /// Key from a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: &[u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Self::from_bytes(arr))
    }

    /// Parse the URL-safe base64 form that Fernet implementations use (44 characters,
    /// with padding). Surrounding whitespace is ignored.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        use base64::Engine;
        let text = text.trim();
        if text.len() != 44 {
            return Err(CryptoError::BadKey);
        }
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE
                .decode(text)
                .map_err(|_| CryptoError::BadKey)?,
        );
        Self::from_slice(&bytes)
    }

    /// The URL-safe base64 form (what Python's `Fernet(key)` takes). Shown to a member once
    /// for file keys; otherwise only passed straight to the Fernet implementation.
    pub fn to_base64(&self) -> Zeroizing<String> {
        use base64::Engine;
        Zeroizing::new(base64::engine::general_purpose::URL_SAFE.encode(self.bytes.expose_secret()))
    }

    /// Raw bytes, for wrapping this key under another.
    pub fn expose(&self) -> &[u8; 32] {
        self.bytes.expose_secret()
    }

    fn fernet(&self) -> Result<&fernet::Fernet, CryptoError> {
        self.fernet.as_ref().ok_or(CryptoError::BadKey)
    }

    /// Encrypt and authenticate `plaintext`.
    ///
    /// Every token carries the timestamp 0 instead of the time of sealing: the file at rest
    /// should not say when each secret was written, and the `fernet` crate refuses to
    /// decrypt tokens stamped more than 60 s ahead of the system clock (which a moved test
    /// clock would produce). Fernet readers accept timestamp 0 unless a TTL is asked for.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, CryptoError> {
        let f = self.fernet()?;
        Ok(f.encrypt_at_time(plaintext, 0))
    }

    /// Like [`SecretKey::seal`], with `stamp` (a small number, not a time) in the token's
    /// timestamp field, where it is authenticated with the rest: file chunks carry their
    /// place in the file there (see `files::chunk_stamp`). It must stay below the present
    /// time, since Fernet readers refuse tokens from the future.
    pub fn seal_stamped(&self, plaintext: &[u8], stamp: u64) -> Result<String, CryptoError> {
        let f = self.fernet()?;
        Ok(f.encrypt_at_time(plaintext, stamp))
    }

    /// Verify and decrypt a token. Time-to-live is not checked: expiry is enforced by the
    /// store, not by token age.
    pub fn open(&self, token: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let f = self.fernet()?;
        f.decrypt(token)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Unseal)
    }

    /// Seal another key under this one.
    pub fn wrap(&self, inner: &SecretKey) -> Result<String, CryptoError> {
        self.seal(inner.expose())
    }

    /// Recover a key sealed with [`SecretKey::wrap`].
    pub fn unwrap_key(&self, token: &str) -> Result<SecretKey, CryptoError> {
        let bytes = self.open(token)?;
        SecretKey::from_slice(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_wrong_key_fails() {
        let k = SecretKey::generate();
        let t = k.seal(b"hello").unwrap();
        assert_eq!(&**k.open(&t).unwrap(), b"hello");
        assert!(SecretKey::generate().open(&t).is_err());
        let mut tampered = t.clone().into_bytes();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        assert!(k.open(&String::from_utf8(tampered).unwrap()).is_err());
    }

    #[test]
    fn base64_form_round_trips() {
        let k = SecretKey::generate();
        let text = k.to_base64();
        assert_eq!(text.len(), 44);
        let back = SecretKey::from_base64(&format!(" {}\n", &*text)).unwrap();
        assert_eq!(back.expose(), k.expose());
        assert!(SecretKey::from_base64("short").is_err());
    }

    #[test]
    fn wrap_unwrap() {
        let outer = SecretKey::generate();
        let inner = SecretKey::generate();
        let w = outer.wrap(&inner).unwrap();
        assert_eq!(outer.unwrap_key(&w).unwrap().expose(), inner.expose());
    }
}
