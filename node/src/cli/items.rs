//! The commands of sorted partitions: `range` (pages of a partition),
//! `batch` (item operations from a file, one outcome per line) and `watch`
//! (each change of an item or of a partition's newest items), `partitions`,
//! `delete-range` and `placement` (where partitions live).

use super::args::DataCommand;
use super::data::parse_context;
use super::BoxError;
use kvorum_client::proto::{ItemKey, ItemOp, ItemValue, RangeQuery};
use kvorum_client::{CausalContext, Outcome};
use std::io::Read;
use std::process::ExitCode;

/// Runs `range` or `batch`.
pub async fn run(cmd: DataCommand) -> Result<ExitCode, BoxError> {
    match cmd {
        DataCommand::Range {
            span,
            reverse,
            limit,
            after,
            all,
            r,
            conn,
        } => {
            let client = conn.client()?;
            let mut q = span.query().limit(limit).options(conn.read_options(r));
            q.reverse = reverse;
            if let Some(hex) = after {
                q.after = Some(
                    from_hex(&hex).ok_or("--after is not the hex `next:` that range printed")?,
                );
            }
            loop {
                let page = client.read_page(&q).await?;
                for item in &page.items {
                    println!("{}\t{}", show(&item.sort), show_value(&item.value));
                }
                match page.next {
                    Some(next) if all => q.after = Some(next),
                    Some(next) => {
                        println!("next: {}", to_hex(&next));
                        break;
                    }
                    None => break,
                }
            }
            client.close().await;
        }
        DataCommand::Batch { file, conn } => {
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
            }
            let mut batch = Vec::new();
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                batch.push(parse_op(line, &conn).map_err(|e| format!("line {}: {e}", n + 1))?);
            }
            let client = conn.client()?;
            let mut b = client.batch();
            for (key, op) in batch {
                b = b.op(key, op);
            }
            let mut failed = false;
            for (i, outcome) in b.send().await?.into_iter().enumerate() {
                match outcome {
                    Ok(Outcome::Written { context, .. }) => {
                        println!("{}: ok, context {}", i + 1, context.to_hex())
                    }
                    Ok(Outcome::Read(v)) if v.siblings.is_empty() => {
                        println!("{}: not found", i + 1)
                    }
                    Ok(Outcome::Read(v)) => println!(
                        "{}: {} (context {})",
                        i + 1,
                        show_value(&ItemValue::Siblings(v.siblings)),
                        v.context.to_hex()
                    ),
                    Ok(Outcome::Fetched { value, .. }) => println!("{}: {value:?}", i + 1),
                    Err(e) => {
                        failed = true;
                        println!("{}: error: {e}", i + 1);
                    }
                }
            }
            client.close().await;
            if failed {
                return Ok(ExitCode::from(1));
            }
        }
        DataCommand::Watch {
            bucket,
            partition,
            sort,
            range,
            limit,
            count,
            conn,
        } => {
            let client = conn.client()?;
            let mut seen = 0u64;
            if range {
                let q = RangeQuery::new(&bucket, partition.as_bytes())
                    .reverse()
                    .limit(limit);
                let mut changes = client.range_changes(q);
                while count.is_none_or(|c| seen < c) {
                    let page = changes.next().await?;
                    println!("-- {} newest:", page.items.len());
                    for item in &page.items {
                        println!("{}\t{}", show(&item.sort), show_value(&item.value));
                    }
                    seen += 1;
                }
            } else {
                let key = ItemKey::new(&bucket, partition.as_bytes(), sort.as_bytes());
                let mut changes = client.changes(key, Default::default());
                while count.is_none_or(|c| seen < c) {
                    let v = changes.next().await?;
                    let shown = if v.siblings.is_empty() {
                        "not found".to_string()
                    } else {
                        show_value(&ItemValue::Siblings(v.siblings))
                    };
                    println!("{shown}\tcontext: {}", v.context.to_hex());
                    seen += 1;
                }
            }
            client.close().await;
        }
        DataCommand::DeleteRange { span, conn } => {
            let client = conn.client()?;
            let p = client.partition(&span.bucket, span.partition.as_bytes());
            let deleted = p.delete_range(span.query()).await?;
            println!("deleted {deleted}");
            client.close().await;
        }
        DataCommand::Partitions {
            bucket,
            limit,
            after,
            all,
            conn,
        } => {
            let client = conn.client()?;
            let mut after = match after {
                Some(hex) => Some(
                    from_hex(&hex)
                        .ok_or("--after is not the hex `next:` that partitions printed")?,
                ),
                None => None,
            };
            loop {
                let (keys, next) = client
                    .list_partitions(&bucket, after.as_deref(), limit)
                    .await?;
                for k in &keys {
                    println!("{}", show(k));
                }
                match next {
                    Some(next) if all => after = Some(next),
                    Some(next) => {
                        println!("next: {}", to_hex(&next));
                        break;
                    }
                    None => break,
                }
            }
            client.close().await;
        }
        DataCommand::Placement {
            bucket,
            partition,
            conn,
        } => {
            let client = conn.client()?;
            let placement = client.placement().await?;
            client.close().await;
            match (bucket, partition) {
                (Some(bucket), Some(pk)) => {
                    for node in placement.owners_of(&bucket, pk.as_bytes()) {
                        println!("{}\t{}", node.id, node.addr);
                    }
                }
                (None, None) => print_placement(&placement),
                _ => return Err("give both a bucket and a partition key, or neither".into()),
            }
        }
        _ => return Err("not a partition command".into()),
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of a batch file.
fn parse_op(line: &str, conn: &super::args::Conn) -> Result<(ItemKey, ItemOp), BoxError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let key = |w: &[&str]| ItemKey::new(w[1], w[2].as_bytes(), w[3].as_bytes());
    Ok(match words.as_slice() {
        ["get", _, _, _] => (
            key(&words),
            ItemOp::Get {
                options: conn.read_options(None),
                at_least: None,
            },
        ),
        ["put", _, _, _, value] => (
            key(&words),
            ItemOp::put(
                value.as_bytes(),
                &CausalContext::empty(),
                conn.write_options(None),
            ),
        ),
        ["delete", _, _, _, rest @ ..] if rest.len() <= 1 => (
            key(&words),
            ItemOp::Delete {
                context: parse_context(rest.first().map(|s| s.to_string()))?,
                options: conn.write_options(None),
            },
        ),
        _ => {
            return Err(format!(
                "{line:?}: expected `get B P S`, `put B P S VALUE` or `delete B P S [CONTEXT]`"
            )
            .into())
        }
    })
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show_value(v: &ItemValue) -> String {
    match v {
        ItemValue::Siblings(s) => s.iter().map(|x| show(x)).collect::<Vec<_>>().join(" | "),
        ItemValue::Data(d) => format!("{d:?}"),
    }
}

fn to_hex(b: &[u8]) -> String {
    CausalContext(b.to_vec()).to_hex()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    CausalContext::from_hex(s).map(|c| c.0)
}

/// Each node of `p`, its address, and the share of the ring whose first
/// replica it is.
fn print_placement(p: &kvorum_client::Placement) {
    let mut first = vec![0u128; p.nodes.len()];
    let mut prev = p.ranges.last().map_or(0, |r| r.end);
    for r in &p.ranges {
        let width = if p.ranges.len() == 1 {
            1u128 << 64 // one range: the whole ring
        } else {
            u128::from(r.end.wrapping_sub(prev))
        };
        if let Some(&o) = r.owners.first() {
            first[usize::from(o)] += width;
        }
        prev = r.end;
    }
    println!("replicas per range: {}; ranges: {}", p.n, p.ranges.len());
    for (i, node) in p.nodes.iter().enumerate() {
        let share = first[i] as f64 / (u128::from(u64::MAX) + 1) as f64 * 100.0;
        println!("{}\t{}\tfirst replica of {share:.1} %", node.id, node.addr);
    }
}
