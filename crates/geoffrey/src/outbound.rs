//! Requests to third parties (relay targets, Discourse, Mailchimp), kept off private networks.
//!
//! An instance's configuration names the servers Geoffrey calls, and anyone allowed to edit it
//! could otherwise point them at the operator's own network: a metadata service, an admin
//! port on loopback, a database on a private address. Every outbound request therefore goes
//! through [`OutboundClient`], which rejects addresses that are not public unless
//! `outbound.allowed_networks` includes them.
//!
//! Host names are checked by a resolver that reqwest calls for every new connection, so a
//! name that resolves to a private address is rejected however it was obtained. Addresses
//! written in the URL skip resolution, so [`OutboundClient::send`] and the redirect policy
//! check those. The standard library's `is_global` is not stable yet, so the list of
//! non-public ranges is written out here, following IANA's special-purpose registries.

use crate::config::OutboundSettings;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, Response, Url};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// A rejected destination: its host and the address that is not public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub host: String,
    pub address: IpAddr,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A URL that names the address itself has it as its host, in brackets for IPv6.
        let literal = self.host.trim_start_matches('[').trim_end_matches(']');
        if literal.parse::<IpAddr>() == Ok(self.address) {
            write!(f, "{}", self.address)?;
        } else {
            write!(f, "{} is {}", self.host, self.address)?;
        }
        write!(
            f,
            ", a private, loopback or link-local address; Geoffrey calls such addresses only \
             if the setting outbound.allowed_networks (GEOFFREY_OUTBOUND__ALLOWED_NETWORKS) \
             includes them"
        )
    }
}

impl std::error::Error for Rejected {}

/// Failure of a request that got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Rejected(Rejected),
    #[error(transparent)]
    Http(reqwest::Error),
}

impl SendError {
    /// Returns the rejection, whether the URL named the address or a host name resolved to it.
    pub fn rejection(&self) -> Option<&Rejected> {
        match self {
            SendError::Rejected(rejected) => Some(rejected),
            SendError::Http(err) => {
                let mut source = std::error::Error::source(err);
                while let Some(cause) = source {
                    if let Some(rejected) = cause.downcast_ref::<Rejected>() {
                        return Some(rejected);
                    }
                    source = cause.source();
                }
                None
            }
        }
    }
}

/// Decides which addresses outbound requests may reach.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allowed: Vec<IpNet>,
}

impl Guard {
    pub fn new(settings: &OutboundSettings) -> Self {
        Self {
            allowed: settings.allowed_networks.clone(),
        }
    }

    /// Accepts public addresses and those in an allowed network.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), Rejected> {
        let address = address.to_canonical();
        if is_public(address) || self.allowed.iter().any(|net| net.contains(&address)) {
            Ok(())
        } else {
            Err(Rejected {
                host: host.to_string(),
                address,
            })
        }
    }

    /// Checks a URL whose host is an address. Host names are checked when they resolve.
    pub fn check_url(&self, url: &Url) -> Result<(), Rejected> {
        let address = match url.host() {
            Some(url::Host::Ipv4(address)) => IpAddr::V4(address),
            Some(url::Host::Ipv6(address)) => IpAddr::V6(address),
            _ => return Ok(()),
        };
        self.check(url.host_str().unwrap_or_default(), address)
    }
}

/// An HTTP client whose requests reach only public addresses and allowed networks.
///
/// It deliberately has no `Deref` to `reqwest::Client`: a request sent with reqwest's own
/// `send` would skip the check of addresses written in the URL.
#[derive(Clone)]
pub struct OutboundClient {
    client: reqwest::Client,
    guard: Arc<Guard>,
}

