//! Where webhook deliveries may connect: the address policy against server-side request
//! forgery.
//!
//! An admin registers a webhook by URL, and the server then POSTs to it from inside the
//! operator's network. Without a policy that URL could name the cloud metadata service
//! (`169.254.169.254`), a database on loopback (`localhost:6379`) or any internal host, and the
//! server would carry requests there. So every address a delivery would connect to is judged
//! here, after the URL parser has normalised the host (WHATWG rules: `0xa9fea9fe`, `2852039166`
//! and `0251.0376.0251.0376` are all `169.254.169.254`) and after DNS resolution:
//!
//! * public unicast addresses are allowed;
//! * loopback, private (RFC 1918, ULA), link-local, CGNAT, documentation, benchmarking and
//!   other special-purpose ranges are denied unless an operator's allow-list
//!   ([`IpNetwork`]s, `rampart server --webhook-allow CIDR`) contains the address;
//! * unspecified, multicast and broadcast addresses are never allowed (no receiver lives there);
//! * IPv6 forms that carry an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
//!   NAT64 `64:ff9b::a.b.c.d`) are judged by the IPv4 address they carry.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is a network of
/// that one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The network of `address` with a `prefix`-bit mask; `None` if the prefix is too long for
    /// the family or `address` has bits set beyond the prefix.
    pub fn new(address: IpAddr, prefix: u8) -> Option<IpNetwork> {
        let network = IpNetwork { address, prefix };
        let max = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= max && network.first() == address).then_some(network)
    }

    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> IpNetwork {
        IpNetwork {
            address: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> IpNetwork {
        let [a, b, c, d, e, f, g, h] = segments;
        IpNetwork {
            address: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    /// The network's first address (the given address with the host bits cleared).
    fn first(&self) -> IpAddr {
        match self.address {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.prefix))),
        }
    }

    /// Whether `ip` is inside this network (never across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// Why a `--webhook-allow` value is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadNetwork(String);

impl FromStr for IpNetwork {
    type Err = BadNetwork;

    fn from_str(s: &str) -> Result<IpNetwork, BadNetwork> {
        let s = s.trim();
        let (address, prefix) = match s.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s, None),
        };
        let address: IpAddr = address.parse().map_err(|_| {
            BadNetwork(format!(
                "{s:?} is not an IP network; give CIDR notation such as 10.20.0.0/16, fd00::/8 or one address such as 10.20.1.5"
            ))
        })?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                BadNetwork(format!(
                    "{s:?}: the prefix length must be a number from 0 to {max}"
                ))
            })?,
        };
        IpNetwork::new(address, prefix).ok_or_else(|| {
            let network = IpNetwork { address, prefix }.first();
            BadNetwork(format!(
                "{s:?} has bits set beyond its /{prefix} prefix; did you mean {network}/{prefix}?"
            ))
        })
    }
}

/// Special-purpose ranges that no webhook may reach, whatever the allow-list says.
const NEVER: [(IpNetwork, &str); 5] = [
    (
        IpNetwork::v4(0, 0, 0, 0, 8),
        "the unspecified \"this network\" range (0.0.0.0/8)",
    ),
    (IpNetwork::v4(224, 0, 0, 0, 4), "multicast (224.0.0.0/4)"),
    (
        IpNetwork::v4(255, 255, 255, 255, 32),
        "the broadcast address (255.255.255.255)",
    ),
    (
        IpNetwork::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        "the unspecified address (::)",
    ),
    (
        IpNetwork::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "multicast (ff00::/8)",
    ),
];

