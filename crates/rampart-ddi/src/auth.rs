//! The `Authorization` header of DDI requests.

/// A DDI credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `TargetToken <token>`: one device's own token.
    Target(&'a str),
    /// `GatewayToken <token>`: the tenant's token, valid for any of its devices.
    Gateway(&'a str),
}

/// Longest token accepted (hawkBit allows custom target tokens up to 128 characters).
pub const MAX_TOKEN_LEN: usize = 128;

/// Reads `TargetToken <t>` or `GatewayToken <t>` (scheme case-sensitive, one space, as hawkBit
/// matches it). `None` for anything else, including empty or oversized tokens.
pub fn parse_authorization(header: &str) -> Option<Credential<'_>> {
    let (scheme, token) = header.split_once(' ')?;
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || token.contains(char::is_whitespace) {
        return None;
    }
    match scheme {
        "TargetToken" => Some(Credential::Target(token)),
        "GatewayToken" => Some(Credential::Gateway(token)),
        _ => None,
    }
}
