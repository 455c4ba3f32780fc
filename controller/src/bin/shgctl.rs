//! `shgctl`: the operator's command-line tool (offline OpenFlow tools today: `ofp-print`,
//! `ofp-encode`). Argument handling and all logic live in `shg_controller::ofp`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = shg_controller::ofp::run(
        &args,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
