//! `shg-switch`: parse the configuration, open the ports, start the datapath thread, and run
//! the OpenFlow agent and the control socket until SIGINT or SIGTERM.

use shg_switch::agent::{self, Agent, Clock, Plan};
use shg_switch::config::{self, Command, Config};
use shg_switch::ctl;
use shg_switch::datapath::{self, LOCAL_PORT};
use shg_switch::ofproto::{Ofproto, OfprotoConfig};
use shg_switch::port::afpacket::AfPacketPort;
use shg_switch::port::tap::TapPort;
use shg_switch::port::PortBackend;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use tracing::info;

fn main() -> ExitCode {
    let cmd = config::parse_command(std::env::args().skip(1), &|p| std::fs::read_to_string(p));
    match cmd {
        Err(e) => {
            eprintln!("shg-switch: invalid configuration:\n{e}\n(see shg-switch --help)");
            ExitCode::from(1)
        }
        Ok(Command::Help) => {
            print!("{}", config::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::CheckConfig(c)) => {
            print!("{}", c.summary());
            ExitCode::SUCCESS
        }
        Ok(Command::Run(c)) => match run(&c) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shg-switch: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn init_tracing(level: Option<&str>) {
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::new(l),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// `port 2 (veth9): no such interface`, or the backend's own words.
fn port_error(number: &dyn std::fmt::Display, name: &str, e: &std::io::Error) -> String {
    // The backends add context to the kernel's error, which drops its errno: fall back on the
    // kernel's words for ENODEV.
    let enodev = e.raw_os_error() == Some(libc::ENODEV) || e.to_string().contains("No such device");
    match e.raw_os_error() {
        _ if enodev => format!("port {number} ({name}): no such interface"),
        Some(libc::EPERM | libc::EACCES) => {
            format!(
                "port {number} ({name}): permission denied (needs CAP_NET_RAW/CAP_NET_ADMIN): {e}"
            )
        }
        _ => format!("port {number} ({name}): {e}"),
    }
}

/// Port backends by OpenFlow port number, as the datapath takes them.
type Backends = Vec<(u32, Box<dyn PortBackend>)>;

/// Opens every configured port and registers it with the core. Errors name the port.
fn open_ports(c: &Config, of: &mut Ofproto, now: u64) -> Result<Backends, String> {
    let mut ports: Backends = Vec::new();
    for p in &c.ports {
        let port = AfPacketPort::open(&p.name).map_err(|e| port_error(&p.number, &p.name, &e))?;
        // No controller is connected yet: PORT_STATUS effects have no one to go to.
        let _ = of.add_port(p.number, port.info(), port.link_up(), now);
        if let Some(qos) = &p.qos {
            of.set_port_qos(p.number, qos.clone(), now)
                .map_err(|e| format!("port {} ({}): QoS: {e}", p.number, p.name))?;
        }
        ports.push((p.number, Box::new(port)));
    }
    if let Some(name) = &c.local {
        let tap = TapPort::open(name).map_err(|e| port_error(&"LOCAL", name, &e))?;
        let _ = of.add_port(LOCAL_PORT, tap.info(), tap.link_up(), now);
        ports.push((LOCAL_PORT, Box::new(tap)));
    }
    Ok(ports)
}

fn run(c: &Config) -> Result<(), String> {
    init_tracing(c.log.as_deref());
    let clock = Clock::process();
    let mut of = Ofproto::new(OfprotoConfig {
        datapath_id: c.datapath_id,
        n_tables: c.n_tables,
        fail_mode: c.fail_mode,
        controllers_configured: !c.controllers.is_empty(),
        ..OfprotoConfig::default()
    });
    let ports = open_ports(c, &mut of, clock.now())?;
    let of = Arc::new(Mutex::new(of));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async {
        // Bind everything before starting the datapath, so a bad address fails fast.
        let mut plan = Plan::from_config(c).await.map_err(|e| e.to_string())?;
        let ctl_listener = ctl::bind(&c.ctl).map_err(|e| e.to_string())?;
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("SIGTERM handler: {e}"))?;

        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        plan.dp_events = Some(rx);
        let dp = Arc::new(
            datapath::spawn(ports, of.clone(), tx, agent::process_now)
                .map_err(|e| format!("datapath thread: {e}"))?,
        );
        if c.realtime {
            dp.set_realtime(10);
        }
        if c.thread_copies {
            dp.enable_thread_copies();
        }
        if c.kernel_fast_path {
            dp.enable_kernel_fast_path();
        }
        info!(
            datapath_id = format_args!("{:016x}", c.datapath_id),
            ports = c.ports.len() + usize::from(c.local.is_some()),
            ctl = %c.ctl.display(),
            "shg-switch running"
        );

        let (stop_ctl, ctl_stopped) = tokio::sync::oneshot::channel::<()>();
        let ctl_task = tokio::spawn(ctl::serve_with(
            ctl_listener,
            of.clone(),
            clock,
            Some(dp.clone()),
            async {
                let _ = ctl_stopped.await;
            },
        ));
        let agent = Agent::new(of, clock, dp.clone());
        agent
            .run(plan, async {
                tokio::select! {
                    r = tokio::signal::ctrl_c() => {
                        if let Err(e) = r {
                            tracing::error!("SIGINT handler: {e}");
                        }
                        info!("SIGINT: stopping");
                    }
                    _ = sigterm.recv() => info!("SIGTERM: stopping"),
                }
            })
            .await;
        let _ = stop_ctl.send(());
        let _ = ctl_task.await;
        dp.shutdown();
        info!("stopped");
        Ok(())
    })
}
