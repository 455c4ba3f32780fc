//! Writing an accepted API push back to the `--config` file, so the file stays the source of truth and a later SIGHUP re-reads what the API set.
//!
//! [`file_text`] (pure) makes the new file's text: the pushed policy (`[gateway]`,
//! `[services.*]`) with the daemon's own tables (`[api]`, `[discovery]`) taken from the file
//! as the daemon last read it, because they are this machine's settings and not the policy's.
//! A pushed text without such tables is kept verbatim (comments included) and the tables are
//! appended; a pushed text with its own (ignored) ones is re-serialised without them.
//! [`write_atomic`] replaces the file crash-safely: a temporary file in the same directory,
//! written and fsynced, given the old file's permissions and owner, renamed over it, and the
//! directory fsynced. A symbolic link is followed: its target is replaced.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// The top-level keys that are the daemon's and not the policy's.
pub const DAEMON_TABLES: [&str; 2] = ["api", "discovery"];

/// First line of a written-back file (replaced, not repeated, by the next write).
pub const HEADER: &str = "# Written by shg-controller:";

fn is_daemon(k: &str) -> bool {
    DAEMON_TABLES.contains(&k)
}

/// The daemon's tables of a config text (empty when it has none or does not parse).
pub fn daemon_tables(text: &str) -> toml::Table {
    let Ok(mut t) = text.parse::<toml::Table>() else {
        return toml::Table::new();
    };
    t.retain(|k, _| is_daemon(k));
    t
}

/// The text to write: `pushed` with `tables` (from [`daemon_tables`]), under a one-line
/// header saying why the file changed. `note` is that reason (`policy version 4 from user
/// PUT /v1/priorities`).
pub fn file_text(pushed: &str, tables: &toml::Table, note: &str) -> Result<String, String> {
    let parsed = pushed
        .parse::<toml::Table>()
        .map_err(|e| format!("the pushed policy is not TOML: {e}"))?;
    let own = parsed.keys().any(|k| is_daemon(k));
    let body = if own {
        let mut t = parsed;
        t.retain(|k, _| !is_daemon(k));
        t.extend(tables.iter().map(|(k, v)| (k.clone(), v.clone())));
        to_toml(&t).map_err(|e| format!("cannot write the policy as TOML: {e}"))?
    } else {
        let mut b: String = pushed
            .lines()
            .skip_while(|l| l.starts_with(HEADER))
            .map(|l| format!("{l}\n"))
            .collect();
        if !tables.is_empty() {
            let t = to_toml(tables)
                .map_err(|e| format!("cannot write the daemon's tables as TOML: {e}"))?;
            b = format!("{}\n\n# This machine's settings (not part of the policy; kept by API pushes).\n{t}", b.trim_end());
        }
        b
    };
    let note = note.replace(['\n', '\r'], " ");
    Ok(format!(
        "{HEADER} {note}. Edit and send SIGHUP, or use the API.\n{}",
        body.trim_start_matches('\n')
    ))
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        // A JSON string is a valid TOML basic string (same escapes).
        serde_json::to_string(k).unwrap_or_default()
    }
}

fn value(v: &toml::Value) -> Result<String, String> {
    Ok(match v {
        toml::Value::String(s) => serde_json::to_string(s).map_err(|e| e.to_string())?,
        toml::Value::Integer(i) => i.to_string(),
        // Debug keeps a decimal point (`1.0`), so a float stays a float.
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => return Err(format!("a date ({d:?}) is not supported here")),
        toml::Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(value)
                .collect::<Result<Vec<_>, _>>()?
                .join(", ")
        ),
        toml::Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| Ok(format!("{} = {}", key(k), value(v)?)))
                .collect::<Result<Vec<_>, String>>()?
                .join(", ")
        ),
    })
}

