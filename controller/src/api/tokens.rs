//! Bearer tokens for the user and monitor roles: created once, shown once, stored only as SHA-256 hashes.
//!
//! A token is `shg_<id>_<secret>`: `id` is 8 hex digits naming the entry, `secret` 64 hex
//! digits (32 bytes from the system's random source). The store file holds one line per
//! token, `id role sha256(token) label`, and is replaced atomically (temporary file, fsync,
//! rename) with mode 0600. The server re-reads it when it changes, so `shgctl token create`
//! and `revoke` take effect without a restart. Verification hashes the presented token and
//! compares the digests in constant time.

use super::control::Role;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub id: String,
    pub role: Role,
    /// SHA-256 of the whole token, hex.
    pub hash: String,
    pub label: String,
}

/// The tokens, optionally backed by a file.
#[derive(Debug, Default)]
pub struct TokenStore {
    path: Option<PathBuf>,
    entries: Vec<TokenEntry>,
    /// (mtime, len) of the file when last read.
    seen: Option<(SystemTime, u64)>,
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 of `token`, hex.
pub fn hash_token(token: &str) -> String {
    hex(digest(&SHA256, token.as_bytes()).as_ref())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The id part of a well-formed token.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("shg_")?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == 8
        && secret.len() == 64
        && id
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_hexdigit());
    ok.then_some(id)
}

/// Parses the store file's text.
pub fn parse_store(text: &str) -> Result<Vec<TokenEntry>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut w = line.splitn(4, ' ');
        let (Some(id), Some(role), Some(hash)) = (w.next(), w.next(), w.next()) else {
            return Err(format!("line {}: expected `id role sha256 [label]`", i + 1));
        };
        let role = Role::parse(role)
            .filter(|r| *r != Role::Isp)
            .ok_or_else(|| format!("line {}: role {role:?} is not user or monitor", i + 1))?;
        if id.len() != 8 || hash.len() != 64 {
            return Err(format!("line {}: malformed id or hash", i + 1));
        }
        out.push(TokenEntry {
            id: id.to_string(),
            role,
            hash: hash.to_string(),
            label: w.next().unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

fn render(entries: &[TokenEntry]) -> String {
    let mut s = String::from("# shg-controller API tokens: id role sha256(token) label\n");
    for e in entries {
        let _ = writeln!(s, "{} {} {} {}", e.id, e.role.name(), e.hash, e.label);
    }
    s
}

fn stat(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl TokenStore {
    /// A store that lives only in memory.
    pub fn in_memory() -> TokenStore {
        TokenStore::default()
    }

    /// Opens (or starts) the store at `path`; a missing file is an empty store.
    pub fn open(path: &Path) -> io::Result<TokenStore> {
        let mut s = TokenStore {
            path: Some(path.to_path_buf()),
            ..TokenStore::default()
        };
        s.reload()?;
        Ok(s)
    }

    fn reload(&mut self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        match std::fs::read_to_string(path) {
            Ok(t) => {
                self.entries = parse_store(&t).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.entries.clear(),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
        self.seen = stat(path);
        Ok(())
    }

    /// Re-reads the file if it changed since the last read (a broken file keeps the old
    /// entries and is reported).
    pub fn refresh(&mut self) -> io::Result<()> {
        match &self.path {
            Some(p) if stat(p) != self.seen => self.reload(),
            _ => Ok(()),
        }
    }

    /// The stored entries.
    pub fn entries(&self) -> &[TokenEntry] {
        &self.entries
    }

    /// The role and id of a presented token.
    pub fn verify(&self, token: &str) -> Option<(Role, String)> {
        let id = token_id(token)?;
        let h = hash_token(token);
        self.entries
            .iter()
            .find(|e| e.id == id && ct_eq(e.hash.as_bytes(), h.as_bytes()))
            .map(|e| (e.role, e.id.clone()))
    }

    /// Creates a token for `role` (user or monitor) and saves the store; returns the token,
    /// which is never stored and cannot be shown again.
    pub fn create(&mut self, role: Role, label: &str) -> io::Result<(String, TokenEntry)> {
        if role == Role::Isp {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the isp role is a client certificate, not a token",
            ));
        }
        self.refresh()?;
        let rng = SystemRandom::new();
        let mut buf = [0u8; 36];
        rng.fill(&mut buf)
            .map_err(|_| io::Error::other("no system randomness"))?;
        let (idb, secret) = buf.split_at(4);
        let id = hex(idb);
        if self.entries.iter().any(|e| e.id == id) {
            return Err(io::Error::other("token id collision; try again"));
        }
        let token = format!("shg_{id}_{}", hex(secret));
        let label: String = label.chars().filter(|c| !c.is_control()).take(64).collect();
        let entry = TokenEntry {
            id,
            role,
            hash: hash_token(&token),
            label,
        };
        self.entries.push(entry.clone());
        if let Err(e) = self.save() {
            self.entries.pop();
            return Err(e);
        }
        Ok((token, entry))
    }

    /// Removes a token by id; false when there is none.
    pub fn revoke(&mut self, id: &str) -> io::Result<bool> {
        self.refresh()?;
        let before = self.entries.clone();
        self.entries.retain(|e| e.id != id);
        if self.entries.len() == before.len() {
            return Ok(false);
        }
        if let Err(e) = self.save() {
            self.entries = before;
            return Err(e);
        }
        Ok(true)
    }

    fn save(&mut self) -> io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".tokens.{}.tmp", std::process::id()));
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(render(&self.entries).as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        self.seen = stat(&path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_verify_revoke() {
        let dir = std::env::temp_dir().join(format!("shg-tokens-{}", std::process::id()));
        let path = dir.join("tokens");
        let _ = std::fs::remove_file(&path);
        let mut s = TokenStore::open(&path).unwrap();
        let (t, e) = s.create(Role::User, "phone").unwrap();
        assert!(token_id(&t).is_some());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&t), "the token itself is never stored");
        assert!(text.contains(&hash_token(&t)));
        let s2 = TokenStore::open(&path).unwrap();
        assert_eq!(s2.verify(&t), Some((Role::User, e.id.clone())));
        let mut wrong = t.clone();
        wrong.pop();
        wrong.push(if t.ends_with('0') { '1' } else { '0' });
        assert_eq!(s2.verify(&wrong), None);
        assert!(s.create(Role::Isp, "x").is_err());
        assert!(s.revoke(&e.id).unwrap());
        assert!(!s.revoke(&e.id).unwrap());
        let s3 = TokenStore::open(&path).unwrap();
        assert_eq!(s3.verify(&t), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn store_file_errors_name_the_line() {
        assert!(parse_store("# c\n\nabcdabcd user 00 x\n")
            .unwrap_err()
            .contains("line 3"));
        assert!(parse_store(&format!("abcdabcd isp {}\n", "0".repeat(64))).is_err());
    }
}
