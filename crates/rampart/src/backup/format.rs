//! The backup file: a small clear header, then one encrypted, compressed stream.
//!
//! ```text
//! "RMPBAK01" | header_len u32 BE | header (JSON) | STREAM-encrypted( zstd( container ) )
//! container = entry* | 0u16
//! entry     = name_len u16 BE | name (UTF-8) | size u64 BE | bytes
//! ```
//!
//! The header names the backup, the keyring key and version, and carries the backup's
//! data key sealed by the keyring (bound to the backup id). The whole clear prefix (magic,
//! length, header) is the associated data of every encrypted chunk, so changing the
//! header breaks every chunk. The first entry is `manifest.json`; then `database.sqlite`
//! or `database.pgdump`; then `objects/<path>` for object-store files.
//!
//! Everything here is blocking I/O: callers run it in `spawn_blocking`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rampart_crypto::stream::{DecryptReader, EncryptWriter, StreamKey};
use rampart_objects::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::progress::Meter;

pub const MAGIC: &[u8; 8] = b"RMPBAK01";
/// Headers are small; a bigger length field is a damaged or foreign file.
const MAX_HEADER: u32 = 64 * 1024;
const ZSTD_LEVEL: i32 = 3;
pub const MANIFEST_ENTRY: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub id: String,
    pub created_at: i64,
    pub key_name: String,
    pub key_version: u32,
    /// The data key, sealed by the keyring (base64).
    pub sealed_key: String,
    pub compression: String,
    pub chunk_bytes: usize,
    /// `sqlite` or `postgres`, so a file restores without its `backups` row.
    pub backend: String,
    /// The keyring key version, sealed under the root key (base64): with the root key, the
    /// file restores where the keyring that made it is gone (a lost database).
    pub carried_key: String,
}

/// Writes through to `inner`, hashing and counting what passes.
struct Hashing<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn prefix(header: &Header) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(header).map_err(io::Error::other)?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

fn valid_entry_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 1024
        && !name.starts_with('/')
        && name.split('/').all(|part| !part.is_empty() && part != "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

/// One file going into a backup.
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
}

