//! Uploads the member's browser encrypted (`assets/js/e2e-files.js`): the `tokens` field
//! of the upload form holds the blob itself, one Fernet token per line, made with a key
//! the server never receives. The server cannot verify the tokens (that takes the key),
//! but it checks everything that makes them a blob that `ghostcache decrypt`, Python's
//! `cryptography` and the browser's own download can read, before it stores a line:
//!
//! - each line is canonical URL-safe base64 with padding of a Fernet token: version byte
//!   `0x80`, an 8-byte timestamp, a 16-byte IV, whole AES blocks and a 32-byte tag;
//! - no line is longer than the token of a full chunk ([`MAX_TOKEN_CHARS`]), so a line
//!   is never held beyond that;
//! - its timestamp is the stamp of its place (`files::chunk_stamp`): line *n* is chunk
//!   *n − 1*, only the last line carries the "last" mark, and nothing follows it;
//! - every chunk but the last holds exactly [`CHUNK_BYTES`], as the server's own do, and
//!   the last is consistent with the plaintext size the browser declared (`plain_size`),
//!   which is what the file's page, its quota and its keyed download count.

use base64::Engine as _;

use super::{CHUNK_BYTES, chunk_stamp};
use crate::crypto::fernet_buf::{raw_len, token_len};

/// The longest line accepted: the token of a full chunk.
pub const MAX_TOKEN_CHARS: usize = token_len(CHUNK_BYTES);

const HEAD: usize = 1 + 8 + 16;
const TAG: usize = 32;
const BLOCK: usize = 16;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE;

/// Most bytes of the `tokens` field of a file of at most `max_plain` bytes: the tokens of
/// its chunks, each with its `\n`.
pub fn max_blob_bytes(max_plain: u64) -> u64 {
    let chunks = max_plain.div_ceil(CHUNK_BYTES as u64).max(1);
    chunks.saturating_mul(MAX_TOKEN_CHARS as u64 + 1)
}

/// What is wrong with a browser-encrypted upload. Lines count from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedProblem {
    /// The `tokens` field came without a `plain_size` before it.
    NoSize,
    /// `plain_size` is not a whole number.
    BadSize,
    /// A line that is not a Fernet token.
    NotToken(u64),
    /// A line longer than any token of this server.
    TooLong(u64),
    /// A token stamped for another place, or one after the last.
    OutOfPlace(u64),
    /// A chunk other than the last that does not hold a full chunk.
    ShortChunk(u64),
    /// The tokens end without the one marked last.
    Unfinished,
    /// The tokens do not hold `plain_size` bytes.
    SizeMismatch,
}

impl SealedProblem {
    /// What the member (or whoever sent it) is told.
    pub fn message(self) -> String {
        const NOTHING: &str = "Nothing was kept.";
        match self {
            SealedProblem::NoSize | SealedProblem::BadSize => format!(
                "The encrypted upload did not say how large the file is. {NOTHING} Use the form on this page."
            ),
            SealedProblem::NotToken(n) => {
                format!("Line {n} of the encrypted upload is not a Fernet token. {NOTHING}")
            }
            SealedProblem::TooLong(n) => format!(
                "Line {n} of the encrypted upload is longer than any token of this server ({MAX_TOKEN_CHARS} characters). {NOTHING}"
            ),
            SealedProblem::OutOfPlace(n) => format!(
                "Line {n} of the encrypted upload is out of place: the tokens must come in order, and end with the last chunk. {NOTHING}"
            ),
            SealedProblem::ShortChunk(n) => format!(
                "Line {n} of the encrypted upload holds less than a full chunk of {CHUNK_BYTES} bytes, though it is not the last. {NOTHING}"
            ),
            SealedProblem::Unfinished => format!(
                "The encrypted upload ended before its last chunk: it was cut short. {NOTHING}"
            ),
            SealedProblem::SizeMismatch => {
                format!("The encrypted upload does not hold as many bytes as it said. {NOTHING}")
            }
        }
    }
}

