//! Fernet tokens sealed and opened in buffers the caller owns: the file-chunk path.
//!
//! The format is Fernet's, byte for byte: version `0x80`, an 8-byte big-endian timestamp,
//! a random 16-byte IV, the AES-128-CBC ciphertext of the PKCS#7-padded plaintext, and an
//! HMAC-SHA256 tag over all of that, the whole in URL-safe base64 with padding. The key's
//! first 16 bytes sign, the last 16 encrypt. The `fernet` crate and Python's
//! `cryptography` read what this writes and the other way round (tests check both).
//!
//! What differs is the work per token: the `fernet` crate copies a chunk five or six
//! times over (padding, ciphertext, message, decoded token, plaintext) into fresh
//! allocations; here the plaintext is collected where it is encrypted ([`Sealable`]) and
//! a token is decoded, verified and decrypted in one buffer ([`open`]). AES (AES-NI) and
//! SHA-256 (the SHA extensions) pick the fastest instructions the processor has at run
//! time.

use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::Mac;
use zeroize::Zeroizing;

use super::{CryptoError, SecretKey, random_bytes};

const VERSION: u8 = 0x80;
/// Version byte, timestamp and IV: what precedes the ciphertext.
const HEAD: usize = 1 + 8 + 16;
const TAG: usize = 32;
const BLOCK: usize = 16;
/// Below this much plaintext a [`Sealable`] grows by doubling; from it on, it takes room
/// for the whole of its limit at once (one copy instead of a series).
const EAGER: usize = 16 * 1024;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE;

type Encryptor = cbc::Encryptor<aes::Aes128>;
type Decryptor = cbc::Decryptor<aes::Aes128>;
type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Bytes of a decoded token holding `plain` bytes of plaintext.
pub const fn raw_len(plain: usize) -> usize {
    HEAD + (plain / BLOCK + 1) * BLOCK + TAG
}

/// Characters of a token holding `plain` bytes of plaintext.
pub const fn token_len(plain: usize) -> usize {
    raw_len(plain).div_ceil(3) * 4
}

/// The largest plaintext whose token is `token` characters long, if a token can have
/// that length. Tokens of every plaintext length from `16·k` to `16·k + 15` are equally
/// long, so this gives the one that is a multiple of 16.
pub fn plain_len_of_token(token: usize) -> Option<usize> {
    // Decoded length from the base64 length; Fernet's raw lengths are HEAD + TAG + a
    // positive multiple of 16, so exactly one of the three candidates fits.
    if !token.is_multiple_of(4) || token < token_len(0) {
        return None;
    }
    let most = token / 4 * 3;
    (most.saturating_sub(2)..=most)
        .rev()
        .find(|raw| {
            raw.checked_sub(HEAD + TAG)
                .is_some_and(|ct| ct >= BLOCK && ct.is_multiple_of(BLOCK))
                && raw.div_ceil(3) * 4 == token
        })
        .map(|raw| raw - HEAD - TAG - BLOCK)
}

/// Plaintext collected in the very buffer it will be sealed in, with room for the head
/// before it and the padding and tag after it. It allocates as data arrives: a sender that
/// trickles gets a buffer about the size of what it sent, one that streams gets room for
/// `limit` bytes at once. Every buffer it lets go of is wiped.
pub struct Sealable {
    /// `HEAD` bytes of room, then the plaintext (empty until the first byte).
    buf: Zeroizing<Vec<u8>>,
    limit: usize,
}

