//! The few helpers every room uses: the clock in the database's unit, random ids for stored
//! objects, the SHA-256 hex digest tokens and secrets are stored as, and the stop signal of
//! background tasks. No HTTP and no storage types here, so engines and front doors alike may
//! use them.

/// The current time in Unix seconds (the database's time unit).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The system's random number generator failed (no id could be made).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system random number generator failed")]
pub(crate) struct NoRandomness;

/// A random id for a stored object: `PREFIX-` and 16 hex digits.
pub(crate) fn new_id(prefix: &str) -> Result<String, NoRandomness> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| NoRandomness)?;
    Ok(format!("{prefix}-{}", hex::encode(bytes)))
}

/// The lowercase hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// Completes once `stop` says stop (or its sender is gone, which also means stop).
pub(crate) async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// What is stored of a token or secret: its SHA-256 (API and DDI tokens alike).
pub(crate) fn token_digest(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_differ() {
        let a = new_id("asg").unwrap();
        let b = new_id("asg").unwrap();
        assert!(a.starts_with("asg-") && a.len() == 4 + 16, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn sha256_hex_is_the_known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
