//! The data commands: `get`, `put`, `delete`, and the typed `counter`,
//! `set` and `map`.

use super::args::{DataCommand, WriteArgs};
use super::BoxError;
use kvorum_client::proto::Response;
use kvorum_client::{CausalContext, ErrorReply, FieldKind, FieldValue, MapUpdate};
use std::process::ExitCode;

/// Runs one data command.
pub async fn run(cmd: DataCommand) -> Result<ExitCode, BoxError> {
    match cmd {
        DataCommand::Range { .. }
        | DataCommand::Batch { .. }
        | DataCommand::Watch { .. }
        | DataCommand::Partitions { .. }
        | DataCommand::Placement { .. }
        | DataCommand::DeleteRange { .. } => {
            return super::items::run(cmd).await;
        }
        DataCommand::Counter {
            bucket,
            key,
            incr,
            q,
            conn,
        } => {
            let client = conn.client()?;
            let c = client
                .counter(&bucket, key.as_bytes())
                .read_options(conn.read_options(q.r))
                .write_options(conn.write_options(q.w));
            if let Some(by) = incr {
                c.increment(by).await?;
            }
            println!("{}", c.value().await?);
            client.close().await;
        }
        DataCommand::Set {
            bucket,
            key,
            add,
            remove,
            q,
            conn,
        } => {
            let client = conn.client()?;
            let s = client
                .set(&bucket, key.as_bytes())
                .read_options(conn.read_options(q.r))
                .write_options(conn.write_options(q.w));
            if !add.is_empty() || !remove.is_empty() {
                let ctx = if remove.is_empty() {
                    CausalContext::empty()
                } else {
                    s.members().await?.context
                };
                let bytes = |v: Vec<String>| v.into_iter().map(String::into_bytes).collect();
                s.update(bytes(add), bytes(remove), &ctx).await?;
            }
            for m in s.members().await?.members {
                println!("{}", String::from_utf8_lossy(&m));
            }
            client.close().await;
        }
        DataCommand::Map {
            bucket,
            key,
            incr,
            add,
            remove,
            enable,
            disable,
            lww,
            reg,
            remove_field,
            q,
            conn,
        } => {
            let client = conn.client()?;
            let m = client
                .map(&bucket, key.as_bytes())
                .read_options(conn.read_options(q.r))
                .write_options(conn.write_options(q.w));
            let mut u = MapUpdate::new();
            for f in &incr {
                let (field, n) = split_field(f)?;
                u = u.increment(field, n.parse().map_err(|e| format!("--incr {f}: {e}"))?);
            }
            for f in &add {
                let (field, v) = split_field(f)?;
                u = u.add(field, v.as_bytes());
            }
            for f in &remove {
                let (field, v) = split_field(f)?;
                u = u.remove(field, v.as_bytes());
            }
            for f in &enable {
                u = u.enable(f);
            }
            for f in &disable {
                u = u.disable(f);
            }
            for f in &lww {
                let (field, v) = split_field(f)?;
                u = u.set_lww(field, v.as_bytes());
            }
            for f in &reg {
                let (field, v) = split_field(f)?;
                u = u.set_register(field, v.as_bytes());
            }
            for f in &remove_field {
                let (kind, field) = f
                    .split_once(':')
                    .ok_or_else(|| format!("--remove-field {f}: expected KIND:FIELD"))?;
                u = u.remove_field(field, kind.parse::<FieldKind>()?);
            }
            if !u.ops().is_empty() {
                // Removes and register writes act on what a read saw.
                let ctx = m.fetch().await?.context;
                m.update(u.context(&ctx)).await?;
            }
            for (name, kind, value) in m.fetch().await?.value.fields {
                let shown = match value {
                    FieldValue::Counter(v) => v.to_string(),
                    FieldValue::Flag(b) => b.to_string(),
                    FieldValue::Lww(v) => String::from_utf8_lossy(&v).into_owned(),
                    FieldValue::Set(ms) | FieldValue::Register(ms) => ms
                        .iter()
                        .map(|m| String::from_utf8_lossy(m).into_owned())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                println!("{name} ({kind}): {shown}");
            }
            client.close().await;
        }
        DataCommand::Get {
            bucket,
            key,
            sort,
            r,
            conn,
        } => {
            let client = conn.client()?;
            let v = client
                .partition(&bucket, key.as_bytes())
                .get_with(sort.as_bytes(), conn.read_options(r))
                .await?;
            if v.siblings.is_empty() {
                println!("not found");
            }
            for (i, s) in v.siblings.iter().enumerate() {
                if v.siblings.len() > 1 {
                    print!("sibling {}: ", i + 1);
                }
                println!("{}", String::from_utf8_lossy(s));
            }
            println!("context: {}", v.context.to_hex());
            client.close().await;
            return Ok(if v.siblings.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        DataCommand::Put {
            bucket,
            key,
            sort,
            value,
            if_absent,
            if_match,
            ttl,
            write: WriteArgs { context, w, conn },
        } => {
            let client = conn.client()?;
            let ctx = parse_context(context)?;
            let mut opts = conn.write_options(w);
            if let Some(ttl) = ttl {
                opts = opts.ttl(ttl);
            }
            if if_absent {
                opts = opts.if_absent();
            }
            if if_match {
                opts = opts.if_match();
            }
            let written = client
                .partition(&bucket, key.as_bytes())
                .put_with(sort.as_bytes(), value.as_bytes(), &ctx, opts)
                .await;
            client.close().await;
            match written {
                Ok(new) => println!("ok\ncontext: {}", new.to_hex()),
                Err(kvorum_client::Error::Server(ErrorReply::PreconditionFailed {
                    condition,
                    current,
                })) => {
                    println!("precondition failed: {} does not hold", condition.name());
                    match *current {
                        Response::Value {
                            siblings, context, ..
                        } => {
                            for s in siblings {
                                println!("{}", String::from_utf8_lossy(&s));
                            }
                            println!("context: {}", context.to_hex());
                        }
                        Response::NotFound { context, .. } | Response::Data { context, .. } => {
                            println!("context: {}", context.to_hex())
                        }
                        _ => {}
                    }
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            }
        }
        DataCommand::Delete {
            bucket,
            key,
            sort,
            write: WriteArgs { context, w, conn },
        } => {
            let client = conn.client()?;
            let ctx = parse_context(context)?;
            client
                .partition(&bucket, key.as_bytes())
                .delete_with(sort.as_bytes(), &ctx, conn.write_options(w))
                .await?;
            println!("deleted");
            client.close().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Splits FIELD=VALUE.
fn split_field(arg: &str) -> Result<(&str, &str), BoxError> {
    arg.split_once('=')
        .ok_or_else(|| format!("{arg:?}: expected FIELD=VALUE").into())
}

pub(super) fn parse_context(hex: Option<String>) -> Result<CausalContext, BoxError> {
    match hex {
        None => Ok(CausalContext::empty()),
        Some(h) => CausalContext::from_hex(&h)
            .ok_or_else(|| "--context is not the hex printed by `get`".into()),
    }
}
