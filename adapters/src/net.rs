//! Where outbound calls may go. Tenants choose the addresses WorkflowOps calls (an
//! environment's base URL, a Git remote, a GitHub API URL, a webhook), so every such call is
//! checked here first: each address a destination names or resolves to is classified
//! ([`classify`]) and allowed or refused by the server's setting ([`Outbound`]), so a tenant
//! cannot make the server call into its own network (cloud metadata, admin ports, databases).
//!
//! HTTP clients get the check twice: before a request for an address written in the URL (a
//! resolver never sees those), and in the client's resolver ([`Guard`] as a
//! [`reqwest::dns::Resolve`]) for names, so the addresses checked are the ones connected to (a
//! name that answers differently between a check and the connection gets nowhere).
//! [`HttpClient`] is such a client that also never follows redirects.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Which networks calls to providers and Git may reach (`WFO_OUTBOUND_NETWORKS`). Link-local
/// addresses (cloud metadata services), the unspecified address, multicast, broadcast,
/// documentation and reserved ranges are refused whatever the setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Outbound {
    /// Public addresses only: multi-tenant installations.
    Public,
    /// Public and private addresses (RFC 1918, unique local fc00::/7, CGNAT 100.64/10):
    /// self-hosted n8n and Git servers usually live on a private network.
    #[default]
    Private,
    /// Public, private and loopback addresses: everything on one machine.
    Any,
}

impl Outbound {
    pub const ALL: [Self; 3] = [Self::Public, Self::Private, Self::Any];

    /// The setting's value as written in `WFO_OUTBOUND_NETWORKS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Any => "any",
        }
    }

    /// Whether an address of `class` may be called.
    pub fn allows(self, class: AddressClass) -> bool {
        match class {
            AddressClass::Public => true,
            AddressClass::Private => matches!(self, Self::Private | Self::Any),
            AddressClass::Loopback => self == Self::Any,
            AddressClass::LinkLocal
            | AddressClass::Unspecified
            | AddressClass::Multicast
            | AddressClass::Broadcast
            | AddressClass::Documentation
            | AddressClass::Reserved => false,
        }
    }

    /// What a refusal under this setting says, after naming the address.
    pub fn rule(self) -> String {
        let reach = match self {
            Self::Public => "public networks",
            Self::Private => "public and private networks",
            Self::Any => "public, private and loopback networks",
        };
        format!(
            "outbound calls to providers and Git are limited to {reach} (WFO_OUTBOUND_NETWORKS)"
        )
    }
}

impl fmt::Display for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Outbound {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not one of public, private, any"))
    }
}

/// What kind of address an IP address is, as far as calling it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    Public,
    /// RFC 1918, unique local (fc00::/7), CGNAT (100.64/10).
    Private,
    Loopback,
    /// 169.254/16 and fe80::/10: where cloud metadata services answer.
    LinkLocal,
    Unspecified,
    Multicast,
    Broadcast,
    Documentation,
    /// "This network", IETF protocol assignments, benchmarking, 240/4, deprecated and
    /// unassigned IPv6 ranges, and IPv6 forms whose IPv4 address cannot be told (Teredo).
    Reserved,
}

impl AddressClass {
    /// The class as a noun phrase: "a link-local address".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Public => "a public address",
            Self::Private => "a private address",
            Self::Loopback => "a loopback address",
            Self::LinkLocal => "a link-local address",
            Self::Unspecified => "the unspecified address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation address",
            Self::Reserved => "a reserved address",
        }
    }
}

