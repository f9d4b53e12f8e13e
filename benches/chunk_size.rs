//! Which plaintext chunk size for file blobs? Seals 64 MiB into Fernet tokens and stores
//! them in redb in batches of `BATCH_CHUNKS` (as uploads do), then reads them back from one
//! snapshot and opens them (as downloads do), for each size from 64 KiB to 1 MiB.
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
use ghostcache::files::{BATCH_CHUNKS, open_chunk, seal_chunk};
use ghostcache::store::Store;
use ghostcache::store::tables::FILE_CHUNKS;

const SIZES: [usize; 5] = [64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20];

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
    println!(
        "chunk size | seal+store MB/s | load+open MB/s | blob overhead | held per upload | held per download"
    );
    println!(
        "---------- | --------------- | -------------- | ------------- | --------------- | -----------------"
    );
    for size in SIZES {
        let mut best_write = 0f64;
        let mut best_read = 0f64;
        let mut blob = 0usize;
        for _ in 0..rounds {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("bench.redb")).unwrap();
            let key = SecretKey::generate();
            let id = [1u8; 16];

            let started = Instant::now();
            let mut index = 0u32;
            blob = 0;
            for batch in plaintext.chunks(size * BATCH_CHUNKS) {
                let txn = store.write().unwrap();
                {
                    let mut table = txn.open_table(FILE_CHUNKS).unwrap();
                    for piece in batch.chunks(size) {
                        let token = seal_chunk(&key, piece, 0, false).unwrap();
                        blob += token.len() + 1;
                        table.insert((id, index), token.as_bytes()).unwrap();
                        index += 1;
                    }
                }
                txn.commit().unwrap();
            }
            let write = total as f64 / started.elapsed().as_secs_f64() / 1e6;

            let started = Instant::now();
            let txn = store.read().unwrap();
            let table = txn.open_table(FILE_CHUNKS).unwrap();
            let mut read = 0usize;
            for i in 0..index {
                let token = table.get((id, i)).unwrap().unwrap().value().to_vec();
                read += open_chunk(&key, &token).unwrap().0.len();
            }
            assert_eq!(read, total);
            let read = total as f64 / started.elapsed().as_secs_f64() / 1e6;
            best_write = best_write.max(write);
            best_read = best_read.max(read);
        }
        // Upload: the batch filling plus the batch being sealed (plaintext), and one token
        // (4/3 of a chunk) at a time. Download: two queued plaintext chunks, one being
        // opened (token, decoded bytes, plaintext), one being written.
        let upload_held = 2 * BATCH_CHUNKS * size + size * 4 / 3;
        let download_held = 2 * size + size * 4 / 3 + size + size + size;
        println!(
            "{:>7} KiB | {:>15.1} | {:>14.1} | {:>12.2}% | {:>11.1} MiB | {:>13.2} MiB",
            size >> 10,
            best_write,
            best_read,
            (blob as f64 / total as f64 - 1.0) * 100.0,
            upload_held as f64 / 1048576.0,
            download_held as f64 / 1048576.0,
        );
    }
}
