//! The PROXY protocol v2 header (haproxy.org's proxy-protocol.txt, section 2.2) a mesh
//! sends ahead of a connection's bytes with `proxy_protocol: true`, so the task learns
//! the client's address the mesh otherwise hides.

use std::net::{IpAddr, SocketAddr};

use flotilla_types::Protocol;

const SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
/// Version 2, command PROXY.
const V2_PROXY: u8 = 0x21;

/// The header for a connection from `client` that arrived at `local`. Addresses of mixed
/// families are both given as IPv6 (an IPv4 one mapped).
pub fn header(client: SocketAddr, local: SocketAddr, protocol: Protocol) -> Vec<u8> {
    let transport = match protocol {
        Protocol::Tcp => 0x1,
        Protocol::Udp => 0x2,
    };
    let mut out = SIGNATURE.to_vec();
    out.push(V2_PROXY);
    match (client.ip(), local.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.push(0x10 | transport);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x20 | transport);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(src).octets());
            out.extend_from_slice(&v6(dst).octets());
        }
    }
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&local.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_tcp_header_carries_both_addresses_and_ports() {
        let h = header(
            "192.0.2.7:40000".parse().unwrap(),
            "127.0.0.11:8080".parse().unwrap(),
            Protocol::Tcp,
        );
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11, "AF_INET, STREAM");
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
        assert_eq!(&h[16..20], &[192, 0, 2, 7]);
        assert_eq!(&h[20..24], &[127, 0, 0, 11]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 40000);
        assert_eq!(u16::from_be_bytes([h[26], h[27]]), 8080);
        assert_eq!(h.len(), 28);
    }

    #[test]
    fn mixed_families_are_sent_as_ipv6_and_udp_says_dgram() {
        let h = header(
            "[2001:db8::1]:5353".parse().unwrap(),
            "10.0.0.1:53".parse().unwrap(),
            Protocol::Udp,
        );
        assert_eq!(h[13], 0x22, "AF_INET6, DGRAM");
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 36);
        assert_eq!(h.len(), 16 + 36);
        let dst: [u8; 16] = h[32..48].try_into().unwrap();
        assert_eq!(
            std::net::Ipv6Addr::from(dst).to_ipv4_mapped(),
            Some("10.0.0.1".parse().unwrap())
        );
    }
}
