//! Human-readable output of the admin commands.

pub fn print_status(
    s: &kvorum_client::ClusterStatus,
    transfers: &[(String, Vec<kvorum_client::TransferStatus>)],
    disks: &[(String, Result<kvorum_client::DiskStatus, String>)],
) {
    println!("as seen by {}:", s.node);
    println!(
        "{:<16} {:<22} {:<10} {:<8} {:>7}  SEEN",
        "NODE", "ADDRESS", "ZONE", "STATE", "RING"
    );
    for m in &s.members {
        println!(
            "{:<16} {:<22} {:<10} {:<8} {:>6.1}%  {}",
            m.id,
            m.addr,
            m.zone.as_deref().unwrap_or("-"),
            m.state,
            f64::from(m.ownership_ppm) / 10_000.0,
            if m.state == "removed" {
                "-"
            } else if m.reachable {
                "up"
            } else {
                "down"
            }
        );
    }
    print_disks(disks);
    print_certificates(&s.certificates);
    if !s.in_transition {
        println!("no topology change in progress");
        return;
    }
    println!(
        "topology change in progress; waiting for: {}",
        if s.waiting_for.is_empty() {
            "completion (gossip)".to_string()
        } else {
            s.waiting_for.join(", ")
        }
    );
    for (node, list) in transfers {
        for t in list {
            let pct = if t.total == 0 {
                100.0
            } else {
                (t.scanned as f64 / t.total as f64 * 100.0).min(100.0)
            };
            println!(
                "  {} <- {}: {} ({:.0}% scanned, {} keys, {} bytes)",
                node,
                t.source,
                if t.done { "done" } else { "streaming" },
                pct,
                t.keys,
                t.bytes
            );
        }
    }
}

pub fn print_ring(ranges: &[kvorum_client::RingRange], all: bool) {
    let span = |r: &kvorum_client::RingRange| r.end.wrapping_sub(r.start) as f64 / 2f64.powi(64);
    if all {
        println!("{:<18} {:<18} OWNERS", "START (excl.)", "END (incl.)");
        for r in ranges {
            println!("{:016x}   {:016x}   {}", r.start, r.end, r.owners.join(","));
        }
        return;
    }
    let mut by_owners: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
    for r in ranges {
        let e = by_owners.entry(r.owners.join(",")).or_default();
        e.0 += 1;
        e.1 += span(r);
    }
    println!(
        "{:<40} {:>7} {:>7}",
        "OWNERS (first replica first)", "RANGES", "SHARE"
    );
    for (owners, (n, share)) in by_owners {
        println!("{owners:<40} {n:>7} {:>6.1}%", share * 100.0);
    }
    println!(
        "{} ranges (--all lists them, --json for scripts)",
        ranges.len()
    );
}

/// Each member's disk against its free-space watermark.
fn print_disks(disks: &[(String, Result<kvorum_client::DiskStatus, String>)]) {
    use kvorum_client::DiskRefusal;
    if disks.is_empty() {
        return;
    }
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    println!(
        "{:<16} {:>10} {:>10} {:>10}  WRITES",
        "DISK", "FREE GiB", "SIZE GiB", "MARK GiB"
    );
    for (node, disk) in disks {
        match disk {
            Ok(d) => {
                let writes = match (&d.storage_failed, d.refusing) {
                    (Some(e), _) => format!("REFUSED: storage failed ({e})"),
                    (None, DiskRefusal::None) => "taken".to_string(),
                    (None, DiskRefusal::Unknown) => "taken (free space unknown)".to_string(),
                    (None, r) => format!("REFUSED: {r} (disk below its watermark)"),
                };
                println!(
                    "{:<16} {:>10.2} {:>10.2} {:>10.2}  {writes}",
                    node,
                    gib(d.free_bytes),
                    gib(d.total_bytes),
                    gib(d.watermark_bytes)
                );
            }
            Err(e) => println!(
                "{node:<16} {:>10} {:>10} {:>10}  unknown ({e})",
                "-", "-", "-"
            ),
        }
    }
}

/// When node certificates expire, soonest first.
fn print_certificates(certs: &[kvorum_client::CertificateStatus]) {
    if certs.is_empty() {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut certs = certs.to_vec();
    certs.sort_by_key(|c| c.not_after);
    println!("{:<16} {:<34} EXPIRES", "CERTIFICATE", "SERIAL");
    for c in certs {
        let days = (c.not_after - now) / 86_400;
        let when = if c.not_after <= now {
            "EXPIRED".to_string()
        } else if days < 30 {
            format!("in {days} days (renew now)")
        } else {
            format!("in {days} days")
        };
        println!("{:<16} {:<34} {when}", c.node, c.serial);
    }
}