/// Writes a backup file at `out`; returns its size and SHA-256 (hex) as written.
/// `meter` counts the clear bytes archived, out of the manifest and files' total.
pub fn write(
    out: &Path,
    header: &Header,
    key: StreamKey,
    manifest: &[u8],
    entries: &[Entry],
    meter: &Meter,
) -> io::Result<(u64, String)> {
    let mut total = manifest.len() as u64;
    for entry in entries {
        total += std::fs::metadata(&entry.path)?.len();
    }
    meter.set_total(total);
    let prefix = prefix(header)?;
    let file = File::create(out)?;
    let mut hashing = Hashing {
        inner: BufWriter::new(file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    hashing.write_all(&prefix)?;
    let encrypt = EncryptWriter::new(key, &prefix, hashing);
    let mut zstd = zstd::Encoder::new(encrypt, ZSTD_LEVEL)?;
    write_entry(
        &mut zstd,
        MANIFEST_ENTRY,
        manifest.len() as u64,
        &mut meter.reader(manifest),
    )?;
    for entry in entries {
        let file = File::open(&entry.path)?;
        let size = file.metadata()?.len();
        write_entry(&mut zstd, &entry.name, size, &mut meter.reader(file))?;
    }
    zstd.write_all(&0u16.to_be_bytes())?;
    let hashing = zstd.finish()?.finish()?;
    let Hashing {
        inner,
        hasher,
        bytes,
    } = hashing;
    let file = inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((bytes, hex(&hasher.finalize())))
}

fn write_entry(
    out: &mut impl Write,
    name: &str,
    size: u64,
    data: &mut impl Read,
) -> io::Result<()> {
    if !valid_entry_name(name) {
        return Err(io::Error::other(format!("bad entry name {name:?}")));
    }
    out.write_all(&(name.len() as u16).to_be_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&size.to_be_bytes())?;
    // The size was read before copying: a file that changes meanwhile is an error, not a
    // silently short or long entry.
    let copied = io::copy(&mut data.take(size), out)?;
    if copied != size {
        return Err(io::Error::other(format!(
            "{name} changed while it was being backed up"
        )));
    }
    Ok(())
}

/// SHA-256 (hex) of a whole file, read back from disk.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = BufReader::new(File::open(path)?);
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads the clear header. The reader it returns is positioned at the encrypted stream;
/// the prefix bytes are the stream's associated data.
pub fn read_header(path: &Path) -> io::Result<(Header, Vec<u8>, BufReader<File>)> {
    let mut file = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 12];
    file.read_exact(&mut magic)
        .map_err(|_| invalid("not a Rampart backup (too short)".into()))?;
    if &magic[..8] != MAGIC {
        return Err(invalid("not a Rampart backup (bad magic)".into()));
    }
    let len = u32::from_be_bytes([magic[8], magic[9], magic[10], magic[11]]);
    if len > MAX_HEADER {
        return Err(invalid("backup header length is implausible".into()));
    }
    let mut json = vec![0u8; len as usize];
    file.read_exact(&mut json)
        .map_err(|_| invalid("backup header is truncated".into()))?;
    let header: Header = serde_json::from_slice(&json)
        .map_err(|e| invalid(format!("backup header is not valid: {e}")))?;
    let mut prefix = magic.to_vec();
    prefix.extend_from_slice(&json);
    Ok((header, prefix, file))
}

/// What reading a backup found: the manifest bytes and every other entry's name, size and
/// SHA-256.
pub struct Contents {
    pub manifest: Vec<u8>,
    pub entries: Vec<(String, u64, String)>,
}

/// Decrypts and decompresses the whole stream, checking every chunk's tag and the
/// container's structure. With `into`, entries other than the manifest are written
/// there (under their names); without, they are only hashed. `meter` counts the
/// encrypted bytes read, out of what follows the header in the file.
pub fn read(
    reader: BufReader<File>,
    prefix: &[u8],
    key: StreamKey,
    into: Option<&Path>,
    meter: &Meter,
) -> io::Result<Contents> {
    let size = reader.get_ref().metadata()?.len();
    meter.set_total(size.saturating_sub(prefix.len() as u64));
    let decrypt = DecryptReader::new(key, prefix, meter.reader(reader));
    let mut zstd = zstd::Decoder::new(decrypt)?.single_frame();
    let mut contents = Contents {
        manifest: Vec::new(),
        entries: Vec::new(),
    };
    loop {
        let mut len = [0u8; 2];
        zstd.read_exact(&mut len)?;
        let len = u16::from_be_bytes(len) as usize;
        if len == 0 {
            break;
        }
        let mut name = vec![0u8; len];
        zstd.read_exact(&mut name)?;
        let name = String::from_utf8(name)
            .ok()
            .filter(|n| valid_entry_name(n))
            .ok_or_else(|| invalid("backup holds an entry with a bad name".into()))?;
        let mut size = [0u8; 8];
        zstd.read_exact(&mut size)?;
        let size = u64::from_be_bytes(size);
        let mut body = (&mut zstd).take(size);
        if name == MANIFEST_ENTRY && contents.manifest.is_empty() {
            body.read_to_end(&mut contents.manifest)?;
            if contents.manifest.len() as u64 != size {
                return Err(invalid("backup ends inside its manifest".into()));
            }
            continue;
        }
        let mut hasher = Sha256::new();
        let copied = match into {
            Some(dir) => {
                let path = dir.join(&name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut out = Tee {
                    a: BufWriter::new(File::create(&path)?),
                    b: &mut hasher,
                };
                let n = io::copy(&mut body, &mut out)?;
                out.a.flush()?;
                n
            }
            None => io::copy(&mut body, &mut hasher)?,
        };
        if copied != size {
            return Err(invalid(format!("backup ends inside {name}")));
        }
        contents.entries.push((name, size, hex(&hasher.finalize())));
    }
    // Read to the end of the encrypted stream, so the last chunk (and with it the
    // absence of truncation) is authenticated, and nothing follows the container.
    let mut trailing = Vec::new();
    zstd.read_to_end(&mut trailing)?;
    let mut rest = zstd.finish();
    rest.read_to_end(&mut trailing)?;
    if !trailing.is_empty() {
        return Err(invalid("backup has data after its last entry".into()));
    }
    Ok(contents)
}

struct Tee<'a, A: Write> {
    a: A,
    b: &'a mut Sha256,
}

impl<A: Write> Write for Tee<'_, A> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.a.write(data)?;
        self.b.update(&data[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.a.flush()
    }
}
