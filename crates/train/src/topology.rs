//! Where the peers of a run sit: devices per machine, machines, this machine's rank and the
//! coordinator's address (`--devices`, `--nodes`, `--node-rank`, `--coordinator`).

use crate::TrainError;

/// Where the peers of a data-parallel run sit: `devices` per machine on `nodes` machines, one
/// peer (thread) per device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Devices (peers) on each machine.
    pub devices: usize,
    /// Machines.
    pub nodes: usize,
    /// This machine's rank in `0..nodes`.
    pub node_rank: usize,
    /// The coordinator `host:port` (node 0 runs it) when `nodes > 1`.
    pub coordinator: Option<String>,
    /// This machine's `host:port` for tensor transfers when `nodes > 1` (default: the
    /// coordinator's host, port + 1 + node rank).
    pub node_address: Option<String>,
}

impl Default for Topology {
    fn default() -> Self {
        Self::single()
    }
}

impl Topology {
    /// One device on one machine.
    pub fn single() -> Self {
        Self {
            devices: 1,
            nodes: 1,
            node_rank: 0,
            coordinator: None,
            node_address: None,
        }
    }

    /// `devices` local peers on one machine.
    pub fn local(devices: usize) -> Self {
        Self {
            devices,
            ..Self::single()
        }
    }

    /// Peers in all.
    pub fn world(&self) -> usize {
        self.devices * self.nodes
    }

    /// The global rank of local device `local`.
    pub fn rank(&self, local: usize) -> usize {
        self.node_rank * self.devices + local
    }

    /// Rejects impossible topologies, naming the option.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.validate_counts()?;
        if self.nodes > 1 {
            let bad = |field: &str, message: String| TrainError::Invalid {
                field: field.into(),
                message,
            };
            let c = self.coordinator.as_deref().ok_or_else(|| {
                bad(
                    "--coordinator",
                    "required with --nodes > 1 (host:port of node 0)".into(),
                )
            })?;
            split_host_port(c).map_err(|m| bad("--coordinator", m))?;
            if let Some(a) = &self.node_address {
                split_host_port(a).map_err(|m| bad("--node-address", m))?;
            }
        }
        Ok(())
    }

    /// [`Topology::validate`] without the addresses (enough to plan).
    pub fn validate_counts(&self) -> Result<(), TrainError> {
        let bad = |field: &str, message: String| TrainError::Invalid {
            field: field.into(),
            message,
        };
        if self.devices == 0 {
            return Err(bad("--devices", "expected at least 1 device".into()));
        }
        if self.nodes == 0 {
            return Err(bad("--nodes", "expected at least 1 node".into()));
        }
        if self.node_rank >= self.nodes {
            return Err(bad(
                "--node-rank",
                format!("{} is not below --nodes {}", self.node_rank, self.nodes),
            ));
        }
        Ok(())
    }

    /// This node's `(host, port)` for the tensor data service.
    pub fn node_host_port(&self) -> Result<(String, u16), String> {
        if let Some(a) = &self.node_address {
            return split_host_port(a);
        }
        let (host, port) = split_host_port(self.coordinator.as_deref().unwrap_or("127.0.0.1:0"))?;
        let port = port
            .checked_add(1 + self.node_rank as u16)
            .ok_or_else(|| format!("port {port} + {} overflows", 1 + self.node_rank))?;
        Ok((host, port))
    }
}

/// `host:port` → parts.
pub fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let s = s.strip_prefix("ws://").unwrap_or(s);
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}`: expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{s}`: expected a port number after ':'"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("`{s}`: expected host:port with a nonzero port"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_checks_name_the_option() {
        assert!(Topology::local(2).validate().is_ok());
        let t = Topology {
            nodes: 2,
            ..Topology::local(2)
        };
        let e = t.validate().expect_err("needs coordinator").to_string();
        assert!(e.contains("--coordinator"), "{e}");
        let t = Topology {
            coordinator: Some("10.0.0.1:7000".into()),
            node_rank: 1,
            ..t
        };
        assert_eq!(t.rank(1), 3);
        assert_eq!(t.node_host_port(), Ok(("10.0.0.1".into(), 7002)));
        let t = Topology { node_rank: 2, ..t };
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("--node-rank")
        );
        assert!(split_host_port("host").is_err());
        assert_eq!(split_host_port("ws://a:1"), Ok(("a".into(), 1)));
    }
}
