//! What several system tests share.

pub mod log_site;
pub mod tpm_site;

use std::path::Path;
use std::time::Duration;

use rampart_testkit::cli::{ServerChild, rampart};

/// Starts the server: (child, device URL, management base URL).
pub fn start_server(w: &Path, args: &[String]) -> (ServerChild, String, String) {
    let mut command = rampart(&[]);
    command.args(args);
    let mut server = ServerChild::start_command(
        command,
        &w.join("server.stderr"),
        "device API listening on ",
        Duration::from_secs(60),
    );
    let device_url = format!("https://{}", server.listening);
    let management = server
        .line_after("management API listening on ", Duration::from_secs(30))
        .expect("the management API listens");
    (
        server,
        device_url,
        management.trim_end_matches("/api/v1/").to_owned(),
    )
}
