//! In-process throughput of envelope sealing against raw AES-256-GCM on this machine.
//!
//! Raw AES-256-GCM (one encryption with a fixed key) is the physical limit; an envelope
//! seal does two (the value under a fresh data key, the data key under the key-encryption
//! key) plus two random nonces and a random key, so about half of raw is the expected
//! ceiling. Run: `cargo run --release -p rampart-crypto --example seal_throughput`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rampart_crypto::envelope::{self, Context, KeyVersions};

const RUN: Duration = Duration::from_secs(2);

fn rate(mut op: impl FnMut()) -> f64 {
    // Warm up, then count operations in a fixed time.
    for _ in 0..1000 {
        op();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..256 {
            op();
        }
        n += 256;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mut key = KeyVersions::default();
    key.insert(1, envelope::random_key());
    let ctx = Context::new("tenant", "vault_tokens", "sealed_pan", "tok_bench");
    let raw = Aes256Gcm::new((&envelope::random_key()).into());
    let nonce = [7u8; 12];
    println!(
        "in-process, one thread, {} s per measurement",
        RUN.as_secs()
    );
    for (label, size) in [("16 B (a card number)", 16usize), ("1 KiB", 1024)] {
        let data = vec![0x42u8; size];
        let raw_rate = rate(|| {
            black_box(
                raw.encrypt(Nonce::from_slice(&nonce), black_box(data.as_slice()))
                    .unwrap_or_default(),
            );
        });
        let seal_rate = rate(|| {
            black_box(envelope::seal("bench", &key, &ctx, black_box(&data)).unwrap_or_default());
        });
        let sealed = envelope::seal("bench", &key, &ctx, &data).unwrap_or_default();
        let open_rate = rate(|| {
            black_box(envelope::open(&key, &ctx, black_box(&sealed)).unwrap_or_default());
        });
        println!("raw AES-256-GCM {label}: {raw_rate:>12.0} ops/s");
        println!(
            "seal {label}: {seal_rate:>12.0} ops/s  ratio seal ÷ raw = {:.2}",
            seal_rate / raw_rate
        );
        println!(
            "open {label}: {open_rate:>12.0} ops/s  ratio open ÷ raw = {:.2}",
            open_rate / raw_rate
        );
    }
}
