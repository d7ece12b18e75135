//! Client IP allow/deny lists (CIDR, v4 and v6) on the client IP the edge derived with
//! `server.trusted_proxies`. Deny wins; a non-empty allow list denies everything else.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::GatewayError;

/// Compiled allow/deny lists.
#[derive(Debug, Clone, Default)]
pub struct IpRules {
    /// Allowed networks (empty = all).
    pub allow: Vec<IpNet>,
    /// Denied networks.
    pub deny: Vec<IpNet>,
}

impl IpRules {
    /// `Ok` when `ip` may pass; 403 otherwise.
    pub fn check(&self, ip: IpAddr) -> Result<(), GatewayError> {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d; rules say a.b.c.d.
        let ip = ip.to_canonical();
        let denied = self.deny.iter().any(|net| net.contains(&ip))
            || (!self.allow.is_empty() && !self.allow.iter().any(|net| net.contains(&ip)));
        if denied {
            Err(GatewayError::IpDenied { ip })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> IpRules {
        IpRules {
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn deny_wins_and_allow_lists_close_the_rest() {
        let r = rules(&["203.0.113.0/24", "2001:db8::/32"], &["203.0.113.66/32"]);
        assert!(r.check("203.0.113.5".parse().unwrap()).is_ok());
        assert!(r.check("203.0.113.66".parse().unwrap()).is_err());
        assert!(r.check("198.51.100.1".parse().unwrap()).is_err());
        assert!(r.check("2001:db8::1".parse().unwrap()).is_ok());
        assert!(r.check("::ffff:203.0.113.5".parse().unwrap()).is_ok());
        assert!(
            rules(&[], &["10.0.0.0/8"])
                .check("8.8.8.8".parse().unwrap())
                .is_ok()
        );
    }
}
