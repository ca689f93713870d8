//! Which database hosts a source may name. A source's URL comes from an app's admin key,
//! not from the operator, so without a check any app could make PiCloud connect to its
//! own database, to services on its loopback or private network, or to the cloud
//! metadata address. Sources follow the webhooks' [`AddressPolicy`] with settings of
//! their own: public addresses by default, internal ones only where the operator allows
//! them (PICLOUD_SOURCE_ALLOW_PRIVATE, PICLOUD_SOURCE_ALLOW_CIDRS).

use std::net::{IpAddr, Ipv4Addr};

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::dispatcher::ssrf::{
    resolve_allowed, AddressPolicy, HostRefusal, SAVE_TIME_RESOLVE_TIMEOUT,
};
use crate::error::{Error, Result};

/// What the operator can do about a refused database host, in every refusal.
pub const ALLOW_HINT: &str = "the server allows such databases with \
    PICLOUD_SOURCE_ALLOW_PRIVATE=true (--source-allow-private) or the CIDRs in \
    PICLOUD_SOURCE_ALLOW_CIDRS";

/// The options a relay connects to `database_url` with, once `policy` allows every
/// address its host stands for (checked when a source is added, and again at each
/// connect, since what a name resolves to can change). A Unix socket counts as
/// loopback. The host name is replaced by the address it was checked at, so a second
/// lookup cannot lead elsewhere (DNS rebinding) — except with `sslmode=verify-full`,
/// where TLS needs the name and only a server holding a certificate for it can answer.
pub async fn checked_options(
    policy: &AddressPolicy,
    database_url: &str,
) -> Result<PgConnectOptions> {
    let options: PgConnectOptions = database_url
        .parse()
        .map_err(|_| Error::Invalid("database_url is not a PostgreSQL URL".into()))?;
    if options.get_socket().is_some() || options.get_host().starts_with('/') {
        if policy.allows(IpAddr::V4(Ipv4Addr::LOCALHOST)) {
            return Ok(options);
        }
        return Err(Error::Invalid(format!(
            "database_url names a Unix socket, a local address; {ALLOW_HINT}"
        )));
    }
    let host = options.get_host().to_owned();
    match resolve_allowed(policy, &host, options.get_port()).await {
        Ok(_) if matches!(options.get_ssl_mode(), PgSslMode::VerifyFull) => Ok(options),
        Ok(addresses) => Ok(options.host(&addresses[0].to_string())),
        Err(HostRefusal::DoesNotResolve) => Err(Error::Invalid(format!(
            "database_url host '{host}' does not resolve (within {} s)",
            SAVE_TIME_RESOLVE_TIMEOUT.as_secs()
        ))),
        Err(HostRefusal::Refused(ip)) => Err(Error::Invalid(format!(
            "database_url host '{host}' is or resolves to {ip}, a refused address \
             (loopback, private, link-local or reserved); {ALLOW_HINT}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> AddressPolicy {
        AddressPolicy::default()
    }

    async fn refusal(policy: &AddressPolicy, url: &str) -> String {
        match checked_options(policy, url).await {
            Ok(options) => panic!("{url} allowed, to {}", options.get_host()),
            Err(error) => error.to_string(),
        }
    }

    #[tokio::test]
    async fn internal_hosts_are_refused_by_default() {
        for url in [
            "postgres://u:p@127.0.0.1:5432/app",
            "postgres://u:p@[::1]/app",
            "postgres://u:p@169.254.169.254/app",
            "postgres://u:p@10.1.2.3/app",
            "postgres://u:p@localhost/app",
            "postgres://u:p@public.example/app?host=127.0.0.1",
            "postgres://u:p@public.example/app?hostaddr=127.0.0.1",
        ] {
            let error = refusal(&strict(), url).await;
            assert!(
                error.contains("refused address") && error.contains("PICLOUD_SOURCE_ALLOW_PRIVATE"),
                "{url}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn unix_sockets_count_as_loopback() {
        for url in [
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/app",
            "postgres://u@ignored/app?host=/tmp",
        ] {
            let error = refusal(&strict(), url).await;
            assert!(error.contains("Unix socket"), "{url}: {error}");
            let allowed = checked_options(&AddressPolicy::new(true, Vec::new()), url).await;
            assert!(allowed.is_ok(), "{url}");
        }
    }

    #[tokio::test]
    async fn allowed_hosts_are_pinned_to_the_address_they_were_checked_at() {
        let loopback = AddressPolicy::new(false, vec!["127.0.0.0/8".parse().unwrap()]);
        let options = checked_options(&loopback, "postgres://u:p@localhost:6543/app")
            .await
            .unwrap();
        assert_eq!(options.get_host(), "127.0.0.1");
        assert_eq!(options.get_port(), 6543);
        let verified = checked_options(
            &AddressPolicy::new(true, Vec::new()),
            "postgres://u:p@localhost/app?sslmode=verify-full",
        )
        .await
        .unwrap();
        assert_eq!(verified.get_host(), "localhost", "TLS checks the name");
        let error = refusal(&loopback, "postgres://u:p@[::1]/app").await;
        assert!(error.contains("::1"), "{error}");
    }
}
