//! What several system tests share.

pub mod log_site;
pub mod tpm_site;

use std::path::Path;
use std::time::Duration;

use rampart_testkit::cli::{ServerChild, rampart, s};
use rampart_testkit::pki::ServerPki;

/// `rampart server` on `pki`'s certificates and database `db`, hosting the image repository
/// `repo` with the director of `director` (`rampart director init`) signing with `online_key`;
/// callers add the rest.
pub fn hosting_server_command(
    pki: &ServerPki,
    db: &str,
    repo: &Path,
    director: &Path,
    online_key: &str,
) -> Vec<String> {
    let mut args = pki.server_command(db);
    args.extend(
        [
            "--repo",
            s(repo),
            "--director-root",
            s(&director.join("root.json")),
            "--director-key",
            online_key,
        ]
        .map(str::to_owned),
    );
    args
}

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
