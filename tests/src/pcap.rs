//! Packet capture with tcpdump inside a namespace, and a small reader for
//! the classic pcap format that extracts UDP datagrams.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::netns::Netns;
use crate::process::Process;

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One captured UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

/// A running tcpdump writing to a file in the lab's directory.
#[derive(Debug)]
pub struct Capture {
    process: Process,
    file: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i IFNAME -w FILE FILTER...` in `ns` and waits until
    /// it is listening. `label` must be unique in the lab.
    pub fn start(
        lab: &Lab,
        ns: &Netns,
        ifname: &str,
        label: &str,
        filter: &[&str],
    ) -> Result<Capture> {
        let file = lab.subdir("pcap")?.join(format!("{label}.pcap"));
        let mut args: Vec<String> = [
            "-i",
            ifname,
            "-n",
            "--immediate-mode",
            "-U",
            "-Z",
            "root",
            "-w",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // --immediate-mode: libpcap otherwise holds packets in its ring
        // for up to a second, and a capture stopped sooner loses them.
        // -Z root: the capture file is in a root-only temp dir.
        args.push(file.display().to_string());
        args.extend(filter.iter().map(|s| (*s).to_owned()));
        let mut process = lab.spawn_in(ns, label, "tcpdump", &args, &[])?;
        let deadline = Instant::now() + START_TIMEOUT;
        while !process.stderr().contains("listening on") {
            process.ensure_running()?;
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("tcpdump {label} to start listening"),
                    after: START_TIMEOUT,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(Capture { process, file })
    }

    /// Stops the capture and returns the UDP datagrams it saw.
    pub fn finish(mut self) -> Result<Vec<UdpDatagram>> {
        // Packets sent just now may still be on their way through the veth.
        thread::sleep(Duration::from_millis(100));
        self.process.signal("INT")?;
        self.process.wait_exit(Duration::from_secs(5))?;
        let bytes = fs::read(&self.file)
            .map_err(|e| LabError::io(format!("reading {}", self.file.display()), e))?;
        parse(&bytes)
    }
}

fn bad(detail: impl Into<String>) -> LabError {
    LabError::Output {
        what: "pcap file".to_owned(),
        detail: detail.into(),
    }
}

/// Extracts the UDP datagrams of a pcap file (Ethernet, Linux cooked v1/v2
/// or raw IP link types; IPv4 and IPv6 without extension headers).
pub fn parse(bytes: &[u8]) -> Result<Vec<UdpDatagram>> {
    let header = bytes
        .get(..24)
        .ok_or_else(|| bad("shorter than its header"))?;
    let magic = [header[0], header[1], header[2], header[3]];
    let big_endian = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        _ => return Err(bad(format!("unknown magic {magic:02x?}"))),
    };
    let word = |b: &[u8]| {
        let w = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    let linktype = word(&header[20..24]);
    let mut out = Vec::new();
    let mut rest = &bytes[24..];
    while rest.len() >= 16 {
        let incl = word(&rest[8..12]) as usize;
        let frame = rest
            .get(16..16 + incl)
            .ok_or_else(|| bad("truncated record"))?;
        if let Some(d) = datagram_of_frame(linktype, frame) {
            out.push(d);
        }
        rest = &rest[16 + incl..];
    }
    Ok(out)
}

/// The IP packet inside a link-layer frame, with its ethertype.
fn network_layer(linktype: u32, frame: &[u8]) -> Option<(u16, &[u8])> {
    let be16 = |b: &[u8], at: usize| Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
    match linktype {
        // Ethernet, possibly with one 802.1Q tag.
        1 => match be16(frame, 12)? {
            0x8100 => Some((be16(frame, 16)?, frame.get(18..)?)),
            et => Some((et, frame.get(14..)?)),
        },
        // Linux cooked capture v1 and v2.
        113 => Some((be16(frame, 14)?, frame.get(16..)?)),
        276 => Some((be16(frame, 0)?, frame.get(20..)?)),
        // Raw IP: the version nibble tells the family.
        12 | 101 => {
            let et = if frame.first()? >> 4 == 6 {
                0x86dd
            } else {
                0x0800
            };
            Some((et, frame))
        }
        _ => None,
    }
}

fn datagram_of_frame(linktype: u32, frame: &[u8]) -> Option<UdpDatagram> {
    let (ethertype, ip) = network_layer(linktype, frame)?;
    let (src, dst, udp) = match ethertype {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            if *ip.get(9)? != 17 {
                return None;
            }
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            (
                IpAddr::from(Ipv4Addr::from(src)),
                IpAddr::from(Ipv4Addr::from(dst)),
                ip.get(ihl..total.min(ip.len()))?,
            )
        }
        0x86dd => {
            if *ip.get(6)? != 17 {
                return None;
            }
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                IpAddr::from(Ipv6Addr::from(src)),
                IpAddr::from(Ipv6Addr::from(dst)),
                ip.get(40..)?,
            )
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    Some(UdpDatagram {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        payload: udp.get(8..len.max(8))?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_with(frame: &[u8]) -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend([0u8; 8]);
        f.extend(262_144u32.to_le_bytes());
        f.extend(1u32.to_le_bytes());
        f.extend([0u8; 8]);
        let len = frame.len() as u32;
        f.extend(len.to_le_bytes());
        f.extend(len.to_le_bytes());
        f.extend(frame);
        f
    }

    #[test]
    fn extracts_udp_over_ethernet_ipv4() -> Result<()> {
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        let payload = [4u8, 0, 0, 0, 9, 9];
        let udp_len = 8 + payload.len() as u16;
        let total = 20 + udp_len;
        frame.extend([
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            17,
            0,
            0,
        ]);
        frame.extend([192, 0, 2, 1, 192, 0, 2, 2]);
        frame.extend(51820u16.to_be_bytes());
        frame.extend(51821u16.to_be_bytes());
        frame.extend(udp_len.to_be_bytes());
        frame.extend([0, 0]);
        frame.extend(payload);
        frame.extend([0u8; 4]); // Ethernet padding must not leak into the payload
        let got = parse(&pcap_with(&frame))?;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].src.to_string(), "192.0.2.1:51820");
        assert_eq!(got[0].dst.to_string(), "192.0.2.2:51821");
        assert_eq!(got[0].payload, payload);
        Ok(())
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"nope").is_err());
        assert!(parse(&[0u8; 24]).is_err());
    }
}