impl std::fmt::Debug for Sealable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealable")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Sealable {
    /// An empty buffer (nothing allocated) that takes at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Zeroizing::new(Vec::new()),
            limit,
        }
    }

    /// Plaintext bytes collected.
    pub fn len(&self) -> usize {
        self.buf.len().saturating_sub(HEAD)
    }

    /// Whether no plaintext was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes still accepted.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.len())
    }

    /// Bytes allocated (for tests and benchmarks of memory use).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Make room for `plain` bytes of plaintext and their padding and tag, moving what
    /// is there into a larger buffer (and wiping the old one) when needed.
    fn reserve(&mut self, plain: usize) {
        let need = raw_len(plain);
        if self.buf.capacity() >= need {
            return;
        }
        let target = if plain >= EAGER {
            plain.max(self.limit)
        } else {
            plain.next_power_of_two().min(self.limit.max(plain))
        };
        let mut grown = Zeroizing::new(Vec::with_capacity(raw_len(target)));
        if self.buf.is_empty() {
            grown.resize(HEAD, 0);
        } else {
            grown.extend_from_slice(&self.buf);
        }
        // The old buffer is wiped as it drops.
        self.buf = grown;
    }

    /// Append plaintext (at most [`Sealable::room`] bytes are taken; returns how many).
    pub fn extend(&mut self, bytes: &[u8]) -> usize {
        let take = bytes.len().min(self.room());
        let (now, _) = bytes.split_at(take);
        if take > 0 {
            self.reserve(self.len() + take);
            self.buf.extend_from_slice(now);
        }
        take
    }

    /// Encrypt and authenticate what was collected, with `stamp` in the timestamp field.
    /// Returns the token (URL-safe base64 with padding, no newline).
    pub fn seal(mut self, key: &SecretKey, stamp: u64) -> Result<Vec<u8>, CryptoError> {
        let plain = self.len();
        self.reserve(plain);
        if self.buf.is_empty() {
            self.buf.resize(HEAD, 0);
        }
        let padded = (plain / BLOCK + 1) * BLOCK;
        self.buf.resize(HEAD + padded + TAG, 0);
        let (sign_key, enc_key) = key.expose().split_at(16);
        let (head, rest) = self.buf.split_at_mut(HEAD);
        let (body, tag) = rest.split_at_mut(padded);
        let iv: [u8; 16] = random_bytes();
        let (version, after) = head.split_at_mut(1);
        let (time, iv_room) = after.split_at_mut(8);
        version.copy_from_slice(&[VERSION]);
        time.copy_from_slice(&stamp.to_be_bytes());
        iv_room.copy_from_slice(&iv);
        Encryptor::new_from_slices(enc_key, &iv)
            .map_err(|_| CryptoError::BadKey)?
            .encrypt_padded_mut::<Pkcs7>(body, plain)
            .map_err(|_| CryptoError::BadKey)?;
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(sign_key).map_err(|_| CryptoError::BadKey)?;
        mac.update(head);
        mac.update(body);
        tag.copy_from_slice(&mac.finalize().into_bytes());
        let mut token = vec![0u8; token_len(plain)];
        let written = B64
            .encode_slice(&*self.buf, &mut token)
            .map_err(|_| CryptoError::BadKey)?;
        token.truncate(written);
        // What is left in the buffer is ciphertext: no need to wipe it.
        drop(std::mem::take(&mut *self.buf));
        Ok(token)
    }
}

/// The plaintext of an opened token, in the buffer it was decrypted in (wiped on drop).
pub struct Plain {
    buf: Zeroizing<Vec<u8>>,
    len: usize,
}

impl std::fmt::Debug for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plain").field("len", &self.len).finish()
    }
}

impl AsRef<[u8]> for Plain {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(HEAD..HEAD + self.len).unwrap_or_default()
    }
}

