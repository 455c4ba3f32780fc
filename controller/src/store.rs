//! The crash-safe store: the accepted policy (as its TOML text) and the controller's
//! persistent counters, in one directory, each replaced atomically.
//!
//! A write goes to a temporary file in the same directory, is fsync'ed, renamed over the old
//! file, and the directory is fsync'ed: after `save` returns, a crash (kill -9, power loss on
//! a journaling file system) leaves either the old or the new content, never a mix; and what
//! `save` acknowledged survives. Each record carries its version and a checksum so a file
//! damaged by something else is detected (and reported with its path) instead of believed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What the store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Increases by one with every accepted change.
    pub version: u64,
    /// The master election generation id last used with the switch.
    pub generation_id: u64,
    /// The policy, as TOML text.
    pub policy: String,
}

/// A store directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

const FILE: &str = "policy.store";
const MAGIC: &str = "shg-store 1";

impl Store {
    /// Opens (creating it if needed) the store directory.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// The file holding the record.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The last saved record; `Ok(None)` when nothing was ever saved. A damaged file is an
    /// error naming the file and what is wrong.
    pub fn load(&self) -> io::Result<Option<Record>> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        decode(&text).map(Some).map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", path.display()),
            )
        })
    }

    /// Replaces the record atomically and durably.
    pub fn save(&self, rec: &Record) -> io::Result<()> {
        let tmp = self.dir.join(format!(".{FILE}.{}.tmp", std::process::id()));
        let ctx = |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what}: {e}"));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| ctx(e, &tmp.display().to_string()))?;
            f.write_all(encode(rec).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| ctx(e, &tmp.display().to_string()))?;
        }
        fs::rename(&tmp, self.path()).map_err(|e| ctx(e, &self.path().display().to_string()))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ctx(e, &self.dir.display().to_string()))
    }
}

/// FNV-1a 64: enough to notice a torn or edited file (not a security measure).
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn encode(rec: &Record) -> String {
    let body = format!(
        "version {}\ngeneration_id {}\nbytes {}\n{}",
        rec.version,
        rec.generation_id,
        rec.policy.len(),
        rec.policy
    );
    format!(
        "{MAGIC}\nchecksum {:016x}\n{body}",
        checksum(body.as_bytes())
    )
}

fn decode(text: &str) -> Result<Record, String> {
    let rest = text
        .strip_prefix(MAGIC)
        .and_then(|r| r.strip_prefix('\n'))
        .ok_or("line 1: not a shg store file")?;
    let (line, body) = rest.split_once('\n').ok_or("line 2: truncated")?;
    let sum = line
        .strip_prefix("checksum ")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or("line 2: expected `checksum HEX`")?;
    if checksum(body.as_bytes()) != sum {
        return Err("checksum mismatch: the file is damaged".into());
    }
    let mut lines = body.splitn(4, '\n');
    let mut field = |n: usize, key: &str| -> Result<u64, String> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(key))
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .ok_or(format!("line {n}: expected `{key} NUMBER`"))
    };
    let version = field(3, "version")?;
    let generation_id = field(4, "generation_id")?;
    let len = field(5, "bytes")?;
    let policy = lines.next().unwrap_or("").to_string();
    if u64::try_from(policy.len()).ok() != Some(len) {
        return Err(format!(
            "policy is {} bytes, header says {len}",
            policy.len()
        ));
    }
    Ok(Record {
        version,
        generation_id,
        policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shg-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_and_replace() {
        let d = tmpdir("rt");
        let s = Store::open(&d).unwrap();
        assert_eq!(s.load().unwrap(), None);
        let mut r = Record {
            version: 1,
            generation_id: 7,
            policy: "[services.a]\nport = 3\n".into(),
        };
        s.save(&r).unwrap();
        assert_eq!(s.load().unwrap(), Some(r.clone()));
        r.version = 2;
        r.policy.push_str("# more\n");
        s.save(&r).unwrap();
        assert_eq!(s.load().unwrap(), Some(r));
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE)]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn damage_is_reported_with_the_path() {
        let d = tmpdir("dmg");
        let s = Store::open(&d).unwrap();
        s.save(&Record {
            version: 3,
            generation_id: 1,
            policy: "x = 1\n".into(),
        })
        .unwrap();
        let mut text = fs::read_to_string(s.path()).unwrap();
        text = text.replace("x = 1", "x = 2");
        fs::write(s.path(), &text).unwrap();
        let e = s.load().unwrap_err().to_string();
        assert!(e.contains("policy.store") && e.contains("checksum"), "{e}");
        fs::write(s.path(), &text[..text.len() / 2]).unwrap();
        assert!(s.load().is_err());
        fs::write(s.path(), "hello").unwrap();
        assert!(s
            .load()
            .unwrap_err()
            .to_string()
            .contains("not a shg store"));
        fs::remove_dir_all(&d).unwrap();
    }
}
