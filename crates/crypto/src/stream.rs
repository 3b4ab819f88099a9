//! Streaming authenticated encryption for values too large to hold in memory (backups).
//!
//! A fresh 256-bit data key per stream, sealed by the keyring like any other value (so it
//! carries the key name and version, and rotation and retirement apply to it). The
//! plaintext is cut into chunks of [`CHUNK`] bytes, each sealed with AES-256-GCM under the
//! data key with the nonce `chunk index (u64 BE) | 0 0 0 | last-chunk flag (u8)` and the
//! caller's header as associated data. That is the STREAM construction (Hoang, Reyhanitabar,
//! Rogaway, Vizár 2015):
//!
//! - reordering or dropping a chunk changes the index a chunk is opened with: it fails;
//! - truncating at a chunk boundary leaves a last chunk that was sealed with flag 0, and
//!   the reader opens the final chunk with flag 1: it fails; appending after the real last
//!   chunk makes that one be opened with flag 0: it fails;
//! - a chunk or a header from another stream fails, as the data key (fresh per stream)
//!   and the header (bound as associated data) differ.
//!
//! Nonces never repeat: each data key seals one stream, and the index only counts up.
//!
//! On disk every chunk is `CHUNK + 16` bytes except the last, which is shorter or equal;
//! there is no length field to tamper with.

use std::io::{self, BufRead, Read, Write};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::envelope::{random_key, Context};
use crate::keyring::{Keyring, KeyringError};

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

/// A stream's data key, expanded. Never printed, never leaves this crate as bytes.
pub struct StreamKey(Aes256Gcm);

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey([redacted])")
    }
}

impl StreamKey {
    fn from_material(material: &[u8]) -> Option<StreamKey> {
        let key: [u8; 32] = material.try_into().ok()?;
        Some(StreamKey(Aes256Gcm::new((&key).into())))
    }

    fn nonce(index: u64, last: bool) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&index.to_be_bytes());
        nonce[11] = u8::from(last);
        nonce
    }
}

impl Keyring {
    /// A fresh data key for one stream, and that key sealed for `context` under the newest
    /// version of `name` (created on first use). Store the sealed bytes beside the stream.
    pub async fn new_stream_key(
        &self,
        name: &str,
        context: &Context,
    ) -> Result<(StreamKey, Vec<u8>), KeyringError> {
        let material = random_key();
        let sealed = self.seal(name, context, &material).await?;
        let key = StreamKey::from_material(&material).ok_or(KeyringError::Envelope(
            crate::envelope::EnvelopeError::Format,
        ))?;
        Ok((key, sealed))
    }

    /// Opens a data key made by [`Keyring::new_stream_key`] for the same context.
    pub async fn open_stream_key(
        &self,
        context: &Context,
        sealed: &[u8],
    ) -> Result<StreamKey, KeyringError> {
        let material = self.open(context, sealed).await?;
        StreamKey::from_material(&material).ok_or(KeyringError::Envelope(
            crate::envelope::EnvelopeError::Format,
        ))
    }

    /// [`Keyring::open_stream_key`] with the key version carried beside the stream (see
    /// [`Keyring::open_with_carried`]).
    pub fn open_stream_key_carried(
        &self,
        context: &Context,
        sealed: &[u8],
        carried: &[u8],
    ) -> Result<StreamKey, KeyringError> {
        let material = self.open_with_carried(context, sealed, carried)?;
        StreamKey::from_material(&material).ok_or(KeyringError::Envelope(
            crate::envelope::EnvelopeError::Format,
        ))
    }
}

/// Encrypts everything written to it into `inner`. Call [`EncryptWriter::finish`]: a
/// stream without its last chunk does not decrypt.
pub struct EncryptWriter<W: Write> {
    key: StreamKey,
    inner: W,
    header: Vec<u8>,
    buf: Vec<u8>,
    index: u64,
}

impl<W: Write> EncryptWriter<W> {
    /// `header` is bound into every chunk as associated data.
    pub fn new(key: StreamKey, header: &[u8], inner: W) -> EncryptWriter<W> {
        EncryptWriter {
            key,
            inner,
            header: header.to_vec(),
            buf: Vec::with_capacity(CHUNK + 1),
            index: 0,
        }
    }