fn table(out: &mut String, path: &str, t: &toml::Table) -> Result<(), String> {
    let (subs, plain): (Vec<_>, Vec<_>) = t.iter().partition(|(_, v)| v.is_table());
    if !path.is_empty() && (!plain.is_empty() || subs.is_empty()) {
        out.push_str(&format!("\n[{path}]\n"));
    }
    for (k, v) in plain {
        out.push_str(&format!("{} = {}\n", key(k), value(v)?));
    }
    for (k, v) in subs {
        if let toml::Value::Table(sub) = v {
            let p = if path.is_empty() {
                key(k)
            } else {
                format!("{path}.{}", key(k))
            };
            table(out, &p, sub)?;
        }
    }
    Ok(())
}

/// A TOML document for `t` (the `toml` crate is built without its writer). Plain keys first,
/// then each table under its `[dotted.header]`.
pub fn to_toml(t: &toml::Table) -> Result<String, String> {
    let mut out = String::new();
    table(&mut out, "", t)?;
    Ok(out.trim_start_matches('\n').to_string())
}

/// The file a write to `path` replaces (a symbolic link's target).
fn target(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Replaces `path` with `text` atomically, keeping its permissions and owner.
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let path = target(path);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{name}.shg-{}.tmp", std::process::id()));
    let old = std::fs::metadata(&path).ok();
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        if let Some(m) = &old {
            f.set_permissions(m.permissions())?;
            // Only root may give the file away; a non-root daemon owns what it writes.
            if let Err(e) = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())) {
                if e.kind() != io::ErrorKind::PermissionDenied {
                    return Err(e);
                }
            }
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = include_str!("../../../tests/fixtures/controller/gateway.toml");
    const TABLES: &str = "\n[api]\nlisten = \"127.0.0.1:8443\"\ncert = \"c.pem\"\nkey = \"k.pem\"\nisp_ca = \"ca.pem\"\ntokens = \"tokens\"\n\n[discovery]\ninterfaces = [\"lan1\"]\n";

    #[test]
    fn the_daemon_tables_survive_a_push() {
        let file = format!("{GATEWAY}{TABLES}");
        let tables = daemon_tables(&file);
        assert_eq!(tables.len(), 2);
        // A pushed text without daemon tables: kept verbatim, the tables appended.
        let pushed = GATEWAY.replace("priority = 3", "priority = 4");
        let out = file_text(
            &pushed,
            &tables,
            "policy version 2 from user PUT /v1/priorities",
        )
        .unwrap();
        assert!(out.starts_with(HEADER), "{out}");
        assert!(
            out.contains("# A home gateway with three services"),
            "comments kept"
        );
        assert_eq!(
            crate::config::parse(&out).unwrap(),
            crate::config::parse(&pushed).unwrap()
        );
        assert_eq!(
            crate::config::daemon_settings(&out).unwrap(),
            crate::config::daemon_settings(&file).unwrap()
        );
        // Written back again: one header, not two.
        let again =
            file_text(&format!("{HEADER} an older note.\n{pushed}"), &tables, "v3").unwrap();
        assert_eq!(again.matches(HEADER).count(), 1, "{again}");
        // A pushed text with its own [api]: the file's wins.
        let theirs = format!("{pushed}\n[api]\nlisten = \"0.0.0.0:1\"\ncert = \"x\"\nkey = \"x\"\nisp_ca = \"x\"\ntokens = \"x\"\n");
        let out = file_text(&theirs, &tables, "v4").unwrap();
        assert_eq!(
            crate::config::daemon_settings(&out).unwrap(),
            crate::config::daemon_settings(&file).unwrap()
        );
        assert_eq!(
            crate::config::parse(&out).unwrap(),
            crate::config::parse(&pushed).unwrap()
        );
        // No tables in the file: none added.
        let out = file_text(&pushed, &toml::Table::new(), "v5").unwrap();
        assert!(!out.contains("[api]") && !out.contains("[discovery]"));
        assert!(file_text("not = [toml", &tables, "x").is_err());
        // The writer round-trips every shape the config uses.
        let t: toml::Table =
            format!("{GATEWAY}{TABLES}\n[x.\"a b\"]\nq = \"\\u00e9\\\"\\n\"\nf = 1.0\n")
                .parse()
                .unwrap();
        let back: toml::Table = to_toml(&t).unwrap().parse().unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn atomic_write_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("shg-writeback-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.join("real.toml");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.join("gateway.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 2, "no temporary file left");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
