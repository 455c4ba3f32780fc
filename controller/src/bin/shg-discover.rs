//! `shg-discover`: SSDP/UPnP home-device discovery on its own (inventory, events, and the
//! gateway's advertisement). Argument handling and printing live in
//! `shg_controller::discovery::cli`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(shg_controller::discovery::cli::run(&args));
}
