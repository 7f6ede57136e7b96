//! UPnP IGD, for gateways that speak neither PCP nor NAT-PMP: an SSDP
//! search sent to the default gateway alone (unicast to its port 1900, not
//! multicast to the LAN), then SOAP `AddPortMapping` and
//! `DeletePortMapping` on the device it names, through `igd-next`.
//!
//! The device found must be the default gateway itself: an answer whose
//! description lives at another address is not used.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use igd_next::aio::tokio::{search_gateway, Tokio};
use igd_next::aio::Gateway;
use igd_next::{AddAnyPortError, AddPortError, PortMappingProtocol, SearchOptions};

use super::Granted;

/// SSDP's port.
const SSDP_PORT: u16 = 1900;
/// The search, the device description and its service description, all
/// within this.
const SEARCH_TIME: Duration = Duration::from_secs(2);
/// Each SOAP call gets this long.
const CALL_TIME: Duration = Duration::from_secs(2);
/// The mapping's description, as the gateway lists it.
const DESCRIPTION: &str = "warren";

/// Why UPnP gave no mapping.
#[derive(Debug, thiserror::Error)]
pub enum UpnpError {
    #[error("no UPnP IGD answered: {0}")]
    Search(String),
    #[error("the UPnP IGD at {0} is not the default gateway")]
    NotTheGateway(SocketAddr),
    #[error("UPnP {action}: {error}")]
    Call { action: &'static str, error: String },
    #[error("UPnP {0}: no answer within {CALL_TIME:?}")]
    Timeout(&'static str),
    #[error("UPnP external address {0} is not IPv4")]
    NotIpv4(IpAddr),
    #[error("UPnP: {0}")]
    Unusable(#[from] super::ReplyError),
}

/// The IGD of `gateway`, searched for from `local`.
async fn find(gateway: Ipv4Addr, local: Ipv4Addr) -> Result<Gateway<Tokio>, UpnpError> {
    find_at(SocketAddr::new(gateway.into(), SSDP_PORT), local.into()).await
}

/// The IGD that answers an SSDP search sent to `search`, if it lives at
/// `search`'s address.
async fn find_at(search: SocketAddr, local: IpAddr) -> Result<Gateway<Tokio>, UpnpError> {
    let options = SearchOptions {
        bind_addr: SocketAddr::new(local, 0),
        broadcast_address: search,
        timeout: Some(SEARCH_TIME),
        single_search_timeout: Some(SEARCH_TIME),
    };
    let found = search_gateway(options)
        .await
        .map_err(|e| UpnpError::Search(e.to_string()))?;
    if found.addr.ip() != search.ip() {
        return Err(UpnpError::NotTheGateway(found.addr));
    }
    Ok(found)
}

/// Runs one SOAP call within [`CALL_TIME`].
async fn call<T, E: std::fmt::Display>(
    action: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, UpnpError> {
    match tokio::time::timeout(CALL_TIME, f).await {
        Err(_) => Err(UpnpError::Timeout(action)),
        Ok(Err(e)) => Err(UpnpError::Call {
            action,
            error: e.to_string(),
        }),
        Ok(Ok(t)) => Ok(t),
    }
}

/// Maps UDP `port` of `local` for `asked` seconds, at external port
/// `wanted` when the gateway allows (the port held before, so a renewal
/// keeps it), else at one it picks.
pub async fn map(
    gateway: Ipv4Addr,
    local: Ipv4Addr,
    port: u16,
    wanted: u16,
    asked: u32,
) -> Result<Granted, UpnpError> {
    let igd = find(gateway, local).await?;
    let external = match call("GetExternalIPAddress", igd.get_external_ip()).await? {
        IpAddr::V4(ip) => ip,
        other => return Err(UpnpError::NotIpv4(other)),
    };
    let to = SocketAddr::new(local.into(), port);
    let udp = PortMappingProtocol::UDP;
    let added = tokio::time::timeout(CALL_TIME, igd.add_port(udp, wanted, to, asked, DESCRIPTION))
        .await
        .map_err(|_| UpnpError::Timeout("AddPortMapping"))?;
    // A permanent lease counts as `asked` too: the agent renews and
    // deletes it all the same.
    let mapped = match added {
        Ok(()) => wanted,
        Err(AddPortError::OnlyPermanentLeasesSupported) => {
            call(
                "AddPortMapping",
                igd.add_port(udp, wanted, to, 0, DESCRIPTION),
            )
            .await?;
            wanted
        }
        Err(AddPortError::PortInUse) => {
            call::<u16, AddAnyPortError>(
                "AddAnyPortMapping",
                igd.add_any_port(udp, to, asked, DESCRIPTION),
            )
            .await?
        }
        Err(e) => {
            return Err(UpnpError::Call {
                action: "AddPortMapping",
                error: e.to_string(),
            })
        }
    };
    Ok(Granted::new(
        SocketAddrV4::new(external, mapped).into(),
        asked,
    )?)
}

/// Deletes the UDP mapping at `external_port`.
pub async fn delete(
    gateway: Ipv4Addr,
    local: Ipv4Addr,
    external_port: u16,
) -> Result<(), UpnpError> {
    let igd = find(gateway, local).await?;
    call(
        "DeletePortMapping",
        igd.remove_port(PortMappingProtocol::UDP, external_port),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// An IGD description with one WANIPConnection service, and its
    /// service description.
    const DEVICE: &str = "<?xml version=\"1.0\"?><root><device><serviceList><service>\
        <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>\
        <SCPDURL>/scpd.xml</SCPDURL><controlURL>/ctl</controlURL>\
        </service></serviceList></device></root>";
    const SCPD: &str = "<?xml version=\"1.0\"?><scpd><actionList><action>\
        <name>AddPortMapping</name></action></actionList></scpd>";

    /// Serves [`DEVICE`] and [`SCPD`] over HTTP on `ip` until `requests`
    /// have been answered.
    fn describe_at(ip: Ipv4Addr, requests: usize) -> SocketAddr {
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                    head.push(byte[0]);
                }
                let body = match String::from_utf8_lossy(&head).contains("/scpd.xml") {
                    true => SCPD,
                    false => DEVICE,
                };
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).unwrap();
            }
        });
        addr
    }

    /// Answers one SSDP search on 127.0.0.1 with a description at `location`.
    async fn ssdp_pointing_at(location: SocketAddr) -> SocketAddr {
        let socket = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let (_, from) = socket.recv_from(&mut buf).await.unwrap();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://{location}/desc.xml\r\n\r\n"
            );
            socket.send_to(answer.as_bytes(), from).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn an_igd_at_the_gateways_address_is_used() {
        let http = describe_at(Ipv4Addr::LOCALHOST, 2);
        let ssdp = ssdp_pointing_at(http).await;
        let found = find_at(ssdp, Ipv4Addr::LOCALHOST.into()).await.unwrap();
        assert_eq!(found.addr, http);
        assert_eq!(found.control_url, "/ctl");
    }

    #[tokio::test]
    async fn an_igd_elsewhere_than_the_gateway_is_refused() {
        let elsewhere = describe_at(Ipv4Addr::new(127, 0, 0, 2), 2);
        let ssdp = ssdp_pointing_at(elsewhere).await;
        match find_at(ssdp, Ipv4Addr::LOCALHOST.into()).await {
            Err(UpnpError::NotTheGateway(at)) => assert_eq!(at, elsewhere),
            other => panic!("{other:?}"),
        }
    }
}
