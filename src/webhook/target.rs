//! Where a webhook may go: private addresses refused (at configuration
//! time by `check_target`, and again at every connection by the client's
//! resolver, so a name cannot be re-pointed at an internal service later).

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// True for addresses a webhook must not reach by default: loopback,
/// private, link-local, multicast, unspecified, CGNAT, broadcast,
/// documentation and unique-local ranges.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the URL's host '{0}' could not be resolved: {1}")]
    Unresolvable(String, String),
    #[error(
        "the URL's host '{0}' resolves to a private, loopback, link-local or multicast address ({1}); \
         such targets need a server started with --allow-private-targets"
    )]
    Private(String, IpAddr),
}

/// Resolves a URL's host and refuses private targets (unless allowed).
pub async fn check_target(url: &str, allow_private: bool) -> Result<(), TargetError> {
    let parsed = url::Url::parse(url).map_err(|e| TargetError::Unresolvable(url.into(), e.to_string()))?;
    let host = parsed.host_str().unwrap_or("").to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addrs: Vec<IpAddr> = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        _ => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| TargetError::Unresolvable(host.clone(), e.to_string()))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable(host, "no address".into()));
    }
    if !allow_private {
        if let Some(ip) = addrs.into_iter().find(|ip| is_private(*ip)) {
            return Err(TargetError::Private(host, ip));
        }
    }
    Ok(())
}

/// DNS for outgoing requests: the system resolver, minus private addresses
/// unless allowed (so a name cannot be re-pointed at an internal service
/// after it was configured).
pub(super) struct GuardedResolver {
    pub(super) allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> =
                    format!("'{host}' has no public address (private targets are refused)").into();
                return Err(err);
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}