/// Internal and special-purpose ranges a webhook reaches only through the allow-list.
const INTERNAL: [(IpNetwork, &str); 23] = [
    (IpNetwork::v4(10, 0, 0, 0, 8), "private (10.0.0.0/8)"),
    (
        IpNetwork::v4(100, 64, 0, 0, 10),
        "carrier-grade NAT (100.64.0.0/10)",
    ),
    (IpNetwork::v4(127, 0, 0, 0, 8), "loopback (127.0.0.0/8)"),
    (
        IpNetwork::v4(169, 254, 0, 0, 16),
        "link-local (169.254.0.0/16, where cloud metadata services answer)",
    ),
    (IpNetwork::v4(172, 16, 0, 0, 12), "private (172.16.0.0/12)"),
    (
        IpNetwork::v4(192, 0, 0, 0, 24),
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    (
        IpNetwork::v4(192, 0, 2, 0, 24),
        "documentation (192.0.2.0/24)",
    ),
    (
        IpNetwork::v4(192, 88, 99, 0, 24),
        "the 6to4 relay anycast range (192.88.99.0/24)",
    ),
    (
        IpNetwork::v4(192, 168, 0, 0, 16),
        "private (192.168.0.0/16)",
    ),
    (
        IpNetwork::v4(198, 18, 0, 0, 15),
        "benchmarking (198.18.0.0/15)",
    ),
    (
        IpNetwork::v4(198, 51, 100, 0, 24),
        "documentation (198.51.100.0/24)",
    ),
    (
        IpNetwork::v4(203, 0, 113, 0, 24),
        "documentation (203.0.113.0/24)",
    ),
    (IpNetwork::v4(240, 0, 0, 0, 4), "reserved (240.0.0.0/4)"),
    (
        IpNetwork::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
        "loopback (::1)",
    ),
    (
        IpNetwork::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible IPv6 (::/96)",
    ),
    (
        IpNetwork::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use NAT64 (64:ff9b:1::/48)",
    ),
    (
        IpNetwork::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard-only (100::/64)",
    ),
    (
        IpNetwork::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "IETF protocol assignments, Teredo and documentation (2001::/23)",
    ),
    (
        IpNetwork::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation (2001:db8::/32)",
    ),
    (
        IpNetwork::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
        "6to4 (2002::/16)",
    ),
    (
        IpNetwork::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "documentation (3fff::/20)",
    ),
    (
        IpNetwork::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique local (fc00::/7)",
    ),
    (
        IpNetwork::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 9),
        "link-local or site-local (fe80::/9)",
    ),
];

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one:
/// mapped (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`, not `::` or `::1`) or NAT64
/// (`64:ff9b::a.b.c.d`). A connection to any of these reaches (or is translated to) the IPv4
/// address, so that is the address judged.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let bits = u128::from(ip);
    let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let compatible = bits >> 32 == 0 && bits > 1;
    let nat64 = bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000;
    (compatible || nat64).then_some(low)
}

/// The address a connection to `ip` really reaches: the carried IPv4 address of the IPv6 forms
/// that carry one, else `ip`.
pub fn effective_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_ipv4(v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// A refused destination: the address and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedAddress {
    /// The address as the URL or DNS gave it.
    pub address: IpAddr,
    /// What range it is in, e.g. `loopback (127.0.0.0/8)`.
    pub range: &'static str,
    /// False for ranges the allow-list cannot re-admit (unspecified, multicast, broadcast).
    pub allowable: bool,
}

