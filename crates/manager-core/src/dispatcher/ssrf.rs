//! The SSRF guard: webhooks are URLs that apps choose, so without a guard any app could
//! make the server request its own loopback services, the private network or the cloud
//! metadata endpoint.
//!
//! The guard has two halves. [`check_url`] refuses non-HTTP schemes and IP-literal hosts
//! outside the [`AddressPolicy`] (the HTTP client connects to IP literals without
//! resolving them). [`GuardedResolver`] filters every DNS answer through the same policy,
//! so names are checked after resolution, at connect time, for every new connection: a
//! name that resolved to a public address when the trigger was saved and to `127.0.0.1`
//! later (DNS rebinding) is still refused. [`webhook_client`] puts the resolver into a
//! client that never follows redirects and never uses a proxy, so neither can take a
//! delivery around the check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::{Error, Result};

/// The `User-Agent` of webhook deliveries.
pub const USER_AGENT: &str = concat!("PiCloud-Webhooks/", env!("CARGO_PKG_VERSION"));

/// IPv4 ranges refused by default, as (network, prefix length).
const REFUSED_V4: &[(Ipv4Addr, u8)] = &[
    // "This network", including the unspecified 0.0.0.0.
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    // Private (RFC 1918).
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    // Carrier-grade NAT (RFC 6598).
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    // Loopback.
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    // Link-local, including the cloud metadata address 169.254.169.254.
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    // IETF protocol assignments (RFC 6890).
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    // Documentation (RFC 5737).
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    // Benchmarking (RFC 2544).
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    // Multicast.
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    // Reserved, including the broadcast address 255.255.255.255.
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv6 ranges refused by default, as (network, prefix length). IPv4-mapped, NAT64 and
/// 6to4 addresses are judged by the IPv4 address they carry instead.
const REFUSED_V6: &[(Ipv6Addr, u8)] = &[
    // IPv4-compatible (deprecated), including the unspecified `::` and loopback `::1`.
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96),
    // Local-use NAT64 (RFC 8215).
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
    // Discard-only (RFC 6666).
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),
    // Teredo, which tunnels to an IPv4 address it obfuscates.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32),
    // Benchmarking (RFC 5180).
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48),
    // Documentation (RFC 3849, RFC 9637).
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
    // Unique local (fc00::/7), including the AWS metadata address fd00:ec2::254.
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    // Link-local.
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    // Site-local (deprecated).
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),
    // Multicast.
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

/// The well-known NAT64 prefix 64:ff9b::/96 (RFC 6052): the last 32 bits are IPv4.
const NAT64: (Ipv6Addr, u8) = (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
/// The 6to4 prefix 2002::/16 (RFC 3056): the next 32 bits are IPv4.
const SIX_TO_FOUR: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16);

/// Which addresses webhook deliveries may connect to.
///
/// By default only public unicast addresses: loopback, private (RFC 1918, IPv6 unique
/// local), link-local, carrier-grade NAT, multicast, unspecified, broadcast,
/// documentation, benchmarking and other reserved ranges are refused, and so are the
/// cloud metadata addresses (169.254.169.254, fd00:ec2::254) and IPv6 forms that carry
/// a refused IPv4 address (`::ffff:127.0.0.1`, NAT64, 6to4).
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow_private: bool,
    allow_cidrs: Vec<IpNet>,
}

impl AddressPolicy {
    /// A policy that refuses the ranges above, except: with `allow_private` it allows
    /// every address (for development and tests with local sinks), and `allow_cidrs`
    /// opens just the networks listed (for an operator's internal receivers).
    pub fn new(allow_private: bool, allow_cidrs: Vec<IpNet>) -> AddressPolicy {
        AddressPolicy {
            allow_private,
            allow_cidrs,
        }
    }

    /// Whether deliveries may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.allow_private {
            return true;
        }
        // An allow-listed IPv4 network also opens its IPv4-mapped IPv6 form.
        let canonical = ip.to_canonical();
        if self
            .allow_cidrs
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return true;
        }
        match ip {
            IpAddr::V4(ip) => !refused_v4(ip),
            IpAddr::V6(ip) => !refused_v6(ip),
        }
    }
}

fn refused_v4(ip: Ipv4Addr) -> bool {
    let ip = u32::from(ip);
    REFUSED_V4.iter().any(|&(net, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        ip & mask == u32::from(net)
    })
}

fn refused_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4);
    }
    let bits = u128::from(ip);
    let within = |(net, len): (Ipv6Addr, u8)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        bits & mask == u128::from(net)
    };
    if within(NAT64) {
        return refused_v4(Ipv4Addr::from(bits as u32));
    }
    if within(SIX_TO_FOUR) {
        return refused_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    REFUSED_V6.iter().any(|&range| within(range))
}