impl OutboundClient {
    /// Builds a client whose requests time out after `timeout`.
    pub fn new(settings: &OutboundSettings, timeout: Duration) -> Result<Self, reqwest::Error> {
        let guard = Arc::new(Guard::new(settings));
        let redirect_guard = guard.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match redirect_guard.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(rejected) => attempt.error(rejected),
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(concat!("Geoffrey/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .redirect(redirects)
            .dns_resolver(Arc::new(GuardedResolver {
                guard: guard.clone(),
            }))
            .build()?;
        Ok(Self { client, guard })
    }

    pub fn request(&self, method: Method, url: impl AsRef<str>) -> RequestBuilder {
        self.client.request(method, url.as_ref())
    }

    pub fn get(&self, url: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    pub fn post(&self, url: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// Sends a request built by this client, after checking an address written in its URL.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, SendError> {
        let request = request.build().map_err(SendError::Http)?;
        self.guard
            .check_url(request.url())
            .map_err(SendError::Rejected)?;
        self.client.execute(request).await.map_err(SendError::Http)
    }
}

/// Resolves host names with the system resolver, then drops the addresses the guard rejects.
struct GuardedResolver {
    guard: Arc<Guard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut first_rejection = None;
            let mut allowed = Vec::with_capacity(resolved.len());
            for address in resolved {
                match guard.check(&host, address.ip()) {
                    Ok(()) => allowed.push(address),
                    Err(rejected) => {
                        first_rejection.get_or_insert(rejected);
                    }
                }
            }
            match first_rejection {
                Some(rejected) if allowed.is_empty() => Err(Box::new(rejected) as _),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// IPv4 ranges that are not public, from IANA's special-purpose address registry.
const NOT_PUBLIC_V4: [Ipv4Net; 13] = [
    net4([0, 0, 0, 0], 8),       // "this network"
    net4([10, 0, 0, 0], 8),      // private
    net4([100, 64, 0, 0], 10),   // shared address space (carrier-grade NAT)
    net4([127, 0, 0, 0], 8),     // loopback
    net4([169, 254, 0, 0], 16),  // link-local
    net4([172, 16, 0, 0], 12),   // private
    net4([192, 0, 0, 0], 24),    // protocol assignments
    net4([192, 0, 2, 0], 24),    // documentation
    net4([192, 168, 0, 0], 16),  // private
    net4([198, 18, 0, 0], 15),   // benchmarking
    net4([198, 51, 100, 0], 24), // documentation
    net4([203, 0, 113, 0], 24),  // documentation
    net4([224, 0, 0, 0], 3),     // multicast, reserved and broadcast
];

/// IPv6 ranges that are not public and carry no IPv4 address.
const NOT_PUBLIC_V6: [Ipv6Net; 7] = [
    net6([0, 0, 0, 0, 0, 0, 0, 0], 96), // unspecified, loopback, IPv4-compatible
    net6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), // discard-only
    net6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    net6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), // unique local
    net6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), // link-local
    net6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), // site-local, deprecated
    net6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), // multicast
];

const fn net4(octets: [u8; 4], prefix: u8) -> Ipv4Net {
    let [a, b, c, d] = octets;
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn net6(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

/// Returns whether an address is reachable on the public internet: not private, loopback,
/// link-local, shared, multicast, reserved or set aside for documentation.
pub fn is_public(address: IpAddr) -> bool {
    match address.to_canonical() {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    !NOT_PUBLIC_V4.iter().any(|net| net.contains(&address))
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let segments = address.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they carry.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return is_public_v4(embedded(segments[1], segments[2]));
    }
    !NOT_PUBLIC_V6.iter().any(|net| net.contains(&address))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn rejection_names_the_host_once() {
        let guard = Guard::new(&OutboundSettings::default());
        let literal = guard
            .check("127.0.0.1", ip("127.0.0.1"))
            .expect_err("loopback");
        assert!(
            literal.to_string().starts_with("127.0.0.1, a private"),
            "{literal}"
        );
        let bracketed = guard.check("[::1]", ip("::1")).expect_err("loopback");
        assert!(
            bracketed.to_string().starts_with("::1, a private"),
            "{bracketed}"
        );
        let named = guard
            .check("chat.internal", ip("10.0.0.5"))
            .expect_err("private");
        assert!(
            named
                .to_string()
                .starts_with("chat.internal is 10.0.0.5, a private"),
            "{named}"
        );
        assert!(
            named
                .to_string()
                .contains("GEOFFREY_OUTBOUND__ALLOWED_NETWORKS")
        );
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(is_public(ip(address)), "{address}");
        }
    }

    #[test]
    fn private_loopback_and_link_local_are_rejected() {
        for address in [
            "0.0.0.0",
            "10.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "100.64.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:0001::1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip(address)), "{address}");
        }
    }

    #[test]
    fn allowed_networks_open_private_addresses() {
        let settings = OutboundSettings {
            allowed_networks: vec!["10.1.0.0/16".parse().expect("network")],
        };
        let guard = Guard::new(&settings);
        assert!(guard.check("chat", ip("10.1.2.3")).is_ok());
        let rejected = guard
            .check("chat", ip("10.2.0.1"))
            .expect_err("outside the allowed network");
        assert!(rejected.to_string().contains("outbound.allowed_networks"));
        assert!(guard.check("chat", ip("::ffff:10.1.0.7")).is_ok());
    }

    #[test]
    fn urls_with_addresses_are_checked() {
        let guard = Guard::default();
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://[::1]/hook",
            "http://2130706433/hook",
            "http://0x7f.1/hook",
            "http://169.254.169.254/latest/meta-data/",
        ] {
            let url = Url::parse(url).expect("test URL");
            assert!(guard.check_url(&url).is_err(), "{url}");
        }
        let url = Url::parse("https://chat.example.com/hook").expect("test URL");
        assert!(
            guard.check_url(&url).is_ok(),
            "names are checked when resolved"
        );
    }
}