/// Parse `plain_size`: ASCII digits only.
pub fn parse_size(text: &str) -> Result<u64, SealedProblem> {
    let t = text.trim();
    if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SealedProblem::BadSize);
    }
    t.parse().map_err(|_| SealedProblem::BadSize)
}

/// The timestamp and ciphertext length of `line` if it has the form of a Fernet token.
fn token_form(line: &[u8]) -> Option<(u64, usize)> {
    if !line.len().is_multiple_of(4) || line.len() < token_len(0) {
        return None;
    }
    let raw = B64.decode(line).ok()?;
    let ct = raw
        .len()
        .checked_sub(HEAD + TAG)
        .filter(|n| *n >= BLOCK && n.is_multiple_of(BLOCK))?;
    let (version, rest) = raw.split_first()?;
    if *version != 0x80 {
        return None;
    }
    let stamp = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    Some((stamp, ct))
}

/// A checked token and the plaintext bytes it holds.
#[derive(Debug)]
pub struct Checked {
    pub token: Vec<u8>,
    pub plain: u64,
}

/// Cuts the `tokens` field into lines as it arrives and checks each (see the module
/// documentation). Holds at most one line.
#[derive(Debug)]
pub struct TokenLines {
    size: u64,
    line: Vec<u8>,
    /// Lines checked so far (the index of the next chunk).
    count: u32,
    ended: bool,
}

impl TokenLines {
    /// For a file of `size` plaintext bytes, as the browser declared it.
    pub fn new(size: u64) -> Self {
        Self {
            size,
            line: Vec::new(),
            count: 0,
            ended: false,
        }
    }