/// Parses a comma-separated list of networks such as `10.1.0.0/16, fd00:1::/64` (a bare
/// address means just that address), for the allow-list of [`AddressPolicy::new`].
/// Empty entries are skipped, so an empty value is an empty list.
pub fn parse_cidrs(list: &str) -> Result<Vec<IpNet>> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Error::Invalid(format!(
                        "invalid network '{entry}' in the address allow-list: expected \
                         comma-separated CIDRs such as 10.0.0.0/8 or fd00::/8"
                    ))
                })
        })
        .collect()
}

/// Parses a webhook URL for delivery: it must be `http` or `https`, and a host that is an
/// IP literal must be allowed by `policy` (the client connects to those without asking
/// [`GuardedResolver`]). Host names are left to the resolver.
pub fn check_url(policy: &AddressPolicy, url: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(url)
        .map_err(|e| Error::Invalid(format!("url must be an absolute http or https URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Invalid(format!(
            "url scheme must be http or https, got '{}'",
            url.scheme()
        )));
    }
    let ip = match url.host() {
        None => return Err(Error::Invalid("url must have a host".into())),
        Some(url::Host::Domain(_)) => return Ok(url),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    if !policy.allows(ip) {
        return Err(Error::Invalid(format!(
            "url host {ip} is a refused address (loopback, private, link-local or reserved); \
             {ALLOW_HINT}"
        )));
    }
    Ok(url)
}

/// What the operator can do about a refused address, in every refusal: local and
/// internal receivers are allowed by server settings, not by the trigger.
pub const ALLOW_HINT: &str = "the server allows such receivers with \
    PICLOUD_WEBHOOK_ALLOW_PRIVATE=true (--webhook-allow-private) or the CIDRs in \
    PICLOUD_WEBHOOK_ALLOW_CIDRS";

/// How long [`check_webhook_host`] waits for DNS before refusing the name.
pub const SAVE_TIME_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks a webhook URL when a trigger is saved, so a URL no delivery could use is refused
/// at once (400) instead of failing every delivery: an IP-literal host must be allowed by
/// `policy` ([`check_url`]); a host name must resolve within
/// [`SAVE_TIME_RESOLVE_TIMEOUT`], and to allowed addresses only. Deliveries check again
/// ([`GuardedResolver`]), since what a name resolves to can change.
pub async fn check_webhook_host(policy: &AddressPolicy, url: &str) -> Result<()> {
    let url = check_url(policy, url)?;
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(());
    };
    match resolve_allowed(policy, host, url.port_or_known_default().unwrap_or(443)).await {
        Ok(_) => Ok(()),
        Err(HostRefusal::DoesNotResolve) => Err(Error::Invalid(format!(
            "url host '{host}' does not resolve (within {} s)",
            SAVE_TIME_RESOLVE_TIMEOUT.as_secs()
        ))),
        Err(HostRefusal::Refused(ip)) => Err(Error::Invalid(format!(
            "url host '{host}' resolves to {ip}, a refused address (loopback, private, \
             link-local or reserved); {ALLOW_HINT}"
        ))),
    }
}

/// Why [`resolve_allowed`] refused a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRefusal {
    /// The name resolved to no address within [`SAVE_TIME_RESOLVE_TIMEOUT`].
    DoesNotResolve,
    /// The host is, or resolves to, this address, which the policy refuses.
    Refused(IpAddr),
}

/// The addresses `host` (a name or an IP literal) stands for, when the policy allows
/// every one of them: a name with one refused address among its answers is refused
/// whole, since a client may connect to any of them. Names resolve within
/// [`SAVE_TIME_RESOLVE_TIMEOUT`].
pub async fn resolve_allowed(
    policy: &AddressPolicy,
    host: &str,
    port: u16,
) -> std::result::Result<Vec<IpAddr>, HostRefusal> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<IpAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => {
            let lookup = tokio::net::lookup_host((host, port));
            match tokio::time::timeout(SAVE_TIME_RESOLVE_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => addrs.map(|addr| addr.ip()).collect(),
                Ok(Err(_)) | Err(_) => Vec::new(),
            }
        }
    };
    if resolved.is_empty() {
        return Err(HostRefusal::DoesNotResolve);
    }
    match resolved.iter().find(|ip| !policy.allows(**ip)) {
        Some(refused) => Err(HostRefusal::Refused(*refused)),
        None => Ok(resolved),
    }
}

