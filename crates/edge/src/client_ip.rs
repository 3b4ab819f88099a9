//! The client's address: the socket peer, unless the peer is a configured proxy, in
//! which case the address it forwards (`CF-Connecting-IP`, else `X-Forwarded-For`).
//! Headers from anyone else are ignored, so a client cannot pick its own address (and so
//! dodge a per-IP limit or frame another address in the logs).

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// A peer that forwards client addresses without being trusted is most often the
/// operator's own load balancer left out of `edge.trusted_proxies`: every client then
/// shares its address, and per-IP limits and login throttling apply to all of them at
/// once. Said once per peer (for the first 64 peers), as a warning.
fn note_untrusted_forwarder(peer: IpAddr) {
    static NOTED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<IpAddr>>> =
        std::sync::OnceLock::new();
    let noted = NOTED.get_or_init(Default::default);
    let Ok(mut noted) = noted.lock() else { return };
    if noted.len() < 64 && noted.insert(peer) {
        tracing::warn!(
            peer = %peer,
            "a request carries X-Forwarded-For or CF-Connecting-IP from a peer that is not in \
             edge.trusted_proxies; the header is ignored and the peer counts as the client. \
             If this is your load balancer, add it, or every client behind it shares one \
             address for rate limits and login throttling"
        );
    }
}

impl TrustedProxies {
    /// CIDRs or single addresses; `Err` names the first that does not parse.
    pub fn parse(items: &[String]) -> Result<TrustedProxies, String> {
        items
            .iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| s.clone())
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address for a request that arrived from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            if headers.contains_key("x-forwarded-for") || headers.contains_key("cf-connecting-ip") {
                note_untrusted_forwarder(peer);
            }
            return peer;
        }
        if let Some(ip) = headers
            .get("cf-connecting-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return canonical(ip);
        }
        // X-Forwarded-For grows to the right, one entry per hop. Walk from the right,
        // past our own proxies; the first address they did not vouch for is the client.
        // Several headers count as one list, in order.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    client = canonical(ip);
                    if !self.trusts(client) {
                        return client;
                    }
                }
                // Garbage from the client's side: stop at the last hop a proxy wrote.
                Err(_) => return client,
            }
        }
        client
    }
}

/// `::ffff:10.0.0.1` is `10.0.0.1`: dual-stack sockets report IPv4 peers that way.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let spoof = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("cf-connecting-ip", "5.6.7.8"),
        ]);
        assert_eq!(
            proxies.client_ip(ip("203.0.113.5"), &spoof),
            ip("203.0.113.5")
        );
        assert_eq!(proxies.client_ip(ip("10.1.2.3"), &spoof), ip("5.6.7.8"));
        // The client prepends a fake hop; our proxies appended the real one.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.9, 10.0.0.2")]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &chain),
            ip("198.51.100.9")
        );
        let garbage = headers(&[("x-forwarded-for", "not-an-ip, 10.0.0.2")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &garbage), ip("10.0.0.2"));
        assert_eq!(
            proxies.client_ip(ip("::ffff:10.0.0.1"), &chain),
            ip("198.51.100.9"),
            "IPv4-mapped peers are matched as IPv4"
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
    }
}