    /// Take more of the field; the complete lines, checked, go to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Checked>) -> Result<(), SealedProblem> {
        while !bytes.is_empty() {
            let (part, rest, complete) = match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => (
                    bytes.get(..at).unwrap_or_default(),
                    bytes.get(at + 1..).unwrap_or_default(),
                    true,
                ),
                None => (bytes, &[][..], false),
            };
            if self.line.len().saturating_add(part.len()) > MAX_TOKEN_CHARS {
                return Err(SealedProblem::TooLong(self.number()));
            }
            self.line.extend_from_slice(part);
            bytes = rest;
            if complete {
                let line = std::mem::take(&mut self.line);
                out.push(self.check(line)?);
            }
        }
        Ok(())
    }

    /// The field has ended: the last line if it had no `\n`, and whether the tokens ended
    /// with the last chunk.
    pub fn finish(mut self) -> Result<Option<Checked>, SealedProblem> {
        let rest = if self.line.is_empty() {
            None
        } else {
            let line = std::mem::take(&mut self.line);
            Some(self.check(line)?)
        };
        if self.ended {
            Ok(rest)
        } else {
            Err(SealedProblem::Unfinished)
        }
    }

    fn number(&self) -> u64 {
        u64::from(self.count) + 1
    }

    fn check(&mut self, line: Vec<u8>) -> Result<Checked, SealedProblem> {
        let n = self.number();
        let (stamp, ct) = token_form(&line).ok_or(SealedProblem::NotToken(n))?;
        let last = stamp & 1 == 1;
        if self.ended || stamp != chunk_stamp(self.count, last) {
            return Err(SealedProblem::OutOfPlace(n));
        }
        let before = u64::from(self.count) * CHUNK_BYTES as u64;
        let plain = if last {
            // PKCS#7 adds 1 to 16 bytes: the ciphertext says the size to within 16.
            let plain = self
                .size
                .checked_sub(before)
                .ok_or(SealedProblem::SizeMismatch)?;
            let ct = ct as u64;
            if plain >= ct || plain + (BLOCK as u64) < ct {
                return Err(SealedProblem::SizeMismatch);
            }
            plain
        } else {
            if HEAD + ct + TAG != raw_len(CHUNK_BYTES) {
                return Err(SealedProblem::ShortChunk(n));
            }
            CHUNK_BYTES as u64
        };
        self.ended = last;
        self.count = self.count.checked_add(1).ok_or(SealedProblem::TooLong(n))?;
        Ok(Checked { token: line, plain })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn blob(key: &SecretKey, plain: &[u8]) -> Vec<u8> {
        let chunks: Vec<&[u8]> = if plain.is_empty() {
            vec![&[][..]]
        } else {
            plain.chunks(CHUNK_BYTES).collect()
        };
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let t = super::super::seal_chunk(key, c, i as u32, i + 1 == chunks.len()).unwrap();
            out.extend_from_slice(&t);
            out.push(b'\n');
        }
        out
    }

    fn run(size: u64, bytes: &[u8], step: usize) -> Result<Vec<Checked>, SealedProblem> {
        let mut lines = TokenLines::new(size);
        let mut out = Vec::new();
        for part in bytes.chunks(step) {
            lines.feed(part, &mut out)?;
        }
        out.extend(lines.finish()?);
        Ok(out)
    }

    #[test]
    fn server_made_blobs_pass_in_any_cut() {
        let key = SecretKey::generate();
        for len in [
            0usize,
            1,
            15,
            16,
            17,
            CHUNK_BYTES,
            CHUNK_BYTES + 1,
            2 * CHUNK_BYTES + 100,
        ] {
            let plain = vec![7u8; len];
            let b = blob(&key, &plain);
            for step in [1000, 7919, b.len()] {
                let out = run(len as u64, &b, step).unwrap();
                assert_eq!(out.iter().map(|c| c.plain).sum::<u64>(), len as u64);
            }
            // One byte more or fewer than declared is refused, but for the 16-byte slack
            // of the padding the size is checked within.
            assert_eq!(
                run(len as u64 + 16, &b, 4096).err(),
                Some(SealedProblem::SizeMismatch)
            );
        }
    }

    #[test]
    fn hostile_lines_are_refused() {
        let key = SecretKey::generate();
        let b = blob(&key, &vec![1u8; 2 * CHUNK_BYTES + 5]);
        let lines: Vec<&[u8]> = b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
        let join = |ls: &[&[u8]]| {
            let mut v = Vec::new();
            for l in ls {
                v.extend_from_slice(l);
                v.push(b'\n');
            }
            v
        };
        let size = 2 * CHUNK_BYTES as u64 + 5;
        assert_eq!(
            run(size, b"hello\n", 10).err(),
            Some(SealedProblem::NotToken(1))
        );
        let long = vec![b'A'; MAX_TOKEN_CHARS + 1];
        assert_eq!(
            run(size, &long, 4096).err(),
            Some(SealedProblem::TooLong(1))
        );
        assert_eq!(
            run(size, &join(&[lines[1], lines[0], lines[2]]), 4096).err(),
            Some(SealedProblem::OutOfPlace(1))
        );
        assert_eq!(
            run(size, &join(&[lines[0], lines[1]]), 4096).err(),
            Some(SealedProblem::Unfinished)
        );
        assert_eq!(
            run(size, &join(&[lines[0], lines[1], lines[2], lines[2]]), 4096).err(),
            Some(SealedProblem::OutOfPlace(4))
        );
        // Standard base64 of the same bytes is not a token of this format.
        let std = String::from_utf8(lines[0].to_vec())
            .unwrap()
            .replace('-', "+")
            .replace('_', "/");
        if std.as_bytes() != lines[0] {
            assert_eq!(
                run(size, &join(&[std.as_bytes(), lines[1], lines[2]]), 4096).err(),
                Some(SealedProblem::NotToken(1))
            );
        }
        // A short chunk that is not the last.
        let short = super::super::seal_chunk(&key, b"x", 0, false).unwrap();
        assert_eq!(
            run(size, &join(&[&short, lines[1], lines[2]]), 4096).err(),
            Some(SealedProblem::ShortChunk(1))
        );
        assert_eq!(parse_size("12"), Ok(12));
        assert!(parse_size("-1").is_err() && parse_size("").is_err());
    }
}