impl fmt::Display for DeniedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let effective = effective_address(self.address);
        write!(f, "{}", self.address)?;
        if effective != self.address {
            write!(f, " (which reaches {effective})")?;
        }
        write!(f, ", {}, which webhooks may not reach", self.range)?;
        if self.allowable {
            write!(
                f,
                "; if this receiver is on your network on purpose, start the server with `rampart server --webhook-allow {effective}/{}` (or a CIDR around it)",
                if effective.is_ipv4() { 32 } else { 128 }
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for DeniedAddress {}

/// The address a parsed URL names literally, if its host is one. The URL parser has already
/// normalised odd IPv4 spellings to dotted quads, so a host that is not an address here is a
/// name, to be resolved (and its addresses judged) before connecting.
pub fn literal_address(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// The policy: the internal ranges denied, minus the operator's allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<IpNetwork>,
}

impl AddressPolicy {
    pub fn new(allow: &[IpNetwork]) -> AddressPolicy {
        AddressPolicy {
            allow: allow.to_vec(),
        }
    }

    /// Whether a delivery may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), DeniedAddress> {
        let effective = effective_address(ip);
        let denied = |range, allowable| DeniedAddress {
            address: ip,
            range,
            allowable,
        };
        for candidate in [effective, ip] {
            if let Some((_, range)) = NEVER.iter().find(|(net, _)| net.contains(candidate)) {
                return Err(denied(range, false));
            }
        }
        let Some((_, range)) = [effective, ip]
            .into_iter()
            .find_map(|c| INTERNAL.iter().find(|(net, _)| net.contains(c)))
        else {
            return Ok(());
        };
        // An allow-list entry may name the address in either form.
        if self
            .allow
            .iter()
            .any(|net| net.contains(effective) || net.contains(ip))
        {
            return Ok(());
        }
        Err(denied(range, true))
    }

    /// Checks every address a name resolved to: one denied address refuses them all (a name
    /// that mixes public and internal addresses is not trusted with either).
    pub fn check_all(&self, addresses: &[IpAddr]) -> Result<(), DeniedAddress> {
        addresses.iter().try_for_each(|ip| self.check(*ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The host the URL parser (the one reqwest connects with) makes of `url`.
    fn host_ip(url: &str) -> IpAddr {
        literal_address(&reqwest::Url::parse(url).unwrap())
            .unwrap_or_else(|| panic!("{url}: the host is not an address"))
    }

    #[test]
    fn internal_and_special_ranges_are_denied_by_default() {
        let policy = AddressPolicy::default();
        for denied in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.170",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.7",
            "203.0.113.9",
            "240.0.0.1",
            "::1",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "2001:db8::1",
            "2001::1",
            "2002:a9fe:a9fe::1",
            "3fff::1",
            "100::1",
            "64:ff9b:1::1",
            // IPv4 forms carried in IPv6.
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b::a00:1",
            // Never allowed.
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "ff02::1",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
        ] {
            assert!(policy.check(ip(denied)).is_err(), "{denied} was allowed");
        }
        for allowed in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.215.14",
            "172.32.0.1",
            "100.128.0.1",
            "169.255.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(policy.check(ip(allowed)), Ok(()), "{allowed} was denied");
        }
    }

    #[test]
    fn odd_ipv4_spellings_are_normalised_to_the_denied_address() {
        let policy = AddressPolicy::default();
        let metadata = ip("169.254.169.254");
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://0xa9fea9fe/",
            "http://0xA9FEA9FE/",
            "http://2852039166/",
            "http://0251.0376.0251.0376/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://169.254.43518/",
            "http://169.16689662/",
            "http://169.254.169.254./",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[::ffff:169.254.169.254]:8443/",
        ] {
            let host = host_ip(url);
            assert_eq!(effective_address(host), metadata, "{url}");
            let denied = policy.check(host).unwrap_err();
            assert!(denied.range.contains("link-local"), "{url}: {denied}");
        }
        for url in [
            "http://0x7f000001:6379/",
            "http://2130706433/",
            "http://017700000001/",
        ] {
            assert_eq!(host_ip(url), ip("127.0.0.1"), "{url}");
            assert!(policy.check(host_ip(url)).is_err());
        }
    }

    #[test]
    fn the_allow_list_readmits_internal_receivers_only() {
        let allow: Vec<IpNetwork> = ["127.0.0.0/8", "10.20.0.0/16", "fd12::/16"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let policy = AddressPolicy::new(&allow);
        for allowed in ["127.0.0.1", "::ffff:127.0.0.1", "10.20.3.4", "fd12::5"] {
            assert_eq!(policy.check(ip(allowed)), Ok(()), "{allowed}");
        }
        for denied in ["10.21.0.1", "169.254.169.254", "::1", "fd13::1"] {
            assert!(policy.check(ip(denied)).is_err(), "{denied}");
        }
        // Unspecified, multicast and broadcast stay refused even when listed.
        let everything =
            AddressPolicy::new(&["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]);
        assert_eq!(everything.check(ip("10.0.0.1")), Ok(()));
        for never in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "ff02::1"] {
            let denied = everything.check(ip(never)).unwrap_err();
            assert!(!denied.allowable, "{never}");
            assert!(!denied.to_string().contains("--webhook-allow"), "{denied}");
        }
        // One denied address among several refuses the name.
        assert!(
            AddressPolicy::default()
                .check_all(&[ip("8.8.8.8"), ip("10.0.0.1")])
                .is_err()
        );
    }

    #[test]
    fn denials_name_the_address_and_the_flag() {
        let denied = AddressPolicy::default()
            .check(ip("::ffff:a9fe:a9fe"))
            .unwrap_err()
            .to_string();
        assert!(denied.contains("::ffff:169.254.169.254"), "{denied}");
        assert!(denied.contains("reaches 169.254.169.254"), "{denied}");
        assert!(denied.contains("link-local"), "{denied}");
        assert!(
            denied.contains("--webhook-allow 169.254.169.254/32"),
            "{denied}"
        );
    }

    #[test]
    fn networks_parse_in_cidr_notation() {
        let n: IpNetwork = "10.20.0.0/16".parse().unwrap();
        assert_eq!(n.to_string(), "10.20.0.0/16");
        assert!(n.contains(ip("10.20.255.1")) && !n.contains(ip("10.21.0.1")));
        assert_eq!(
            "192.0.2.7".parse::<IpNetwork>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            "fd00::/8".parse::<IpNetwork>().unwrap().to_string(),
            "fd00::/8"
        );
        assert!(
            "0.0.0.0/0"
                .parse::<IpNetwork>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        let e = "10.1.2.3/8".parse::<IpNetwork>().unwrap_err().to_string();
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        assert!("10.0.0.0/33".parse::<IpNetwork>().is_err());
        assert!("fd00::/129".parse::<IpNetwork>().is_err());
        assert!("intranet".parse::<IpNetwork>().is_err());
        assert!("10.0.0.0/x".parse::<IpNetwork>().is_err());
    }
}