/// The class of `ip`. IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64,
/// 6to4) are judged by that address: `::ffff:169.254.169.254` is link-local.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddressClass::Private
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if ip.is_documentation() {
        AddressClass::Documentation
    } else if a == 0 // "this network" 0/8
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0/24
        || (a == 192 && b == 88 && c == 99) // former 6to4 relay anycast 192.88.99/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || a >= 240
    // reserved 240/4
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        classify_v4(Ipv4Addr::new(a, b, c, d))
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        // ::ffff:a.b.c.d
        classify_v4(v4)
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if s[..6].iter().all(|&x| x == 0) {
        // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
        embedded(s[6], s[7])
    } else if s[..4].iter().all(|&x| x == 0) && s[4] == 0xffff && s[5] == 0 {
        // IPv4-translated ::ffff:0:a.b.c.d
        embedded(s[6], s[7])
    } else if s[0] == 0x0064 && s[1] == 0xff9b && (s[2..6].iter().all(|&x| x == 0) || s[2] == 1) {
        // NAT64 64:ff9b::/96 and local-use 64:ff9b:1::/48: the IPv4 address in the last 32 bits
        embedded(s[6], s[7])
    } else if s[0] == 0x2002 {
        // 6to4 2002:a.b.c.d::/48
        embedded(s[1], s[2])
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if (s[0] & 0xffc0) == 0xfe80 {
        AddressClass::LinkLocal
    } else if (s[0] & 0xfe00) == 0xfc00 {
        AddressClass::Private
    } else if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] & 0xfff0) == 0x3ff0 {
        // 2001:db8::/32 and 3fff::/20
        AddressClass::Documentation
    } else if (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32: the IPv4 address is obfuscated
        || (s[0] == 0x2001 && s[1] == 2 && s[2] == 0) // benchmarking 2001:2::/48
        || (s[0] == 0x0100 && s[1..4].iter().all(|&x| x == 0)) // discard-only 100::/64
        || (s[0] & 0xe000) != 0x2000
    // outside global unicast 2000::/3
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// A destination that may not be called, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The host as written (a name, or the address itself).
    pub host: String,
    pub address: IpAddr,
    pub class: AddressClass,
    /// The setting's rule, e.g. "outbound calls to providers and Git are limited to …".
    pub rule: Cow<'static, str>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok_and(|ip| ip == self.address) {
            write!(f, "`{}` is {}", self.address, self.class.describe())?;
        } else {
            write!(
                f,
                "`{}` resolves to `{}`, {}",
                self.host,
                self.address,
                self.class.describe()
            )?;
        }
        write!(f, "; {}", self.rule)
    }
}

impl std::error::Error for Refused {}

/// Why a destination cannot be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The name does not resolve (now): worth trying again later.
    #[error("cannot resolve `{host}`: {reason}")]
    Unresolved { host: String, reason: String },
    #[error("the URL names no host")]
    NoHost,
}

/// The first [`Refused`] in an error's chain of sources: how a refusal by [`Guard`]'s resolver
/// is recognised in the error an HTTP client reports.
pub fn refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(refused) = err.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = err.source();
    }
    None
}

/// The check of one kind of outbound call: which networks it may reach, and the sentence a
/// refusal ends with. Also a DNS resolver for reqwest that answers only allowed addresses.
#[derive(Debug, Clone)]
pub struct Guard {
    outbound: Outbound,
    rule: Cow<'static, str>,
}

impl Guard {
    /// Calls to providers and Git remotes under the server's setting.
    pub fn new(outbound: Outbound) -> Self {
        Self {
            outbound,
            rule: Cow::Owned(outbound.rule()),
        }
    }

    /// A check with its own refusal sentence (notifications name their own setting).
    pub fn with_rule(outbound: Outbound, rule: &'static str) -> Self {
        Self {
            outbound,
            rule: Cow::Borrowed(rule),
        }
    }

    /// The check of Slack and webhook notification destinations: public addresses only, or with
    /// `WFO_NOTIFY_ALLOW_PRIVATE` public, private and loopback ones. Link-local (cloud metadata),
    /// multicast, broadcast, documentation and reserved addresses are refused either way.
    /// Channels are checked with it when saved and every delivery connects through it.
    pub fn notifications(allow_private: bool) -> Self {
        if allow_private {
            Self::with_rule(
                Outbound::Any,
                "notifications never go to link-local (cloud metadata), multicast, broadcast, \
                 documentation or reserved addresses, whatever WFO_NOTIFY_ALLOW_PRIVATE says",
            )
        } else {
            Self::with_rule(
                Outbound::Public,
                "notifications go to public endpoints only (WFO_NOTIFY_ALLOW_PRIVATE)",
            )
        }
    }