    fn seal_chunk(&mut self, len: usize, last: bool) -> io::Result<()> {
        let nonce = StreamKey::nonce(self.index, last);
        let sealed = self
            .key
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &self.buf[..len],
                    aad: &self.header,
                },
            )
            .map_err(|_| io::Error::other("chunk encryption failed"))?;
        self.inner.write_all(&sealed)?;
        self.buf.drain(..len);
        self.index = self
            .index
            .checked_add(1)
            .ok_or_else(|| io::Error::other("stream too long"))?;
        Ok(())
    }

    /// Seals the last chunk (possibly empty) and returns the inner writer, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        let len = self.buf.len();
        self.seal_chunk(len, true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        // A full chunk is sealed as "not last" only once more data follows it, so the
        // last chunk always holds 0..=CHUNK bytes and the reader can tell it by length.
        while self.buf.len() > CHUNK {
            self.seal_chunk(CHUNK, false)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts a stream made by [`EncryptWriter`]. Any altered, missing, reordered or
/// appended chunk is an `InvalidData` error naming the chunk; nothing unauthenticated is
/// ever returned.
pub struct DecryptReader<R: BufRead> {
    key: StreamKey,
    inner: R,
    header: Vec<u8>,
    plain: Vec<u8>,
    pos: usize,
    index: u64,
    done: bool,
}

impl<R: BufRead> DecryptReader<R> {
    pub fn new(key: StreamKey, header: &[u8], inner: R) -> DecryptReader<R> {
        DecryptReader {
            key,
            inner,
            header: header.to_vec(),
            plain: Vec::new(),
            pos: 0,
            index: 0,
            done: false,
        }
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let mut sealed = vec![0u8; CHUNK + TAG];
        let mut filled = 0;
        while filled < sealed.len() {
            let n = self.inner.read(&mut sealed[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        sealed.truncate(filled);
        let last = filled < CHUNK + TAG || self.inner.fill_buf()?.is_empty();
        let nonce = StreamKey::nonce(self.index, last);
        self.plain = self
            .key
            .0
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: &self.header,
                },
            )
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "encrypted chunk {} does not authenticate: the file was altered, \
                         truncated or reordered, or it was sealed with another key",
                        self.index
                    ),
                )
            })?;
        self.pos = 0;
        self.index += 1;
        self.done = last;
        Ok(())
    }
}

impl<R: BufRead> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StreamKey {
        StreamKey::from_material(&[7u8; 32]).unwrap()
    }

    fn seal(data: &[u8]) -> Vec<u8> {
        let mut w = EncryptWriter::new(key(), b"hdr", Vec::new());
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn open(sealed: &[u8], header: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        DecryptReader::new(key(), header, io::BufReader::new(sealed)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_every_boundary() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(open(&seal(&data), b"hdr").unwrap(), data, "length {len}");
        }
    }

    #[test]
    fn truncation_reordering_appending_and_flips_fail() {
        let data = vec![42u8; 3 * CHUNK + 10];
        let sealed = seal(&data);
        let c = CHUNK + TAG;
        // Cut at a chunk boundary: the new last chunk was sealed as "not last".
        assert!(open(&sealed[..2 * c], b"hdr").is_err());
        // Drop the real last chunk's tail.
        assert!(open(&sealed[..sealed.len() - 1], b"hdr").is_err());
        // Swap chunks 0 and 1.
        let mut swapped = sealed[c..2 * c].to_vec();
        swapped.extend_from_slice(&sealed[..c]);
        swapped.extend_from_slice(&sealed[2 * c..]);
        assert!(open(&swapped, b"hdr").is_err());
        // Append a chunk after the last.
        let mut longer = sealed.clone();
        longer.extend_from_slice(&sealed[..c]);
        assert!(open(&longer, b"hdr").is_err());
        // One flipped bit, and another header.
        let mut flipped = sealed.clone();
        flipped[c + 5] ^= 1;
        assert!(open(&flipped, b"hdr").is_err());
        assert!(open(&sealed, b"other").is_err());
    }
}
