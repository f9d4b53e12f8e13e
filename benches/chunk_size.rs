//! Which plaintext chunk size for file blobs? Seals 64 MiB into Fernet tokens and stores
//! them in redb in batches of `BATCH_CHUNKS` (as uploads do), then reads them back one
//! chunk per read transaction and opens them (as downloads do), for each size from 64 KiB
//! to 1 MiB, on one core: once with the `fernet` crate (how ghostcache did it before) and
//! once in place (`crypto::fernet_buf`, how it does it now).
//!
//!     cargo bench --bench chunk_size
//!
//! Prints MB/s (10^6 bytes per second of plaintext) both ways, the blob's size overhead,
//! and the memory the server holds per transfer at that size. Under `cargo test` (no
//! `--bench` argument) it runs one small round as a smoke test.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark binary: prints its figures and stops on the first failure"
)]

use std::time::Instant;

use ghostcache::crypto::SecretKey;
use ghostcache::crypto::fernet_buf::{self, Sealable};
use ghostcache::files::BATCH_CHUNKS;
use ghostcache::files::download::READ_AHEAD;
use ghostcache::files::upload::SEALING;
use ghostcache::store::Store;
use ghostcache::store::tables::FILE_CHUNKS;

const SIZES: [usize; 5] = [64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20];

#[derive(Clone, Copy, PartialEq)]
enum Way {
    /// The `fernet` crate: a token from a slice, a plaintext from a copied token.
    Crate,
    /// In place: plaintext collected where it is sealed, tokens opened where they lie.
    InPlace,
}

/// Seal and store `plaintext` in chunks of `size`; returns MB/s and the blob's size.
fn write(store: &Store, key: &SecretKey, plaintext: &[u8], size: usize, way: Way) -> (f64, usize) {
    let reference = fernet::Fernet::new(&key.to_base64()).unwrap();
    let started = Instant::now();
    let mut index = 0u32;
    let mut blob = 0usize;
    for batch in plaintext.chunks(size * BATCH_CHUNKS) {
        let tokens: Vec<Vec<u8>> = batch
            .chunks(size)
            .map(|piece| match way {
                Way::Crate => reference.encrypt_at_time(piece, 0).into_bytes(),
                Way::InPlace => {
                    let mut s = Sealable::new(size);
                    // As an upload receives it: in pieces of 64 KiB.
                    for part in piece.chunks(64 << 10) {
                        s.extend(part);
                    }
                    s.seal(key, 0).unwrap()
                }
            })
            .collect();
        let txn = store.write().unwrap();
        {
            let mut table = txn.open_table(FILE_CHUNKS).unwrap();
            for token in &tokens {
                blob += token.len() + 1;
                table.insert(([1u8; 16], index), token.as_slice()).unwrap();
                index += 1;
            }
        }
        txn.commit().unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    (plaintext.len() as f64 / secs / 1e6, blob)
}

/// Load and open every chunk, one read transaction each; returns MB/s.
fn read(store: &Store, key: &SecretKey, chunks: u32, total: usize, way: Way) -> f64 {
    let reference = fernet::Fernet::new(&key.to_base64()).unwrap();
    let started = Instant::now();
    let mut read = 0usize;
    for i in 0..chunks {
        let txn = store.read().unwrap();
        let table = txn.open_table(FILE_CHUNKS).unwrap();
        let guard = table.get(([1u8; 16], i)).unwrap().unwrap();
        read += match way {
            Way::Crate => {
                let token = String::from_utf8(guard.value().to_vec()).unwrap();
                reference.decrypt(&token).unwrap().len()
            }
            Way::InPlace => fernet_buf::open(key, guard.value()).unwrap().1.len(),
        };
    }
    assert_eq!(read, total);
    total as f64 / started.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let total: usize = if bench { 64 << 20 } else { 2 << 20 };
    let rounds = if bench { 3 } else { 1 };
    let mut plaintext = vec![0u8; total];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in plaintext.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "{} MiB per round, {build} build, one core, best of {rounds}:",
        total >> 20
    );
    println!(
        "chunk size | seal+store, fernet crate | seal+store, in place | load+open, fernet crate | load+open, in place | blob overhead | held per upload | held per download"
    );
    println!(
        "---------- | ----------------------- | -------------------- | ----------------------- | ------------------- | ------------- | --------------- | -----------------"
    );
    for size in SIZES {
        let mut best = [0f64; 4];
        let mut blob = 0usize;
        for _ in 0..rounds {
            for (n, way) in [Way::Crate, Way::InPlace].into_iter().enumerate() {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(&dir.path().join("bench.redb")).unwrap();
                let key = SecretKey::generate();
                let (w, b) = write(&store, &key, &plaintext, size, way);
                blob = b;
                let chunks = total.div_ceil(size) as u32;
                let r = read(&store, &key, chunks, total, way);
                best[n] = best[n].max(w);
                best[n + 2] = best[n + 2].max(r);
            }
        }
        // Upload: the chunk being received, SEALING chunks being sealed (buffer and
        // token), a batch of tokens waiting and one being written. Download: READ_AHEAD
        // chunks being read (decoded token), two queued and one being written out.
        let token = fernet_buf::token_len(size);
        let upload_held = size + SEALING * (size + token) + 2 * BATCH_CHUNKS * token;
        let download_held = READ_AHEAD * fernet_buf::raw_len(size) + 3 * size;
        println!(
            "{:>7} KiB | {:>23.1} | {:>20.1} | {:>23.1} | {:>19.1} | {:>12.2}% | {:>11.1} MiB | {:>13.2} MiB",
            size >> 10,
            best[0],
            best[1],
            best[2],
            best[3],
            (blob as f64 / total as f64 - 1.0) * 100.0,
            upload_held as f64 / 1048576.0,
            download_held as f64 / 1048576.0,
        );
    }
}