impl Plain {
    /// Plaintext bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Verify and decrypt one token (surrounding ASCII whitespace, such as a line's `\n`, is
/// ignored). Returns the token's timestamp (authenticated) and its plaintext. Any failure
/// is the one [`CryptoError::Unseal`].
pub fn open(key: &SecretKey, token: &[u8]) -> Result<(u64, Plain), CryptoError> {
    let token = token.trim_ascii();
    if !token.len().is_multiple_of(4) || token.len() < token_len(0) {
        return Err(CryptoError::Unseal);
    }
    let mut buf = Zeroizing::new(vec![0u8; token.len() / 4 * 3]);
    let raw = B64
        .decode_slice(token, &mut buf)
        .map_err(|_| CryptoError::Unseal)?;
    let body_len = raw
        .checked_sub(HEAD + TAG)
        .filter(|n| *n >= BLOCK && n.is_multiple_of(BLOCK))
        .ok_or(CryptoError::Unseal)?;
    let (sign_key, enc_key) = key.expose().split_at(16);
    let (message, rest) = buf.split_at_mut(HEAD + body_len);
    let tag = rest.get(..TAG).ok_or(CryptoError::Unseal)?;
    let mut mac = <HmacSha256 as Mac>::new_from_slice(sign_key).map_err(|_| CryptoError::Unseal)?;
    mac.update(message);
    mac.verify_slice(tag).map_err(|_| CryptoError::Unseal)?;
    let (head, body) = message.split_at_mut(HEAD);
    let (version, after) = head.split_at(1);
    let (time, iv) = after.split_at(8);
    if version != [VERSION] {
        return Err(CryptoError::Unseal);
    }
    let stamp = u64::from_be_bytes(time.try_into().map_err(|_| CryptoError::Unseal)?);
    let len = Decryptor::new_from_slices(enc_key, iv)
        .map_err(|_| CryptoError::Unseal)?
        .decrypt_padded_mut::<Pkcs7>(body)
        .map_err(|_| CryptoError::Unseal)?
        .len();
    Ok((stamp, Plain { buf, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(key: &SecretKey, plain: &[u8], stamp: u64) -> Vec<u8> {
        let mut s = Sealable::new(plain.len());
        assert_eq!(s.extend(plain), plain.len());
        s.seal(key, stamp).unwrap()
    }

    #[test]
    fn the_fernet_crate_reads_these_tokens_and_the_other_way_round() {
        let key = SecretKey::generate();
        let reference = fernet::Fernet::new(&key.to_base64()).unwrap();
        for len in [0usize, 1, 15, 16, 17, 31, 32, 1000, 65_536, 262_144] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let token = sealed(&key, &plain, 2 * len as u64 + 1);
            assert_eq!(token.len(), token_len(len), "length of {len}");
            let text = std::str::from_utf8(&token).unwrap();
            assert_eq!(reference.decrypt(text).unwrap(), plain, "crate opens {len}");
            let theirs = reference.encrypt_at_time(&plain, 42);
            let (stamp, opened) = open(&key, theirs.as_bytes()).unwrap();
            assert_eq!((stamp, opened.as_ref()), (42, &plain[..]), "opens {len}");
            let (stamp, mine) = open(&key, &token).unwrap();
            assert_eq!((stamp, mine.as_ref()), (2 * len as u64 + 1, &plain[..]));
            assert_eq!(mine.len(), len);
        }
    }

    #[test]
    fn tampering_wrong_keys_and_malformed_tokens_fail_alike() {
        let key = SecretKey::generate();
        let token = sealed(&key, b"secret chunk", 4);
        assert!(open(&SecretKey::generate(), &token).is_err());
        for i in [0, 5, 20, token.len() / 2, token.len() - 3] {
            let mut bad = token.clone();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            assert!(open(&key, &bad).is_err(), "flipped at {i}");
        }
        for bad in [
            &b""[..],
            b"gAAAA",
            &token[..token.len() - 4],
            b"\xff\xfe\xfd\xfc",
            &[b'A'; 200][..],
        ] {
            assert!(open(&key, bad).is_err());
        }
        let mut line = token.clone();
        line.push(b'\n');
        assert_eq!(open(&key, &line).unwrap().1.as_ref(), b"secret chunk");
    }

    #[test]
    fn a_trickle_gets_a_small_buffer_and_a_stream_one_allocation() {
        let mut s = Sealable::new(256 * 1024);
        for _ in 0..10 {
            s.extend(b"x");
        }
        assert!(s.capacity() < 256, "{}", s.capacity());
        s.extend(&[7u8; 20_000]);
        assert!(s.capacity() >= raw_len(256 * 1024));
        let before = s.capacity();
        assert_eq!(s.extend(&vec![1u8; 300_000]), 256 * 1024 - 20_010);
        assert_eq!(s.room(), 0);
        assert_eq!(s.capacity(), before, "no further growth");
        let key = SecretKey::generate();
        let token = s.seal(&key, 0).unwrap();
        assert_eq!(open(&key, &token).unwrap().1.len(), 256 * 1024);
    }

    #[test]
    fn token_lengths_give_back_the_chunk_size() {
        for plain in [0usize, 16, 48, 4096, 65_536, 262_144, 1 << 20] {
            assert_eq!(plain_len_of_token(token_len(plain)), Some(plain), "{plain}");
        }
        assert_eq!(plain_len_of_token(3), None);
        assert_eq!(plain_len_of_token(8), None);
    }
}
