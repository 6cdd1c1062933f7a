//! A second "machine" for partition tests: a network namespace joined to the host by a
//! veth pair, with packet filters (iptables, inside the namespace) to cut it off in
//! either direction or to blackhole one connection. Traffic goes only between the host
//! end and the namespace this test created; dropping the value removes both.
//!
//! Needs root, iproute2, nsenter and iptables (`scripts/test.sh` installs them). A
//! machine without them fails the test with the reason: a partition test that skips
//! itself silently would claim a safety it never checked.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct NetNs {
    pub name: String,
    /// The host's end of the link: servers listen here.
    pub host_ip: String,
    /// The namespace's own address.
    pub ns_ip: String,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {cmd:?}: {e} (partition tests need root, iproute2, nsenter and iptables)"
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {} (partition tests need root, iproute2, nsenter and iptables)",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

impl NetNs {
    /// A namespace linked to the host over a /30 of 10.248.0.0/14 chosen from this
    /// process's id and a counter, so that concurrent tests never share an address.
    pub fn create() -> NetNs {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Interface names are at most 15 bytes: "dvh" + 5 hex digits + 2 more.
        let tag = format!("{:05x}{:02x}", pid & 0xf_ffff, n & 0xff);
        let name = format!("drover-{tag}");
        let (host_if, ns_if) = (format!("dvh{tag}"), format!("dvn{tag}"));
        let subnet = ((pid as u64 * 256 + n as u64) % (1 << 16)) as u32;
        let (b, c) = (248 + (subnet >> 14), (subnet >> 6) & 0xff);
        let d = (subnet & 0x3f) * 4;
        let host_ip = format!("10.{b}.{c}.{}", d + 1);
        let ns_ip = format!("10.{b}.{c}.{}", d + 2);
        let ns = NetNs {
            name: name.clone(),
            host_ip: host_ip.clone(),
            ns_ip: ns_ip.clone(),
        };
        run(Command::new("ip").args(["netns", "add", &name]));
        run(Command::new("ip").args([
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]));
        run(Command::new("ip").args(["link", "set", &ns_if, "netns", &name]));
        run(Command::new("ip").args(["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]));
        run(Command::new("ip").args(["link", "set", &host_if, "up"]));
        ns.exec(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        ns.exec(&["ip", "link", "set", &ns_if, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace (its network only) and returns its output.
    pub fn exec(&self, args: &[&str]) -> Output {
        run(Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .args(args))
    }

    fn iptables(&self, rule: &[&str]) {
        let mut args = vec!["iptables", "-w"];
        args.extend_from_slice(rule);
        self.exec(&args);
    }

    /// Every packet in and out of the namespace is dropped, silently: no RST, no ICMP.
    pub fn cut(&self) {
        self.cut_incoming();
        self.cut_outgoing();
    }

    /// Packets arriving in the namespace (server → worker) are dropped.
    /// Cuts the namespace off from every other host but leaves its loopback working,
    /// so that a client inside can still talk to the server inside.
    pub fn cut_except_loopback(&self) {
        self.iptables(&["-A", "INPUT", "!", "-i", "lo", "-j", "DROP"]);
        self.iptables(&["-A", "OUTPUT", "!", "-o", "lo", "-j", "DROP"]);
    }

    pub fn cut_incoming(&self) {
        self.iptables(&["-A", "INPUT", "-j", "DROP"]);
    }

    /// Packets leaving the namespace (worker → server) are dropped.
    pub fn cut_outgoing(&self) {
        self.iptables(&["-A", "OUTPUT", "-j", "DROP"]);
    }

    /// Only the TCP connection from the namespace's `local_port` is blackholed, both
    /// ways: that connection stalls without an error while new ones get through.
    pub fn stall_connection(&self, local_port: u16) {
        let port = local_port.to_string();
        self.iptables(&["-A", "OUTPUT", "-p", "tcp", "--sport", &port, "-j", "DROP"]);
        self.iptables(&["-A", "INPUT", "-p", "tcp", "--dport", &port, "-j", "DROP"]);
    }

    /// Removes every filter: the network is whole again.
    pub fn heal(&self) {
        self.iptables(&["-F"]);
    }

    /// The local ports of the namespace's established TCP connections to `peer_port`.
    pub fn connections_to(&self, peer_port: u16) -> Vec<u16> {
        let out = self.exec(&["ss", "-Htn", "state", "established"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                // Recv-Q Send-Q Local:Port Peer:Port
                let local = cols.get(2)?;
                let peer = cols.get(3)?;
                (peer.rsplit(':').next()? == peer_port.to_string())
                    .then(|| local.rsplit(':').next()?.parse().ok())
                    .flatten()
            })
            .collect()
    }
}

/// How [`NetNs::slow_down`] slowed the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowLink {
    /// `tc netem delay`: every packet towards the namespace waits.
    Delay,
    /// The kernel has no netem: a `tbf` rate limit (256 kbit/s, queueing up to 1 s)
    /// instead, which makes the namespace's server fall behind by bandwidth.
    RateLimit,
}

impl NetNs {
    /// The host's end of the veth pair.
    fn host_if(&self) -> String {
        format!("dvh{}", &self.name["drover-".len()..])
    }

    /// Slows everything sent into the namespace: a `delay_ms` netem delay on the host's
    /// end of the link, or a rate limit where the kernel lacks netem (said on stderr).
    pub fn slow_down(&self, delay_ms: u32) -> SlowLink {
        let dev = self.host_if();
        let netem = Command::new("tc")
            .args(["qdisc", "add", "dev", &dev, "root", "netem", "delay"])
            .arg(format!("{delay_ms}ms"))
            .stdin(Stdio::null())
            .output();
        if netem.is_ok_and(|o| o.status.success()) {
            return SlowLink::Delay;
        }
        eprintln!(
            "FALLBACK: this kernel has no netem qdisc; slowing the link with a tbf rate limit instead of a {delay_ms} ms delay"
        );
        run(Command::new("tc").args([
            "qdisc", "add", "dev", &dev, "root", "tbf", "rate", "256kbit", "burst", "16kb",
            "latency", "1000ms",
        ]));
        SlowLink::RateLimit
    }

    /// Undoes [`NetNs::slow_down`].
    pub fn restore_speed(&self) {
        run(Command::new("tc").args(["qdisc", "del", "dev", &self.host_if(), "root"]));
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace removes its end of the veth pair, and with it ours.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
