//! Where the simulator may be reached (`--sim-url`) and where it may listen
//! (`sim serve --listen`): this machine only, and the same hosts for both:
//! `localhost`, 127.0.0.0/8 and `::1`.
//!
//! URLs are parsed by the `url` crate, as the HTTP clients parse them, so
//! that the host checked is the host connected to (`http://127.0.0.1:80@10.1.2.3`
//! names 10.1.2.3, with a user name). The URL handed on is the parsed one.

use super::SimError;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use url::{Host, Url};

/// The address to use for a loopback host, `None` for any other host.
fn loopback_ip<S: AsRef<str>>(host: &Host<S>) -> Option<IpAddr> {
    match host {
        Host::Domain(name) if name.as_ref().eq_ignore_ascii_case("localhost") => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Host::Domain(_) => None,
        Host::Ipv4(ip) => ip.is_loopback().then_some(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => ip.is_loopback().then_some(IpAddr::V6(*ip)),
    }
}

/// `--sim-url`: an `http://HOST[:PORT]` of a loopback host, with no user,
/// password, path, query or fragment. Returns it as parsed, without a
/// trailing `/`, ready to be joined with paths.
pub fn sim_url(text: &str) -> Result<String, SimError> {
    let refuse = |reason: &str| SimError::NotLoopbackUrl { url: redact(text), reason: reason.to_string() };
    let url = Url::parse(text).map_err(|e| refuse(&format!("it is not a URL ({e})")))?;
    if url.scheme() != "http" {
        return Err(refuse("the simulator speaks plain http://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("it carries a user name or password"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(refuse("it has a path, query or fragment; give the address only"));
    }
    if url.host().as_ref().and_then(loopback_ip).is_none() {
        return Err(refuse("its host is not localhost, 127.x.x.x or [::1]"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// `--listen`: `HOST:PORT` of a loopback host (`[::1]:PORT` for IPv6).
pub fn listen_addr(text: &str) -> Result<SocketAddr, SimError> {
    let refuse = || SimError::NotLoopback { addr: redact(text) };
    let (host, port) = text.rsplit_once(':').ok_or_else(refuse)?;
    let port: u16 = port.parse().map_err(|_| refuse())?;
    let host = Host::parse(host).map_err(|_| refuse())?;
    let ip = loopback_ip(&host).ok_or_else(refuse)?;
    Ok(SocketAddr::new(ip, port))
}

/// `text` with any user name and password replaced by `***`, for messages:
/// a URL given on a command line may carry a secret.
fn redact(text: &str) -> String {
    let (scheme, rest) = text.split_once("://").map_or(("", text), |(scheme, rest)| (scheme, rest));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if scheme.is_empty() => format!("***{}", &rest[at..]),
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_url_and_listen_accept_the_same_loopback_hosts() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "[::1]"] {
            let url = format!("http://{host}:8787");
            assert!(sim_url(&url).is_ok(), "{url}");
            assert!(sim_url(&format!("{url}/")).is_ok(), "{url}/");
            let listen = format!("{host}:0");
            assert!(listen_addr(&listen).is_ok_and(|a| a.ip().is_loopback()), "{listen}");
        }
        assert_eq!(sim_url("http://localhost:8787/").unwrap(), "http://localhost:8787");
        assert_eq!(listen_addr("localhost:0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(listen_addr("[::1]:5000").unwrap(), "[::1]:5000".parse().unwrap());
    }

    #[test]
    fn sim_url_and_listen_refuse_every_other_host() {
        for host in ["10.1.2.3", "0.0.0.0", "[::]", "[::ffff:10.0.0.1]", "example.com", "localhost.example.com"] {
            let url = format!("http://{host}:8787");
            assert!(matches!(sim_url(&url), Err(SimError::NotLoopbackUrl { .. })), "{url}");
            let listen = format!("{host}:0");
            assert!(matches!(listen_addr(&listen), Err(SimError::NotLoopback { .. })), "{listen}");
        }
        for listen in ["127.0.0.1", "127.0.0.1:x", "127.0.0.1:99999", "::1:0", "u@127.0.0.1:0", ""] {
            assert!(listen_addr(listen).is_err(), "{listen}");
        }
    }

    /// Regression: `--sim-url http://127.0.0.1:80@10.1.2.3:5000` connected to
    /// 10.1.2.3, because the loopback check split the string by hand.
    #[test]
    fn sim_url_with_userinfo_is_refused_without_echoing_the_password() {
        for url in [
            "http://127.0.0.1:80@10.1.2.3:5000",
            "http://admin:hunter2@127.0.0.1:5000",
            "http://hunter2@localhost:5000/",
            "https://127.0.0.1:hunter2@[::1]:5000",
        ] {
            let message = sim_url(url).unwrap_err().to_string();
            assert!(!message.contains("hunter2") && !message.contains("127.0.0.1:80@"), "{message}");
            assert!(message.contains("***@"), "{message}");
        }
    }

    #[test]
    fn sim_url_must_be_plain_http_to_an_address() {
        for url in ["https://127.0.0.1:5000", "127.0.0.1:5000", "http://127.0.0.1:5000/compute", "http://[::1]:1/?a=b"]
        {
            assert!(matches!(sim_url(url), Err(SimError::NotLoopbackUrl { .. })), "{url}");
        }
    }
}
