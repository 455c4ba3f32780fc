//! Declarative network scenarios (`shg-scenario run|check|list`): a TOML file describes a gateway (shg-switch + shg-controller), its services and LAN devices in namespaces, the line, timed traffic, phases with policy and controller actions, and assertions; a run produces a Markdown/JSON/SVG report and an exit code.
//!
//! Modules: [`model`] (the file format, typed), [`check`] (every error with its path),
//! [`topo`] (namespaces, veths, the ISP router and its shaper), [`traffic`] (built-in UDP
//! agents, ping and iperf3 parsing), [`policy`] (the controller's config, the controller
//! process, [`policy::PolicyClient`]), [`run`] (the timeline, process supervision, probes,
//! teardown by Drop guards) and [`report`] (judging, grades, report files). The library of
//! scenarios is `scenarios/library/*.toml` ([`library_dir`]).

pub mod check;
pub mod cli;
pub mod model;
pub mod policy;
pub mod report;
pub mod run;
pub mod topo;
pub mod traffic;

use std::path::{Path, PathBuf};

/// The scenario library: `$SHG_SCENARIO_LIBRARY`, else `scenarios/library` of this source tree.
pub fn library_dir() -> PathBuf {
    std::env::var_os("SHG_SCENARIO_LIBRARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("library"))
}

/// The library's scenario files, sorted by name.
pub fn library_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(library_dir())
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A scenario argument: an existing file, else a library name (`family-evening`).
pub fn resolve(target: &str) -> Result<PathBuf, String> {
    let p = Path::new(target);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let lib = library_dir().join(format!("{}.toml", target.trim_end_matches(".toml")));
    if lib.is_file() {
        return Ok(lib);
    }
    Err(format!(
        "{target}: no such file, and no scenario of that name in {} (see `shg-scenario list`)",
        library_dir().display()
    ))
}
