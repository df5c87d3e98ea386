//! Failed authentications per client address: each address may fail
//! `burst` times in a row, then regains one attempt per `interval`; while
//! it has none left, every authentication it tries is refused unchecked
//! (`429` with `Retry-After`), so guessing keys or the operator token costs
//! time and no database work. Other addresses are not affected. In-process
//! (each node counts its own) and memory-bounded: at most `capacity`
//! addresses are remembered; an address that has regained all its attempts
//! is forgotten, and when the table is full of limited ones, the tenth
//! closest to regaining everything is dropped. IPv6 clients count per /64 (one host usually owns one).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct FailureLimiter {
    burst: u32,
    interval: Duration,
    capacity: usize,
    /// Per address, the time at which it will have regained every attempt
    /// (a "theoretical arrival time", as in GCRA): each failure pushes it
    /// `interval` further; the address is limited while it lies more than
    /// `(burst - 1) × interval` ahead.
    clients: Mutex<HashMap<IpAddr, Instant>>,
}

/// The key an address counts under: IPv4 as is, IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl FailureLimiter {
    pub fn new(burst: u32, interval: Duration, capacity: usize) -> Self {
        FailureLimiter {
            burst: burst.max(1),
            interval,
            capacity: capacity.max(1),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn allowance(&self) -> Duration {
        self.interval * (self.burst - 1)
    }

    /// `Err(wait)` when the address has no attempt left: how long until it
    /// has one.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    /// Counts a failed authentication of the address.
    pub fn failed(&self, ip: IpAddr) {
        self.failed_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        match clients.get(&client_key(ip)) {
            Some(&full_at) if full_at > now + self.allowance() => Err(full_at - now - self.allowance()),
            _ => Ok(()),
        }
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) {
        let key = client_key(ip);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if !clients.contains_key(&key) && clients.len() >= self.capacity {
            clients.retain(|_, full_at| *full_at > now);
            if clients.len() >= self.capacity {
                // Still full of limited addresses: drop the tenth closest
                // to regaining everything at once, so this scan is rare.
                let mut times: Vec<Instant> = clients.values().copied().collect();
                let cut = times.len() / 10;
                let (_, &mut threshold, _) = times.select_nth_unstable(cut);
                clients.retain(|_, full_at| *full_at > threshold);
            }
        }
        let full_at = clients.entry(key).or_insert(now);
        *full_at = (*full_at).max(now) + self.interval;
    }

    /// Addresses remembered (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_one_per_interval_per_address() {
        let l = FailureLimiter::new(3, Duration::from_secs(10), 100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(l.check_at(a, t0).is_ok());
            l.failed_at(a, t0);
        }
        assert_eq!(l.check_at(a, t0), Err(Duration::from_secs(10)));
        // Another address is not affected.
        assert!(l.check_at(ip("192.0.2.2"), t0).is_ok());
        // One attempt back after one interval, and only one.
        let t1 = t0 + Duration::from_secs(10);
        assert!(l.check_at(a, t1).is_ok());
        l.failed_at(a, t1);
        assert_eq!(l.check_at(a, t1), Err(Duration::from_secs(10)));
        // All back after burst × interval.
        let t2 = t1 + Duration::from_secs(30);
        for _ in 0..3 {
            assert!(l.check_at(a, t2).is_ok());
            l.failed_at(a, t2);
        }
        assert!(l.check_at(a, t2).is_err());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = FailureLimiter::new(1, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        l.failed_at(ip("2001:db8:1:2::1"), t0);
        assert!(l.check_at(ip("2001:db8:1:2:ffff::9"), t0).is_err());
        assert!(l.check_at(ip("2001:db8:1:3::1"), t0).is_ok());
        l.failed_at(ip("::ffff:192.0.2.7"), t0);
        assert!(l.check_at(ip("192.0.2.7"), t0).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let l = FailureLimiter::new(2, Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        for i in 0..5_000u32 {
            l.failed_at(IpAddr::V4(i.into()), t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(l.tracked() <= 1000);
        // The newest are remembered; the oldest were dropped first.
        let last = IpAddr::V4(4_999u32.into());
        l.failed_at(last, t0 + Duration::from_secs(20));
        assert!(l.check_at(last, t0 + Duration::from_secs(20)).is_err());
    }
}
