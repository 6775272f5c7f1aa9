//! The container network of a node's engine, as the DNS server and the mesh need it.

/// The engine's default bridge network as a driver finds it (the Docker driver's `bridge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bridge {
    pub gateway: std::net::IpAddr,
    pub network: std::net::IpAddr,
    pub prefix: u8,
}

impl Bridge {
    /// Whether `ip` is in the bridge's subnet (a container on it).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        match (self.network, ip) {
            (V4(n), V4(a)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (V6(n), V6(a)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_holds_its_addresses_only() {
        let b = Bridge {
            gateway: "172.17.0.1".parse().unwrap(),
            network: "172.17.0.0".parse().unwrap(),
            prefix: 16,
        };
        assert!(b.contains("172.17.0.2".parse().unwrap()));
        assert!(b.contains("172.17.255.254".parse().unwrap()));
        assert!(!b.contains("172.18.0.2".parse().unwrap()));
        assert!(!b.contains("127.0.0.1".parse().unwrap()));
        assert!(!b.contains("::1".parse().unwrap()));
        let v6 = Bridge {
            gateway: "fd00::1".parse().unwrap(),
            network: "fd00::".parse().unwrap(),
            prefix: 64,
        };
        assert!(v6.contains("fd00::5".parse().unwrap()));
        assert!(!v6.contains("fd01::5".parse().unwrap()));
    }
}