    pub fn outbound(&self) -> Outbound {
        self.outbound
    }

    /// Refuses `address` (named `host`) unless the setting allows its class.
    pub fn check_ip(&self, host: &str, address: IpAddr) -> Result<(), Refused> {
        let class = classify(address);
        if self.outbound.allows(class) {
            Ok(())
        } else {
            Err(Refused {
                host: host.to_owned(),
                address,
                class,
                rule: self.rule.clone(),
            })
        }
    }

    /// Every address of `addrs` allowed, or the first refused one.
    fn check_all(&self, host: &str, addrs: &[SocketAddr]) -> Result<(), Refused> {
        addrs.iter().try_for_each(|a| self.check_ip(host, a.ip()))
    }

    /// The host's addresses, each checked: one refused address refuses the host (a name that
    /// also points inside is not called at all).
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DestinationError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| unresolved(host, &e))?
            .collect();
        self.checked(host, addrs)
    }

    /// [`Guard::lookup`] for blocking code (libgit2 runs on blocking threads).
    pub fn lookup_blocking(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, DestinationError> {
        use std::net::ToSocketAddrs;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = (bare, port)
            .to_socket_addrs()
            .map_err(|e| unresolved(host, &e))?
            .collect();
        self.checked(host, addrs)
    }

    fn checked(
        &self,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, DestinationError> {
        if addrs.is_empty() {
            return Err(DestinationError::Unresolved {
                host: host.to_owned(),
                reason: "no addresses".into(),
            });
        }
        self.check_all(host, &addrs)?;
        Ok(addrs)
    }

    /// Refuses a URL whose host is an address written out that the setting does not allow.
    /// Names are left to the resolver at connection time (see [`HttpClient`]).
    pub fn check_literal(&self, url: &reqwest::Url) -> Result<(), DestinationError> {
        match host_of(url)? {
            Host::Address(ip) => Ok(self.check_ip(&ip.to_string(), ip)?),
            Host::Name(_) => Ok(()),
        }
    }

    /// Refuses a URL whose host is, or resolves to, an address the setting does not allow.
    pub async fn check_url(&self, url: &reqwest::Url) -> Result<(), DestinationError> {
        match host_of(url)? {
            Host::Address(ip) => Ok(self.check_ip(&ip.to_string(), ip)?),
            Host::Name(name) => {
                let port = url.port_or_known_default().unwrap_or(443);
                self.lookup(name, port).await.map(drop)
            }
        }
    }
}

/// A URL's host: an address written out (the URL parser has already normalised forms such
/// as `0x7f.1` to `127.0.0.1`), or a name to resolve.
enum Host<'a> {
    Address(IpAddr),
    Name(&'a str),
}

fn host_of(url: &reqwest::Url) -> Result<Host<'_>, DestinationError> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(DestinationError::NoHost)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    Ok(match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Address(ip),
        Err(_) => Host::Name(host),
    })
}

fn unresolved(host: &str, e: &std::io::Error) -> DestinationError {
    DestinationError::Unresolved {
        host: host.to_owned(),
        reason: e.to_string(),
    }
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            match guard.lookup(&host, 0).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                // Boxed as itself, so `refusal` finds it in the client's error.
                Err(DestinationError::Refused(refused)) => {
                    Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>)
                }
                Err(other) => Err(other.to_string().into()),
            }
        })
    }
}

/// An HTTP client for destinations tenants choose (providers, the GitHub API): it connects
/// only to addresses its [`Guard`] allows and never follows a redirect (a server answering
/// 30x to an internal address would walk around the check, and reqwest would carry custom
/// headers such as an API key to the new host). Callers check a URL's written-out address
/// with [`HttpClient::check_literal`] before using it; names are checked as they resolve.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    guard: Guard,
}

