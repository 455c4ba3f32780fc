//! Ctrl-C, SIGTERM and SIGHUP while a benchmark runs: a signal thread sets a flag; every wait
//! in the harness polls it and returns an error, so the stack unwinds normally and every Drop
//! guard (processes by PID, then namespaces) runs. A second signal is only reported.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handlers (idempotent). Until this is called, signals keep their default action.
pub fn install() -> io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                result = Err(e);
                return;
            }
        };
        // Register in this thread so that signals arriving right after install() are caught.
        let sigs = rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            Ok::<_, io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ))
        });
        let (mut int, mut term, mut hup) = match sigs {
            Ok(s) => s,
            Err(e) => {
                result = Err(e);
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                rt.block_on(async move {
                    loop {
                        tokio::select! {
                            _ = int.recv() => {}
                            _ = term.recv() => {}
                            _ = hup.recv() => {}
                        }
                        if INTERRUPTED.swap(true, Ordering::SeqCst) {
                            eprintln!("shg-scenario: still tearing down, please wait");
                        } else {
                            eprintln!("shg-scenario: interrupted; tearing down");
                        }
                    }
                });
            });
        if let Err(e) = spawned {
            result = Err(e);
        }
    });
    result
}

/// Whether a signal arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once a signal arrived.
pub fn check() -> io::Result<()> {
    if interrupted() {
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "interrupted by a signal",
        ))
    } else {
        Ok(())
    }
}

/// Sleeps `d`, waking early (with an error) on a signal.
pub fn sleep(d: Duration) -> io::Result<()> {
    let end = Instant::now() + d;
    loop {
        check()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}