/// A DNS resolver for [`reqwest`] that drops the addresses its [`AddressPolicy`] refuses,
/// and fails if none remain, so a webhook host is checked on every connection.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    /// A resolver that keeps only the addresses `policy` allows.
    pub fn new(policy: Arc<AddressPolicy>) -> GuardedResolver {
        GuardedResolver { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if resolved.is_empty() {
                return Err(format!("'{host}' resolves to no address").into());
            }
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| policy.allows(addr.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(
                    format!("'{host}' resolves only to refused addresses; {ALLOW_HINT}").into(),
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client for webhook deliveries: host names resolve through
/// [`GuardedResolver`], redirects are never followed (a 3xx is a failed delivery, so a
/// redirect can never lead to a refused address), no proxy is used (a proxy would resolve
/// the host itself, around the guard), every request times out after `timeout`, and TLS
/// is rustls. URLs must pass [`check_url`] first, which covers IP-literal hosts.
pub fn webhook_client(policy: Arc<AddressPolicy>, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(policy)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .user_agent(USER_AGENT)
        .use_rustls_tls()
        .build()
        .expect("the webhook client's configuration is valid and rustls needs no system setup")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::{header, HeaderMap, StatusCode};
    use axum::routing::get;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn mapped(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            IpAddr::V6(_) => ip,
        }
    }

    const REFUSED: &[&str] = &[
        // unspecified, "this network"
        "0.0.0.0",
        "0.1.2.3",
        "::",
        // loopback
        "127.0.0.1",
        "127.255.255.254",
        "::1",
        // private
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "fc00::1",
        "fd12:3456::1",
        // link-local and metadata
        "169.254.0.1",
        "169.254.169.254",
        "fd00:ec2::254",
        "fe80::1",
        "febf::1",
        // carrier-grade NAT
        "100.64.0.1",
        "100.127.255.255",
        // multicast and broadcast
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "255.255.255.255",
        // documentation, benchmarking, reserved
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.1",
        "198.18.0.1",
        "198.19.255.255",
        "192.0.0.8",
        "240.0.0.1",
        "2001:db8::1",
        // IPv6 forms carrying refused IPv4 addresses
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::127.0.0.1",
        "64:ff9b::10.0.0.1",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::",
        "2001::1",
    ];

    const PUBLIC: &[&str] = &[
        "1.1.1.1",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "169.253.255.255",
        "11.0.0.1",
        "223.255.255.255",
        "2606:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:1.1.1.1",
        "64:ff9b::1.1.1.1",
        "2002:0101:0101::1",
    ];

    #[test]
    fn default_policy_refuses_internal_ranges_and_their_mapped_forms() {
        let policy = AddressPolicy::default();
        for &text in REFUSED {
            assert!(!policy.allows(ip(text)), "{text} should be refused");
            assert!(
                !policy.allows(mapped(ip(text))),
                "mapped {text} should be refused"
            );
        }
        for &text in PUBLIC {
            assert!(policy.allows(ip(text)), "{text} should be allowed");
            assert!(
                policy.allows(mapped(ip(text))),
                "mapped {text} should be allowed"
            );
        }
    }

    #[test]
    fn allow_private_opens_every_range() {
        let policy = AddressPolicy::new(true, vec![]);
        for &text in REFUSED.iter().chain(PUBLIC) {
            assert!(policy.allows(ip(text)), "{text}");
        }
    }

    #[test]
    fn allow_list_opens_just_its_networks() {
        let policy = AddressPolicy::new(false, parse_cidrs("10.1.0.0/16, fd00:1::/64").unwrap());
        assert!(policy.allows(ip("10.1.2.3")));
        assert!(policy.allows(ip("::ffff:10.1.2.3")));
        assert!(policy.allows(ip("fd00:1::5")));
        assert!(!policy.allows(ip("10.2.0.1")));
        assert!(!policy.allows(ip("fd00:2::5")));
        assert!(!policy.allows(ip("127.0.0.1")));
        assert!(!policy.allows(ip("169.254.169.254")));
        assert!(policy.allows(ip("1.1.1.1")));
    }

    #[test]
    fn parses_cidr_lists() {
        assert_eq!(parse_cidrs("").unwrap(), vec![]);
        assert_eq!(parse_cidrs(" , ").unwrap(), vec![]);
        let nets = parse_cidrs("10.0.0.0/8,fd00::/8 , 192.168.1.7").unwrap();
        let expected: Vec<IpNet> = ["10.0.0.0/8", "fd00::/8", "192.168.1.7/32"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(nets, expected);
        for bad in [
            "10.0.0.0/33",
            "example.com",
            "10.0.0.0/8,nope",
            "fd00::/129",
        ] {
            match parse_cidrs(bad) {
                Err(Error::Invalid(message)) => {
                    assert!(message.contains("address allow-list"), "{message}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn check_url_refuses_other_schemes_and_refused_ip_literals() {
        let default = AddressPolicy::default();
        let open = AddressPolicy::new(true, vec![]);
        let refused = |policy: &AddressPolicy, url: &str| {
            matches!(check_url(policy, url), Err(Error::Invalid(_)))
        };
        assert!(refused(&default, "ftp://example.com/"));
        assert!(refused(&open, "ftp://example.com/"));
        assert!(refused(&default, "file:///etc/passwd"));
        assert!(refused(&default, "not a url"));
        assert!(refused(&default, "http://127.0.0.1/"));
        assert!(refused(&default, "http://[::1]/"));
        assert!(refused(&default, "http://[::ffff:127.0.0.1]:8080/"));
        assert!(refused(
            &default,
            "https://169.254.169.254/latest/meta-data/"
        ));
        // Other spellings the URL parser normalizes to IPv4 literals.
        assert!(refused(&default, "http://2130706433/"));
        assert!(refused(&default, "http://0x7f.1/"));
        let url = check_url(&open, "http://127.0.0.1/hook").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1/hook");
        assert!(check_url(&default, "https://1.1.1.1/").is_ok());
        // Names are checked by the resolver, when connecting.
        assert!(check_url(&default, "http://localhost:8080/").is_ok());
    }

    #[tokio::test]
    async fn refusals_name_the_settings_that_allow_internal_receivers() {
        let default = AddressPolicy::default();
        let literal = check_url(&default, "http://127.0.0.1:9/hook").unwrap_err();
        let saved = check_webhook_host(&default, "http://localhost:9/hook")
            .await
            .unwrap_err();
        let delivered = webhook_client(Arc::default(), Duration::from_secs(2))
            .post("http://localhost:9/hook")
            .send()
            .await
            .unwrap_err();
        for text in [literal.to_string(), saved.to_string(), chain(&delivered)] {
            assert!(
                text.contains("PICLOUD_WEBHOOK_ALLOW_PRIVATE=true")
                    && text.contains("PICLOUD_WEBHOOK_ALLOW_CIDRS"),
                "{text}"
            );
        }
    }

    /// Every message in an error's source chain, joined.
    fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        text
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_never_connected() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = webhook_client(Arc::default(), Duration::from_secs(2));
        let error = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(error.is_connect(), "{error:?}");
        assert!(!error.is_timeout(), "{error:?}");
        let text = chain(&error);
        assert!(
            text.contains("resolves only to refused addresses"),
            "{text}"
        );
        // Nothing reached the listener, not even a connection it never accepted.
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the listener was connected to");
    }

    /// Serves `/` (echoing the `User-Agent`), `/old` (a 302 to `/new`) and `/new`
    /// (counting its hits) on a loopback port.
    async fn sink() -> (u16, Arc<AtomicUsize>) {
        let new_hits = Arc::new(AtomicUsize::new(0));
        let hits = Arc::clone(&new_hits);
        let app = axum::Router::new()
            .route(
                "/",
                get(|headers: HeaderMap| async move {
                    headers[header::USER_AGENT].to_str().unwrap().to_owned()
                }),
            )
            .route(
                "/old",
                get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/new")]) }),
            )
            .route(
                "/new",
                get(move || async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    "moved"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (port, new_hits)
    }

    #[tokio::test]
    async fn allow_private_reaches_local_sinks() {
        let (port, _) = sink().await;
        let client = webhook_client(
            Arc::new(AddressPolicy::new(true, vec![])),
            Duration::from_secs(5),
        );
        let response = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), USER_AGENT);
        assert!(USER_AGENT.starts_with("PiCloud-Webhooks/"));
    }

    #[tokio::test]
    async fn an_allow_listed_network_reaches_local_sinks() {
        let (port, _) = sink().await;
        let policy = AddressPolicy::new(false, parse_cidrs("127.0.0.0/8").unwrap());
        let client = webhook_client(Arc::new(policy), Duration::from_secs(5));
        let response = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed() {
        let (port, new_hits) = sink().await;
        let client = webhook_client(
            Arc::new(AddressPolicy::new(true, vec![])),
            Duration::from_secs(5),
        );
        let response = client
            .get(format!("http://localhost:{port}/old"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()[header::LOCATION], "/new");
        assert_eq!(new_hits.load(Ordering::SeqCst), 0);
    }
}