impl HttpClient {
    /// `builder` (user agent, timeouts, pool) with the guard for `outbound` as its resolver and
    /// redirects turned off.
    pub fn build(builder: reqwest::ClientBuilder, outbound: Outbound) -> reqwest::Result<Self> {
        let guard = Guard::new(outbound);
        let client = builder
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(guard.clone()))
            .build()?;
        Ok(Self { client, guard })
    }

    /// The client, for a URL whose written-out address was checked.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn outbound(&self) -> Outbound {
        self.guard.outbound
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// See [`Guard::check_literal`].
    pub fn check_literal(&self, url: &reqwest::Url) -> Result<(), DestinationError> {
        self.guard.check_literal(url)
    }
}

/// Where a redirect pointed, absolute, without its query and fragment (which may carry
/// session data) and with the path the request asked for taken off its end: what to use as
/// the base URL instead. `request` is the URL that was redirected.
pub fn redirect_target(request: &reqwest::Url, location: &str) -> Option<String> {
    let mut target = request.join(location).ok()?;
    target.set_query(None);
    target.set_fragment(None);
    let _ = target.set_username("");
    let _ = target.set_password(None);
    let asked: Vec<&str> = request
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let path = target.path().to_owned();
    let pointed: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let common = asked
        .iter()
        .rev()
        .zip(pointed.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let kept = &pointed[..pointed.len() - common];
    target.set_path(&kept.join("/"));
    Some(target.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_address_range_has_its_class() {
        use AddressClass as C;
        for (address, class) in [
            ("8.8.8.8", C::Public),
            ("1.1.1.1", C::Public),
            ("100.128.0.1", C::Public),
            ("2606:4700::1111", C::Public),
            ("64:ff9b::808:808", C::Public),
            ("2002:808:808::1", C::Public),
            ("10.0.0.1", C::Private),
            ("172.16.0.1", C::Private),
            ("172.31.255.255", C::Private),
            ("192.168.1.1", C::Private),
            ("100.64.0.1", C::Private),
            ("100.127.255.254", C::Private),
            ("fd00::1", C::Private),
            ("fc00::1", C::Private),
            ("127.0.0.1", C::Loopback),
            ("127.255.0.9", C::Loopback),
            ("::1", C::Loopback),
            ("169.254.169.254", C::LinkLocal),
            ("169.254.0.1", C::LinkLocal),
            ("fe80::1", C::LinkLocal),
            ("febf::1", C::LinkLocal),
            ("0.0.0.0", C::Unspecified),
            ("::", C::Unspecified),
            ("224.0.0.1", C::Multicast),
            ("239.255.255.250", C::Multicast),
            ("ff02::1", C::Multicast),
            ("255.255.255.255", C::Broadcast),
            ("192.0.2.1", C::Documentation),
            ("198.51.100.7", C::Documentation),
            ("203.0.113.9", C::Documentation),
            ("2001:db8::1", C::Documentation),
            ("3fff::1", C::Documentation),
            ("0.1.2.3", C::Reserved),
            ("192.0.0.8", C::Reserved),
            ("192.88.99.1", C::Reserved),
            ("198.18.0.1", C::Reserved),
            ("198.19.255.1", C::Reserved),
            ("240.0.0.1", C::Reserved),
            ("fec0::1", C::Reserved),
            ("2001::1", C::Reserved),
            ("2001:2::1", C::Reserved),
            ("100::1", C::Reserved),
            ("4000::1", C::Reserved),
        ] {
            assert_eq!(classify(ip(address)), class, "{address}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_judged_by_the_ipv4_address() {
        use AddressClass as C;
        for (address, class) in [
            ("::ffff:127.0.0.1", C::Loopback),
            ("::ffff:169.254.169.254", C::LinkLocal),
            ("::ffff:10.0.0.1", C::Private),
            ("::ffff:0.0.0.0", C::Unspecified),
            ("::ffff:224.0.0.1", C::Multicast),
            ("::ffff:8.8.8.8", C::Public),
            ("::127.0.0.1", C::Loopback),
            ("::169.254.169.254", C::LinkLocal),
            ("::10.0.0.1", C::Private),
            ("::ffff:0:169.254.169.254", C::LinkLocal),
            ("64:ff9b::a9fe:a9fe", C::LinkLocal),
            ("64:ff9b::7f00:1", C::Loopback),
            ("64:ff9b:1::a9fe:a9fe", C::LinkLocal),
            ("2002:a9fe:a9fe::1", C::LinkLocal),
            ("2002:a00:1::1", C::Private),
            ("2002:7f00:1::1", C::Loopback),
        ] {
            assert_eq!(classify(ip(address)), class, "{address}");
        }
    }

    #[test]
    fn each_setting_allows_its_networks_and_never_the_metadata_service() {
        use AddressClass as C;
        let allowed = |o: Outbound| {
            [
                C::Public,
                C::Private,
                C::Loopback,
                C::LinkLocal,
                C::Unspecified,
                C::Multicast,
                C::Broadcast,
                C::Documentation,
                C::Reserved,
            ]
            .into_iter()
            .filter(|c| o.allows(*c))
            .collect::<Vec<_>>()
        };
        assert_eq!(allowed(Outbound::Public), [C::Public]);
        assert_eq!(allowed(Outbound::Private), [C::Public, C::Private]);
        assert_eq!(allowed(Outbound::Any), [C::Public, C::Private, C::Loopback]);
        assert_eq!(Outbound::default(), Outbound::Private);
        for o in Outbound::ALL {
            assert_eq!(o.as_str().parse::<Outbound>(), Ok(o));
        }
        assert!("everything".parse::<Outbound>().is_err());
    }

    #[test]
    fn a_refusal_names_the_address_its_class_and_the_setting() {
        let refused = Guard::new(Outbound::Private)
            .check_ip("169.254.169.254", ip("169.254.169.254"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            refused.as_deref(),
            Some(
                "`169.254.169.254` is a link-local address; outbound calls to providers and Git \
                 are limited to public and private networks (WFO_OUTBOUND_NETWORKS)"
            )
        );
        let named = Guard::new(Outbound::Public)
            .check_ip("intranet.example", ip("10.0.0.1"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            named.as_deref(),
            Some(
                "`intranet.example` resolves to `10.0.0.1`, a private address; outbound calls to \
                 providers and Git are limited to public networks (WFO_OUTBOUND_NETWORKS)"
            )
        );
        assert!(
            Guard::new(Outbound::Any)
                .check_ip("[::1]", ip("::1"))
                .is_ok()
        );
    }

    #[test]
    fn addresses_written_in_a_url_are_checked_without_resolving() {
        let guard = Guard::new(Outbound::Private);
        let url = |s: &str| reqwest::Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        for refused in [
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.1:5678",
            "http://[::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://0x7f.1/",
            "http://2852039166/",
        ] {
            assert!(
                matches!(
                    guard.check_literal(&url(refused)),
                    Err(DestinationError::Refused(_))
                ),
                "{refused}"
            );
        }
        for allowed in ["http://10.0.0.1/", "https://n8n.example.com/"] {
            assert_eq!(guard.check_literal(&url(allowed)), Ok(()), "{allowed}");
        }
    }

    #[tokio::test]
    async fn the_resolver_never_answers_a_refused_address() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap_or_else(|e| panic!("{e:?}"));
        let refused = Guard::new(Outbound::Private)
            .resolve(name)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused.starts_with("`localhost` resolves to `")
                && refused.contains("a loopback address")
                && refused.contains("WFO_OUTBOUND_NETWORKS"),
            "{refused}"
        );
        let name: reqwest::dns::Name = "localhost".parse().unwrap_or_else(|e| panic!("{e:?}"));
        assert!(Guard::new(Outbound::Any).resolve(name).await.is_ok());
    }

    #[test]
    fn a_redirect_target_is_shown_as_the_base_url_to_use() {
        let asked = reqwest::Url::parse("http://old.example/api/v1/workflows?limit=1")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            redirect_target(&asked, "https://new.example/n8n/api/v1/workflows?limit=1").as_deref(),
            Some("https://new.example/n8n")
        );
        assert_eq!(
            redirect_target(&asked, "/login?next=%2Fapi").as_deref(),
            Some("http://old.example/login")
        );
        assert_eq!(
            redirect_target(&asked, "https://u:p@new.example/api/v1/workflows#x").as_deref(),
            Some("https://new.example")
        );
    }
}
